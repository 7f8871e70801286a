"""An in-memory store with the semantics of the SQLite one, for tests and embedded use."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from statesync.core import Op, Snapshot
from statesync.errors import StoreClosed
from statesync.storage._store import (
    META_KEYS_MAX,
    ClosingStore,
    Loaded,
    check_meta,
    check_node_id,
    check_peers,
    meta_count_error,
)


class MemoryStore(ClosingStore):
    """Keeps everything in the object: "durable" for the life of the store.

    Ops and snapshots are kept by reference, not copied or encoded: they are
    immutable by the core's convention (their values are never mutated).
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = check_node_id(node_id)
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self._snapshot: Snapshot | None = None
        self._hlc = 0
        self._peers: dict[str, tuple[str, ...]] = {}
        self._meta: dict[str, str] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStore(node_id={self.node_id!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the memory store of node {self.node_id!r} is closed; open a new one")

    def load(self) -> Loaded:
        with self._lock:
            self._check_open()
            snap = self._snapshot
            if snap is not None:
                snap = Snapshot(dict(snap.vv), snap.hlc, snap.entries)
            return Loaded(
                node_id=self.node_id,
                snapshot=snap,
                ops=list(self._ops),
                hlc=self._hlc,
                peers=dict(self._peers),
                meta=dict(self._meta),
            )

    def append(self, ops: Sequence[Op]) -> None:
        with self._lock:
            self._check_open()
            if not ops:
                return
            hlc = max(op.hlc for op in ops)
            self._ops.extend(ops)
            self._hlc = max(self._hlc, hlc)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._check_open()
            vv = dict(snapshot.vv)
            hlc = max(self._hlc, snapshot.hlc)
            kept: list[Op] = []
            for op in self._ops:
                if op.seq > vv.get(op.origin, 0):
                    kept.append(op)
                elif op.hlc > hlc:
                    hlc = op.hlc
            self._ops = kept
            self._snapshot = Snapshot(vv, snapshot.hlc, tuple(snapshot.entries))
            self._hlc = hlc

    def save_peers(self, peers: Mapping[str, Sequence[str]]) -> None:
        checked = check_peers(peers)
        with self._lock:
            self._check_open()
            self._peers = checked

    def set_meta(self, key: str, value: str) -> None:
        check_meta(key, value)
        with self._lock:
            self._check_open()
            if key not in self._meta and len(self._meta) >= META_KEYS_MAX:
                raise meta_count_error(len(self._meta))
            self._meta[key] = value

    def stats(self) -> dict[str, int]:
        with self._lock:
            self._check_open()
            snap = self._snapshot
            return {
                "log_ops": len(self._ops),
                "snapshot_entries": len(snap.entries) if snap is not None else 0,
                "snapshot_chunks": 0,
                "peers": len(self._peers),
                "meta_keys": len(self._meta),
                "hlc": self._hlc,
                "disk_bytes": 0,
            }

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._ops = []
            self._snapshot = None
