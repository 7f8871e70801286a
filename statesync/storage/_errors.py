"""Errors of the storage layer. All derive from :class:`StorageError`."""

from __future__ import annotations

from statesync.core import StatesyncError


class StorageError(StatesyncError):
    """Base class of every error the storage layer raises on purpose.

    Raised as such when the disk refuses a write (full, read-only, I/O error)
    or a stored record cannot be read back; the message names the file and
    what to do. A failed ``append`` or ``save_snapshot`` wrote nothing.
    """


class DataDirInUse(StorageError):
    """Another live process (or another open store in this one) holds the data dir's lock."""


class DataDirMismatch(StorageError):
    """The data dir belongs to another node id, is not a statesync store, or has
    a storage format this version cannot read."""


class StoreClosed(StorageError):
    """The store was closed; open a new one."""


class StorageLimitError(StorageError, ValueError):
    """An argument exceeds a storage bound (peer count, endpoint or meta size)."""


class StorageArgumentError(StorageError, ValueError):
    """A store was given a setting or a name it does not take (durability, snapshot
    chunk size, node id, meta key); the message says what it takes."""
