"""Typed values inside the replica: text, list, counter and add-wins set ops as ``Op``s.

Unit cases pin the API, the plain reads and the rule between typed ops and
plain writes (docs/types.md); the properties draw random programs of typed
edits, plain writes and partial exchanges over three replicas and then deliver
everything to everyone in a random order with duplicates: all must converge,
and every local edit must land where it was made.
"""

from __future__ import annotations

import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.core import ABSENT, Op, Replica, ReplicaLimits, ValueLimits
from statesync.errors import InvalidOperation, StatesyncError

MS = 1_700_000_000_000


def exchange(*replicas: Replica) -> None:
    ops = [op for r in replicas for op in r.log]
    for r in replicas:
        r.receive_many(ops)


def test_every_type_reads_as_plain_json_and_replicates() -> None:
    a, b = Replica("a"), Replica("b")
    a.text_insert("doc.title", 0, "hello", MS)
    a.text_insert("doc.title", 5, " world", MS)
    a.text_delete("doc.title", 0, 1, MS)
    a.list_insert("todo", 0, ["milk", {"n": 2}, 3], MS)
    a.list_move("todo", 0, 2, MS)
    a.list_delete("todo", 0, 1, MS)
    a.counter_add("likes", 5, MS)
    a.counter_add("likes", -2, MS)
    a.aw_add("tags", "b", MS)
    a.aw_add("tags", "a", MS)
    a.aw_remove("tags", "b", MS)
    a.put("doc.plain", 1, MS)
    want = {"doc": {"title": "ello world", "plain": 1}, "todo": [3, "milk"], "likes": 3, "tags": ["a"]}
    assert a.get("") == want
    exchange(a, b)
    assert b.get("") == want
    assert b.get("doc.title") == "ello world"
    assert b.digest() == a.digest()
    assert [v.value for v in b.versions("likes")] == [3]


def test_concurrent_text_inserts_at_one_place_do_not_interleave() -> None:
    a, b = Replica("a"), Replica("b")
    a.text_insert("t", 0, "[]", MS)
    exchange(a, b)
    a.text_insert("t", 1, "alpha", MS + 1)
    b.text_insert("t", 1, "beta", MS + 1)
    exchange(a, b)
    assert a.get("t") == b.get("t")
    assert a.get("t") in ("[alphabeta]", "[betaalpha]")


def test_concurrent_adds_sum_and_add_wins_over_remove() -> None:
    a, b = Replica("a"), Replica("b")
    a.counter_add("n", 1, MS)
    a.aw_add("s", "x", MS)
    exchange(a, b)
    a.counter_add("n", 10, MS)
    b.counter_add("n", 100, MS)
    a.aw_remove("s", "x", MS)
    b.aw_add("s", "x", MS)
    exchange(a, b)
    assert a.get("n") == b.get("n") == 111
    assert a.get("s") == b.get("s") == ["x"]


def test_concurrent_moves_of_one_item_leave_it_once() -> None:
    a, b = Replica("a"), Replica("b")
    a.list_insert("l", 0, ["x", "y", "z"], MS)
    exchange(a, b)
    a.list_move("l", 0, 2, MS)
    b.list_move("l", 0, 1, MS)
    exchange(a, b)
    assert a.get("l") == b.get("l")
    assert sorted(a.get("l")) == ["x", "y", "z"]  # type: ignore[type-var, arg-type]


def test_a_plain_write_that_saw_the_typed_value_replaces_it_and_concurrent_edits() -> None:
    a, b = Replica("a"), Replica("b")
    a.text_insert("t", 0, "abc", MS)
    exchange(a, b)
    b.put("t", "plain", MS + 5)  # saw the text: replaces it
    a.text_insert("t", 3, "d", MS + 9)  # concurrent edit of the replaced text
    exchange(a, b)
    assert a.get("t") == b.get("t") == "plain"
    assert a.digest() == b.digest()
    # a new typed op over the plain value makes a new text
    a.text_insert("t", 0, "new", MS + 10)
    exchange(a, b)
    assert a.get("t") == b.get("t") == "new"


