from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.core._errors import InvalidOperation
from statesync.core._text import Text, TextInsert, text_op_from_plain
from tests.core.seqsim import (
    apply_delta,
    assert_rejected,
    compacted_snapshots_agree,
    load_trace,
    renamed,
    run_schedule,
    schedules,
    sync_all,
)

ALPHABET = "abcdefghij"


class Replica:
    def __init__(self) -> None:
        self.text = Text()
        self.mirror = ""  # rebuilt from deltas alone, as an editor would

    def receive(self, op: Any) -> None:
        for delta in self.text.apply(op):
            self.mirror = apply_delta(self.mirror, delta)
        assert self.mirror == self.text.value()


def _edit(reps: list[Replica]) -> Any:
    def edit(r: int, frac: float, k: int, dot: tuple[str, int]) -> Any:
        rep = reps[r]
        old = rep.text.value()
        n = len(old)
        pos = int(frac * n)
        if k >= 2 or n == 0:  # insert, more often than delete
            s = "".join(ALPHABET[(dot[1] + i) % len(ALPHABET)] for i in range(k or 1))
            s = dot[0][1] + s  # mark the author
            op = rep.text.insert(dot, pos, s)
            assert rep.text.value() == old[:pos] + s + old[pos:]  # intention
        else:
            m = min(k + 1, n - pos) or 1
            pos = min(pos, n - m)
            op = rep.text.delete(dot, pos, m)
            assert rep.text.value() == old[:pos] + old[pos + m :]
        rep.mirror = rep.text.value()
        return op

    return edit


