"""The per-run default runtime, its clean end, and the in-order delivery machinery."""

from __future__ import annotations

import random

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync import ports
from statesync.ports import MessageChannel, PortOptions, PortRuntime, open_runtime
from statesync.ports._runtime import _Item


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
        closes: list[object] = []
        ch.port2.on_close = closes.append
        assert await ports.shutdown()
        assert await ports.shutdown()
        assert ch.port1.closed

    trio.run(main)


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[tuple[bool, int]], int, int]:
    """Sequence numbers of both streams, shuffled, some twice."""
    n_normal = draw(st.integers(0, 40))
    n_prio = draw(st.integers(0, 10))
    items = [(False, s) for s in range(1, n_normal + 1)] + [(True, s) for s in range(1, n_prio + 1)]
    dups = draw(st.lists(st.sampled_from(items), max_size=10)) if items else []
    seed = draw(st.integers(0, 2**32 - 1))
    order = items + dups
    random.Random(seed).shuffle(order)
    return order, n_normal, n_prio


@settings(max_examples=60, deadline=None)
@given(arrivals())
async def test_any_arrival_order_is_delivered_in_order_once(
    case: tuple[list[tuple[bool, int]], int, int],
) -> None:
    order, n_normal, n_prio = case
    async with open_runtime(PortOptions(port_window=64)) as rt:
        ch = MessageChannel(runtime=rt)
        st2 = ch.port2._state
        assert st2 is not None
        for prio, seq in order:
            payload = ports._codec.encode([prio, seq])
            item: bytes | _Item = _Item(0, True, 0, payload, ()) if prio else payload
            rt._accept(st2, prio, seq, item)
        got = []
        for entry in st2.queue:
            raw = entry.payload if isinstance(entry, _Item) else entry
            assert isinstance(raw, bytes)
            got.append(tuple(ports._codec.decode(raw)))  # type: ignore[arg-type]
        assert [s for p, s in got if not p] == list(range(1, n_normal + 1))
        assert [s for p, s in got if p] == list(range(1, n_prio + 1))
        assert not st2.reorder
