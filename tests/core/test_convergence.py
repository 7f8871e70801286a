"""Convergence of replicas under any delivery order, with duplicates.

Replicas write concurrently (puts, removes, subtree writes, writes to one path
and to ancestor/descendant paths), see some of each other's ops along the way
(which creates causal dependencies), then every replica receives every op in a
random permutation with duplicates. All must end with equal digests and equal
read views, equal to a reference replica that applied the ops in causal order
through the general (unfused) apply path. Hypothesis draws the permutations,
so a failure shrinks and prints a reproducible blob.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.core import ABSENT, Change, Op, Path, Value, Version
from statesync.core._replica import Replica
from statesync.core._strategy import Strategies
from statesync.core._tree import StateTree, _canon

NODES = ["a", "b", "c", "d", "e"]
SEGMENTS = ["x", "y", "z"]
WALL_MS = 1_700_000_000_000


def pick_max_canon(path: Path, versions: tuple[Version, ...]) -> Value:
    """A deterministic custom resolver: the value with the greatest canonical text."""
    return max(versions, key=lambda v: _canon(v.value)).value


STRATEGIES: dict[str, Any] = {
    "vector-clock": "vector-clock",
    "last-write-wins": "last-write-wins",
    "custom": pick_max_canon,
}

leaf_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.text("ab", max_size=2), st.just([1, "x"])
)
dict_values = st.recursive(
    st.dictionaries(st.sampled_from(SEGMENTS), leaf_values, min_size=1, max_size=3),
    lambda inner: st.dictionaries(st.sampled_from(SEGMENTS), inner, min_size=1, max_size=2),
    max_leaves=6,
)
paths = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map(tuple)
paths_or_root = st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=3).map(tuple)


class GeneralTree(StateTree):
    """A tree that applies every op through the general, unfused path."""

    __slots__ = ()

    def apply(self, op: Op, changes: list[Change] | None = None) -> None:
        self.apply_general(op, changes)


def make_replicas(n: int, strategy: Any) -> list[Replica]:
    return [Replica(NODES[i], strategies=Strategies.from_spec(strategy)) for i in range(n)]


def leaf_map(replica: Replica) -> dict[Path, Value]:
    tree = replica.tree
    return {p: tree._read_leaf(p) for p, _ in tree.iter_registers()}  # type: ignore[misc]


def run_scenario(data: st.DataObject, strategy: Any) -> None:
    n = data.draw(st.integers(3, 5), label="replicas")
    replicas = make_replicas(n, strategy)
    watched: list[dict[Path, Value]] = [{} for _ in replicas]
    ops: list[Op] = []
    steps = data.draw(st.integers(1, 25), label="steps")

    def record(i: int, changes: list[Change]) -> None:
        for c in changes:
            if c.new is ABSENT:
                watched[i].pop(c.path, None)
            else:
                watched[i][c.path] = c.new

    for _ in range(steps):
        i = data.draw(st.integers(0, n - 1), label="replica")
        kind = data.draw(st.sampled_from(["put", "put", "dict", "remove", "deliver", "deliver"]))
        wall = WALL_MS + data.draw(st.integers(0, 5), label="wall")
        changes: list[Change] = []
        if kind == "put":
            ops.append(replicas[i].put(data.draw(paths), data.draw(leaf_values), wall, changes))
        elif kind == "dict":
            ops.append(replicas[i].put(data.draw(paths_or_root), data.draw(dict_values), wall, changes))
        elif kind == "remove":
            ops.append(replicas[i].remove(data.draw(paths_or_root), wall, changes))
        elif ops:
            op = data.draw(st.sampled_from(ops), label="deliver")
            replicas[i].receive(op, changes)
        record(i, changes)

    for i, replica in enumerate(replicas):
        order = data.draw(st.permutations(ops), label=f"order[{i}]")
        dups = data.draw(st.lists(st.sampled_from(ops), max_size=4), label=f"dups[{i}]") if ops else []
        for op in [*order, *dups]:
            changes = []
            replica.receive(op, changes)
            record(i, changes)

    reference = Replica("ref", strategies=Strategies.from_spec(strategy))
    reference.tree = GeneralTree(reference.tree.strategies)
    for op in sorted(ops, key=lambda o: o.hlc):
        assert reference.receive(op) == [op], "hlc order must be a causal order"

    digests = {r.node_id: r.digest() for r in replicas}
    assert all(r.pending_count == 0 for r in replicas), "ops left waiting after full delivery"
    assert len(set(digests.values())) == 1, f"digests differ: {digests}"
    assert reference.digest() == replicas[0].digest()
    view = reference.get(())
    for i, r in enumerate(replicas):
        assert r.get(()) == view, f"{r.node_id} reads {r.get(())!r}, reference {view!r}"
        assert watched[i] == leaf_map(r), f"change records of {r.node_id} do not add up to its state"
        for path, _ in r.tree.iter_registers():
            assert r.get(path) == reference.get(path)
            assert r.conflicts(path) == reference.conflicts(path)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@settings(max_examples=250)
@given(data=st.data())
def test_replicas_converge(strategy: str, data: st.DataObject) -> None:
    run_scenario(data, STRATEGIES[strategy])


@settings(max_examples=60)
@given(data=st.data())
def test_subtree_write_survives_out_of_causal_order_remove(data: st.DataObject) -> None:
    """The classic trap: a remove whose context covers a subtree write not yet received."""
    a, b, c = make_replicas(3, "vector-clock")
    w = a.put(("u",), {"x": 1, "y": {"z": 2}}, WALL_MS)
    b.receive(w)
    r = b.remove(("u", "x"), WALL_MS + 1)
    order = data.draw(st.permutations([w, r]))
    for op in order:
        c.receive(op)
    assert c.get(("u",)) == {"y": {"z": 2}} == b.get(("u",))
    assert c.digest() == b.digest()
