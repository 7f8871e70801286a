"""A fixed ports workload for instruction counting (see bench/icount/run.sh).

Two processes over tcp loopback: this one listens, a child connects.
``oneway N``: the child posts N messages of 100 bytes, this end counts them.
``ping N``: the child posts and waits for the echo, N times.
``request N``: the child makes N ``request()`` calls this end answers.
Uses only the public ports API, so it runs against older trees too.
"""

from __future__ import annotations

import subprocess
import sys

import trio

from statesync import ports
from statesync.ports import MessageEvent, PortQueueFull

PAYLOAD = b"x" * 100


async def listener_side(kind: str, n: int) -> None:
    listener = ports.listen("tcp://127.0.0.1:*")
    child = subprocess.Popen([sys.executable, __file__, "child", kind, str(n), listener.endpoints[0]])
    port = await listener.accept()
    done = trio.Event()
    count = 0

    def on_message(ev: MessageEvent) -> None:
        nonlocal count
        if kind == "ping":
            port.post_message(ev.data)
            return
        count += 1
        if count == n:
            done.set()

    if kind == "request":
        port.set_request_handler(lambda data: data)
    else:
        port.on_message = on_message
    if kind == "oneway":
        await done.wait()
        port.post_message("stop")
    await trio.to_thread.run_sync(child.wait)
    listener.close()


async def connecting_side(kind: str, n: int, endpoint: str) -> None:
    port = await ports.connect(endpoint)
    if kind == "oneway":
        sent = 0
        while sent < n:
            try:
                port.post_message(PAYLOAD)
                sent += 1
            except PortQueueFull:
                await port.wait_writable()
        async for _ in port:  # "stop"
            break
    elif kind == "ping":
        replies = aiter(port)
        for _ in range(n):
            port.post_message(PAYLOAD)
            await anext(replies)
    else:
        for _ in range(n):
            await port.request(PAYLOAD)
    port.close()


if __name__ == "__main__":
    if sys.argv[1] == "child":
        trio.run(connecting_side, sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        trio.run(listener_side, sys.argv[1], int(sys.argv[2]))
