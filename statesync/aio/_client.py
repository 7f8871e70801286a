"""The asyncio :class:`Client`: the blocking client's methods, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from statesync import protocol
from statesync.aio._lease import Lease, Presence, close_leases, grant
from statesync.aio._session import Session
from statesync.aio._watch import Watch
from statesync.client._common import Call, ClientBase, found, or_default
from statesync.client._lease import PRESENCE_TTL_S
from statesync.client._typed import TypedAccess
from statesync.core import PathLike, as_path
from statesync.errors import ClientClosed, ClientError, TooLarge
from statesync.node._results import Conflict, Receipt

T = TypeVar("T")


class Client(ClientBase, TypedAccess[Coroutine[Any, Any, Receipt], Coroutine[Any, Any, Any]]):
    """An asyncio client of the node serving clients at ``endpoint``: ``async with Client(ep) as c``.

    The arguments, methods, return values and errors are the blocking
    :class:`statesync.Client`'s; every method is a coroutine, and
    :meth:`watch` gives an async context manager and iterator. It runs on
    the asyncio loop that first uses it (no thread): pyzmq's asyncio sockets
    carry the ports protocol, so a node sees the same bytes as from the
    blocking client. The connection is made on first use and re-made when the
    node restarts (reads, and writes with their idempotency keys, are retried
    on the new one, as in the blocking client). Concurrent calls from many
    tasks share one connection.
    """

    def _start(self) -> None:
        self._session_obj: Session | None = None
        self._watches: set[Watch] = set()
        self._inflight = asyncio.Semaphore(self.settings.inflight_max)
        self._leases: set[Lease] = set()

    def __repr__(self) -> str:
        return f"<aio Client {self.endpoint}{' closed' if self._closed else ''}>"

    def _session(self) -> Session:
        if self._closed:
            raise ClientClosed(f"the client of {self.endpoint} is closed; make a new Client")
        session = self._session_obj
        if session is not None and session.loop is not asyncio.get_running_loop():
            if not session.loop.is_closed():
                raise ClientError("this aio.Client is in use by another asyncio loop; make one Client per loop")
            session.abandon()  # its loop ended (a second asyncio.run): start afresh on this one
            session = None
        if session is None:
            session = self._session_obj = Session(self.settings)
        return session

    async def _do(self, call: Call[T]) -> T:
        return call.result(await self._session().request(call.request, call.reply, call.timeout_s))

    async def _typed_do(self, call: Call[Receipt]) -> Receipt:
        return await self._do(call)

    async def _typed_read(self, path: tuple[str, ...], empty: Any) -> Any:
        return await self.get(path, empty)

    async def node_id(self) -> str:
        """The id of the node this client talks to (connects if needed)."""
        session = self._session()
        if session.node_id is None:
            await self.ping()
        return str(session.node_id)

    # -- reads

    async def ping(self) -> dict[str, Any]:
        """Check the node answers: its id, protocol version and endpoints."""
        return await self._do(self._calls.ping())

    async def get(self, path: PathLike = "", default: Any = None) -> Any:
        """The value at ``path`` (a dict for a subtree), or ``default``."""
        segments = as_path(path)
        try:
            return found(await self._do(self._calls.get(segments)), default)
        except TooLarge:
            return or_default(await self._session().stream_tree(segments, self.timeout_s), default)

    async def snapshot(self, prefix: PathLike = "") -> Any:
        """The whole tree (or the subtree at ``prefix``) as one dict, streamed in bounded chunks ({} when empty)."""
        return or_default(await self._session().stream_tree(as_path(prefix), self.timeout_s), {})

    async def conflicts(self, path: PathLike) -> list[Conflict]:
        """The concurrent versions at ``path`` (none under last-write-wins, or when there is no conflict)."""
        return await self._do(self._calls.conflicts(path))

    async def status(self) -> dict[str, Any]:
        """The node's status: peers, lag each way, unacknowledged writes, log size, last sync, progress."""
        return await self._do(self._calls.status())

    async def sync(self, timeout_s: float = 10.0) -> bool:
        """Run an anti-entropy round on the node now; True when every connected peer answered."""
        return await self._do(self._calls.sync(timeout_s))

    # -- writes

    async def set(self, path: PathLike, value: Any, *, ack: protocol.Ack = "local", timeout_s: float | None = None, lease: Lease | None = None) -> Receipt:
        """Write ``value`` at ``path`` (a dict writes a subtree); ``ack`` and ``lease`` as in the blocking client."""
        return await self._do(self._calls.set(path, value, ack, timeout_s, None if lease is None else lease.check()))

    async def set_many(self, items: Iterable[tuple[PathLike, Any]], *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> list[Receipt]:
        """Several writes committed together (one transaction, one round of acks)."""
        return await self._do(self._calls.set_many(items, ack, timeout_s))

    async def delete(self, path: PathLike, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> Receipt:
        """Remove ``path`` and everything beneath it."""
        return await self._do(self._calls.delete(path, ack, timeout_s))

    async def submit(self, path: PathLike, value: Any, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> asyncio.Future[Receipt]:
        """Start ``set(path, value, ...)`` as a task and return it (the blocking client's ``submit``).

        At most ``inflight_max`` writes started this way are in flight; past
        that, ``await client.submit(...)`` waits until one is answered. Writes
        in flight together may be applied in any order.
        """
        call = self._calls.set(path, value, ack, timeout_s)  # bad arguments raise here, not in the task
        await self._inflight.acquire()
        task = asyncio.ensure_future(self._do(call))
        task.add_done_callback(lambda _: self._inflight.release())
        return task

    # -- leases and presence (statesync.aio._lease, docs/leases.md)

    async def lease(self, ttl_s: float) -> Lease:
        """A lease on the node, kept alive by this client until revoked, its block ends or the client closes."""
        return await grant(self, ttl_s)

    async def presence(self, prefix: PathLike, state: Any, *, participant: str | None = None, ttl_s: float = PRESENCE_TTL_S) -> Presence:
        """Join ``prefix`` as one participant (``prefix.<participant>`` = ``state``, on a lease of its own)."""
        return await Presence(self, prefix, participant).join(state, ttl_s)

    # -- watches

    def watch(self, prefix: PathLike = "", *, resume: str | None = None) -> Watch:
        """Changes under ``prefix``: ``async with client.watch(p) as w: async for event in w``.

        Entering the block subscribes (NodeUnavailable if the node does not
        confirm within ``connect_timeout_s`` plus a margin); leaving it, or
        closing the client, ends the watch. ``resume``: an event's ``resume``
        token, as for the blocking client's ``watch``.
        """
        watch = Watch(self._session(), as_path(prefix), self.watch_buffer_max, self.connect_timeout_s, resume)
        self._watches.add(watch)
        return watch

    # -- fault injection (demos and tests)

    async def cut(self, peer: str) -> None:
        """Fault injection: the node drops all traffic with ``peer`` until :meth:`heal`."""
        await self._do(self._calls.cut(peer))

    async def heal(self, peer: str | None = None) -> None:
        """Undo :meth:`cut` for ``peer`` (None: for every peer)."""
        await self._do(self._calls.heal(peer))

    # -- lifetime

    async def aclose(self) -> None:
        """Close watches and the connection; the client cannot be used afterwards."""
        if self._closed:
            return
        if self._session_obj is not None:
            await close_leases(self._leases)
        self._closed = True
        watches, self._watches = self._watches, set()
        for watch in watches:
            await watch.aclose()
        session, self._session_obj = self._session_obj, None
        if session is not None:
            session.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
