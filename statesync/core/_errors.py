"""The errors the pure core raises (defined in :mod:`statesync.errors`).

Every error statesync raises on purpose derives from :class:`StatesyncError`,
so ``except statesync.errors.StatesyncError`` catches them all.
"""

from __future__ import annotations

from statesync.errors import (
    ClockSkewError,
    InvalidOperation,
    InvalidPath,
    InvalidValue,
    ResolverCheckFailed,
    ResolverError,
    StatesyncError,
    WriteConcernError,
)

__all__ = [
    "ClockSkewError",
    "InvalidOperation",
    "InvalidPath",
    "InvalidValue",
    "ResolverCheckFailed",
    "ResolverError",
    "StatesyncError",
    "WriteConcernError",
]
