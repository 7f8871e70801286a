from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from statesync.storage import MemoryStore, SqliteStore, Store


class Harness:
    """A store under test plus a way to get it back as a restarted node would.

    For SqliteStore ``reopen`` closes the store and opens the data dir again;
    a MemoryStore is "durable" for the life of the object, so it is kept.
    """

    def __init__(self, kind: str, tmp_path: Path, node_id: str = "a") -> None:
        self.kind = kind
        self.node_id = node_id
        self.data_dir = tmp_path / "data"
        self.store: Store = self._open()

    def _open(self) -> Store:
        if self.kind == "memory":
            return MemoryStore(self.node_id)
        # a small chunk target so that modest snapshots span many chunks
        return SqliteStore(self.data_dir, self.node_id, snapshot_chunk_bytes=16 << 10)

    def reopen(self) -> Store:
        if self.kind == "sqlite":
            self.store.close()
            self.store = self._open()
        return self.store

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=["memory", "sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(request.param, tmp_path)
    try:
        yield h
    finally:
        h.close()


