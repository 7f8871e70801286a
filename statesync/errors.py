"""Every error statesync raises on purpose, in one namespace.

All derive from :class:`StatesyncError`. Each layer defines its errors next to
its code; this module gathers the ones a user may meet.
"""

from __future__ import annotations

from statesync.client import AccessDenied, NodeRefused
from statesync.core._errors import (
    ClockSkewError,
    InvalidPath,
    InvalidValue,
    ResolverCheckFailed,
    ResolverError,
    StatesyncError,
    WriteConcernError,
)
from statesync.node._config import ConfigError
from statesync.node._node import NodeClosedError
from statesync.ports._errors import (
    ConnectError,
    HandshakeFailed,
    InvalidKey,
    MessageTooLarge,
    PoolClosed,
    PoolQueueFull,
    PortClosedError,
    PortQueueFull,
    PortsError,
    PortTransferredError,
    RequestFailed,
    RequestTimeout,
)
from statesync.security._keys import KeyFileError
from statesync.storage._errors import (
    DataDirInUse,
    DataDirMismatch,
    StorageError,
    StorageLimitError,
    StoreClosed,
)
from statesync.wire._errors import DataCloneError, DecodeError, EncodeError

__all__ = [
    "AccessDenied",
    "ClockSkewError",
    "ConfigError",
    "ConnectError",
    "DataCloneError",
    "DataDirInUse",
    "DataDirMismatch",
    "DecodeError",
    "EncodeError",
    "HandshakeFailed",
    "InvalidKey",
    "InvalidPath",
    "InvalidValue",
    "KeyFileError",
    "MessageTooLarge",
    "NodeClosedError",
    "NodeRefused",
    "PoolClosed",
    "PoolQueueFull",
    "PortClosedError",
    "PortQueueFull",
    "PortTransferredError",
    "PortsError",
    "RequestFailed",
    "RequestTimeout",
    "ResolverCheckFailed",
    "ResolverError",
    "StatesyncError",
    "StorageError",
    "StorageLimitError",
    "StoreClosed",
    "WriteConcernError",
]
