"""Behaviour every store shares: MemoryStore and SqliteStore run the same tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statesync.core import PUT, Op, Replica, Snapshot, Version
from statesync.errors import StorageArgumentError
from statesync.storage import (
    Loaded,
    MemoryStore,
    SqliteStore,
    StorageLimitError,
    Store,
    StoreClosed,
    open_store,
)
from tests.storage.conftest import Harness

T = 1_700_000_000_000


def op(origin: str, seq: int, hlc: int | None = None, value: object = None, kind: int = PUT) -> Op:
    return Op(origin, seq, seq if hlc is None else hlc, ("k", origin, str(seq)), kind, value, ())  # type: ignore[arg-type]


def test_is_a_store(harness: Harness) -> None:
    assert isinstance(harness.store, Store)


def test_fresh_store_is_empty(harness: Harness) -> None:
    loaded = harness.store.load()
    assert loaded == Loaded(node_id="a", snapshot=None, ops=[], hlc=0, peers={}, meta={})
    stats = harness.store.stats()
    assert stats["log_ops"] == 0 and stats["snapshot_entries"] == 0
    assert "disk_bytes" in stats


def test_ops_round_trip_in_append_order(harness: Harness) -> None:
    r = Replica("a")
    written = [
        r.put("user.name", "Ada", T),
        r.put("user", {"tags": ["x", ["y", {"z": [1, 2.5, None]}]], "bin": b"\x00\xff"}, T + 1),
        r.put("list", [], T + 2),
        r.put("empty", {}, T + 3),
        r.remove("user.tags", T + 4),
        r.put("n", 2**64 - 1, T + 5),
        r.put("neg", -(2**63), T + 6),
    ]
    other = Replica("b")
    other.receive_many(written)
    remote = other.put("neg", "Grace", T + 10)
    assert remote.context  # a real context with entries
    written.append(r.receive(remote)[0])
    harness.store.append(written[:1])
    harness.store.append(written[1:5])
    harness.store.append([])
    harness.store.append(written[5:])
    store = harness.reopen()
    loaded = store.load()
    assert loaded.ops == written
    assert [type(o) for o in loaded.ops] == [Op] * len(written)
    assert type(loaded.ops[1].value["tags"]) is list  # type: ignore[index]
    assert type(loaded.ops[1].value["tags"][1][1]["z"]) is list  # type: ignore[index]
    assert type(loaded.ops[0].path) is tuple and type(loaded.ops[-1].context) is tuple
    assert loaded.hlc == max(o.hlc for o in written)
    assert store.stats()["log_ops"] == len(written)
    restored = Replica.restore("a", loaded.snapshot, loaded.ops, hlc=loaded.hlc)
    assert restored.digest() == r.digest()


def test_appends_after_reload_continue_the_log(harness: Harness) -> None:
    harness.store.append([op("a", 1), op("a", 2)])
    store = harness.reopen()
    store.append([op("a", 3)])
    store = harness.reopen()
    assert [o.seq for o in store.load().ops] == [1, 2, 3]


@pytest.mark.parametrize("n_paths", [0, 1, 3000])
def test_snapshot_round_trip(harness: Harness, n_paths: int) -> None:
    entries = tuple(
        (
            ("p", str(i)),
            (Version([i, {"a": [i]}], i + 1, "a", i + 1),)
            if i % 3
            else (Version(i, i + 1, "a", i + 1), Version("s" * (i % 50), i + 2, "b", i + 1)),
        )
        for i in range(n_paths)
    )
    snap = Snapshot({"a": n_paths, "b": n_paths}, 10**12, entries)
    harness.store.save_snapshot(snap)
    store = harness.reopen()
    loaded = store.load()
    assert loaded.snapshot == snap
    assert loaded.hlc == 10**12
    assert store.stats()["snapshot_entries"] == n_paths
    if n_paths and harness.kind == "sqlite":
        assert store.stats()["snapshot_chunks"] > (1 if n_paths > 1000 else 0)


def test_snapshot_is_replaced_not_merged(harness: Harness) -> None:
    first = Snapshot({"a": 5}, 50, tuple((("x", str(i)), (Version(i, i, "a", 1),)) for i in range(2000)))
    second = Snapshot({"a": 6}, 60, ((("y",), (Version("only", 60, "a", 6),)),))
    harness.store.save_snapshot(first)
    harness.store.save_snapshot(second)
    store = harness.reopen()
    assert store.load().snapshot == second
    assert store.stats()["snapshot_entries"] == 1


def test_save_snapshot_deletes_exactly_the_covered_ops(harness: Harness) -> None:
    log = [op(o, s) for s in range(1, 8) for o in ("a", "b", "c")]
    harness.store.append(log[:10])
    harness.store.append(log[10:])
    vv = {"a": 4, "b": 0, "d": 9}  # c absent: none of c's ops is covered
    harness.store.save_snapshot(Snapshot(vv, 0, ()))
    expected = [o for o in log if o.seq > vv.get(o.origin, 0)]
    assert harness.store.load().ops == expected
    assert harness.store.stats()["log_ops"] == len(expected)
    store = harness.reopen()
    assert store.load().ops == expected
    assert store.stats()["log_ops"] == len(expected)
    # ops appended after a snapshot stay, even when it covers them (restore skips those)
    store.append([op("a", 2), op("a", 8)])
    assert store.load().ops == [*expected, op("a", 2), op("a", 8)]


def test_hlc_is_the_highest_ever_persisted(harness: Harness) -> None:
    harness.store.append([op("a", 1, hlc=500), op("a", 2, hlc=300)])
    assert harness.store.load().hlc == 500
    harness.store.append([op("b", 1, hlc=900)])
    # a snapshot with a lower clock drops the op that held the highest hlc
    harness.store.save_snapshot(Snapshot({"a": 2, "b": 1}, 100, ()))
    store = harness.reopen()
    loaded = store.load()
    assert loaded.ops == []
    assert loaded.hlc == 900
    assert store.stats()["hlc"] == 900
    store.save_snapshot(Snapshot({"a": 2, "b": 1}, 1000, ()))
    assert harness.reopen().load().hlc == 1000
    # a later snapshot with a lower clock does not lower the mark either
    harness.store.save_snapshot(Snapshot({"a": 2, "b": 1}, 10, ()))
    store = harness.reopen()
    assert store.load().hlc == 1000 and store.stats()["hlc"] == 1000


def test_peers_round_trip_and_replace(harness: Harness) -> None:
    harness.store.save_peers({"b": ("tcp://127.0.0.1:7002",), "c": ["ipc:///tmp/c", "tcp://[::1]:7003"]})
    store = harness.reopen()
    assert store.load().peers == {"b": ("tcp://127.0.0.1:7002",), "c": ("ipc:///tmp/c", "tcp://[::1]:7003")}
    store.save_peers({"d": ()})
    store = harness.reopen()
    assert store.load().peers == {"d": ()}
    assert store.stats()["peers"] == 1


def test_meta_round_trip(harness: Harness) -> None:
    harness.store.set_meta("created", "2024")
    harness.store.set_meta("name", "first")
    harness.store.set_meta("name", "second ✓")
    store = harness.reopen()
    assert store.load().meta == {"created": "2024", "name": "second ✓"}
    assert store.stats()["meta_keys"] == 2


def test_bounds_and_bad_arguments(harness: Harness) -> None:
    store = harness.store
    with pytest.raises(StorageLimitError):
        store.set_meta("k" * 300, "v")
    with pytest.raises(StorageLimitError):
        store.set_meta("k", "v" * ((1 << 20) + 1))
    with pytest.raises(StorageArgumentError):
        store.set_meta("k", 1)  # type: ignore[arg-type]
    with pytest.raises(StorageLimitError):
        store.save_peers({"b": ["tcp://x"] * 65})
    with pytest.raises(StorageLimitError):
        store.save_peers({"b": ["x" * 2000]})
    with pytest.raises(StorageArgumentError, match="wrap it"):
        store.save_peers({"b": "tcp://127.0.0.1:1"})
    with pytest.raises(ValueError):
        store.save_peers({"": ()})
    loaded = harness.reopen().load()
    assert loaded.meta == {} and loaded.peers == {}


def test_closed_store_refuses_everything(harness: Harness) -> None:
    store = harness.store
    store.close()
    store.close()  # idempotent
    calls = [
        store.load,
        lambda: store.append([op("a", 1)]),
        lambda: store.append([]),
        lambda: store.save_snapshot(Snapshot({}, 0, ())),
        lambda: store.save_peers({}),
        lambda: store.set_meta("k", "v"),
        store.stats,
    ]
    for call in calls:
        with pytest.raises(StoreClosed, match="closed"):
            call()


def test_open_store_picks_the_kind(tmp_path: Path) -> None:
    mem = open_store(None, "a")
    assert isinstance(mem, MemoryStore)
    mem.close()
    disk = open_store(tmp_path / "x", "a", durability="fsync")
    assert isinstance(disk, SqliteStore)
    disk.close()
    with pytest.raises(ValueError, match="'process' or 'fsync'"):
        open_store(tmp_path / "y", "a", durability="sometimes")
    with pytest.raises(ValueError, match="node_id"):
        open_store(None, "")


# ---------------------------------------------------------------- property test

SEG = st.sampled_from(["x", "y", "z"])
PATHS = st.lists(SEG, min_size=1, max_size=3).map(tuple)
VALUES = st.one_of(
    st.integers(-5, 5),
    st.text(max_size=3),
    st.lists(st.integers(0, 3) | st.lists(st.booleans(), max_size=2), max_size=3),
    st.fixed_dictionaries({"x": st.integers(0, 3), "y": st.lists(st.integers(0, 3), max_size=2)}),
    st.just({}),
)


ACTIONS = (
    *("put", "put", "put", "remove", "peer", "deliver", "deliver", "flush", "flush"),
    *("checkpoint", "checkpoint", "snap", "snap", "restart"),
)


def _drive(data: st.DataObject, tmp: Path | None) -> None:
    """Node "a" persists everything it applies (own writes and peers' ops, in
    apply order), sometimes in batches, checkpoints and restarts midway; the
    replica restored from the store equals the live one."""

    def open_() -> Store:
        if tmp is None:
            return MemoryStore("a")
        return SqliteStore(tmp, "a", snapshot_chunk_bytes=256)

    a, peers = Replica("a"), [Replica("b"), Replica("c")]
    sent: list[Op] = []
    unflushed: list[Op] = []
    store = open_()
    stale: Snapshot | None = None
    wall = T
    try:
        for _ in range(data.draw(st.integers(1, 60), label="steps")):
            wall += data.draw(st.integers(0, 2))
            action = data.draw(
                st.sampled_from(ACTIONS)
            )
            if action == "put":
                unflushed.append(a.put(data.draw(PATHS), data.draw(VALUES), wall))
            elif action == "remove":
                unflushed.append(a.remove(data.draw(PATHS), wall))
            elif action == "peer":
                p = data.draw(st.sampled_from(peers))
                if sent and data.draw(st.booleans()):
                    p.receive(data.draw(st.sampled_from(sent)))
                w = p.put(data.draw(PATHS), data.draw(VALUES), wall) if data.draw(st.booleans()) else p.remove(data.draw(PATHS), wall)
                sent.append(w)
            elif action == "deliver" and sent:
                unflushed.extend(a.receive(data.draw(st.sampled_from(sent))))
            elif action == "flush":
                store.append(unflushed)
                unflushed = []
            elif action == "snap":  # a snapshot taken now and saved later, behind the log
                stale = a.snapshot()
            elif action == "checkpoint":
                if data.draw(st.booleans()):  # the node's order; the other order must work too
                    store.append(unflushed)
                    unflushed = []
                if stale is not None and data.draw(st.booleans()):
                    store.save_snapshot(stale)  # covers only part of the log
                else:
                    store.save_snapshot(a.snapshot())
                stale = None
            elif action == "restart":  # a MemoryStore lives on; the replica restarts from it
                store.append(unflushed)
                unflushed = []
                if tmp is not None:
                    store.close()
                    store = open_()
                loaded = store.load()
                back = Replica.restore("a", loaded.snapshot, loaded.ops, hlc=loaded.hlc)
                assert back.digest() == a.digest()
                a, stale = back, None
        store.append(unflushed)
        if tmp is not None:
            store.close()
            store = open_()
        loaded = store.load()
    finally:
        store.close()
    restored = Replica.restore("a", loaded.snapshot, loaded.ops, hlc=loaded.hlc)
    assert restored.digest() == a.digest()
    assert restored.get(()) == a.get(())
    assert restored.seq == a.seq
    assert restored.clock.last >= a.clock.last
    assert loaded.hlc >= max((o.hlc for o in loaded.ops), default=0)
    # the next write does not reuse a dot and stamps above everything persisted
    nxt = restored.put("x", 1, T)
    assert nxt.seq == a.seq + 1 and nxt.hlc > loaded.hlc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_restore_from_memory_store_equals_replica(data: st.DataObject) -> None:
    _drive(data, None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_restore_from_sqlite_store_equals_replica(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _drive(data, Path(tmp))
