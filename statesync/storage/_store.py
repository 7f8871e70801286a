"""What every store provides: the ``Store`` protocol, ``Loaded``, durability modes, bounds."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Final, Protocol, Self, runtime_checkable

import attrs

from statesync.core import Op, Snapshot
from statesync.errors import StorageArgumentError, StorageLimitError

FORMAT_VERSION: Final = 1
"""The on-disk format this version writes and reads."""

PEERS_MAX: Final = 10_000
ENDPOINTS_PER_PEER_MAX: Final = 64
ENDPOINT_CHARS_MAX: Final = 1024
NODE_ID_CHARS_MAX: Final = 1024
META_KEYS_MAX: Final = 10_000
META_KEY_CHARS_MAX: Final = 256
META_VALUE_CHARS_MAX: Final = 1 << 20
SNAPSHOT_CHUNK_BYTES: Final = 4 << 20
"""Target size of one stored snapshot chunk (a chunk stays under twice this)."""


class Durability(enum.Enum):
    """What a committed write survives.

    ``PROCESS`` (default): a crash of the process, SIGKILL included, loses no
    write whose ``append`` returned (SQLite WAL, ``synchronous=NORMAL``: the
    commit is in the operating system's page cache before ``append`` returns).
    A power loss or kernel crash may lose the last commits (never corrupt the
    store).

    ``FSYNC``: also survives power loss and kernel crashes, provided the disk
    honours flushes (``synchronous=FULL``: an fsync at every commit). Slower:
    one fsync per ``append``, so batch writes.
    """

    PROCESS = "process"
    FSYNC = "fsync"


def as_durability(value: Durability | str) -> Durability:
    try:
        return Durability(value)
    except ValueError as exc:
        raise StorageArgumentError(
            f"durability must be 'process' or 'fsync', got {value!r}"
        ) from exc


@attrs.frozen
class Loaded:
    """What a store holds, as :meth:`Store.load` returns it."""

    node_id: str
    snapshot: Snapshot | None
    ops: list[Op]
    """Ops appended after the snapshot, in append order (a causal order)."""
    hlc: int
    """The highest hybrid-clock stamp ever persisted; the clock restarts above it."""
    peers: dict[str, tuple[str, ...]]
    meta: dict[str, str]


class ClosingStore:
    """What both stores share: ``with store:`` closes the store when the block ends."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


@runtime_checkable
class Store(Protocol):
    """Durable (or, for :class:`MemoryStore`, in-memory) state of one node.

    Synchronous and blocking; one caller at a time (the node calls it from one
    worker thread). Every method raises :class:`StoreClosed` after ``close``.
    """

    def load(self) -> Loaded:
        """Everything stored: the snapshot, the ops after it, hlc, peers, meta."""
        ...

    def append(self, ops: Sequence[Op]) -> None:
        """Log ``ops`` in one transaction, durable per the mode on return; empty: no-op."""
        ...

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the snapshot and drop the logged ops it covers, atomically."""
        ...

    def save_peers(self, peers: Mapping[str, Sequence[str]]) -> None:
        """Replace the known peers (node id -> endpoints)."""
        ...

    def set_meta(self, key: str, value: str) -> None: ...

    def stats(self) -> dict[str, int]:
        """``log_ops``, ``snapshot_entries``, ``disk_bytes`` and more; cheap to call."""
        ...

    def close(self) -> None:
        """Release the store (idempotent)."""
        ...


def check_node_id(node_id: object) -> str:
    if not isinstance(node_id, str) or not node_id:
        raise StorageArgumentError(f"node_id must be a non-empty str, got {node_id!r}")
    if len(node_id) > NODE_ID_CHARS_MAX:
        raise StorageLimitError(
            f"node_id has {len(node_id)} characters, more than {NODE_ID_CHARS_MAX}; use a shorter id"
        )
    return node_id


def check_peers(peers: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Validate ``peers`` against the bounds; return a copy with tuple endpoints."""
    if len(peers) > PEERS_MAX:
        raise StorageLimitError(f"{len(peers)} peers exceed the bound of {PEERS_MAX}")
    out: dict[str, tuple[str, ...]] = {}
    for node_id, endpoints in peers.items():
        check_node_id(node_id)
        if isinstance(endpoints, str):
            raise StorageArgumentError(
                f"peer {node_id!r}: endpoints must be a sequence of str, not one str; wrap it: ({endpoints!r},)"
            )
        eps = tuple(endpoints)
        if len(eps) > ENDPOINTS_PER_PEER_MAX:
            raise StorageLimitError(
                f"peer {node_id!r} has {len(eps)} endpoints, more than {ENDPOINTS_PER_PEER_MAX}"
            )
        for ep in eps:
            if not isinstance(ep, str):
                raise StorageArgumentError(f"peer {node_id!r}: endpoint {ep!r} is not a str")
            if len(ep) > ENDPOINT_CHARS_MAX:
                raise StorageLimitError(
                    f"peer {node_id!r}: an endpoint of {len(ep)} characters exceeds {ENDPOINT_CHARS_MAX}"
                )
        out[node_id] = eps
    return out


def check_meta(key: object, value: object) -> None:
    if not isinstance(key, str) or not key:
        raise StorageArgumentError(f"a meta key must be a non-empty str, got {key!r}")
    if not isinstance(value, str):
        raise StorageArgumentError(f"meta {key!r}: the value must be a str, got {type(value).__name__}")
    if len(key) > META_KEY_CHARS_MAX:
        raise StorageLimitError(
            f"a meta key of {len(key)} characters exceeds {META_KEY_CHARS_MAX}"
        )
    if len(value) > META_VALUE_CHARS_MAX:
        raise StorageLimitError(
            f"meta {key!r}: a value of {len(value)} characters exceeds {META_VALUE_CHARS_MAX}"
        )


def meta_count_error(count: int) -> StorageLimitError:
    return StorageLimitError(
        f"the store already holds {count} meta keys, the bound; reuse existing keys"
    )