@given(st.integers(2, 4), schedules, st.randoms(use_true_random=False))
def test_any_order_and_duplication_converge(n: int, schedule: list[Any], rnd: random.Random) -> None:
    reps = [Replica() for _ in range(n)]
    ops = run_schedule(n, schedule, _edit(reps), lambda r, op: reps[r].receive(op))
    sync_all([rep.receive for rep in reps], ops, rnd)
    assert len({rep.text.value() for rep in reps}) == 1
    loaded = compacted_snapshots_agree([rep.text for rep in reps], Text)
    # the loaded replica keeps converging with the others
    op = loaded.insert(("new", 1), len(loaded) // 2, "zz")
    reps[0].receive(op)
    assert reps[0].text.value() == loaded.value()


def test_ops_survive_their_plain_form() -> None:
    t = Text()
    ops = [t.insert(("a", 1), 0, "hello"), t.insert(("a", 2), 5, " world"), t.delete(("a", 3), 2, 5)]
    u = Text()
    for op in ops:
        again = text_op_from_plain(op.to_plain())
        assert again == op
        u.apply(again)
    assert u.value() == t.value() == "heorld"


def _typed(t: Text, origin: str, pos: int, s: str, backward: bool, seq0: int = 0) -> list[Any]:
    ops = []
    for i, ch in enumerate(s[::-1] if backward else s):
        ops.append(t.insert((origin, seq0 + i + 1), pos if backward else pos + i, ch))
    return ops


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("n_authors", [2, 3])
def test_concurrent_typing_at_one_position_never_interleaves(backward: bool, n_authors: int) -> None:
    base = Text()
    base_op = base.insert(("base", 1), 0, "<>")
    words = ["alpha", "BRAVO", "12345"][:n_authors]
    reps = []
    all_ops: list[Any] = []
    for i, w in enumerate(words):
        t = Text()
        t.apply(base_op)
        all_ops += _typed(t, f"u{i}", 1, w, backward)
        assert t.value() == "<" + w + ">"
        reps.append(t)
    for order in (all_ops, all_ops[::-1], sorted(all_ops, key=lambda o: o.seq)):
        t = Text()
        t.apply(base_op)
        for op in order:
            t.apply(op)
        v = t.value()
        assert v[0] == "<" and v[-1] == ">"
        middle = v[1:-1]
        for w in words:
            assert w in middle, (w, middle)  # each author's run stays whole


def test_sequential_trace_ends_with_its_end_content() -> None:
    trace = load_trace("automerge-paper.json.gz")
    t = Text()
    seq = 0
    for txn in trace["txns"]:
        for pos, ndel, ins in txn["patches"]:
            if ndel:
                seq += 1
                t.delete(("paper", seq), pos, ndel)
            if ins:
                seq += 1
                t.insert(("paper", seq), pos, ins)
    assert t.value() == trace["endContent"]
    t.compact(dict(t.applied))
    snap = t.to_snapshot()
    assert Text.from_snapshot(snap).value() == trace["endContent"]


def test_concurrent_trace_two_replicas_end_with_its_end_content() -> None:
    trace = load_trace("friendsforever.json.gz")
    txns = trace["txns"]
    n_agents = trace["numAgents"]
    reps = [Text() for _ in range(n_agents)]
    done: list[set[int]] = [set() for _ in range(n_agents)]
    made: list[list[Any]] = []  # ops of each transaction
    seqs = [0] * n_agents

    def bring(r: int, roots: list[int]) -> None:
        stack = list(roots)
        order: list[int] = []
        while stack:  # ancestors not yet applied at r, parents first
            i = stack.pop()
            if i in done[r]:
                continue
            missing = [p for p in txns[i]["parents"] if p not in done[r]]
            if missing:
                stack.append(i)
                stack.extend(missing)
                continue
            done[r].add(i)
            order.append(i)
            for op in made[i]:
                reps[r].apply(op)
        del order

    for i, txn in enumerate(txns):
        a = txn["agent"]
        bring(a, txn["parents"])
        ops = []
        for pos, ndel, ins in txn["patches"]:
            if ndel:
                seqs[a] += 1
                ops.append(reps[a].delete((f"agent{a}", seqs[a]), pos, ndel))
            if ins:
                seqs[a] += 1
                ops.append(reps[a].insert((f"agent{a}", seqs[a]), pos, ins))
        made.append(ops)
        done[a].add(i)
    for r in range(n_agents):
        bring(r, list(range(len(txns))))
    for rep in reps:
        assert rep.value() == trace["endContent"]


@pytest.mark.parametrize(
    ("call", "where"),
    [
        (lambda t: t.insert(("a", 9), 4, "x"), "pos 4"),
        (lambda t: t.insert(("a", 9), -1, "x"), "pos -1"),
        (lambda t: t.delete(("a", 9), 2, 2), "pos 2"),
        (lambda t: t.delete(("a", 9), 0, -1), "pos 0"),
        (lambda t: t.insert(("a", 1), 0, "x"), "op ('a', 1)"),
        (lambda t: t.insert(("a", 9), 0, ""), "pos 0"),
    ],
)
def test_bad_input_is_one_line_and_applies_nothing(call: Any, where: str) -> None:
    t = Text()
    t.insert(("a", 1), 0, "abc")
    assert_rejected(t, call, where)


def test_malformed_remote_ops_raise_only_invalid_operation() -> None:
    t = Text()
    t.insert(("a", 1), 0, "abc")
    for bad in ([], [0, "b", 0, None, None, "x"], [0, "b", 1, ["a", 1, 9], None, "x"], [1, "b", 1, [["a", 1, 2, 5]]], [7], "x"):
        with pytest.raises(InvalidOperation):
            t.apply(text_op_from_plain(bad))
    assert t.value() == "abc"
    with pytest.raises(InvalidOperation):
        t.apply(TextInsert("b", 1, ("b", 1, 0), None, "x"))  # anchored to itself
    with pytest.raises(InvalidOperation):
        t.apply(TextInsert("b", 1, None, None, ""))


def test_held_ops_are_bounded() -> None:
    t = Text(pending_ops_max=3)
    src = Text()
    ops = [src.insert(("a", i + 1), i, "x") for i in range(4)]
    for op in ops[:0:-1]:
        assert t.apply(op) == []
    assert t.pending_count == 3 and t.value() == ""
    with pytest.raises(InvalidOperation):
        t.apply(TextInsert("b", 1, ("a", 3, 0), None, "y"))
    assert t.apply(ops[0]) == [[{"insert": "x"}], [{"retain": 1}, {"insert": "x"}], [{"retain": 2}, {"insert": "x"}], [{"retain": 3}, {"insert": "x"}]]
    assert t.value() == "xxxx" and t.pending_count == 0


@given(st.integers(2, 3), schedules, schedules, st.randoms(use_true_random=False))
def test_edits_after_compaction_keep_converging(
    n: int, first: list[Any], second: list[Any], rnd: random.Random
) -> None:
    reps = [Replica() for _ in range(n)]
    receivers = [rep.receive for rep in reps]
    ops = run_schedule(n, first, _edit(reps), lambda r, op: reps[r].receive(op))
    sync_all(receivers, ops, rnd)
    stable = dict(reps[0].text.applied)  # every replica has every op: causally stable
    for rep in reps:
        rep.text.compact(stable)
    more = run_schedule(n, second, renamed(_edit(reps), "b"), lambda r, op: reps[r].receive(op))
    sync_all(receivers, ops + more, rnd)
    assert len({rep.text.value() for rep in reps}) == 1


@given(
    st.text(alphabet="xyz", max_size=8),
    st.floats(0, 1),
    st.lists(st.tuples(st.text(alphabet="ABCDEFGH", min_size=1, max_size=6), st.booleans()), min_size=2, max_size=3),
    st.randoms(use_true_random=False),
)
def test_concurrent_runs_at_one_position_stay_whole(
    base: str, frac: float, runs: list[tuple[str, bool]], rnd: random.Random
) -> None:
    """Authors type concurrently at one position, forward or backward; each run stays contiguous."""
    seed = Text()
    base_ops = [seed.insert(("base", 1), 0, base)] if base else []
    pos = int(frac * len(base))
    made: list[Any] = []
    words = []
    for i, (w, backward) in enumerate(runs):
        word = f"{i}{w}"  # distinct per author
        t = Text()
        for op in base_ops:
            t.apply(op)
        made += _typed(t, f"u{i}", pos, word, backward)
        words.append(word)
    rnd.shuffle(made)
    t = Text()
    for op in base_ops + made:
        t.apply(op)
    v = t.value()
    middle = v[pos : len(v) - (len(base) - pos)]
    assert v[:pos] == base[:pos] and v[len(v) - (len(base) - pos) :] == base[pos:]
    for word in words:
        assert word in middle, (word, middle)