def test_a_typed_op_concurrent_with_a_plain_write_of_an_unseen_path_is_a_sibling() -> None:
    a, b = Replica("a"), Replica("b")
    a.text_insert("t", 0, "typed", MS + 1)  # later hybrid time: shows under LWW
    b.put("t", "plain", MS)
    exchange(a, b)
    assert a.get("t") == b.get("t") == "typed"
    assert sorted(map(repr, (v.value for v in a.versions("t")))) == ["'plain'", "'typed'"]
    a.text_insert("t", 5, "!", MS + 2)  # edits go to the incarnation shown
    exchange(a, b)
    assert b.get("t") == "typed!"


def test_a_remove_takes_the_typed_value_and_a_later_op_recreates_it() -> None:
    a, b = Replica("a"), Replica("b")
    a.counter_add("c", 7, MS)
    exchange(a, b)
    b.remove("c", MS)
    exchange(a, b)
    assert a.get("c") is ABSENT
    a.counter_add("c", 1, MS)
    exchange(a, b)
    assert b.get("c") == 1


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda r: r.text_insert("t", 9, "x", MS), "outside"),
        (lambda r: r.text_delete("t", 0, -1, MS), "count"),
        (lambda r: r.text_delete("t", 1, 5, MS), "past the end"),
        (lambda r: r.list_move("l", 7, 0, MS), "outside"),
        (lambda r: r.list_delete("l", 0, 0, MS), "count"),
        (lambda r: r.text_insert("m", 0, "x", MS), "holds a map"),
        (lambda r: r.counter_add("t", 1, MS), "holds a text"),
        (lambda r: r.text_delete("nothing", 0, 1, MS), "nothing to edit"),
        (lambda r: r.aw_remove("s", "absent", MS), "not in the set"),
        (lambda r: r.aw_add("s", [1], MS), "scalars"),
        (lambda r: r.counter_add("c", "1", MS), "int"),
        (lambda r: r.list_insert("l", 0, [object()], MS), "cannot be stored"),
        (lambda r: r.text_insert("", 0, "x", MS), "root"),
    ],
)
def test_bad_input_is_one_line_and_applies_nothing(call, needle: str) -> None:  # type: ignore[no-untyped-def]
    r = Replica("a")
    r.text_insert("t", 0, "ab", MS)
    r.list_insert("l", 0, [1], MS)
    r.counter_add("c", 1, MS)
    r.aw_add("s", "x", MS)
    r.put("m.k", 1, MS)
    before, digest, seq = r.get(""), r.digest(), r.seq
    with pytest.raises(InvalidOperation) as err:
        call(r)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)
    assert (r.get(""), r.digest(), r.seq) == (before, digest, seq)


def test_text_over_the_value_bound_is_refused() -> None:
    r = Replica("a", limits=ReplicaLimits(value=ValueLimits(str_chars_max=10)))
    r.text_insert("t", 0, "x" * 10, MS)
    with pytest.raises(InvalidOperation, match="value bound of 10"):
        r.text_insert("t", 0, "y", MS)
    assert r.get("t") == "x" * 10


def test_snapshots_carry_typed_values_and_join_with_local_edits() -> None:
    a, b = Replica("a"), Replica("b")
    a.text_insert("t", 0, "hello", MS)
    a.list_insert("l", 0, [1, 2], MS)
    a.aw_add("s", 1, MS)
    a.counter_add("c", 2, MS)
    exchange(a, b)
    b.text_insert("t", 5, "!", MS)  # b's edit, not in a's snapshot
    a.text_insert("t", 0, ">", MS)
    snap = a.snapshot()
    a.text_insert("t", 0, "after", MS)  # the snapshot is frozen: later edits do not leak in
    assert snap.entries and "after" not in repr(snap.entries)
    b.install_snapshot(snap)
    assert b.get("t") == ">hello!"
    fresh = Replica("c")
    fresh.install_snapshot(snap)
    assert fresh.get("") == {"t": ">hello", "l": [1, 2], "s": [1], "c": 2}
    restored = Replica.restore("a", snap, [op for op in a.log if op.seq > snap.vv["a"]])
    assert restored.get("t") == a.get("t")
    restored.text_insert("t", 0, "+", MS)  # a restored text keeps editing
    assert restored.get("t") == "+" + str(a.get("t"))


