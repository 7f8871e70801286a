"""What only the SQLite store does: files, locking, format checks, pragmas, failures."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from statesync.core import PUT, Op, Snapshot, Version
from statesync.storage import (
    DB_NAME,
    DataDirInUse,
    DataDirMismatch,
    Durability,
    SqliteStore,
    StorageError,
)


def op(seq: int, hlc: int | None = None) -> Op:
    return Op("a", seq, seq if hlc is None else hlc, ("k", str(seq)), PUT, [seq], ())


def raw(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / DB_NAME, isolation_level=None)


def test_creates_missing_dirs(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b" / "c"
    with SqliteStore(d, "n") as store:
        store.append([op(1)])
    assert (d / DB_NAME).is_file() and (d / "LOCK").is_file()


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StorageError, match="not a directory"):
        SqliteStore(f, "n")
    with pytest.raises(StorageError, match="cannot create data dir"):
        SqliteStore(f / "sub", "n")


@pytest.mark.parametrize(("durability", "synchronous"), [(Durability.PROCESS, 1), (Durability.FSYNC, 2)])
def test_durability_modes_set_the_pragmas(tmp_path: Path, durability: Durability, synchronous: int) -> None:
    with SqliteStore(tmp_path, "n", durability=durability) as store:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        store.append([op(1), op(2)])
    # the mode is a property of the connection, not of the files: reopen in the other one
    other = Durability.FSYNC if durability is Durability.PROCESS else Durability.PROCESS
    with SqliteStore(tmp_path, "n", durability=other) as store:
        assert [o.seq for o in store.load().ops] == [1, 2]


def test_second_store_on_one_dir_is_refused_until_closed(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path, "n")
    with pytest.raises(DataDirInUse, match="in use by another store open in this process"):
        SqliteStore(tmp_path, "n")
    first.append([op(1)])
    first.close()
    with SqliteStore(tmp_path, "n") as again:
        assert [o.seq for o in again.load().ops] == [1]


def test_other_node_id_is_a_mismatch(tmp_path: Path) -> None:
    SqliteStore(tmp_path, "alpha").close()
    with pytest.raises(DataDirMismatch, match="belongs to node 'alpha', not 'beta'; open it with node_id='alpha'"):
        SqliteStore(tmp_path, "beta")
    SqliteStore(tmp_path, "alpha").close()  # the refusal did not keep the lock


@pytest.mark.parametrize(("version", "hint"), [(2, "upgrade statesync"), ("bogus", "restore it")])
def test_unknown_format_is_a_mismatch(tmp_path: Path, version: object, hint: str) -> None:
    SqliteStore(tmp_path, "n").close()
    with raw(tmp_path) as conn:
        conn.execute("UPDATE store_meta SET value = ? WHERE key = 'format_version'", (version,))
    with pytest.raises(DataDirMismatch, match=hint):
        SqliteStore(tmp_path, "n")


def test_foreign_files_are_a_mismatch(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with sqlite3.connect(other / DB_NAME) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(DataDirMismatch, match="not a statesync store"):
        SqliteStore(other, "n")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / DB_NAME).write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(DataDirMismatch, match="not a statesync store"):
        SqliteStore(junk, "n")
    SqliteStore(junk / "fresh", "n").close()


def test_failed_batch_writes_nothing(tmp_path: Path) -> None:
    with SqliteStore(tmp_path, "n") as store:
        store.append([op(1)])
        bad_hlc = op(4, hlc=2**64 - 1)  # encodable, but beyond SQLite's 64-bit signed integers
        with pytest.raises(StorageError, match="nothing of it was written"):
            store.append([op(2), op(3), bad_hlc])
        with pytest.raises(StorageError, match="nothing of it was written"):
            store.append([bad_hlc])
        unencodable = Op("a", 5, 5, ("k",), PUT, {1, 2}, ())  # type: ignore[arg-type]
        with pytest.raises(StorageError, match="cannot be encoded"):
            store.append([op(5), unencodable])
        with pytest.raises(StorageError, match="cannot be encoded"):
            store.save_snapshot(Snapshot({"a": 1}, 1, ((("k",), (Version({1}, 1, "a", 1),)),)))  # type: ignore[arg-type]
        assert [o.seq for o in store.load().ops] == [1]
        assert store.load().snapshot is None
        assert store.stats()["log_ops"] == 1
        store.append([op(2)])  # the store is still usable
        assert [o.seq for o in store.load().ops] == [1, 2]


def test_corrupt_rows_are_reported(tmp_path: Path) -> None:
    with SqliteStore(tmp_path, "n") as store:
        store.append([op(1), op(2)])
    with raw(tmp_path) as conn:
        conn.execute("UPDATE ops SET body = x'c1' WHERE seq = 2")
    with SqliteStore(tmp_path, "n") as store, pytest.raises(StorageError, match="op log row 2 is unreadable"):
        store.load()


def test_snapshot_chunk_count_is_checked(tmp_path: Path) -> None:
    entries = tuple((("k", str(i)), (Version(i, i, "a", 1),)) for i in range(500))
    with SqliteStore(tmp_path, "n", snapshot_chunk_bytes=512) as store:
        store.save_snapshot(Snapshot({"a": 1}, 1, entries))
        chunks = store.stats()["snapshot_chunks"]
    assert chunks > 5
    with raw(tmp_path) as conn:
        sizes = [n for (n,) in conn.execute("SELECT length(body) FROM snapshot_chunks")]
        assert len(sizes) == chunks and max(sizes) <= 1024
        conn.execute("DELETE FROM snapshot_chunks WHERE idx = 3")
    with SqliteStore(tmp_path, "n") as store, pytest.raises(StorageError, match="snapshot is unreadable"):
        store.load()


def test_stats_count_bytes_on_disk(tmp_path: Path) -> None:
    with SqliteStore(tmp_path, "n") as store:
        before = store.stats()["disk_bytes"]
        store.append([op(i) for i in range(1, 2001)])
        after = store.stats()
    assert before > 0 and after["disk_bytes"] > before
    assert after["log_ops"] == 2000 and after["hlc"] == 2000


def test_lock_file_names_the_holder(tmp_path: Path) -> None:
    with SqliteStore(tmp_path, "n"):
        assert (tmp_path / "LOCK").read_text().strip() == str(os.getpid())
