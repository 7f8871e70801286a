"""The pure lease rules: records in the tree, who ends a lease and when (seeded and property tests)."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.core import _leases as leases
from statesync.core._leases import ExpiryIndex, LeaseRecord, TiedKey

GRACE_S = 3.0


def tree_of(items: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """The subtree at leases.LEASE_PREFIX that these puts make."""
    root: dict[str, Any] = {}
    for path, value in items:
        assert path[: len(leases.LEASE_PREFIX)] == leases.LEASE_PREFIX
        node = root
        for seg in path[len(leases.LEASE_PREFIX) : -1]:
            node = node.setdefault(seg, {})
        node[path[-1]] = value
    return root


def record(owner: str, n: int, ttl_s: float = 2.0) -> LeaseRecord:
    return LeaseRecord(leases.make_lease_id(owner, n), owner, ttl_s, leases.holder_digest("t"))


def test_a_record_written_as_items_reads_back() -> None:
    lid = leases.make_lease_id("node-a", 0xABC)
    assert leases.owner_of(lid) == "node-a"
    items = leases.grant_items(lid, "node-a", 1.5, leases.holder_digest("secret"))
    items.append(leases.tie_item(lid, ("room", "ada"), "node-a", 7))
    items.append(leases.tie_item(lid, ("a.b", "c"), "node-b", 9))
    records = leases.parse_leases(tree_of(items))
    rec = records[lid]
    assert rec.live and rec.owner == "node-a" and rec.ttl_s == 1.5 and rec.holder == leases.holder_digest("secret")
    assert {(k.path, k.origin, k.seq) for k in rec.keys} == {(("room", "ada"), "node-a", 7), (("a.b", "c"), "node-b", 9)}
    assert {k.slot for k in rec.keys} == {leases.key_slot(("room", "ada")), leases.key_slot(("a.b", "c"))}


def test_key_entries_without_a_record_are_an_ended_lease() -> None:
    lid = leases.make_lease_id("a", 1)
    records = leases.parse_leases(tree_of([leases.tie_item(lid, ("k",), "a", 3)]))
    assert not records[lid].live and records[lid].owner == "a"


def test_reserved_paths() -> None:
    assert leases.is_reserved(()) and leases.is_reserved(("_statesync",)) and leases.is_reserved((*leases.LEASE_PREFIX, "x"))
    assert not leases.is_reserved(("statesync",)) and not leases.is_reserved(("app", "_statesync"))


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), junk, max_size=5) | junk)
def test_anything_in_the_reserved_subtree_parses_without_raising(tree: Any) -> None:
    for lid, rec in leases.parse_leases(tree).items():
        assert leases.owner_of(lid) == rec.owner
        assert all(k.path for k in rec.keys)


def test_the_owner_ends_a_lease_ttl_after_it_last_heard_the_holder() -> None:
    index = ExpiryIndex("a", grace_s=GRACE_S)
    rec = record("a", 1, ttl_s=2.0)
    index.add(rec, 10.0)
    assert index.due(11.9) == []
    index.heard(rec.lease_id, 11.0)
    assert index.next_deadline_s() == 13.0
    assert index.due(12.99) == []
    assert index.due(13.0) == [rec.lease_id]
    assert index.due(100.0) == []  # once


def test_a_pinned_lease_runs_on_its_ttl_only_once_unpinned() -> None:
    index = ExpiryIndex("a", grace_s=GRACE_S)
    rec = record("a", 1, ttl_s=1.0)
    index.add(rec, 0.0, pinned=True)
    assert index.due(1e6) == [] and index.next_deadline_s() is None
    index.unpin(rec.lease_id, 50.0)
    assert index.due(51.0) == [rec.lease_id]


def test_while_the_owner_is_reachable_nobody_else_ends_its_lease() -> None:
    rec = record("a", 1, ttl_s=1.0)
    index = ExpiryIndex("b", grace_s=GRACE_S)
    index.set_live({"a", "c"}, 0.0)
    index.adopt({rec.lease_id: rec}, 0.0)
    assert index.due(1e6) == []
    index.set_live({"c"}, 100.0)  # a is gone at 100: b (< c) ends it at 100 + ttl + grace
    assert index.due(103.99) == []
    assert index.due(104.0) == [rec.lease_id]


def test_only_the_successor_ends_the_lease_of_an_unreachable_owner() -> None:
    rec = record("b", 1, ttl_s=1.0)
    views = {"a": {"c"}, "c": {"a"}}  # b is dead; a and c see each other
    ended = {}
    for me, live in views.items():
        index = ExpiryIndex(me, grace_s=GRACE_S)
        index.set_live(live, 0.0)
        index.adopt({rec.lease_id: rec}, 0.0)
        ended[me] = index.due(10.0)
    assert ended == {"a": [rec.lease_id], "c": []}
    assert leases.successor("b", {"a", "b", "c"}) == "a"


def test_when_the_successor_dies_too_the_next_one_takes_over() -> None:
    rec = record("a", 1, ttl_s=1.0)
    index = ExpiryIndex("c", grace_s=GRACE_S)
    index.set_live({"b"}, 0.0)
    index.adopt({rec.lease_id: rec}, 0.0)
    assert index.due(100.0) == []  # b is the leases.successor
    index.set_live(set(), 100.0)
    assert index.due(100.0) == [rec.lease_id]  # a unreachable since 0: long past its deadline


def test_an_ended_lease_with_key_entries_left_is_swept_at_once_by_its_owner() -> None:
    lid = leases.make_lease_id("a", 5)
    orphan = LeaseRecord(lid, "a", 0.0, "", (TiedKey("s", ("k",), "a", 3),), live=False)
    owner, other = ExpiryIndex("a", grace_s=GRACE_S), ExpiryIndex("b", grace_s=GRACE_S)
    other.set_live({"a"}, 0.0)
    owner.set_live({"b"}, 0.0)
    live = LeaseRecord(lid, "a", 2.0, "h")
    assert owner.adopt({lid: live}, 0.0) == [] and other.adopt({lid: live}, 0.0) == []
    assert owner.adopt({lid: orphan}, 1.0) == [lid]  # the record went: ended elsewhere
    assert other.adopt({lid: orphan}, 1.0) == [lid]
    assert owner.due(1.0) == [lid] and other.due(1.0) == []


def test_a_tie_shows_in_the_record_at_once_and_replaces_its_slot() -> None:
    index = ExpiryIndex("a", grace_s=GRACE_S)
    rec = record("a", 1)
    index.add(rec, 0.0)
    index.tie(rec.lease_id, TiedKey("s1", ("k",), "a", 3))
    index.tie(rec.lease_id, TiedKey("s1", ("k",), "a", 5))
    index.tie(rec.lease_id, TiedKey("s2", ("j",), "a", 6))
    assert [(k.slot, k.seq) for k in index.records[rec.lease_id].keys] == [("s1", 5), ("s2", 6)]
    index.tie("a~unknown", TiedKey("s", ("x",), "a", 1))  # nothing to tie to: ignored
    assert "a~unknown" not in index.records


def test_adopt_reports_leases_that_vanished() -> None:
    index = ExpiryIndex("a", grace_s=GRACE_S)
    r1, r2 = record("a", 1), record("b", 2)
    index.adopt({r1.lease_id: r1, r2.lease_id: r2}, 0.0)
    assert index.adopt({r2.lease_id: r2}, 1.0) == [r1.lease_id]
    assert len(index) == 1


def test_still_tied_looks_for_the_tying_write_at_and_under_the_key() -> None:
    tied = TiedKey("s", ("room",), "a", 4)
    assert leases.still_tied(tied, [(("room", "x"), [("b", 1)]), (("room", "y"), [("a", 4)])])
    assert not leases.still_tied(tied, [(("room",), [("a", 5)])])
    assert not leases.still_tied(tied, [])


def test_seeded_clusters_end_every_lease_once_never_early() -> None:
    """Random clusters, owners dying and keepalives stopping: with every live node seeing the
    same live set, each lease is ended by exactly one node, at or after its deadline."""
    for seed in range(200):
        rng = random.Random(seed)
        nodes = [f"n{i}" for i in range(rng.randint(2, 5))]
        leases = [record(rng.choice(nodes), i, ttl_s=rng.choice([0.5, 1.0, 2.0])) for i in range(rng.randint(1, 8))]
        dead = {n for n in nodes if rng.random() < 0.3}
        if len(dead) == len(nodes):
            dead.discard(nodes[0])
        live = [n for n in nodes if n not in dead]
        die_at = 1.0
        stop_at = {r.lease_id: rng.uniform(0, 3) for r in leases}  # the holder's last keepalive
        indexes = {n: ExpiryIndex(n, grace_s=GRACE_S) for n in nodes}
        for n, index in indexes.items():
            index.set_live(set(nodes) - {n}, 0.0)
            index.adopt({r.lease_id: r for r in leases}, 0.0)
        ended: dict[str, list[tuple[str, float]]] = {r.lease_id: [] for r in leases}
        last_heard = {r.lease_id: 0.0 for r in leases}
        t = 0.0
        while t < 20.0:
            t = round(t + rng.choice([0.05, 0.1, 0.25]), 4)
            for n in live:
                index = indexes[n]
                if t >= die_at:
                    index.set_live(set(live) - {n}, die_at)
                for r in leases:
                    if r.owner == n and t <= stop_at[r.lease_id]:
                        index.heard(r.lease_id, t)
                        last_heard[r.lease_id] = t
                for lid in index.due(t):
                    ended[lid].append((n, t))
        for r in leases:
            who = ended[r.lease_id]
            assert len(who) == 1, (seed, r, who)
            node, at = who[0]
            if r.owner in dead:
                expected = min(n for n in live)
                assert node == expected and at >= die_at + r.ttl_s + GRACE_S, (seed, r, who)
            else:
                assert node == r.owner and last_heard[r.lease_id] + r.ttl_s <= at < last_heard[r.lease_id] + r.ttl_s + 0.26, (seed, r, who)
