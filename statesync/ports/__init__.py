"""MessagePorts over ZeroMQ, driven by trio (work in progress: the trio adapter)."""

from __future__ import annotations

from statesync.ports._errors import PortsError, SocketClosed

__all__ = ["PortsError", "SocketClosed"]
