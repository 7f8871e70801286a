"""``statesync.aio``: an asyncio-native client of one node, for asyncio programs (ASGI apps, aiohttp).

::

    from statesync import aio

    async with aio.Client("ipc:///var/lib/statesync/client.sock") as client:
        await client.set("flags.new_ui", True)
        await client.get("flags")                      # {'new_ui': True}
        async with client.watch("flags") as watch:
            async for event in watch:                  # one WatchEvent per change
                print(event.kind, event.key, event.value)

The methods, arguments, return values (:class:`~statesync.node.Receipt`,
:class:`~statesync.node.Conflict`, :class:`~statesync.node.WatchEvent`,
``ABSENT``) and errors (import them from :mod:`statesync.errors`) are those of the blocking
:class:`statesync.Client`, awaitable; ``node_id`` is a coroutine here
(``await client.node_id()``) since it may have to connect. No thread and no
trio run: pyzmq's asyncio sockets carry the ports frames, the pure ports
protocol (:mod:`statesync.ports._protocol`) does sequencing, credit, requests
and close, the client protocol (:mod:`statesync.protocol`) the requests and
replies; time is the asyncio loop's. A node cannot tell it from the blocking
client: the bytes on the wire are the same.

Connecting, retries and keys are the blocking client's: the connection is
made on first use and re-made on its own when the node restarts (a call waits
up to ``connect_timeout_s``, then :class:`NodeUnavailable`); reads and writes
(with their idempotency keys) go again on a fresh connection; CURVE
with ``secret_key_file=`` and ``server_key=`` (or ``?key=`` in the endpoint,
or ``STATESYNC_KEY`` / ``STATESYNC_SERVER_KEY``). A client belongs to the
asyncio loop that first used it; many tasks may share it.
"""

from __future__ import annotations

from statesync.aio._client import Client
from statesync.aio._watch import Watch
from statesync.core import ABSENT
from statesync.node._results import Conflict, Receipt
from statesync.node._watch import WatchEvent

__all__ = ["ABSENT", "Client", "Conflict", "Receipt", "Watch", "WatchEvent"]
