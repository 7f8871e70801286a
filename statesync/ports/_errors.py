"""Errors of the ports layer (defined in :mod:`statesync.errors`). All derive from :class:`PortsError`."""

from __future__ import annotations

from statesync.errors import (
    ConnectError,
    HandshakeFailed,
    InvalidKey,
    MessageTooLarge,
    PeerUnreachable,
    PoolClosed,
    PoolQueueFull,
    PortClosedError,
    PortQueueFull,
    PortsError,
    PortTransferredError,
    RequestFailed,
    RequestTimeout,
    RuntimeMismatch,
    SocketClosed,
)

__all__ = [
    "ConnectError",
    "HandshakeFailed",
    "InvalidKey",
    "MessageTooLarge",
    "PeerUnreachable",
    "PoolClosed",
    "PoolQueueFull",
    "PortClosedError",
    "PortQueueFull",
    "PortTransferredError",
    "PortsError",
    "RequestFailed",
    "RequestTimeout",
    "RuntimeMismatch",
    "SocketClosed",
]
