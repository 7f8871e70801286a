from __future__ import annotations

import pytest

from statesync.core import ABSENT, REMOVE, Change, Op, ResolverError, Version
from statesync.core._replica import Replica
from statesync.core._strategy import Strategies
from statesync.core._tree import StateTree

T = 1_700_000_000_000


def pair(strategy: object = "vector-clock") -> tuple[Replica, Replica]:
    s = Strategies.from_spec(strategy)  # type: ignore[arg-type]
    return Replica("a", strategies=s), Replica("b", strategies=s)


def exchange(x: Replica, y: Replica, ox: list[Op], oy: list[Op]) -> None:
    for op in oy:
        x.receive(op)
    for op in ox:
        y.receive(op)


def test_get_leaf_subtree_and_root() -> None:
    r = Replica("a")
    r.put("user", {"name": "Ada", "langs": ["py"], "addr": {"city": "London"}}, T)
    assert r.get("user.name") == "Ada"
    assert r.get("user.langs") == ["py"]
    assert r.get("user.addr") == {"city": "London"}
    assert r.get("user") == {"name": "Ada", "langs": ["py"], "addr": {"city": "London"}}
    assert r.get("") == {"user": r.get("user")}
    assert r.get("nope") is ABSENT
    assert r.get("user.name.deeper") is ABSENT


def test_empty_dict_is_a_leaf_and_root_must_be_dict() -> None:
    r = Replica("a")
    r.put("x", {}, T)
    assert r.get("x") == {}
    r.put("x.y", 1, T)
    assert r.get("x") == {"y": 1}
    with pytest.raises(Exception, match="root holds a dict"):
        r.put("", 5, T)


def test_put_replaces_ancestor_and_descendants() -> None:
    r = Replica("a")
    r.put("a", 1, T)
    r.put("a.b", 2, T)
    assert r.get("a") == {"b": 2}
    r.put("a", 3, T)
    assert r.get("a") == 3
    assert r.get("a.b") is ABSENT
    assert r.tree.leaf_count == 1


def test_subtree_write_replaces_observed_leaves() -> None:
    r = Replica("a")
    r.put("u", {"x": 1, "y": 2}, T)
    r.put("u", {"z": 3}, T)
    assert r.get("u") == {"z": 3}


def test_remove_leaves_no_tombstone() -> None:
    a, b = pair()
    ops = []
    for i in range(100_000):
        ops.append(a.put(("k", str(i)), i, T))
        ops.append(a.remove(("k", str(i)), T))
    for op in ops:
        b.receive(op)
    for r in (a, b):
        assert r.tree.leaf_count == 0
        assert r.tree._root.children == {}
        assert r.get("") == {}


def test_concurrent_writes_are_siblings_under_vector_clock() -> None:
    a, b = pair()
    oa = a.put("k", "from-a", T + 5)
    ob = b.put("k", "from-b", T)
    exchange(a, b, [oa], [ob])
    assert a.get("k") == b.get("k") == "from-a"  # highest (hlc, node_id)
    assert [v.value for v in a.conflicts("k")] == ["from-b", "from-a"]
    resolve = a.put("k", "merged", T + 6)
    b.receive(resolve)
    assert b.conflicts("k") == [] and b.get("k") == "merged"


def test_lww_drops_losers_from_view() -> None:
    a, b = pair("last-write-wins")
    oa = a.put("k", 1, T)
    ob = b.put("k", 2, T + 1)
    exchange(a, b, [oa], [ob])
    assert a.get("k") == b.get("k") == 2
    assert a.conflicts("k") == [] and b.conflicts("k") == []


def test_lww_ties_broken_by_node_id() -> None:
    a, b = pair("last-write-wins")
    oa = a.put("k", "a", T)
    ob = b.put("k", "b", T)
    assert oa.hlc == ob.hlc
    exchange(a, b, [oa], [ob])
    assert a.get("k") == b.get("k") == "b"


def test_causally_newer_wins_even_with_lower_physical_clock() -> None:
    """LWW under skewed physical clocks keeps the HLC (causal) order."""
    a, b = pair("last-write-wins")
    first = a.put("k", "old", T + 30_000)  # a's clock runs 30 s ahead
    b.receive(first)
    second = b.put("k", "new", T)  # b writes later, with a clock that is behind
    assert second.hlc > first.hlc
    a.receive(second)
    assert a.get("k") == b.get("k") == "new"
    # and a concurrent write from a third node orders by HLC, not by arrival
    c = Replica("c", strategies=Strategies.from_spec("last-write-wins"))
    third = c.put("k", "concurrent", T + 10_000)
    for r in (a, b):
        r.receive(third)
    c.receive(first)
    c.receive(second)
    assert a.get("k") == b.get("k") == c.get("k") == "new"


