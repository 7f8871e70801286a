from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.core._counter import Counter, CounterAdd, counter_op_from_plain
from statesync.core._errors import InvalidOperation


@given(
    st.integers(2, 4),
    st.lists(st.tuples(st.integers(0, 3), st.integers(-1000, 1000)), max_size=40),
    st.randoms(use_true_random=False),
)
def test_concurrent_adds_sum_in_any_order_with_duplicates(
    n: int, adds: list[tuple[int, int]], rnd: random.Random
) -> None:
    reps = [Counter() for _ in range(n)]
    ops: list[CounterAdd] = []
    seqs = [0] * n
    for r0, amount in adds:
        r = r0 % n
        seqs[r] += 1
        ops.append(reps[r].add((f"r{r}", seqs[r]), amount))
    total = sum(a for _, a in adds)
    for i, rep in enumerate(reps):
        order = ops + rnd.sample(ops, len(ops) // 2)
        rnd.shuffle(order)
        changes = sum(rep.apply(op) for op in order)
        assert rep.value() == total
        assert changes == total - sum(a for r, a in adds if r % n == i)  # own adds counted once
    snaps = [rep.to_snapshot() for rep in reps]
    assert all(s == snaps[0] for s in snaps)
    assert Counter.from_snapshot(snaps[0]).value() == total


def test_duplicates_and_stale_ops_change_nothing_and_a_later_op_covers_a_lost_one() -> None:
    a, b = Counter(), Counter()
    o1 = a.add(("a", 1), 5)
    o2 = a.add(("a", 2), -2)
    assert b.apply(o2) == 3  # o1 lost: o2 carries a's total
    assert b.apply(o1) == 0 and b.apply(o2) == 0
    assert b.value() == a.value() == 3


def test_bad_input() -> None:
    c = Counter()
    c.add(("a", 1), 1)
    for call in (lambda: c.add(("a", 1), 1), lambda: c.add(("a", 2), 2**63), lambda: c.add(("a", 2), 1.5)):
        with pytest.raises(InvalidOperation) as exc:
            call()  # type: ignore[no-untyped-call]
        assert "\n" not in str(exc.value)
    assert c.value() == 1
    for bad in ([], ["a", 0, 1, 1], ["a", 1, "x", 1], "x"):
        with pytest.raises(InvalidOperation):
            counter_op_from_plain(bad)


def test_many_replicas_merge_into_one() -> None:
    ops = [Counter().add((f"n{i}", 1), 1) for i in range(1540)]
    c = Counter()
    for op in reversed(ops):
        c.apply(op)
    assert c.value() == 1540
