"""Batcher tests on a fake clock: time is a float the test advances."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.wire import Batch, Batcher, BatcherError


def make(**kw: object) -> Batcher[str]:
    opts: dict[str, object] = {"batch_count_max": 4, "batch_bytes_max": 100, "batch_delay_s": 0.01}
    opts.update(kw)
    return Batcher(**opts)  # type: ignore[arg-type]


def test_idle_link_sends_at_once() -> None:
    b = make()
    assert b.take(0.0, idle=True) is None
    assert b.offer("a", 10, 0.0)
    assert b.next_deadline_s() == pytest.approx(0.01)
    assert b.take(0.0, idle=True) == Batch(("a",), False, 10)
    assert len(b) == 0 and b.queued_bytes == 0
    assert b.next_deadline_s() is None


def test_busy_link_coalesces_until_the_delay() -> None:
    b = make()
    b.offer("a", 10, 1.0)
    b.offer("b", 10, 1.004)
    b.offer("c", 10, 1.008)
    assert b.take(1.009, idle=False) is None  # busy, not due: keep coalescing
    assert b.next_deadline_s() == pytest.approx(1.01)
    assert b.take(1.01, idle=False) == Batch(("a", "b", "c"), False, 30)


def test_busy_link_sends_when_the_count_bound_is_reached() -> None:
    b = make()
    for i, item in enumerate("abcde"):
        assert b.offer(item, 1, 2.0 + i * 0.001)
    assert b.next_deadline_s() == 2.0  # due now
    assert b.take(2.005, idle=False) == Batch(tuple("abcd"), False, 4)
    assert b.take(2.005, idle=False) is None  # "e" alone: waits for its delay
    assert b.next_deadline_s() == pytest.approx(2.014)
    assert b.take(2.014, idle=False) == Batch(("e",), False, 1)


def test_busy_link_sends_when_the_bytes_bound_is_reached() -> None:
    b = make()
    b.offer("a", 60, 0.0)
    assert b.take(0.0, idle=False) is None
    b.offer("b", 50, 0.0)
    assert b.next_deadline_s() == 0.0
    assert b.take(0.0, idle=False) == Batch(("a",), False, 60)  # "b" would overflow 100 bytes
    assert b.take(0.02, idle=False) == Batch(("b",), False, 50)


def test_idle_after_busy_flushes_what_coalesced() -> None:
    b = make()
    for item in "abc":
        b.offer(item, 1, 5.0)
    assert b.take(5.001, idle=False) is None
    assert b.take(5.001, idle=True) == Batch(tuple("abc"), False, 3)


def test_priority_items_overtake() -> None:
    b = make()
    for item in "abc":
        b.offer(item, 1, 0.0)
    assert b.offer("ack", 5, 0.001, priority=True)
    assert b.offer("hb", 5, 0.002, priority=True)
    assert b.next_deadline_s() == 0.001  # due at once, link busy or not
    assert b.take(0.002, idle=False) == Batch(("ack", "hb"), True, 10)
    assert b.take(0.002, idle=False) is None
    assert b.offer("ping", 1, 0.003, priority=True)
    assert b.take(0.003, idle=True) == Batch(("ping",), True, 1)
    assert b.take(0.003, idle=True) == Batch(tuple("abc"), False, 3)


def test_priority_batches_respect_the_batch_bounds() -> None:
    b = make()
    for i in range(6):
        b.offer(f"p{i}", 1, 0.0, priority=True)
    first = b.take(0.0, idle=False)
    assert first is not None and first.items == ("p0", "p1", "p2", "p3") and first.priority
    second = b.take(0.0, idle=False)
    assert second is not None and second.items == ("p4", "p5")


def test_an_item_larger_than_a_batch_goes_alone() -> None:
    b = make()
    b.offer("small", 10, 0.0)
    b.offer("huge", 500, 0.0)
    b.offer("tail", 10, 0.0)
    assert b.take(0.0, idle=True) == Batch(("small",), False, 10)
    assert b.take(0.0, idle=True) == Batch(("huge",), False, 500)
    assert b.take(0.0, idle=True) == Batch(("tail",), False, 10)


def test_backpressure_when_the_queue_is_full() -> None:
    b = make(queue_count_max=3, queue_bytes_max=1000, priority_count_max=1, priority_bytes_max=10)
    assert all(b.offer(x, 1, 0.0) for x in "abc")
    assert not b.has_room(1)
    assert not b.offer("d", 1, 0.0)  # full by count: refused, nothing kept
    assert len(b) == 3
    assert b.offer("urgent", 1, 0.0, priority=True)  # the priority queue is separate
    assert not b.offer("urgent2", 1, 0.0, priority=True)
    b.take(0.0, idle=True)
    b.take(0.0, idle=True)
    assert b.has_room(1) and b.offer("d", 1, 0.0)


def test_backpressure_by_bytes() -> None:
    b = make(queue_count_max=100, queue_bytes_max=100)
    assert b.offer("a", 60, 0.0)
    assert not b.offer("b", 50, 0.0)
    assert b.offer("c", 40, 0.0)
    assert b.queued_bytes == 100


def test_misuse_raises() -> None:
    b = make(queue_bytes_max=100)
    with pytest.raises(BatcherError, match="never fit"):
        b.offer("x", 101, 0.0)
    with pytest.raises(BatcherError):
        b.offer("x", -1, 0.0)
    with pytest.raises(BatcherError):
        make(batch_count_max=0)
    with pytest.raises(BatcherError):
        make(batch_delay_s=-1.0)
    with pytest.raises(BatcherError):
        make(batch_delay_s=float("nan"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["offer", "offer", "offer", "take", "tick"]),
            st.integers(0, 150),
            st.booleans(),
            st.booleans(),
        ),
        max_size=80,
    )
)
def test_bounds_order_and_no_loss(steps: list[tuple[str, int, bool, bool]]) -> None:
    """Whatever happens: FIFO per class, priority first, bounds hold, nothing lost or duplicated."""
    b = make(queue_count_max=10, queue_bytes_max=300, priority_count_max=3, priority_bytes_max=200)
    now = 0.0
    offered: list[tuple[int, bool]] = []
    sent: list[tuple[int, bool]] = []
    n = 0
    for action, size, priority, idle in steps:
        if action == "offer":
            before = len(b)
            if b.offer(str(n), size, now, priority=priority):
                offered.append((n, priority))
                assert len(b) == before + 1
            else:
                assert len(b) == before
            n += 1
        elif action == "tick":
            now += 0.004
        else:
            deadline = b.next_deadline_s()
            batch = b.take(now, idle=idle)
            if batch is None:
                assert deadline is None or (not idle and deadline > now)
                continue
            assert 1 <= len(batch.items) <= 4
            assert len(batch.items) == 1 or batch.size_bytes <= 100
            pending_priority = {i for i, p in offered if p} - {i for i, p in sent if p}
            assert batch.priority or not pending_priority  # priority items overtake
            sent.extend((int(i), batch.priority) for i in batch.items)
        assert len(b) <= 10 + 3
        assert b.queued_bytes <= 300 + 200
    while (batch := b.take(now, idle=True)) is not None:
        sent.extend((int(i), batch.priority) for i in batch.items)
    assert sorted(sent) == sorted(offered)
    for cls in (True, False):
        ids = [i for i, p in sent if p is cls]
        assert ids == sorted(ids)