def test_custom_resolver_gets_canonical_order() -> None:
    seen: list[list[str]] = []

    def concat(path: tuple[str, ...], versions: tuple[Version, ...]) -> str:
        seen.append([v.origin for v in versions])
        return "+".join(str(v.value) for v in versions)

    a, b = pair(concat)
    oa = a.put("k", "x", T + 1)
    ob = b.put("k", "y", T)
    exchange(a, b, [oa], [ob])
    assert a.get("k") == b.get("k") == "y+x"
    assert all(s == ["b", "a"] for s in seen)
    assert len(a.conflicts("k")) == 2


def test_failing_custom_resolver_raises_resolver_error_on_read_only() -> None:
    def broken(path: tuple[str, ...], versions: tuple[Version, ...]) -> str:
        raise RuntimeError("boom")

    a, b = pair(broken)
    oa = a.put("k", 1, T)
    ob = b.put("k", 2, T)
    changes: list[Change] = []
    a.receive(ob, changes)  # applying never fails
    assert changes and changes[0].new == 2
    with pytest.raises(ResolverError, match="boom"):
        a.get("k")
    assert oa.seq == 1


def test_strategy_per_prefix_longest_wins() -> None:
    s = Strategies("vector-clock", {"app": "last-write-wins", "app.merge": lambda p, vs: len(vs)})
    a, b = Replica("a", strategies=s), Replica("b", strategies=s)
    ops_a = [a.put(p, "a", T) for p in ("app.x", "app.merge.y", "other")]
    ops_b = [b.put(p, "b", T) for p in ("app.x", "app.merge.y", "other")]
    exchange(a, b, ops_a, ops_b)
    assert a.get("app.x") == "b" and a.conflicts("app.x") == []
    assert a.get("app.merge.y") == 2
    assert len(a.conflicts("other")) == 2
    assert s.describe() == {"": "vector-clock", "app": "last-write-wins", "app.merge": "custom"}


class TestViewRule:
    """The read view where a leaf and leaves beneath it coexist (module doc of _tree)."""

    def make(self, leaf_ms: int, child_ms: int) -> Replica:
        a, b = pair()
        oa = a.put("a", "leaf", leaf_ms)
        ob = b.put("a.b", "child", child_ms)
        exchange(a, b, [oa], [ob])
        assert a.get("") == b.get("")
        return a

    def test_newer_leaf_hides_subtree(self) -> None:
        r = self.make(T + 10, T)
        assert r.get("a") == "leaf"
        assert r.get("a.b") is ABSENT
        assert r.get("") == {"a": "leaf"}

    def test_newer_subtree_hides_leaf(self) -> None:
        r = self.make(T, T + 10)
        assert r.get("a") == {"b": "child"}
        assert r.get("a.b") == "child"

    def test_rule_applies_per_level(self) -> None:
        a, b, c = Replica("a"), Replica("b"), Replica("c")
        ops = [a.put("p", 1, T + 2), b.put("p.q", 2, T + 3), c.put("p.r", 3, T + 1)]
        for r in (a, b, c):
            for op in ops:
                r.receive(op)
        # p's leaf (T+2) is older than p.q (T+3): hidden; both children shown.
        assert a.get("p") == {"q": 2, "r": 3} == c.get("p")

    def test_leaf_counts_hidden_descendants(self) -> None:
        a, b, c = Replica("a"), Replica("b"), Replica("c")
        ops = [a.put("p", 1, T + 2), b.put("p.q", 2, T + 1), c.put("p.q.r", 3, T + 3)]
        for r in (a, b, c):
            for op in ops:
                r.receive(op)
        # p.q.r is the newest below p, so p is hidden; p.q's leaf is older than p.q.r.
        assert a.get("p") == {"q": {"r": 3}}


def test_remove_of_ancestor_keeps_unseen_concurrent_child() -> None:
    a, b = pair()
    base = a.put("u.x", 1, T)
    b.receive(base)
    rm = a.remove("u", T + 1)
    add = b.put("u.y", 2, T + 1)  # concurrent with the remove: add wins
    exchange(a, b, [rm], [add])
    assert a.get("u") == b.get("u") == {"y": 2}


def test_tree_scope_context_covers_scope_only() -> None:
    r = Replica("a")
    r.put("a", 1, T)
    r.put("b", 2, T)
    op = r.remove("a", T)
    assert op.kind == REMOVE and op.context == (("a", 1),)


def test_iter_registers_and_replace() -> None:
    tree = StateTree()
    v = Version("x", 1, "n", 1)
    tree.replace_register(("a", "b"), (v,))
    assert list(tree.iter_registers()) == [(("a", "b"), (v,))]
    tree.replace_register(("a", "b"), ())
    assert list(tree.iter_registers()) == [] and tree._root.children == {}
