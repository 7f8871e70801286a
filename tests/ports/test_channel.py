"""MessageChannel semantics in one process, modelled on the web platform's expectations."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from statesync.ports import (
    DataCloneError,
    MessageChannel,
    MessageEvent,
    MessagePort,
    PortClosedError,
    PortOptions,
    PortQueueFull,
    PortTransferredError,
    RequestFailed,
    RequestTimeout,
    RuntimeMismatch,
    open_runtime,
)
from statesync.ports._envelope import KIND_MESSAGE


async def settle() -> None:
    """Let the runtime's dispatcher deliver everything that is deliverable."""
    await trio.testing.wait_all_tasks_blocked()


def collect(port: MessagePort, kind: str = "message") -> list[MessageEvent]:
    got: list[MessageEvent] = []
    port.add_event_listener(kind, got.append)
    return got


async def test_queued_messages_delivered_in_order_after_start() -> None:
    ch = MessageChannel()
    got = collect(ch.port2)
    for i in range(20):
        ch.port1.post_message(i)
    await settle()
    assert got == []  # add_event_listener alone does not start
    ch.port2.start()
    await settle()
    assert [e.data for e in got] == list(range(20))
    assert all(e.type == "message" and e.target is ch.port2 for e in got)


async def test_setting_on_message_starts_the_port() -> None:
    ch = MessageChannel()
    ch.port1.post_message("early")
    got: list[object] = []
    ch.port2.on_message = lambda e: got.append(e.data)
    ch.port1.post_message("late")
    await settle()
    assert got == ["early", "late"]


async def test_messages_are_copies() -> None:
    ch = MessageChannel()
    data = {"a": [1, 2, {"b": b"x"}], "t": (1, 2)}
    ch.port1.post_message(data)
    data["a"].append(3)  # type: ignore[attr-defined]
    async for ev in ch.port2:
        assert ev.data == {"a": [1, 2, {"b": b"x"}], "t": [1, 2]}
        break


async def test_a_slow_consumer_lets_other_tasks_run() -> None:
    """A consumer that spends milliseconds per message still yields (heartbeats must run)."""
    ch = MessageChannel()
    for i in range(12):
        ch.port1.post_message(i)
    others_ran = 0
    done = False

    async def other() -> None:
        nonlocal others_ran
        while not done:
            others_ran += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.lowlevel.checkpoint()
        start = others_ran
        got = 0
        async for _ in ch.port2:
            end = time.perf_counter() + 0.003  # work, not waiting: the CPU is busy
            while time.perf_counter() < end:
                pass
            got += 1
            if got == 12:
                break
        done = True
    # 12 messages of 3 ms: the iterator yields at least every ~5 ms, not only every 64 messages.
    assert others_ran - start >= 4


async def test_close_fires_close_on_the_other_end() -> None:
    ch = MessageChannel()
    closes = collect(ch.port2, "close")
    ch.port2.start()
    ch.port1.close()
    await settle()
    assert len(closes) == 1 and closes[0].type == "close"
    assert closes[0].reason == "the partner closed the port"
    assert ch.port1.closed and ch.port2.closed
    # each end says what happened to it
    with pytest.raises(PortClosedError, match=r"close\(\) was called on this port"):
        ch.port1.post_message(1)
    with pytest.raises(PortClosedError, match="the partner closed the port"):
        ch.port2.post_message(1)
    ch.port1.close()  # closing twice is harmless


async def test_close_event_fires_even_when_not_started_and_messages_stay_readable() -> None:
    ch = MessageChannel()
    closes = collect(ch.port2, "close")
    ch.port1.post_message("before close")
    ch.port1.close()
    await settle()
    assert len(closes) == 1
    events = [e async for e in ch.port2]
    assert [e.data for e in events] == ["before close"]


async def test_async_for_ends_after_close_and_gets_everything_before_it() -> None:
    ch = MessageChannel()

    async def produce() -> None:
        for i in range(100):
            await ch.port1.send(i)
        ch.port1.close()

    got = []
    async with trio.open_nursery() as n:
        n.start_soon(produce)
        async for ev in ch.port2:
            got.append(ev.data)
    assert got == list(range(100))


