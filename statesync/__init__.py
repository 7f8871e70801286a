"""statesync: a replicated, path-addressed state tree over ZeroMQ MessagePorts.

The entry points::

    async with statesync.open_node(node_id="a", listen="tcp://127.0.0.1:7001",
                                   peers=["tcp://127.0.0.1:7002"], data_dir="data/a") as node:
        await node.set("user.name", "Ada")

    with statesync.Client("ipc:///path/to/client.sock") as client:   # blocking, from any thread
        client.get("user")

    channel = statesync.MessageChannel()          # the web's Channel Messaging API, over ZeroMQ
    statesync.check_resolver(my_resolver)         # does a custom conflict resolver converge?

Errors live in :mod:`statesync.errors` (all derive from :class:`StatesyncError`);
the layers' other names stay in their subpackages (``statesync.core``,
``statesync.ports``, ``statesync.node``, ``statesync.protocol``...).

Names load on first use, so ``import statesync.errors`` (or any light
subpackage) does not pull in trio, zmq or the node.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from statesync.errors import StatesyncError

if TYPE_CHECKING:
    from statesync.client import Client
    from statesync.core import ABSENT, format_path, parse_path
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

_WHERE = {
    "ABSENT": "statesync.core",
    "BroadcastChannel": "statesync.node",
    "Client": "statesync.client",
    "Conflict": "statesync.node",
    "MessageChannel": "statesync.ports",
    "MessageEvent": "statesync.ports",
    "MessagePort": "statesync.ports",
    "Node": "statesync.node",
    "NodeConfig": "statesync.node",
    "PortPool": "statesync.ports",
    "Receipt": "statesync.node",
    "Watch": "statesync.node",
    "WatchEvent": "statesync.node",
    "check_resolver": "statesync.testing",
    "format_path": "statesync.core",
    "open_node": "statesync.node",
    "parse_path": "statesync.core",
}

__all__ = [
    "ABSENT",
    "BroadcastChannel",
    "Client",
    "Conflict",
    "MessageChannel",
    "MessageEvent",
    "MessagePort",
    "Node",
    "NodeConfig",
    "PortPool",
    "Receipt",
    "StatesyncError",
    "Watch",
    "WatchEvent",
    "__version__",
    "check_resolver",
    "format_path",
    "open_node",
    "parse_path",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'statesync' has no attribute {name!r}; errors are in statesync.errors")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
