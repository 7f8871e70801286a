"""Port transfer across runtimes: relays, direct routes, nothing lost, duplicated or reordered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from statesync.ports import MessageChannel, MessagePort, PortOptions, PortRuntime, open_runtime

FAST = PortOptions(
    heartbeat_interval_s=0.05,
    heartbeat_timeout_s=2.0,
    connect_timeout_s=2.0,
    linger_s=0.1,
    port_window=64,
)


@asynccontextmanager
async def runtimes(n: int, options: PortOptions = FAST) -> AsyncIterator[list[PortRuntime]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_runtime(options)) for _ in range(n)]


async def link_to(src: PortRuntime, dst: PortRuntime) -> tuple[MessagePort, MessagePort]:
    """A port from ``src`` to a listener of ``dst`` and its accepted partner."""
    listener = dst._listeners[0] if dst._listeners else dst.listen("tcp://127.0.0.1:*")
    p = await src.connect(listener.endpoints[0])
    with trio.fail_after(5):
        q = await listener.accept()
    return p, q


async def first_event_port(port: MessagePort) -> MessagePort:
    with trio.fail_after(5):
        async for ev in port:
            (p,) = ev.ports
            return p
    raise AssertionError("no port arrived")


async def stream(port: MessagePort, tag: str, count: int, expect: list[object]) -> list[object]:
    """Send ``count`` tagged messages on ``port`` while collecting ``len(expect)`` from it."""
    got: list[object] = []
    async with trio.open_nursery() as n:

        async def send() -> None:
            for i in range(count):
                await port.send([tag, i])
                if i % 50 == 0:
                    await trio.sleep(0)

        n.start_soon(send)
        async for ev in port:
            got.append(ev.data)
            if len(got) == len(expect):
                break
    return got


async def test_broker_hands_ports_over_and_leaves() -> None:
    async with runtimes(3) as (s, a, b):
        a.listen("tcp://127.0.0.1:*")
        b.listen("tcp://127.0.0.1:*")
        to_a, from_s_at_a = await link_to(s, a)
        to_b, from_s_at_b = await link_to(s, b)
        ch = MessageChannel(runtime=s)
        # messages queued in each end before the move travel with it
        for i in range(5):
            ch.port1.post_message(["pre2", i])  # queued in port2
            ch.port2.post_message(["pre1", i])  # queued in port1
        to_a.post_message("yours", transfer=[ch.port1])
        to_b.post_message("yours", transfer=[ch.port2])
        p1 = await first_event_port(from_s_at_a)
        p2 = await first_event_port(from_s_at_b)
        count = 400
        expect1: list[object] = [["pre1", i] for i in range(5)]
        expect1 += [["B", i] for i in range(count)]
        expect2: list[object] = [["pre2", i] for i in range(5)]
        expect2 += [["A", i] for i in range(count)]
        results: dict[str, list[object]] = {}

        async def side(name: str, port: MessagePort, expect: list[object]) -> None:
            results[name] = await stream(port, name, count, expect)

        async def broker_leaves() -> None:
            # the broker waits until nobody needs its relays, then exits
            assert await s.aclose(timeout_s=20)

        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                n.start_soon(side, "A", p1, expect1)
                n.start_soon(side, "B", p2, expect2)
                n.start_soon(broker_leaves)
        assert results["A"] == expect1
        assert results["B"] == expect2
        assert s.closed
        # A and B now talk over a direct connection
        assert any(link.remote_id == b.id for link in a._links)
        p1.post_message("after the broker left")
        with trio.fail_after(5):
            async for ev in p2:
                assert ev.data == "after the broker left"
                break


async def test_without_listeners_traffic_keeps_flowing_through_the_relay() -> None:
    async with runtimes(3) as (s, a, b):
        s.listen("tcp://127.0.0.1:*")
        at_a, to_a = await link_to(a, s)
        at_b, to_b = await link_to(b, s)
        ch = MessageChannel(runtime=s)
        to_a.post_message(None, transfer=[ch.port1])
        to_b.post_message(None, transfer=[ch.port2])
        p1 = await first_event_port(at_a)
        p2 = await first_event_port(at_b)
        with trio.fail_after(20):
            async with trio.open_nursery() as n:
                got: dict[str, list[object]] = {}

                async def side(name: str, port: MessagePort, other: str) -> None:
                    got[name] = await stream(port, name, 200, [[other, i] for i in range(200)])

                n.start_soon(side, "A", p1, "B")
                n.start_soon(side, "B", p2, "A")
        assert got["A"] == [["B", i] for i in range(200)]
        assert got["B"] == [["A", i] for i in range(200)]
        assert s.relay_count() == 2  # both directions still go through the broker
        assert not any(link.remote_id == b.id for link in a._links)


async def test_port_moves_twice_while_its_partner_streams() -> None:
    async with runtimes(3) as (s, a, b):
        a.listen("tcp://127.0.0.1:*")
        b.listen("tcp://127.0.0.1:*")
        s_to_a, a_from_s = await link_to(s, a)
        a_to_b, b_from_a = await link_to(a, b)
        ch = MessageChannel(runtime=s)
        count = 600
        got: list[object] = []

        async def s_streams() -> None:
            for i in range(count):
                await ch.port1.send(i)
                if i % 25 == 0:
                    await trio.sleep(0)

        async def a_forwards() -> None:
            moving = await first_event_port(a_from_s)
            a_to_b.post_message("take it", transfer=[moving])

        async def b_reads() -> None:
            port = await first_event_port(b_from_a)
            async for ev in port:
                got.append(ev.data)
                if len(got) == count:
                    break
            port.post_message("done")

        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                n.start_soon(s_streams)
                n.start_soon(b_reads)
                n.start_soon(a_forwards)
                s_to_a.post_message("go", transfer=[ch.port2])
        assert got == list(range(count))
        with trio.fail_after(5):
            async for ev in ch.port1:
                assert ev.data == "done"
                break


async def test_port_carried_inside_a_queued_message_moves_too() -> None:
    async with runtimes(2) as (s, a):
        s_to_a, a_from_s = await link_to(s, a)
        outer = MessageChannel(runtime=s)
        inner = MessageChannel(runtime=s)
        outer.port1.post_message("with a port", transfer=[inner.port2])  # queued in outer.port2
        inner.port1.post_message("queued in inner")  # queued in inner.port2
        s_to_a.post_message("outer", transfer=[outer.port2])
        moved_outer = await first_event_port(a_from_s)
        moved_inner = await first_event_port(moved_outer)
        with trio.fail_after(5):
            async for ev in moved_inner:
                assert ev.data == "queued in inner"
                break
        moved_inner.post_message("hi from a")
        with trio.fail_after(5):
            async for ev in inner.port1:
                assert ev.data == "hi from a"
                break


async def test_both_ends_moved_to_the_same_runtime_work_locally() -> None:
    async with runtimes(2) as (s, a):
        s_to_a, a_from_s = await link_to(s, a)
        ch = MessageChannel(runtime=s)
        ch.port1.post_message("queued")
        s_to_a.post_message("both", transfer=[ch.port1, ch.port2])
        with trio.fail_after(5):
            async for ev in a_from_s:
                x, y = ev.ports
                break
        with trio.fail_after(5):
            async for ev in y:
                assert ev.data == "queued"
                break
        x.post_message("local now")
        with trio.fail_after(5):
            async for ev in y:
                assert ev.data == "local now"
                break


async def test_closing_a_moved_port_reaches_its_partner() -> None:
    async with runtimes(2) as (s, a):
        s_to_a, a_from_s = await link_to(s, a)
        ch = MessageChannel(runtime=s)
        s_to_a.post_message(None, transfer=[ch.port2])
        moved = await first_event_port(a_from_s)
        moved.post_message("bye")
        moved.close()
        with trio.fail_after(5):
            events = [e.data async for e in ch.port1]
        assert events == ["bye"]
        assert ch.port1.closed


async def test_port_handed_back_to_its_partners_runtime_becomes_local() -> None:
    async with runtimes(2) as (s, a):
        s_to_a, a_from_s = await link_to(s, a)
        ch = MessageChannel(runtime=s)
        ch.port1.post_message("before")
        s_to_a.post_message(None, transfer=[ch.port2])
        at_a = await first_event_port(a_from_s)
        ch.port1.post_message("while at a")  # goes through the relay
        a_from_s.post_message(None, transfer=[at_a])  # and back again
        back = await first_event_port(s_to_a)
        ch.port1.post_message("after")
        got = []
        with trio.fail_after(5):
            async for ev in back:
                got.append(ev.data)
                if len(got) == 3:
                    break
        assert got == ["before", "while at a", "after"]
        back.post_message("reply")
        with trio.fail_after(5):
            async for ev in ch.port1:
                assert ev.data == "reply"
                break
        # the relay s left for the moving end is released (a marker went round)
        with trio.fail_after(5):
            while s.relay_count():
                await trio.sleep(0.01)
        assert ch.port1._state is not None
        assert isinstance(s.proto.entries.get(ch.port1._state.partner), type(ch.port1._state))
        # a may keep the route it used while it held the port (a known leftover,
        # freed with the connection); it carries nothing, so closing a is quick
        start = trio.current_time()
        assert await a.aclose(timeout_s=5, relay_idle_s=0.2)
        assert trio.current_time() - start < 2


async def test_priority_messages_do_not_overtake_the_port_they_are_for() -> None:
    async with runtimes(2) as (s, a):
        s_to_a, a_from_s = await link_to(s, a)
        ch = MessageChannel(runtime=s)
        ch.port1.post_message("queued", priority=True)  # queued in port2, priority stream
        s_to_a.post_message("first")  # goes at once: the link is now busy this turn
        s_to_a.post_message("carrier", transfer=[ch.port2])  # waits in the normal queue
        ch.port1.post_message("urgent", priority=True)  # must not overtake the carrier
        ch.port1.post_message("normal")
        with trio.fail_after(5):
            async for ev in a_from_s:
                if ev.ports:
                    (moved,) = ev.ports
                    break
        got = []
        with trio.fail_after(5):
            async for ev in moved:
                got.append(ev.data)
                if len(got) == 3:
                    break
        assert sorted(got) == ["normal", "queued", "urgent"]  # type: ignore[type-var]
        assert got.index("queued") < got.index("urgent")