async def test_unencodable_payload_raises_at_the_call_and_sends_nothing() -> None:
    ch = MessageChannel()
    got = collect(ch.port2)
    ch.port2.start()
    with pytest.raises(DataCloneError) as info:
        ch.port1.post_message({"ok": 1, "bad": [object()]})
    assert info.value.type_name == "object"
    with pytest.raises(DataCloneError):
        ch.port1.post_message({1, 2})
    ch.port1.post_message("after")
    await settle()
    assert [e.data for e in got] == ["after"]


async def test_transfer_list_is_checked() -> None:
    ch = MessageChannel()
    other = MessageChannel()
    with pytest.raises(DataCloneError):
        ch.port1.post_message(1, transfer=[ch.port1])
    with pytest.raises(DataCloneError):
        ch.port1.post_message(1, transfer=[ch.port2])
    with pytest.raises(DataCloneError):
        ch.port1.post_message(1, transfer=[other.port1, other.port1])
    with pytest.raises(DataCloneError):
        ch.port1.post_message(1, transfer=["not a port"])  # type: ignore[list-item]
    # nothing was transferred by the failed calls
    other.port1.post_message("still mine")
    async for ev in other.port2:
        assert ev.data == "still mine"
        break


async def test_transferred_port_moves_with_its_queue_and_old_object_is_unusable() -> None:
    carrier = MessageChannel()
    moved = MessageChannel()
    moved.port1.post_message("queued before the move")
    carrier.port1.post_message("here", transfer=[moved.port2])
    with pytest.raises(PortTransferredError):
        moved.port2.post_message("x")
    with pytest.raises(PortTransferredError):
        moved.port2.start()  # a no-op on a neutered port; posting raises
        moved.port2.post_message("y")
    async for ev in carrier.port2:
        assert ev.data == "here"
        (new,) = ev.ports
        break
    assert new is not moved.port2
    moved.port1.post_message("after the move")
    got = []
    async for ev in new:
        got.append(ev.data)
        if len(got) == 2:
            break
    assert got == ["queued before the move", "after the move"]
    new.post_message("reply")
    async for ev in moved.port1:
        assert ev.data == "reply"
        break


async def test_bounded_queue_raises_port_queue_full_and_waits_for_room() -> None:
    async with open_runtime(PortOptions(port_window=8)) as rt:
        ch = MessageChannel(runtime=rt)
        for i in range(8):
            ch.port1.post_message(i)
        assert not ch.port1.writable
        with pytest.raises(PortQueueFull):
            ch.port1.post_message(8)
        got = collect(ch.port2)
        done = trio.Event()

        async def later() -> None:
            await ch.port1.send(8)  # waits for room
            done.set()

        async with trio.open_nursery() as n:
            n.start_soon(later)
            await settle()
            assert not done.is_set()
            ch.port2.start()
            with trio.fail_after(5):
                await done.wait()
        await settle()
        assert [e.data for e in got] == list(range(9))
        assert ch.port1.writable


async def test_ordering_per_port_under_load() -> None:
    async with open_runtime(PortOptions(port_window=64)) as rt:
        chans = [MessageChannel(runtime=rt) for _ in range(4)]
        count = 2000
        got: list[list[int]] = [[] for _ in chans]

        async def produce(i: int) -> None:
            for k in range(count):
                await chans[i].port1.send(k)

        async def consume(i: int) -> None:
            async for ev in chans[i].port2:
                got[i].append(ev.data)  # type: ignore[arg-type]
                if len(got[i]) == count:
                    return

        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                for i in range(len(chans)):
                    n.start_soon(produce, i)
                    n.start_soon(consume, i)
        assert all(g == list(range(count)) for g in got)


async def test_messageerror_fires_and_port_keeps_working() -> None:
    ch = MessageChannel()
    errors = collect(ch.port2, "messageerror")
    got = collect(ch.port2)
    ch.port2.start()
    st = ch.port1._state
    assert st is not None
    # a payload no decoder accepts (0xc1 is never used by msgpack)
    st.runtime.post(st, KIND_MESSAGE, 0, b"\xc1", (), False)
    ch.port1.post_message("fine")
    await settle()
    assert len(errors) == 1 and errors[0].data is None and errors[0].error is not None
    assert [e.data for e in got] == ["fine"]


async def test_priority_messages_keep_their_own_order() -> None:
    ch = MessageChannel()
    for i in range(5):
        ch.port1.post_message(("n", i))
        ch.port1.post_message(("p", i), priority=True)
    got = []
    async for ev in ch.port2:
        got.append(tuple(ev.data))  # type: ignore[arg-type]
        if len(got) == 10:
            break
    assert [i for k, i in got if k == "p"] == list(range(5))
    assert [i for k, i in got if k == "n"] == list(range(5))


