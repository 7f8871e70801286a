"""A peer process for the ports process tests: ``python -m tests.ports.peer ROLE [ARGS]``.

Roles:

- ``echo-listen``: listen on tcp loopback, print ``{"endpoint": ...}``, echo every
  message on every accepted port.
- ``echo-connect EP``: connect to ``EP``, print ``{"connected": true}``, echo.
- ``worker COUNT``: listen, print ``{"endpoint": ...}``, take the port the broker
  sends, then send ``COUNT`` numbered messages on it while reading the partner's
  (after the pre-queued ones); print ``{"got": [...], "pre": [...]}``.
- ``broker EP_A EP_B COUNT``: connect to both workers, make a channel, queue
  ``COUNT`` messages in each end, hand ``port1`` to A and ``port2`` to B, shut
  down gracefully; print ``{"relays_released": bool}``.

Every role ends by itself: when its work is done, when stdin closes (the test
process is gone), or after ``LIFETIME_S`` at most.
"""

from __future__ import annotations

import json
import os
import sys

import trio

from statesync.ports import (
    MessageChannel,
    MessageEvent,
    MessagePort,
    PortOptions,
    connect,
    listen,
    shutdown,
)

LIFETIME_S = 30.0
OPTIONS = PortOptions(
    heartbeat_interval_s=0.1, heartbeat_timeout_s=1.0, connect_timeout_s=10.0, linger_s=0.2
)


def say(obj: object) -> None:
    print(json.dumps(obj), flush=True)


async def stdin_closed() -> None:
    """Return when the parent closes our stdin (or dies)."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    try:
        while await stream.receive_some(4096):
            pass
    finally:
        await stream.aclose()


def echo(port: MessagePort) -> None:
    def on_message(ev: MessageEvent) -> None:
        if not port.closed:
            port.post_message(ev.data)

    port.on_message = on_message


async def echo_listen() -> None:
    listener = listen("tcp://127.0.0.1:*", OPTIONS)
    say({"endpoint": listener.endpoints[0]})
    async with trio.open_nursery() as n:

        async def accept_all() -> None:
            async for port in listener:
                echo(port)

        n.start_soon(accept_all)
        await stdin_closed()
        n.cancel_scope.cancel()


async def echo_connect(endpoint: str) -> None:
    port = await connect(endpoint, OPTIONS)
    echo(port)
    say({"connected": True})
    await stdin_closed()


async def worker(count: int) -> None:
    listener = listen("tcp://127.0.0.1:*", OPTIONS)
    say({"endpoint": listener.endpoints[0]})
    from_broker = await listener.accept()
    async for ev in from_broker:
        (port,) = ev.ports
        break
    pre: list[object] = []
    got: list[object] = []
    reasons: list[str] = []
    port.on_close = lambda ev: reasons.append(ev.reason)
    async with trio.open_nursery() as n:

        async def send_all() -> None:
            for i in range(count):
                await port.send(i)
                if i % 20 == 0:
                    await trio.sleep(0)

        n.start_soon(send_all)
        async for ev in port:
            if isinstance(ev.data, list) and ev.data[:1] == ["pre"]:
                pre.append(ev.data[1])
            else:
                got.append(ev.data)
            if len(got) == count:
                break
    say({"got": got, "pre": pre, "closed": reasons})
    await stdin_closed()


async def broker(ep_a: str, ep_b: str, count: int) -> None:
    to_a = await connect(ep_a, OPTIONS)
    to_b = await connect(ep_b, OPTIONS)
    ch = MessageChannel()
    for i in range(count):
        ch.port1.post_message(["pre", i])  # queued in port2, for B
        ch.port2.post_message(["pre", i])  # queued in port1, for A
    to_a.post_message("yours", transfer=[ch.port1])
    to_b.post_message("yours", transfer=[ch.port2])
    released = await shutdown(timeout_s=10)
    say({"relays_released": released})


async def main(argv: list[str]) -> None:
    role, *args = argv
    with trio.move_on_after(LIFETIME_S):
        if role == "echo-listen":
            await echo_listen()
        elif role == "echo-connect":
            await echo_connect(args[0])
        elif role == "worker":
            await worker(int(args[0]))
        elif role == "broker":
            await broker(args[0], args[1], int(args[2]))
        else:
            raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    trio.run(main, sys.argv[1:])
