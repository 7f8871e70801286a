from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.core._awset import AWSet, scalar_key, set_op_from_plain
from statesync.core._errors import InvalidOperation

ELEMS: list[Any] = [None, False, True, 0, 1, 1.0, -2.5, "a", "b", ""]


@given(
    st.integers(2, 4),
    st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, len(ELEMS) - 1), st.integers(0, 10_000)), max_size=50),
    st.randoms(use_true_random=False),
)
def test_any_order_and_duplication_converge(n: int, steps: list[tuple[int, bool, int, int]], rnd: random.Random) -> None:
    reps = [AWSet() for _ in range(n)]
    ops: list[Any] = []
    seqs = [0] * n
    for r0, add, e, deliver in steps:
        r = r0 % n
        x = ELEMS[e]
        if ops and deliver % 3 == 0:  # deliver something first
            reps[r].apply(ops[deliver % len(ops)])
        seqs[r] += 1
        dot = (f"r{r}", seqs[r])
        if add or x not in reps[r]:
            ops.append(reps[r].add(dot, x))
            assert x in reps[r]
        else:
            ops.append(reps[r].remove(dot, x))
            assert x not in reps[r]
    for rep in reps:
        order = ops + rnd.sample(ops, len(ops) // 2)
        rnd.shuffle(order)
        for op in order:
            rep.apply(op)
        assert rep.pending_count == 0
    snaps = [rep.to_snapshot() for rep in reps]
    assert all(s == snaps[0] for s in snaps)
    assert AWSet.from_snapshot(snaps[0]).value() == reps[0].value()


def test_concurrent_add_and_remove_keeps_the_element() -> None:
    a, b = AWSet(), AWSet()
    b.apply(a.add(("a", 1), "x"))
    rm = b.remove(("b", 1), "x")
    again = a.add(("a", 2), "x")  # concurrent with the remove
    assert a.apply(rm) == {}
    assert b.apply(again) == {"add": ["x"]}
    assert a.value() == b.value() == ["x"]


def test_a_remove_that_arrives_first_waits_for_what_it_observed() -> None:
    a, b = AWSet(), AWSet()
    add = a.add(("a", 1), 3)
    rm = a.remove(("a", 2), 3)
    assert b.apply(rm) == {} and b.pending_count == 1
    assert b.apply(add) == {}  # added and removed in one call: no net change
    assert b.value() == [] and b.pending_count == 0


def test_value_order_over_mixed_scalars() -> None:
    s = AWSet()
    for i, x in enumerate(["b", 2, 1.5, True, None, False, "a", 1, 1.0, -0.0]):
        s.add(("a", i + 1), x)
    v = s.value()
    assert v == [None, False, True, 0.0, 1, 1.0, 1.5, 2, "a", "b"]
    assert [type(x) for x in v[3:6]] == [float, int, float]
    assert sorted(v, key=scalar_key) == v


def test_bad_input() -> None:
    s = AWSet()
    for call in (
        lambda: s.add(("a", 1), [1]),
        lambda: s.add(("a", 1), float("nan")),
        lambda: s.remove(("a", 1), "missing"),
    ):
        with pytest.raises(InvalidOperation) as exc:
            call()  # type: ignore[no-untyped-call]
        assert "\n" not in str(exc.value)
    assert s.value() == []
    for bad in ([], [0, "a", 1, [1], []], [2, "a", 1, 1, []], [0, "a", 1, 1, [["b", 0]]]):
        with pytest.raises(InvalidOperation):
            set_op_from_plain(bad)
    op = s.add(("a", 1), "x")
    assert set_op_from_plain(op.to_plain()) == op


def test_the_set_is_bounded() -> None:
    s = AWSet(elements_max=2)
    s.add(("a", 1), 1)
    s.add(("a", 2), 2)
    s.add(("a", 3), 2)  # present already: fine
    with pytest.raises(InvalidOperation):
        s.add(("a", 4), 3)
    assert s.value() == [1, 2]
