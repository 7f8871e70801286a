"""The asyncio :class:`Client`: the blocking client's methods, awaitable."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

from statesync import ports, protocol
from statesync.aio._lease import Lease, Presence, close_leases, grant
from statesync.aio._session import Session
from statesync.aio._watch import Watch
from statesync.client._client import ENV_NODE, WRITE_MARGIN_S, _checked, _client_keys, _receipt
from statesync.client._lease import PRESENCE_TTL_S
from statesync.core import ABSENT, PathLike, as_path
from statesync.errors import ClientClosed, ClientError, TooLarge
from statesync.node._results import Conflict, Receipt


class Client:
    """An asyncio client of the node serving clients at ``endpoint``: ``async with Client(ep) as c``.

    The arguments, methods, return values and errors are the blocking
    :class:`statesync.Client`'s; every method is a coroutine, and
    :meth:`watch` gives an async context manager and iterator. It runs on
    the asyncio loop that first uses it (no thread): pyzmq's asyncio sockets
    carry the ports protocol, so a node sees the same bytes as from the
    blocking client. The connection is made on first use and re-made when the
    node restarts (reads are retried on the new one, as in the blocking
    client). Concurrent calls from many tasks share one connection.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        watch_buffer_max: int = 10_000,
        secret_key_file: str | os.PathLike[str] | None = None,
        server_key: str | os.PathLike[str] | None = None,
    ) -> None:
        endpoint = endpoint or os.environ.get(ENV_NODE)
        if not endpoint:
            raise ClientError(f"no node endpoint: pass Client('ipc:///path/to/client.sock') or set {ENV_NODE}")
        try:
            address, endpoint_key = ports.split_key(endpoint)
        except ports.InvalidKey as exc:
            raise ClientError(str(exc)) from exc
        if "://" not in address or address.split("://", 1)[0] not in ("ipc", "tcp", "inproc"):
            raise ClientError(f"{address!r} is not a node endpoint; use ipc:///path/to/client.sock or tcp://host:port")
        if timeout_s <= 0 or connect_timeout_s <= 0 or watch_buffer_max <= 0:
            raise ClientError("timeout_s, connect_timeout_s and watch_buffer_max must be positive")
        self._keys, server = _client_keys(secret_key_file, server_key, endpoint_key)
        self.endpoint = endpoint
        self.server_key: str | None = server
        """The node's public key this client checks (None: no CURVE)."""
        self._dial = ports.with_key(address, server)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.watch_buffer_max = watch_buffer_max
        self._session_obj: Session | None = None
        self._closed = False
        self._watches: set[Watch] = set()
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
            session = self._session_obj = Session(self.endpoint, self._dial, self._keys, self.connect_timeout_s)
        return session

    async def _call(self, request: protocol.Request, cls: type[Any], timeout_s: float | None = None) -> Any:
        return await self._session().request(request, cls, timeout_s or self.timeout_s)

    async def node_id(self) -> str:
        """The id of the node this client talks to (connects if needed)."""
        session = self._session()
        if session.node_id is None:
            await self.ping()
        return str(session.node_id)

    # -- reads

    async def ping(self) -> dict[str, Any]:
        """Check the node answers: its id, protocol version and endpoints."""
        reply: protocol.HelloReply = await self._call(protocol.Hello(protocol.PROTOCOL), protocol.HelloReply)
        return {
            "node_id": reply.node_id,
            "protocol": reply.protocol,
            "endpoints": reply.endpoints,
            "client_endpoints": reply.client_endpoints,
        }

    async def get(self, path: PathLike = "", default: Any = None) -> Any:
        """The value at ``path`` (a dict for a subtree), or ``default``."""
        segments = as_path(path)
        try:
            reply: protocol.GetReply = await self._call(protocol.Get(segments), protocol.GetReply)
        except TooLarge:
            value = await self._session().stream_tree(segments, self.timeout_s)
            return default if value is ABSENT else value
        return reply.value if reply.found else default

    async def snapshot(self, prefix: PathLike = "") -> Any:
        """The whole tree (or the subtree at ``prefix``) as one dict, streamed in bounded chunks ({} when empty)."""
        value = await self._session().stream_tree(as_path(prefix), self.timeout_s)
        return {} if value is ABSENT else value

    async def conflicts(self, path: PathLike) -> list[Conflict]:
        """The concurrent versions at ``path`` (none under last-write-wins, or when there is no conflict)."""
        reply: protocol.ConflictsReply = await self._call(protocol.Conflicts(as_path(path)), protocol.ConflictsReply)
        return [Conflict(v.value, v.origin, v.seq, v.hlc, v.omitted) for v in reply.versions]

    async def status(self) -> dict[str, Any]:
        """The node's status: peers, lag each way, unacknowledged writes, log size, last sync, progress."""
        reply: protocol.StatusReply = await self._call(protocol.Status(), protocol.StatusReply)
        return reply.status

    async def sync(self, timeout_s: float = 10.0) -> bool:
        """Run an anti-entropy round on the node now; True when every connected peer answered."""
        _, timeout = _checked("local", timeout_s)
        reply: protocol.SyncReply = await self._call(protocol.Sync(timeout), protocol.SyncReply, timeout_s + WRITE_MARGIN_S)
        return reply.answered

    # -- writes

    async def set(self, path: PathLike, value: Any, *, ack: protocol.Ack = "local", timeout_s: float | None = None, lease: Lease | None = None) -> Receipt:
        """Write ``value`` at ``path`` (a dict writes a subtree); ``ack`` and ``lease`` as in the blocking client."""
        ack, concern = self._concern(ack, timeout_s)
        ref = None if lease is None else lease.check()
        request = protocol.Set(as_path(path), value, ack=ack, timeout_s=concern, lease=ref)
        reply: protocol.WriteReply = await self._call(request, protocol.WriteReply, concern + WRITE_MARGIN_S)
        return _receipt(reply.receipt)

    async def set_many(self, items: Iterable[tuple[PathLike, Any]], *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> list[Receipt]:
        """Several writes committed together (one transaction, one round of acks)."""
        ack, concern = self._concern(ack, timeout_s)
        request = protocol.SetMany(tuple((as_path(p), v) for p, v in items), ack=ack, timeout_s=concern)
        reply: protocol.SetManyReply = await self._call(request, protocol.SetManyReply, concern + WRITE_MARGIN_S)
        return [_receipt(r) for r in reply.receipts]

    async def delete(self, path: PathLike, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> Receipt:
        """Remove ``path`` and everything beneath it."""
        ack, concern = self._concern(ack, timeout_s)
        request = protocol.Delete(as_path(path), ack=ack, timeout_s=concern)
        reply: protocol.WriteReply = await self._call(request, protocol.WriteReply, concern + WRITE_MARGIN_S)
        return _receipt(reply.receipt)

    def _concern(self, ack: object, timeout_s: float | None) -> tuple[protocol.Ack, float]:
        ack, concern = _checked(ack, timeout_s)
        return ack, concern if concern is not None else self.timeout_s

    # -- leases and presence (statesync.aio._lease, docs/leases.md)

    async def lease(self, ttl_s: float) -> Lease:
        """A lease on the node, kept alive by this client until revoked, its block ends or the client closes."""
        return await grant(self, ttl_s)

    async def presence(self, prefix: PathLike, state: Any, *, participant: str | None = None, ttl_s: float = PRESENCE_TTL_S) -> Presence:
        """Join ``prefix`` as one participant (``prefix.<participant>`` = ``state``, on a lease of its own)."""
        return await Presence(self, prefix, participant).join(state, ttl_s)

    # -- watches

    def watch(self, prefix: PathLike = "") -> Watch:
        """Changes under ``prefix``: ``async with client.watch(p) as w: async for event in w``.

        Entering the block subscribes (NodeUnavailable if the node does not
        confirm within ``connect_timeout_s`` plus a margin); leaving it, or
        closing the client, ends the watch.
        """
        watch = Watch(self._session(), as_path(prefix), self.watch_buffer_max, self.connect_timeout_s)
        self._watches.add(watch)
        return watch

    # -- fault injection (demos and tests)

    async def cut(self, peer: str) -> None:
        """Fault injection: the node drops all traffic with ``peer`` until :meth:`heal`."""
        await self._call(protocol.Cut(peer), protocol.Empty)

    async def heal(self, peer: str | None = None) -> None:
        """Undo :meth:`cut` for ``peer`` (None: for every peer)."""
        await self._call(protocol.Heal(peer), protocol.Empty)

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
