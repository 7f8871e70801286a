"""The in-memory transport: runtimes of one trio run connected by memory:// endpoints."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from statesync.ports import ConnectError, MessageEvent, PortOptions, open_runtime
from statesync.ports._memory import MemoryTransport

FAST = PortOptions(heartbeat_interval_s=0.05, heartbeat_timeout_s=0.3, port_window=64)


async def test_messages_requests_and_backpressure_over_memory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(FAST) as a, open_runtime(FAST) as b:
        listener = b.listen("memory://svc")
        p = await a.connect("memory://svc")
        q = await listener.accept()
        assert p.remote is not None and p.remote.runtime_id == b.id
        q.set_request_handler(lambda d: ["echo", d])
        assert await p.request(7, timeout_s=5) == ["echo", 7]
        got: list[object] = []
        done = trio.Event()

        def on(ev: MessageEvent) -> None:
            got.append(ev.data)
            if len(got) == 500:
                done.set()

        q.on_message = on
        for i in range(500):
            await p.send(i)  # more than the window: waits for credit
        with trio.fail_after(10):
            await done.wait()
        assert got == list(range(500))


async def test_a_port_moves_between_runtimes_over_memory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(FAST) as a, open_runtime(FAST) as b, open_runtime(FAST) as c:
        lb = b.listen("memory://b")
        lc = c.listen("memory://c")
        ab = await a.connect("memory://b")
        ba = await lb.accept()
        ac = await a.connect("memory://c")
        ca = await lc.accept()
        # a's port to b goes to c: b's end then talks to c (relayed, then direct)
        ac.post_message("take it", transfer=[ab])
        async for ev in ca:
            moved = ev.ports[0]
            break
        moved.post_message("from c")
        async for ev in ba:
            assert ev.data == "from c"
            break
        ba.post_message("to c")
        async for ev in moved:
            assert ev.data == "to c"
            break
        with trio.fail_after(10):
            while a.relay_count():
                await trio.sleep(0.05)


async def test_a_closed_runtime_fires_close_on_the_other_side(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(FAST) as b:
        listener = b.listen("memory://gone")
        closes: list[MessageEvent] = []
        async with open_runtime(FAST) as a:
            p = await a.connect("memory://gone")
            q = await listener.accept()
            q.on_close = closes.append
            q.start()
            p.post_message(1)
        with trio.fail_after(5):
            while not closes:
                await trio.sleep(0.01)
        assert closes[0].target is q and q.closed


async def test_connect_to_nothing_says_so() -> None:
    async with open_runtime(FAST) as a:
        with pytest.raises(ConnectError, match="nothing listens on memory://nobody"):
            await a.connect("memory://nobody")


async def test_the_transport_bounds_its_queue_and_reports_a_closed_peer() -> None:
    x, y = MemoryTransport.pair(frames_max=2)
    assert x.try_send(b"1") and x.try_send(b"2")
    assert not x.try_send(b"3") and y.input_waiting()
    assert await y.recv_batch(10) == [b"1", b"2"]
    assert x.try_send(b"3")
    y.close(0)
    with pytest.raises(ConnectionError):
        x.try_send(b"4")
