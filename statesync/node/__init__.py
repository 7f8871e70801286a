"""The node: durable replication over MessagePorts, the Python API, watches,
broadcast channels, membership."""

from __future__ import annotations

from statesync.errors import ConfigError, NodeClosedError
from statesync.node._broadcast import BroadcastChannel
from statesync.node._config import FaultConfig, NodeConfig
from statesync.node._delta import apply_delta
from statesync.node._lifecycle import open_node
from statesync.node._link import port_options
from statesync.node._node import Node
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
    "apply_delta",
    "open_node",
    "port_options",
]
