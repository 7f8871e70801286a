"""The durable store: SQLite in WAL mode under the node's data dir.

Layout of ``data_dir``: ``statesync.db`` (plus SQLite's ``-wal`` and ``-shm``
files) and ``LOCK`` (held with ``flock`` while a store is open).

Tables:

- ``store_meta(key, value)``: ``format_version``, ``node_id``, ``hlc`` (the
  highest hlc of ops dropped by snapshots and of snapshots);
- ``ops(id, origin, seq, hlc, body)``: the op log in append order (``id``), one
  msgpack-encoded op per row;
- ``snapshot(id=0, vv, hlc, entries, chunks)`` and
  ``snapshot_chunks(idx, entries, body)``: the snapshot, as msgpack arrays of
  entries of about ``SNAPSHOT_CHUNK_BYTES`` each;
- ``peers(node_id, endpoints)`` and ``meta(key, value)``;
- ``client_keys(id, client, seq, owner, fingerprint, reply)``: the idempotency
  keys of recent client writes, each written in the same transaction as the
  write's ops (:meth:`SqliteStore.stage_client_key`), the newest
  ``CLIENT_KEYS_MAX`` kept.

Every write is one SQLite transaction, so a crash leaves each ``append`` or
``save_snapshot`` either wholly there or wholly absent.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final, NoReturn

from statesync.core import Op, Snapshot, SnapshotEntry
from statesync.errors import (
    DataDirMismatch,
    StorageArgumentError,
    StorageError,
    StorageFull,
    StoreClosed,
)
from statesync.storage._codec import (
    DecodeError,
    decode_endpoints,
    decode_entries,
    decode_op,
    decode_vv,
    encode_chunks,
    gc_paused,
    make_packer,
)
from statesync.storage._lock import DirLock
from statesync.storage._store import (
    FORMAT_VERSION,
    META_KEYS_MAX,
    SNAPSHOT_CHUNK_BYTES,
    ClosingStore,
    Durability,
    Loaded,
    as_durability,
    check_meta,
    check_node_id,
    check_peers,
    meta_count_error,
)

DB_NAME: Final = "statesync.db"
_BUSY_TIMEOUT_MS: Final = 5_000
_CACHE_KIB: Final = 16 << 10
_PAGES_MAX: Final = 4_294_967_294
"""SQLite's own bound on max_page_count: no bound but the disk's."""
_NEARLY_FULL_BYTES: Final = 1 << 20
"""An I/O error while less than this is free is taken for a full disk."""
_WAL_KEEP_BYTES: Final = 64 << 20
"""After a checkpoint, the WAL file is truncated to at most this size."""

_SCHEMA: Final = """
CREATE TABLE store_meta (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;
CREATE TABLE ops (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    vv BLOB NOT NULL,
    hlc INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    chunks INTEGER NOT NULL
);
CREATE TABLE snapshot_chunks (idx INTEGER PRIMARY KEY, entries INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE peers (node_id TEXT PRIMARY KEY, endpoints BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

CLIENT_KEYS_MAX: Final = 10_000
"""Idempotency keys of client writes a store keeps (the oldest go first)."""
STAGED_KEYS_MAX: Final = 100_000
"""Keys staged for ops not yet appended (a bound: a write that never commits leaves one)."""
_KEYS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS client_keys (
    id INTEGER PRIMARY KEY,
    client TEXT NOT NULL,
    seq INTEGER NOT NULL,
    owner TEXT,
    fingerprint BLOB NOT NULL,
    reply TEXT NOT NULL,
    UNIQUE (client, seq)
)
"""
_INSERT_KEY: Final = (
    "INSERT OR REPLACE INTO client_keys (client, seq, owner, fingerprint, reply) VALUES (?, ?, ?, ?, ?)"
)
ClientKeyRow = tuple[str, int, "str | None", bytes, str]
"""(client, seq, owner, fingerprint, reply): one remembered client write."""

_COVERED: Final = "seq <= coalesce((SELECT n FROM temp.snap_vv v WHERE v.origin = ops.origin), 0)"
_INSERT_OP: Final = "INSERT INTO ops (origin, seq, hlc, body) VALUES (?, ?, ?, ?)"


class SqliteStore(ClosingStore):
    """A node's durable store under ``data_dir`` (created if missing).

    Holds the data dir's lock from construction to :meth:`close`; raises
    :class:`DataDirInUse` if another store holds it, :class:`DataDirMismatch`
    if the dir belongs to another node id or format.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        node_id: str,
        *,
        durability: Durability | str = Durability.PROCESS,
        snapshot_chunk_bytes: int = SNAPSHOT_CHUNK_BYTES,
    ) -> None:
        self.node_id = check_node_id(node_id)
        self.durability = as_durability(durability)
        if snapshot_chunk_bytes < 1:
            raise StorageArgumentError(f"snapshot_chunk_bytes must be >= 1, got {snapshot_chunk_bytes}")
        self._chunk_bytes = snapshot_chunk_bytes
        self.data_dir = Path(data_dir)
        self.db_path = self.data_dir / DB_NAME
        _make_dir(self.data_dir)
        self._dir_lock = DirLock(self.data_dir)
        self._mutex = threading.Lock()
        self._pack: Callable[[object], bytes] = make_packer()
        self._staged_keys: dict[tuple[str, int], ClientKeyRow] = {}
        self._keys_lock = threading.Lock()
        self.client_keys_max = CLIENT_KEYS_MAX
        self._conn: sqlite3.Connection | None = None
        self._bytes_max: int | None = None
        try:
            self._conn = self._open()
            self._read_counters(self._conn)
        except BaseException:
            self._abandon()
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.data_dir)!r}, node_id={self.node_id!r}, durability={self.durability.value!r})"

    # ------------------------------------------------------------- opening

    def _open(self) -> sqlite3.Connection:
        existed = self.db_path.exists()
        try:
            conn = sqlite3.connect(
                self.db_path,
                isolation_level=None,
                check_same_thread=False,  # the node may open it in one thread and use it in another
                cached_statements=32,
            )
        except sqlite3.Error as e:
            raise StorageError(
                f"cannot open {self.db_path}: {e}; check the data dir's permissions"
            ) from e
        try:
            self._configure(conn)
            self._check_or_create(conn)
            conn.execute(_KEYS_SCHEMA)
        except BaseException:
            conn.close()
            raise
        if not existed and self.durability is Durability.FSYNC:
            _fsync_dir(self.data_dir)
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise DataDirMismatch(
                f"{self.db_path} is not a statesync store ({e}); move it away or choose another data_dir"
            ) from e
        if str(mode).lower() != "wal":
            raise StorageError(
                f"{self.db_path}: SQLite refused WAL mode (got {mode!r}); put the data dir on a local filesystem"
            )
        sync = "FULL" if self.durability is Durability.FSYNC else "NORMAL"
        conn.execute(f"PRAGMA synchronous = {sync}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_KEEP_BYTES}")
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS snap_vv (origin TEXT PRIMARY KEY, n INTEGER NOT NULL)"
        )

    def _check_or_create(self, conn: sqlite3.Connection) -> None:
        tables = {
            r[0] for r in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")
        }
        if not tables:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.executemany(
                    "INSERT INTO store_meta (key, value) VALUES (?, ?)",
                    [("format_version", FORMAT_VERSION), ("node_id", self.node_id), ("hlc", 0)],
                )
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return
        if "store_meta" not in tables:
            raise DataDirMismatch(
                f"{self.db_path} is an SQLite database but not a statesync store; "
                "move it away or choose another data_dir"
            )
        meta = dict(conn.execute("SELECT key, value FROM store_meta").fetchall())
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            hint = "upgrade statesync" if newer else "restore it from a backup or a peer"
            raise DataDirMismatch(
                f"{self.db_path} has storage format {version!r}, this statesync reads format "
                f"{FORMAT_VERSION}; {hint}, or choose another data_dir"
            )
        stored = meta.get("node_id")
        if stored != self.node_id:
            raise DataDirMismatch(
                f"data dir {self.data_dir} belongs to node {stored!r}, not {self.node_id!r}; "
                f"open it with node_id={stored!r} or choose another data_dir"
            )

    def _read_counters(self, conn: sqlite3.Connection) -> None:
        """Read the figures ``stats`` reports (kept up to date in memory from here on)."""

        def one(sql: str) -> tuple[int, ...]:
            row: tuple[int, ...] = conn.execute(sql).fetchone()
            return row

        self._log_ops: int = one("SELECT count(*) FROM ops")[0]
        snap = one("SELECT entries, chunks, hlc FROM snapshot WHERE id = 0")
        self._snapshot_entries: int
        self._snapshot_chunks: int
        self._snapshot_entries, self._snapshot_chunks, snap_hlc = snap if snap else (0, 0, 0)
        self._meta_keys: int = one("SELECT count(*) FROM meta")[0]
        self._peers: int = one("SELECT count(*) FROM peers")[0]
        stored = int(one("SELECT value FROM store_meta WHERE key = 'hlc'")[0])
        self._hlc: int = max(stored, snap_hlc, one("SELECT max(hlc) FROM ops")[0] or 0)

    def _abandon(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
        self._dir_lock.release()

    # ------------------------------------------------------------- helpers

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """Hold the mutex and run a write transaction; wrap SQLite failures."""
        with self._mutex:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                self._fail(what, e)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                _rollback(conn)
                if isinstance(e, sqlite3.Error | OverflowError):
                    self._fail(what, e)
                raise

    def _live(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise StoreClosed(f"the store in {self.data_dir} is closed; open a new one")
        return conn

    def _fail(self, what: str, e: Exception) -> NoReturn:
        free = self.free_bytes()
        if _is_full(e, free):
            raise StorageFull(
                f"could not {what} in {self.db_path}: the disk is full ({free:,} bytes free under "
                f"{self.data_dir}); nothing of it was written: free space there",
                folder=str(self.data_dir),
                free_bytes=free,
            ) from e
        raise StorageError(
            f"could not {what} in {self.db_path}: {e}; nothing of it was written "
            "(check free space and permissions)"
        ) from e

    def _corrupt(self, what: str, e: Exception) -> NoReturn:
        raise StorageError(
            f"{self.db_path}: {what} is unreadable ({e}); the store is damaged: "
            "move the data dir away and let the node catch up from its peers"
        )

    # ----------------------------------------------------------------- API

    def load(self) -> Loaded:
        with self._mutex:
            conn = self._live()
            try:
                conn.execute("BEGIN")
                try:
                    with gc_paused():
                        return self._load(conn)
                finally:
                    _rollback(conn)
            except sqlite3.Error as e:
                raise StorageError(
                    f"could not read {self.db_path}: {e}; check the file's permissions"
                ) from e

    def _load(self, conn: sqlite3.Connection) -> Loaded:
        hlc = int(conn.execute("SELECT value FROM store_meta WHERE key = 'hlc'").fetchone()[0])
        snapshot = self._load_snapshot(conn)
        if snapshot is not None:
            hlc = max(hlc, snapshot.hlc)
        ops: list[Op] = []
        try:
            for (body,) in conn.execute("SELECT body FROM ops ORDER BY id"):
                ops.append(decode_op(body))
        except DecodeError as e:
            self._corrupt(f"op log row {len(ops) + 1}", e)
        if ops:
            hlc = max(hlc, *[op.hlc for op in ops])
        peers: dict[str, tuple[str, ...]] = {}
        try:
            for node_id, body in conn.execute("SELECT node_id, endpoints FROM peers"):
                peers[node_id] = decode_endpoints(body)
        except DecodeError as e:
            self._corrupt("the peer list", e)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return Loaded(
            node_id=self.node_id, snapshot=snapshot, ops=ops, hlc=hlc, peers=peers, meta=meta
        )

    def _load_snapshot(self, conn: sqlite3.Connection) -> Snapshot | None:
        head = conn.execute("SELECT vv, hlc, entries, chunks FROM snapshot WHERE id = 0").fetchone()
        if head is None:
            return None
        vv_body, snap_hlc, n_entries, n_chunks = head
        try:
            vv = decode_vv(vv_body)
        except DecodeError as e:
            self._corrupt("the snapshot's version vector", e)
        entries: list[SnapshotEntry] = []
        chunks = 0
        try:
            # one chunk (a few MB) in memory at a time, besides the decoded entries
            for (body,) in conn.execute("SELECT body FROM snapshot_chunks ORDER BY idx"):
                entries.extend(decode_entries(body))
                chunks += 1
        except DecodeError as e:
            self._corrupt(f"snapshot chunk {chunks}", e)
        if chunks != n_chunks or len(entries) != n_entries:
            self._corrupt(
                "the snapshot",
                ValueError(
                    f"{chunks} chunks and {len(entries)} entries stored, {n_chunks} and {n_entries} recorded"
                ),
            )
        return Snapshot(vv, snap_hlc, tuple(entries))

    def append(self, ops: Sequence[Op]) -> None:
        if not ops:
            self._live()
            return
        pack = self._pack
        try:
            rows = [(op.origin, op.seq, op.hlc, pack(op)) for op in ops]
        except (TypeError, ValueError, OverflowError) as e:
            raise StorageError(
                f"an op cannot be encoded for storage ({e}); nothing was written"
            ) from e
        keys = self._keys_for(ops) if self._staged_keys else None
        if len(rows) == 1 and not keys:
            # one statement is one transaction in autocommit mode: saves BEGIN/COMMIT
            with self._mutex:
                conn = self._live()
                try:
                    conn.execute(_INSERT_OP, rows[0])
                except (sqlite3.Error, OverflowError) as e:
                    self._fail("append an op", e)
                self._log_ops += 1
                self._hlc = max(self._hlc, rows[0][2])
            return
        try:
            with self._transaction(f"append {len(rows)} ops") as conn:
                conn.executemany(_INSERT_OP, rows)
                if keys:
                    self._write_keys(conn, [row for _, row in keys])
        except StorageError:
            if keys:  # nothing was written: the keys go with the ops when they are appended again
                with self._keys_lock:
                    self._staged_keys.update(keys)
            raise
        self._log_ops += len(rows)
        self._hlc = max(self._hlc, *[row[2] for row in rows])

    def save_snapshot(self, snapshot: Snapshot) -> None:
        vv = dict(snapshot.vv)
        entries = snapshot.entries
        pack = self._pack
        try:
            vv_body = pack(vv)
        except (TypeError, ValueError, OverflowError) as e:
            raise StorageError(f"a snapshot's vector cannot be encoded ({e})") from e
        n_chunks = 0
        with self._transaction(f"save a snapshot of {len(entries)} paths") as conn:
            # what the snapshot replaces goes first, so that a nearly full store reuses its pages
            conn.execute("DELETE FROM temp.snap_vv")
            conn.executemany("INSERT INTO temp.snap_vv (origin, n) VALUES (?, ?)", vv.items())
            # keep the highest hlc of what is about to go: the covered ops and the old
            # snapshot (the new snapshot's own hlc is in its row)
            conn.execute(
                "UPDATE store_meta SET value = max(value,"
                f" coalesce((SELECT max(hlc) FROM ops WHERE {_COVERED}), 0),"
                " coalesce((SELECT hlc FROM snapshot WHERE id = 0), 0)) WHERE key = 'hlc'"
            )
            deleted = conn.execute(f"DELETE FROM ops WHERE {_COVERED}").rowcount
            conn.execute("DELETE FROM snapshot_chunks")
            try:
                for count, body in encode_chunks(pack, entries, self._chunk_bytes):
                    conn.execute(
                        "INSERT INTO snapshot_chunks (idx, entries, body) VALUES (?, ?, ?)",
                        (n_chunks, count, body),
                    )
                    n_chunks += 1
            except (TypeError, ValueError, OverflowError) as e:
                raise StorageError(
                    f"a snapshot entry cannot be encoded ({e}); nothing was written"
                ) from e
            conn.execute(
                "INSERT OR REPLACE INTO snapshot (id, vv, hlc, entries, chunks) VALUES (0, ?, ?, ?, ?)",
                (vv_body, snapshot.hlc, len(entries), n_chunks),
            )
        self._log_ops -= deleted
        self._hlc = max(self._hlc, snapshot.hlc)
        self._snapshot_entries = len(entries)
        self._snapshot_chunks = n_chunks

    def save_peers(self, peers: Mapping[str, Sequence[str]]) -> None:
        checked = check_peers(peers)
        pack = self._pack
        rows = [(node_id, pack(eps)) for node_id, eps in checked.items()]
        with self._transaction(f"save {len(rows)} peers") as conn:
            conn.execute("DELETE FROM peers")
            conn.executemany("INSERT INTO peers (node_id, endpoints) VALUES (?, ?)", rows)
        self._peers = len(rows)

    def set_meta(self, key: str, value: str) -> None:
        check_meta(key, value)
        with self._transaction(f"set meta {key!r}") as conn:
            exists = conn.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone()
            if exists is None and self._meta_keys >= META_KEYS_MAX:
                raise meta_count_error(self._meta_keys)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        if exists is None:
            self._meta_keys += 1

    def free_bytes(self) -> int:
        """Bytes a write may still use: free on the disk, or under ``limit_bytes``'s bound if lower."""
        try:
            free = shutil.disk_usage(self.data_dir).free
        except OSError:
            free = 0
        conn = self._conn
        if conn is not None and self._bytes_max is not None:
            with suppress(sqlite3.Error):
                page, pages, unused = (
                    conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_size", "page_count", "freelist_count")
                )
                free = min(free, max(0, self._bytes_max - (pages - unused) * page))
        return int(free)

    def limit_bytes(self, bytes_max: int | None) -> None:
        """Bound the database file at about ``bytes_max`` (None: no bound but the disk's).

        Past it a write fails as on a full disk (:class:`StorageFull`). For
        operators who share a disk, and for tests of the disk-full alarm.
        """
        with self._mutex:
            conn = self._live()
            page = int(conn.execute("PRAGMA page_size").fetchone()[0])
            pages = _PAGES_MAX if bytes_max is None else max(1, bytes_max // page)
            conn.execute(f"PRAGMA max_page_count = {pages}")
            self._bytes_max = bytes_max

    def stats(self) -> dict[str, int]:
        with self._mutex:
            self._live()
            disk = 0
            for suffix in ("", "-wal", "-shm"):
                with suppress(OSError):
                    disk += os.stat(f"{self.db_path}{suffix}").st_size
            return {
                "log_ops": self._log_ops,
                "snapshot_entries": self._snapshot_entries,
                "snapshot_chunks": self._snapshot_chunks,
                "peers": self._peers,
                "meta_keys": self._meta_keys,
                "hlc": self._hlc,
                "disk_bytes": disk,
            }

    def close(self) -> None:
        with self._mutex:
            self._abandon()


    # ------------------------------------------------------ client keys

    def stage_client_key(self, dot: tuple[str, int], row: ClientKeyRow) -> None:
        """Remember ``row`` with the op named ``dot``: written in the transaction that appends it."""
        with self._keys_lock:
            if len(self._staged_keys) >= STAGED_KEYS_MAX:
                self._staged_keys.pop(next(iter(self._staged_keys)))
            self._staged_keys[dot] = row

    def _keys_for(self, ops: Sequence[Op]) -> list[tuple[tuple[str, int], ClientKeyRow]]:
        with self._keys_lock:
            staged = self._staged_keys
            dots = [(op.origin, op.seq) for op in ops]
            return [(dot, row) for dot in dots if (row := staged.pop(dot, None)) is not None]

    def _write_keys(self, conn: sqlite3.Connection, rows: list[ClientKeyRow]) -> None:
        conn.executemany(_INSERT_KEY, rows)
        conn.execute(
            "DELETE FROM client_keys WHERE id <= (SELECT max(id) FROM client_keys) - ?", (self.client_keys_max,)
        )

    def load_client_keys(self) -> list[ClientKeyRow]:
        """The remembered client writes, oldest first (at most ``client_keys_max``)."""
        with self._mutex:
            conn = self._live()
            try:
                rows = conn.execute(
                    "SELECT client, seq, owner, fingerprint, reply FROM client_keys ORDER BY id DESC LIMIT ?",
                    (self.client_keys_max,),
                ).fetchall()
            except sqlite3.Error as e:
                raise StorageError(f"could not read the client keys in {self.db_path}: {e}") from e
        return [(str(c), int(q), o, bytes(f), str(r)) for c, q, o, f, r in reversed(rows)]


def _is_full(e: Exception, free_bytes: int) -> bool:
    """Whether a failed write failed for want of space (SQLite's SQLITE_FULL, ENOSPC, or an
    I/O error while almost nothing is free)."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    code = getattr(e, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return False
    primary = code & 0xFF
    return primary == sqlite3.SQLITE_FULL or (primary == sqlite3.SQLITE_IOERR and free_bytes < _NEARLY_FULL_BYTES)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # an error here means the transaction is gone already (SQLite rolled it back)
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise StorageError(
            f"data dir {path} exists and is not a directory; choose another data_dir"
        ) from exc
    except OSError as e:
        raise StorageError(
            f"cannot create data dir {path}: {e.strerror}; choose a writable data_dir"
        ) from e
    if not path.is_dir():
        raise StorageError(f"data dir {path} is not a directory; choose another data_dir")


def _fsync_dir(path: Path) -> None:
    """Make the creation of files in ``path`` durable (FSYNC mode)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
