from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.core import InvalidPath, InvalidValue, Op, ValueLimits
from statesync.core._replica import Replica, ReplicaLimits

T = 1_700_000_000_000
SEG = st.sampled_from(["x", "y", "z"])
paths = st.lists(SEG, min_size=1, max_size=3).map(tuple)


def history(data: st.DataObject, n_writers: int = 3, steps: int = 20) -> list[Op]:
    writers = [Replica(f"w{i}") for i in range(n_writers)]
    ops: list[Op] = []
    for _ in range(data.draw(st.integers(1, steps))):
        i = data.draw(st.integers(0, n_writers - 1))
        action = data.draw(st.sampled_from(["put", "dict", "remove", "deliver"]))
        if action == "put":
            ops.append(writers[i].put(data.draw(paths), data.draw(st.integers(0, 9)), T))
        elif action == "dict":
            ops.append(writers[i].put(data.draw(paths), {"x": 1, "y": {"z": 2}}, T))
        elif action == "remove":
            ops.append(writers[i].remove(data.draw(paths), T))
        elif ops:
            writers[i].receive(data.draw(st.sampled_from(ops)))
    return ops


def causal_subset(ops: list[Op], keep: set[int]) -> list[Op]:
    """A causally closed subset: what a replica receiving those ops ends up applying."""
    r = Replica("probe")
    applied = []
    for i in sorted(keep):
        applied.extend(r.receive(ops[i]))
    return applied


@settings(max_examples=150)
@given(st.data())
def test_snapshot_join_equals_op_delivery(data: st.DataObject) -> None:
    ops = history(data)
    idx = list(range(len(ops)))
    mine = causal_subset(ops, set(data.draw(st.lists(st.sampled_from(idx), unique=True)))) if ops else []
    theirs = causal_subset(ops, set(data.draw(st.lists(st.sampled_from(idx), unique=True)))) if ops else []
    a, b, expected = Replica("a"), Replica("b"), Replica("e")
    for op in mine:
        a.receive(op)
    for op in theirs:
        b.receive(op)
    for op in sorted({o.dot: o for o in [*mine, *theirs]}.values(), key=lambda o: o.hlc):
        expected.receive(op)
    plain = Replica("a")  # the same join without recording changes (the bulk path)
    for op in mine:
        plain.receive(op)
    plain.install_snapshot(b.snapshot())
    assert plain.digest() == expected.digest() and plain.get(()) == expected.get(())
    assert plain.tree.leaf_count == expected.tree.leaf_count
    changes: list = []
    paths = {p for p, _ in a.tree.iter_registers()} | {p for p, _ in b.tree.iter_registers()}
    before = {p: a.tree._read_leaf(p) for p in paths}
    a.install_snapshot(b.snapshot(), changes)
    assert a.digest() == expected.digest()
    assert a.get(()) == expected.get(())
    # the changes reported are exactly the leaves that changed, old and new values right
    after = {p: a.tree._read_leaf(p) for p in paths}
    assert {c.path for c in changes} >= {p for p in paths if before[p] != after[p]}
    for c in changes:
        assert (c.old, c.new) == (before[c.path], after[c.path])
    # the rest arrives later through the log and changes nothing more
    for op in ops:
        a.receive(op)
        expected.receive(op)
    assert a.digest() == expected.digest()


@settings(max_examples=100)
@given(st.data())
def test_restore_from_snapshot_and_log(data: st.DataObject) -> None:
    ops = history(data)
    r = Replica("w0")
    for op in ops:
        r.receive(op)
    cut = data.draw(st.integers(0, len(ops)))
    early = Replica("w0")
    for op in ops[:cut]:
        early.receive(op)
    restored = Replica.restore("w0", early.snapshot(), ops[cut:])
    assert restored.digest() == r.digest()
    assert restored.get(()) == r.get(())
    # a restored node never reuses a dot
    nxt = restored.put("fresh", 1, T)
    assert nxt.seq == r.vv.get("w0", 0) + 1
    assert nxt.hlc > max((o.hlc for o in ops), default=0)