async def test_listener_removal_and_exceptions_do_not_break_delivery() -> None:
    ch = MessageChannel()
    seen: list[object] = []

    def bad(ev: MessageEvent) -> None:
        raise RuntimeError("listener bug")

    def good(ev: MessageEvent) -> None:
        seen.append(ev.data)

    ch.port2.add_event_listener("message", bad)
    ch.port2.add_event_listener("message", good)
    ch.port2.start()
    ch.port1.post_message(1)
    await settle()
    ch.port2.remove_event_listener("message", good)
    ch.port1.post_message(2)
    await settle()
    assert seen == [1]


async def test_request_response_sync_and_async_handlers() -> None:
    ch = MessageChannel()
    ch.port2.set_request_handler(lambda d: {"echo": d})
    assert await ch.port1.request([1, 2]) == {"echo": [1, 2]}

    async def slow_double(d: object) -> object:
        await trio.sleep(0)
        return d * 2  # type: ignore[operator]

    ch.port2.set_request_handler(slow_double)
    results = []
    async with trio.open_nursery() as n:
        for i in range(10):

            async def one(i: int = i) -> None:
                results.append(await ch.port1.request(i))

            n.start_soon(one)
    assert sorted(results) == [i * 2 for i in range(10)]  # type: ignore[type-var]


async def test_request_errors_timeouts_and_late_answers() -> None:
    ch = MessageChannel()

    def boom(d: object) -> object:
        raise KeyError("nope")

    ch.port2.set_request_handler(boom)
    with pytest.raises(RequestFailed) as info:
        await ch.port1.request(1)
    assert "KeyError" in info.value.remote_error

    release = trio.Event()

    async def slow(d: object) -> object:
        await release.wait()
        return "late"

    ch.port2.set_request_handler(slow)
    with pytest.raises(RequestTimeout):
        await ch.port1.request(1, timeout_s=0.05)
    release.set()
    await settle()  # the late answer arrives and is dropped
    ch.port2.set_request_handler(lambda d: "on time")
    assert await ch.port1.request(2) == "on time"

    plain = MessageChannel()
    plain.port2.start()  # started, but no request handler
    with pytest.raises(RequestFailed, match="no request handler"):
        await plain.port1.request(1)


async def test_request_fails_when_the_port_closes() -> None:
    ch = MessageChannel()

    async def ask() -> None:
        with pytest.raises(PortClosedError):
            await ch.port1.request(1, timeout_s=10)

    async with trio.open_nursery() as n:
        n.start_soon(ask)
        await settle()
        # the request sits in port2's queue (not started); port2 goes away
        ch.port2.close()


async def test_channel_outside_trio_is_a_clear_error() -> None:
    ch = MessageChannel()
    result: list[BaseException] = []

    def in_thread() -> None:
        try:
            ch.port1.post_message(1)
        except BaseException as e:
            result.append(e)

    await trio.to_thread.run_sync(in_thread)
    assert isinstance(result[0], RuntimeMismatch)


async def test_cancelled_request_is_forgotten_and_its_answer_dropped() -> None:
    ch = MessageChannel()
    release = trio.Event()

    async def slow(d: object) -> object:
        await release.wait()
        return "late"

    ch.port2.set_request_handler(slow)
    with trio.move_on_after(0.05) as scope:
        await ch.port1.request(1, timeout_s=None)
    assert scope.cancelled_caught
    st = ch.port1._state
    assert st is not None and not st.pending
    release.set()
    await settle()
    ch.port2.set_request_handler(lambda d: ["fresh", d])
    assert await ch.port1.request(2, timeout_s=5) == ["fresh", 2]


async def test_many_request_timeouts_fire_in_deadline_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ch = MessageChannel()
    gate = trio.Event()

    async def never(d: object) -> object:
        await gate.wait()
        return None

    ch.port2.set_request_handler(never)
    order: list[float] = []

    async def ask(timeout_s: float) -> None:
        with pytest.raises(RequestTimeout):
            await ch.port1.request(timeout_s, timeout_s=timeout_s)
        order.append(timeout_s)

    async with trio.open_nursery() as n:
        for t in (0.3, 0.1, 0.2):  # a later request may time out first
            n.start_soon(ask, t)
    assert order == [0.1, 0.2, 0.3]
    gate.set()
