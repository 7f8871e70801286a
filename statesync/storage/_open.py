"""``open_store``: the store for a data dir, or an in-memory one."""

from __future__ import annotations

import os

from statesync.storage._memory import MemoryStore
from statesync.storage._sqlite import SqliteStore
from statesync.storage._store import Durability, Store


def open_store(
    data_dir: str | os.PathLike[str] | None,
    node_id: str,
    *,
    durability: Durability | str = Durability.PROCESS,
) -> Store:
    """A :class:`SqliteStore` in ``data_dir``, or a :class:`MemoryStore` for ``None``.

    ``durability`` applies to the SQLite store only.
    """
    if data_dir is None:
        return MemoryStore(node_id)
    return SqliteStore(data_dir, node_id, durability=durability)
