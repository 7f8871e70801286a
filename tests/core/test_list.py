from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.core._errors import InvalidOperation
from statesync.core._list import List, list_op_from_plain
from tests.core.seqsim import (
    apply_delta,
    assert_rejected,
    compacted_snapshots_agree,
    renamed,
    run_schedule,
    schedules,
    sync_all,
)


class Replica:
    def __init__(self) -> None:
        self.list = List()
        self.mirror: list[Any] = []

    def receive(self, op: Any) -> None:
        for delta in self.list.apply(op):
            self.mirror = apply_delta(self.mirror, delta)
        assert self.mirror == self.list.value()


def _edit(reps: list[Replica], inserted: dict[str, None]) -> Any:
    def edit(r: int, frac: float, k: int, dot: tuple[str, int]) -> Any:
        rep = reps[r]
        lst = rep.list
        old = lst.value()
        n = len(old)
        if k >= 4 or n == 0:
            pos = int(frac * n)
            vals = [f"{dot[0]}.{dot[1]}.{i}" for i in range(k - 3 if k > 3 else 1)]
            op = lst.insert(dot, pos, vals)
            inserted.update(dict.fromkeys(vals))
            assert lst.value() == old[:pos] + vals + old[pos:]
        elif k >= 2:
            src = int(frac * (n - 1))
            dst = (src + k * 7 + dot[1]) % n
            op = lst.move(dot, src, dst)
            want = old[:src] + old[src + 1 :]
            want.insert(dst, old[src])
            assert lst.value() == want  # intention: the item lands where it was moved
        else:
            pos = min(int(frac * n), n - 1)
            m = min(k + 1, n - pos)
            op = lst.delete(dot, pos, m)
            assert lst.value() == old[:pos] + old[pos + m :]
        rep.mirror = lst.value()
        return op

    return edit


@given(st.integers(2, 4), schedules, st.randoms(use_true_random=False))
def test_any_order_and_duplication_converge_and_moves_never_duplicate(
    n: int, schedule: list[Any], rnd: random.Random
) -> None:
    reps = [Replica() for _ in range(n)]
    inserted: dict[str, None] = {}
    ops = run_schedule(n, schedule, _edit(reps, inserted), lambda r, op: reps[r].receive(op))
    sync_all([rep.receive for rep in reps], ops, rnd)
    values = [rep.list.value() for rep in reps]
    assert all(v == values[0] for v in values)
    final = values[0]
    assert len(final) == len(set(final))  # never duplicated
    deleted = {v for op in ops if type(op).__name__ == "ListDelete" for v in _deleted_values(op, ops)}
    assert set(final) == set(inserted) - deleted  # never lost
    loaded = compacted_snapshots_agree([rep.list for rep in reps], List)
    if final:
        op = loaded.move(("new", 1), 0, len(final) - 1)
        reps[0].receive(op)
        assert reps[0].list.value() == loaded.value()


def _deleted_values(op: Any, ops: list[Any]) -> list[str]:
    by_item = {}
    for o in ops:
        if type(o).__name__ == "ListInsert":
            for k, v in enumerate(o.values):
                by_item[(o.origin, o.seq, k)] = v
    return [by_item[i] for i in op.items]


def test_concurrent_moves_of_one_item_leave_it_in_one_place() -> None:
    base = List()
    ins = base.insert(("base", 1), 0, ["a", "b", "c", "d", "e"])
    reps = []
    for _ in range(3):
        r = List()
        r.apply(ins)
        reps.append(r)
    moves = [reps[0].move(("x", 1), 0, 4), reps[1].move(("y", 1), 0, 2), reps[2].move(("z", 1), 0, 1)]
    results = set()
    for r in reps:
        for m in moves:
            r.apply(m)
        v = r.value()
        assert sorted(v) == ["a", "b", "c", "d", "e"]
        results.add(tuple(v))
    assert len(results) == 1


def test_concurrent_move_and_delete_removes_the_item_once() -> None:
    a, b = List(), List()
    ins = a.insert(("a", 1), 0, [1, 2, 3])
    b.apply(ins)
    mv = a.move(("a", 2), 0, 2)
    de = b.delete(("b", 1), 0)
    a.apply(de)
    b.apply(mv)
    assert a.value() == b.value() == [2, 3]


def test_a_later_move_wins_over_what_its_author_saw() -> None:
    a, b = List(), List()
    b.apply(a.insert(("a", 1), 0, ["x", "y", "z"]))
    b.apply(a.move(("a", 2), 0, 2))  # y z x
    m = b.move(("b", 1), 2, 0)  # x y z, b saw a's move
    a.apply(m)
    assert a.value() == b.value() == ["x", "y", "z"]


def test_ops_survive_their_plain_form() -> None:
    a = List()
    ops = [a.insert(("a", 1), 0, [1, {"k": [2]}, None]), a.move(("a", 2), 0, 2), a.delete(("a", 3), 1)]
    b = List()
    for op in ops:
        again = list_op_from_plain(op.to_plain())
        assert again == op
        b.apply(again)
    assert b.value() == a.value() == [{"k": [2]}, 1]


@pytest.mark.parametrize(
    ("call", "where"),
    [
        (lambda x: x.insert(("a", 9), 4, [1]), "pos 4"),
        (lambda x: x.insert(("a", 9), 0, []), "pos 0"),
        (lambda x: x.insert(("a", 9), 0, [object()]), "pos 0"),
        (lambda x: x.delete(("a", 9), 3), "pos 3"),
        (lambda x: x.delete(("a", 9), 0, -1), "pos 0"),
        (lambda x: x.move(("a", 9), 3, 0), "pos 3"),
        (lambda x: x.move(("a", 9), 0, 3), "pos 3"),
        (lambda x: x.move_item(("a", 9), ("zz", 1, 0), 0), "item ('zz', 1, 0)"),
    ],
)
def test_bad_input_is_one_line_and_applies_nothing(call: Any, where: str) -> None:
    x = List()
    x.insert(("a", 1), 0, [1, 2, 3])
    assert_rejected(x, call, where)


def test_malformed_remote_ops_raise_only_invalid_operation() -> None:
    x = List()
    x.insert(("a", 1), 0, [1])
    for bad in ([], [0, "b", 1, None, None, [], 1], [2, "b", 1, ["a", 1, 5], None, None, 2], [1, "b", 1, [["a", 1, 3]]], [9, "b", 1, 2]):
        with pytest.raises(InvalidOperation):
            x.apply(list_op_from_plain(bad))
    assert x.value() == [1]


@given(st.integers(2, 3), schedules, schedules, st.randoms(use_true_random=False))
def test_edits_after_compaction_keep_converging(
    n: int, first: list[Any], second: list[Any], rnd: random.Random
) -> None:
    reps = [Replica() for _ in range(n)]
    receivers = [rep.receive for rep in reps]
    inserted: dict[str, None] = {}
    ops = run_schedule(n, first, _edit(reps, inserted), lambda r, op: reps[r].receive(op))
    sync_all(receivers, ops, rnd)
    stable = dict(reps[0].list.applied)  # every replica has every op: causally stable
    for rep in reps:
        rep.list.compact(stable)
    more = run_schedule(n, second, renamed(_edit(reps, inserted), "b"), lambda r, op: reps[r].receive(op))
    sync_all(receivers, ops + more, rnd)
    values = [rep.list.value() for rep in reps]
    assert all(v == values[0] for v in values) and len(set(values[0])) == len(values[0])