def test_causal_stability_compacts_deleted_text() -> None:
    a = Replica("a")
    a.text_insert("t", 0, "x" * 1000, MS)
    a.text_delete("t", 0, 990, MS)
    size_before = len(repr(a.snapshot().entries))
    assert a.compact_typed(dict(a.vv)) >= 1
    assert a.get("t") == "x" * 10
    assert len(repr(a.snapshot().entries)) < size_before


# ------------------------------------------------------------------- properties

PATHS = ["t", "l", "c", "s"]
action = st.tuples(
    st.integers(0, 2),  # replica
    st.sampled_from(["ins", "del", "lins", "ldel", "move", "add", "awadd", "awrm", "put", "rm", "sync"]),
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 2),  # sync partner
)


def _run(r: Replica, kind: str, x: int, y: int, t: int) -> Op | None:
    n_text = len(v) if isinstance(v := r.get("t"), str) else 0
    n_list = len(v) if isinstance(v := r.get("l"), list) else 0
    try:
        if kind == "ins":
            pos = x % (n_text + 1)
            op = r.text_insert("t", pos, "ab"[: 1 + y % 2], MS + t)
            got = r.get("t")
            assert isinstance(got, str) and got[pos : pos + 1 + y % 2] == "ab"[: 1 + y % 2]
            return op
        if kind == "del" and n_text:
            return r.text_delete("t", x % n_text, 1 + y % min(2, n_text - x % n_text), MS + t)
        if kind == "lins":
            pos = x % (n_list + 1)
            op = r.list_insert("l", pos, [f"{r.node_id}{t}"], MS + t)
            assert r.get("l")[pos] == f"{r.node_id}{t}"  # type: ignore[index]
            return op
        if kind == "ldel" and n_list:
            return r.list_delete("l", x % n_list, 1, MS + t)
        if kind == "move" and n_list:
            item = r.get("l")[x % n_list]  # type: ignore[index]
            op = r.list_move("l", x % n_list, y % n_list, MS + t)
            assert r.get("l")[y % n_list] == item  # type: ignore[index]
            return op
        if kind == "add":
            return r.counter_add("c", x - 15, MS + t)
        if kind == "awadd":
            return r.aw_add("s", x % 4, MS + t)
        if kind == "awrm":
            return r.aw_remove("s", x % 4, MS + t)
        if kind == "put":
            return r.put(PATHS[x % 4], y, MS + t)
        if kind == "rm":
            return r.remove(PATHS[x % 4], MS + t)
    except InvalidOperation:
        assert kind in ("awrm", "del", "ldel", "move") or "holds" in kind
        return None
    return None


@settings(max_examples=150)
@given(st.lists(action, max_size=40), st.randoms(use_true_random=False))
def test_any_order_and_duplication_converges_and_edits_land_where_made(program, rnd) -> None:  # type: ignore[no-untyped-def]
    replicas = [Replica(n) for n in "abc"]
    for t, (i, kind, x, y, j) in enumerate(program):
        if kind == "sync":
            ops = list(replicas[j].log)
            rnd.shuffle(ops)
            replicas[i].receive_many(ops[: len(ops) // 2 + 1])
            continue
        try:
            _run(replicas[i], kind, x, y, t)
        except StatesyncError as exc:  # a typed op over another type's path
            assert "holds" in str(exc)
    every = [op for r in replicas for op in r.log]
    for r in replicas:
        mine = every * 2
        rnd.shuffle(mine)
        r.receive_many(mine)
        assert r.pending_count == 0
    views = [r.get("") for r in replicas]
    assert views[0] == views[1] == views[2]
    assert len({r.digest() for r in replicas}) == 1
    # snapshots of converged replicas load into the same state
    fresh = Replica("z")
    fresh.install_snapshot(replicas[0].snapshot())
    assert fresh.get("") == views[0]


def test_the_example_in_docs_types_runs() -> None:
    doc = (pathlib.Path(__file__).parents[2] / "docs" / "types.md").read_text()
    block = re.search(r"```python\n(.*?)```", doc, re.S)
    assert block is not None
    exec(compile(block.group(1), "docs/types.md", "exec"), {})
