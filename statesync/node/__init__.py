"""The node: durable replication over MessagePorts, the Python API, watches,
broadcast channels, membership."""

from __future__ import annotations

from statesync.errors import ConfigError, NodeClosedError
from statesync.node._config import FaultConfig, NodeConfig
from statesync.node._node import (
    BroadcastChannel,
    Node,
    open_node,
    port_options,
)
from statesync.node._results import Conflict, Receipt
from statesync.node._watch import Watch, WatchEvent

__all__ = [
    "BroadcastChannel",
    "ConfigError",
    "Conflict",
    "FaultConfig",
    "Node",
    "NodeClosedError",
    "NodeConfig",
    "Receipt",
    "Watch",
    "WatchEvent",
    "open_node",
    "port_options",
]
