"""The per-run default runtime and its clean end (in-order delivery is tested on the pure protocol: test_protocol.py)."""

from __future__ import annotations

import pytest
import trio

from statesync import ports
from statesync.ports import MessageChannel, MessageEvent, PortOptions, PortRuntime, open_runtime


def test_default_runtime_is_per_run_and_closes_everything_at_the_end() -> None:
    seen: list[PortRuntime] = []

    async def main() -> None:
        rt = ports.current_runtime()
        seen.append(rt)
        listener = ports.listen("inproc://default-runtime-lifecycle")
        p = await ports.connect("inproc://default-runtime-lifecycle")
        q = await listener.accept()
        p.post_message("over inproc")
        async for ev in q:
            assert ev.data == "over inproc"
            break
        assert ports.current_runtime() is rt

    trio.run(main)
    trio.run(main)
    a, b = seen
    assert a is not b
    for rt in seen:
        assert rt.closed
        assert rt._ctx.closed  # context terminated: no socket left behind


def test_shutdown_is_graceful_and_idempotent() -> None:
    async def main() -> None:
        ch = MessageChannel()
        closes: list[MessageEvent] = []
        ch.port2.on_close = closes.append
        ch.port2.start()
        assert await ports.shutdown()
        assert await ports.shutdown()
        assert ch.port1.closed and ch.port2.closed
        # both ends were closed here, as by close(): neither fires close on itself
        assert closes == []
        with pytest.raises(ports.PortClosedError, match="the process is closing"):
            ch.port1.post_message(1)

    trio.run(main)


def test_shutdown_fires_close_on_the_ports_of_other_runtimes() -> None:
    async def main() -> None:
        async with open_runtime(PortOptions()) as other:
            listener = other.listen("tcp://127.0.0.1:*")
            p = await ports.connect(listener.endpoints[0])
            q = await listener.accept()
            closes: list[MessageEvent] = []
            q.on_close = closes.append
            q.start()
            assert await ports.shutdown()
            assert p.closed
            with trio.fail_after(5):
                while not closes:
                    await trio.sleep(0.01)
            assert [(e.type, e.target) for e in closes] == [("close", q)]
            assert "the process is closing" in closes[0].reason
            assert q.closed

    trio.run(main)
