"""The node: durable replication over MessagePorts, the Python API, watches,
broadcast channels, membership."""

from __future__ import annotations

from statesync.node._broadcast import BroadcastChannel
from statesync.node._config import ConfigError, FaultConfig, NodeConfig
from statesync.node._errors import NodeClosedError
from statesync.node._lifecycle import open_node
from statesync.node._link import port_options
from statesync.node._node import Conflict, Node, Receipt
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
