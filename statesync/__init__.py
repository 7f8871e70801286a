"""statesync: a replicated, path-addressed state tree over ZeroMQ MessagePorts."""

from __future__ import annotations

from statesync.errors import StatesyncError

__all__ = ["StatesyncError"]
__version__ = "0.1.0"
