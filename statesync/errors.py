"""Every error statesync raises, in one namespace.

All derive from :class:`StatesyncError`. Each layer defines its own errors
next to its code; this module gathers the public ones.
"""

from __future__ import annotations

from statesync.core._errors import (
    ClockSkewError,
    InvalidPath,
    InvalidValue,
    ResolverCheckFailed,
    ResolverError,
    StatesyncError,
    WriteConcernError,
)

__all__ = [
    "ClockSkewError",
    "InvalidPath",
    "InvalidValue",
    "ResolverCheckFailed",
    "ResolverError",
    "StatesyncError",
    "WriteConcernError",
]
