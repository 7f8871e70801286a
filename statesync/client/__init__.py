"""``statesync.client``: a blocking, thread-safe client of one node, for ordinary programs.

::

    from statesync.client import Client

    with Client("ipc:///var/lib/statesync/client.sock") as client:
        client.set("flags.new_ui", True)
        client.get("flags")                      # {'new_ui': True}
        for event in client.watch("flags"):      # blocks; one WatchEvent per change
            print(event.kind, event.key, event.value)

The client owns one background thread running trio and a port runtime; callers
never see trio. Every method may be called from any thread (threads of a web
server, an asyncio app through ``loop.run_in_executor``). A client made before
``os.fork()`` starts a fresh background thread in the child on first use, so a
pre-fork server may create it at import time.

The connection to the node is made on first use and re-made on its own when
the node restarts: a call waits up to ``connect_timeout_s`` for the node to
answer, then raises :class:`NodeUnavailable` naming the endpoint. Reads, and
writes (each carries an idempotency key, so the node applies it once and
answers a retry with the original receipt), go again on a fresh connection
when the old one died under them, until the call's timeout. ``submit`` keeps
many writes in flight (``inflight_max``), each a
:class:`concurrent.futures.Future`. Watches re-subscribe on their own and then deliver one ``lagged``
event carrying the whole current subtree, since changes made while
disconnected are not replayed one by one.

Writes return the node's own :class:`~statesync.node.Receipt`, ``conflicts``
its :class:`~statesync.node.Conflict` s and watches its
:class:`~statesync.node.WatchEvent` s (``ABSENT`` where there is no value).

Against a node with keys (CURVE), the client needs its own key pair and the
node's public key: ``Client(endpoint, secret_key_file="me.key_secret",
server_key=...)``, or the key in the endpoint (``tcp://host:7111?key=<Z85>``,
as the node's log prints it), or the ``STATESYNC_KEY`` and
``STATESYNC_SERVER_KEY`` environment variables. A node that refuses the key
raises :class:`NodeRefused` at once (no retry); a request the key may not make
raises :class:`AccessDenied`.

The protocol it speaks is :mod:`statesync.protocol` (``docs/protocol.md``).
"""

from __future__ import annotations

from statesync.client._client import ENV_KEY, ENV_NODE, ENV_SERVER_KEY, Client
from statesync.client._watch import Watch
from statesync.errors import (
    AccessDenied,
    ClientClosed,
    ClientError,
    ConnectionLost,
    InvalidArgument,
    NodeError,
    NodeRefused,
    NodeUnavailable,
    ProtocolMismatch,
)
from statesync.node._results import Conflict, Receipt
from statesync.node._watch import WatchEvent

__all__ = [
    "ENV_KEY",
    "ENV_NODE",
    "ENV_SERVER_KEY",
    "AccessDenied",
    "Client",
    "ClientClosed",
    "ClientError",
    "Conflict",
    "ConnectionLost",
    "InvalidArgument",
    "NodeError",
    "NodeRefused",
    "NodeUnavailable",
    "ProtocolMismatch",
    "Receipt",
    "Watch",
    "WatchEvent",
]