def test_pending_buffer_is_bounded_and_refillable() -> None:
    src = Replica("s")
    ops = [src.put(("k", str(i)), i, T) for i in range(50)]
    r = Replica("r", limits=ReplicaLimits(pending_ops_max=10))
    for op in ops[1:]:
        assert r.receive(op) == []
    assert r.pending_count == 10 and r.pending_dropped == 39
    ctx = r.received_context()
    assert len(ctx.cloud) == 10 and ctx.vv == {}
    applied = r.receive(ops[0])
    assert len(applied) == 11
    for op in ops:  # anti-entropy brings the rest again
        r.receive(op)
    assert r.digest() == src.digest()


def test_duplicates_are_ignored() -> None:
    src = Replica("s")
    op = src.put("k", 1, T)
    r = Replica("r")
    assert r.receive(op) == [op]
    assert r.receive(op) == []
    assert r.vv == {"s": 1}


def test_local_write_validation() -> None:
    r = Replica("a", limits=ReplicaLimits(path_depth_max=3))
    with pytest.raises(InvalidPath):
        r.put("a.b.c.d", 1, T)
    with pytest.raises(InvalidPath):
        r.put("a..b", 1, T)
    with pytest.raises(InvalidValue):
        r.put("a", {1, 2}, T)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="path segment"):
        r.put("a", {"": 1}, T)
    with pytest.raises(InvalidValue, match="deeper"):
        r.put("a.b", {"c": {"d": 1}}, T)
    assert r.seq == 0 and r.get("") == {}


def test_write_returns_op_with_scope_context() -> None:
    r = Replica("a")
    first = r.put("k", 1, T)
    second = r.put("k", 2, T)
    assert first.context == () and second.context == (("a", 1),)
    assert second.dot == ("a", 2) and second.hlc > first.hlc


values = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=3), st.just({"x": 1, "y": {"z": [2]}}), st.just({}))


@settings(max_examples=100)
@given(st.lists(st.tuples(st.lists(SEG, min_size=1, max_size=3).map(tuple), values), max_size=30), st.booleans())
def test_put_many_is_a_sequence_of_puts(items: list[tuple[tuple[str, ...], object]], text: bool) -> None:
    one, many = Replica("a"), Replica("a")
    keyed = [(".".join(p) if text else p, v) for p, v in items]
    ops_one = [one.put(p, v, T) for p, v in keyed]  # type: ignore[arg-type]
    ops_many = many.put_many(keyed, T)  # type: ignore[arg-type]
    assert ops_one == ops_many
    assert one.digest() == many.digest() and one.get(()) == many.get(())


def test_put_many_stops_at_a_bad_item_keeping_the_earlier_ones() -> None:
    r = Replica("a")
    with pytest.raises(InvalidValue):
        r.put_many([("a", 1), ("b", 2), ("c", {1, 2}), ("d", 4)], T)  # type: ignore[list-item]
    assert r.get(()) == {"a": 1, "b": 2}
    assert [op.path for op in r.last_ops] == [("a",), ("b",)] and r.seq == 2
    with pytest.raises(InvalidPath):
        r.put_many([("e", 1), ("f..g", 2)], T)
    with pytest.raises(InvalidValue, match="root"):
        r.put_many([((), 5)], T)
    with pytest.raises(InvalidValue, match="limit"):
        Replica("b", limits=ReplicaLimits(value=ValueLimits(str_chars_max=3))).put_many([("k", "long")], T)


@settings(max_examples=100)
@given(st.data())
def test_receive_many_equals_receive_one_by_one(data: st.DataObject) -> None:
    ops = history(data)
    order = data.draw(st.permutations(ops)) if ops else []
    order = order + data.draw(st.lists(st.sampled_from(ops), max_size=5)) if ops else order
    one, many = Replica("x"), Replica("x")
    applied_one = [a for op in order for a in one.receive(op)]
    applied_many = many.receive_many(order)
    assert applied_one == applied_many
    assert one.digest() == many.digest() and one.vv == many.vv and one.clock.last == many.clock.last
