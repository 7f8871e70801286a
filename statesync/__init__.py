"""statesync: a replicated, path-addressed state tree over ZeroMQ MessagePorts.

The entry points::

    async with statesync.open_node(node_id="a", listen="tcp://127.0.0.1:7001",
                                   peers=["tcp://127.0.0.1:7002"], data_dir="data/a") as node:
        await node.set("user.name", "Ada")

    channel = statesync.MessageChannel()          # the web's Channel Messaging API, over ZeroMQ
    statesync.check_resolver(my_resolver)         # does a custom conflict resolver converge?
"""

from __future__ import annotations

from statesync.client import Client
from statesync.core import (
    ABSENT,
    CausalContext,
    Replica,
    Strategies,
    Version,
    format_path,
    parse_path,
)
from statesync.errors import (
    AccessDenied,
    ClockSkewError,
    ConfigError,
    ConnectError,
    DataCloneError,
    DataDirInUse,
    DataDirMismatch,
    DecodeError,
    EncodeError,
    HandshakeFailed,
    InvalidKey,
    InvalidPath,
    InvalidValue,
    KeyFileError,
    MessageTooLarge,
    NodeClosedError,
    NodeRefused,
    PoolClosed,
    PoolQueueFull,
    PortClosedError,
    PortQueueFull,
    PortsError,
    PortTransferredError,
    RequestFailed,
    RequestTimeout,
    ResolverCheckFailed,
    ResolverError,
    StatesyncError,
    StorageError,
    StorageLimitError,
    StoreClosed,
    WriteConcernError,
)
from statesync.node import (
    BroadcastChannel,
    Conflict,
    Node,
    NodeConfig,
    Receipt,
    Watch,
    WatchEvent,
    open_node,
)
from statesync.ports import MessageChannel, MessageEvent, MessagePort, PortPool
from statesync.testing import check_resolver

__version__ = "0.1.0"

__all__ = [
    "ABSENT",
    "AccessDenied",
    "BroadcastChannel",
    "CausalContext",
    "Client",
    "ClockSkewError",
    "ConfigError",
    "Conflict",
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
    "MessageChannel",
    "MessageEvent",
    "MessagePort",
    "MessageTooLarge",
    "Node",
    "NodeClosedError",
    "NodeConfig",
    "NodeRefused",
    "PoolClosed",
    "PoolQueueFull",
    "PortClosedError",
    "PortPool",
    "PortQueueFull",
    "PortTransferredError",
    "PortsError",
    "Receipt",
    "Replica",
    "RequestFailed",
    "RequestTimeout",
    "ResolverCheckFailed",
    "ResolverError",
    "StatesyncError",
    "StorageError",
    "StorageLimitError",
    "StoreClosed",
    "Strategies",
    "Version",
    "Watch",
    "WatchEvent",
    "WriteConcernError",
    "__version__",
    "check_resolver",
    "format_path",
    "open_node",
    "parse_path",
]
