"""Typed ops and typed values survive the SQLite op log and snapshots."""

from __future__ import annotations

from pathlib import Path

from statesync.core import Replica
from statesync.storage import SqliteStore

MS = 1_700_000_000_000


def test_typed_ops_and_snapshots_survive_a_restart(tmp_path: Path) -> None:
    a = Replica("a")
    a.text_insert("t", 0, "hello", MS)
    a.list_insert("l", 0, [{"k": [1, 2]}, "x"], MS)
    a.list_move("l", 0, 1, MS)
    a.counter_add("c", 4, MS)
    a.aw_add("s", "tag", MS)
    with SqliteStore(tmp_path, "a") as store:
        store.append(list(a.log))
        store.save_snapshot(a.snapshot())
        a.text_insert("t", 5, " world", MS)
        a.aw_remove("s", "tag", MS)
        store.append([op for op in a.log if op.seq > 5])
    with SqliteStore(tmp_path, "a") as store:
        loaded = store.load()
    assert loaded.snapshot is not None
    b = Replica.restore("a", loaded.snapshot, loaded.ops)
    assert b.get("") == a.get("") == {"t": "hello world", "l": ["x", {"k": [1, 2]}], "c": 4, "s": []}
    b.text_insert("t", 0, ">", MS)  # the restored text keeps editing
    assert b.get("t") == ">hello world"
