"""Errors of the storage layer (defined in :mod:`statesync.errors`). All derive from :class:`StorageError`."""

from __future__ import annotations

from statesync.errors import (
    DataDirInUse,
    DataDirMismatch,
    StorageError,
    StorageLimitError,
    StoreClosed,
    StoredRecordError,
)

__all__ = [
    "DataDirInUse",
    "DataDirMismatch",
    "StorageError",
    "StorageLimitError",
    "StoreClosed",
    "StoredRecordError",
]
