"""Storage: the node's durable op log, snapshot, known peers and metadata.

Two stores share one interface (:class:`Store`): :class:`SqliteStore`
(SQLite in WAL mode under the node's data dir) and :class:`MemoryStore`
(tests and embedded use). They are synchronous and blocking; the node calls
them from one worker thread. Nothing here knows of sockets or trio.

The contract with the node: ``append`` the replicator's ``persist`` ops (and
``save_snapshot`` its ``snapshot``) and only then send messages or complete
writes. After a crash, ``load()`` returns every op whose ``append`` returned,
in append order, and nothing half-written; ``Replica.restore`` on it rebuilds
the replica, own seq and clock included, so no dot is ever reused.

What is proven and what is not: the tests SIGKILL real writer processes at
random points of a stream of appends and snapshot saves, in both durability
modes, and find every op whose ``append`` returned, every snapshot whose
``save_snapshot`` returned, and no half-written batch. That is the whole
guarantee of ``Durability.PROCESS``. ``Durability.FSYNC`` adds survival of
power loss and kernel crashes; it rests on SQLite's ``synchronous=FULL``
(an fsync of the WAL at every commit) and on a disk that honours flushes, and
is not tested here: that needs a power cut or a fault-injecting block device.

Disk use: the op log grows until the node saves a snapshot (which drops the
ops it covers); the space of a replaced snapshot is reused by the next one
rather than given back; the WAL grows to the size of the largest transaction
(a whole snapshot) and is cut back to 64 MiB after each checkpoint.
"""

from __future__ import annotations

from statesync.errors import (
    DataDirInUse,
    DataDirMismatch,
    StorageArgumentError,
    StorageError,
    StorageLimitError,
    StoreClosed,
)
from statesync.storage._memory import MemoryStore
from statesync.storage._open import open_store
from statesync.storage._sqlite import DB_NAME, SqliteStore
from statesync.storage._store import (
    FORMAT_VERSION,
    SNAPSHOT_CHUNK_BYTES,
    Durability,
    Loaded,
    Store,
)

__all__ = [
    "DB_NAME",
    "FORMAT_VERSION",
    "SNAPSHOT_CHUNK_BYTES",
    "DataDirInUse",
    "DataDirMismatch",
    "Durability",
    "Loaded",
    "MemoryStore",
    "SqliteStore",
    "StorageArgumentError",
    "StorageError",
    "StorageLimitError",
    "Store",
    "StoreClosed",
    "open_store",
]
