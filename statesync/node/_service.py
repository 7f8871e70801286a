"""The node's client service: serves local clients the client protocol over a MessagePort endpoint.

A node whose ``config.client`` is set listens there (``ipc://`` by default,
``tcp://`` optional) for the CLI and :class:`statesync.Client`. Every port a
client opens is either a *request port* (``await port.request(...)``, one
reply per request) or a *stream port* (the client posts one ``watch`` or
``snapshot`` opening and the node streams messages back). The messages, their
fields, error codes and streaming rules are defined once in
:mod:`statesync.protocol` and described in ``docs/protocol.md``; this module
decodes requests with it at the edge and carries them out on the node.

Sending on a stream waits for the client to take messages (the port's
window), so a slow watcher fills the node's bounded watch buffer and then
gets a ``lagged`` event: memory stays bounded.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

from statesync import ports, protocol
from statesync.core import ABSENT, AbsentType, Op, Path, Value, format_path
from statesync.core._leases import is_reserved
from statesync.errors import (
    AccessDenied,
    BadRequest,
    BadResumeToken,
    ConfigError,
    ProtocolMismatch,
    StatesyncError,
    TooLarge,
    TooManyStreams,
)
from statesync.node import _client_keys
from statesync.node._client_keys import ClientKeys, Row, fingerprint, row
from statesync.node._results import Receipt
from statesync.node._security import CLIENT_DOMAIN
from statesync.protocol import INLINE_BYTES_MAX, MESSAGE_BYTES_MAX
from statesync.storage import SqliteStore

if TYPE_CHECKING:
    from statesync.node._node import Node

log = logging.getLogger("statesync.node.clients")

STREAMS_MAX: Final = 1024
"""Watch and snapshot streams one node serves at once; more are refused."""
IPC_PATH_MAX: Final = 100
"""Unix socket paths are limited to about 107 bytes; keep a margin."""
DISABLED: Final = frozenset({"", "none", "off", "false", "no"})
SYNC_TIMEOUT_S: Final = 10.0
"""A ``sync`` request's wait when it names none."""
CLIENT_ID_CHARS_MAX: Final = 128


def client_endpoint(node_id: str, data_dir: str | None, client: str | None) -> str | None:
    """The endpoint a node with these settings serves clients on (None: it serves none).

    ``client`` is an endpoint (``ipc:///path``, ``tcp://host:port``,
    ``inproc://name``), ``"auto"`` (``ipc://<data_dir>/client.sock``, or a
    socket under the temporary folder when there is no data_dir or that path
    is too long), or ``"none"`` / ``"off"``.
    """
    if client is None:
        return None
    text = client.strip()
    if text.lower() in DISABLED:
        return None
    if text.lower() == "auto":
        if data_dir is not None:
            path = os.path.join(os.path.abspath(data_dir), "client.sock")
            if len(path.encode()) <= IPC_PATH_MAX:
                return f"ipc://{path}"
        folder = os.path.join(tempfile.gettempdir(), f"statesync-{os.getuid()}")
        return f"ipc://{os.path.join(folder, f'{node_id}-{os.getpid()}.sock')}"
    if "://" not in text:
        raise ConfigError(
            f"client = {client!r} is not an endpoint; use 'auto', 'none', ipc:///path/to/socket or tcp://127.0.0.1:PORT"
        )
    scheme, rest = text.split("://", 1)
    if scheme not in ("ipc", "tcp", "inproc"):
        raise ConfigError(f"client = {client!r} uses {scheme}://; use ipc://, tcp:// or inproc://")
    if scheme == "ipc" and len(rest.encode()) > IPC_PATH_MAX:
        raise ConfigError(
            f"client = {client!r}: the socket path is {len(rest.encode())} bytes, over the limit of {IPC_PATH_MAX}; "
            "use a shorter path"
        )
    return text


def unreserved(path: Path) -> None:
    """AccessDenied for a client write under ``_statesync`` (the node's own records: leases)."""
    if is_reserved(path):
        raise AccessDenied(
            f"{format_path(path) or '(the root)'} is reserved for statesync's own records (leases); write elsewhere"
        )


def _receipt(r: Receipt) -> protocol.ReceiptData:
    return protocol.ReceiptData(r.path, r.origin, r.seq, r.hlc, list(r.acked_by))


Handler = Callable[[Any], "protocol.Reply | Awaitable[protocol.Reply]"]

T = TypeVar("T")
U = TypeVar("U")


def _error(exc: StatesyncError) -> dict[str, Any]:
    if isinstance(exc, ProtocolMismatch):
        return protocol.error_reply(exc, protocol=protocol.PROTOCOL)
    return protocol.error_reply(exc)


async def _answer(result: protocol.Reply | Awaitable[protocol.Reply]) -> dict[str, Any]:
    try:
        return protocol.encode_reply(await result if inspect.isawaitable(result) else result)
    except StatesyncError as exc:
        return _error(exc)


async def _later(result: Awaitable[T], then: Callable[[T], U]) -> U:
    return then(await result)


def _staged_reply(request: protocol.Request, ops: Sequence[Op]) -> dict[str, Any]:
    """The reply a write's ops make, as a store remembers it (no ``acked_by``)."""
    receipts = [protocol.ReceiptData(format_path(op.path), op.origin, op.seq, op.hlc, []) for op in ops]
    if isinstance(request, protocol.SetMany):
        return protocol.encode_reply(protocol.SetManyReply(tuple(receipts)))
    return protocol.encode_reply(protocol.WriteReply(receipts[-1]))


Write = protocol.Set | protocol.SetMany | protocol.Delete | protocol.TypedEdit


class ClientService:
    """Serves one node's clients; runs in the node's nursery until the node stops.

    Writes with an idempotency key go through :class:`ClientKeys` (at most
    ``keys_max`` remembered; a durable node's are loaded from its store).
    """

    def __init__(self, node: Node, keys_max: int | None = None) -> None:
        keys_max = _client_keys.KEYS_MAX if keys_max is None else keys_max
        self.node = node
        self.streams = 0
        self.requests = 0
        store = node._store
        self._sqlite = store if node._effects.durable and isinstance(store, SqliteStore) else None
        rows: list[Row] = []
        if self._sqlite is not None:
            self._sqlite.client_keys_max = keys_max
            rows = self._sqlite.load_client_keys()
        self.keys = ClientKeys(keys_max, rows)
        self._nursery: trio.Nursery | None = None
        self._ops: dict[type[protocol.Request], Handler] = {
            protocol.Hello: self._hello,
            protocol.Get: self._get,
            protocol.Set: self._write,
            protocol.SetMany: self._write,
            protocol.Delete: self._write,
            protocol.Conflicts: self._conflicts,
            protocol.Status: self._status,
            protocol.Sync: self._sync,
            protocol.Cut: self._cut,
            protocol.Heal: self._heal,
            protocol.LeaseGrant: self._lease_grant,
            protocol.LeaseKeepalive: self._lease_keepalive,
            protocol.LeaseRevoke: self._lease_revoke,
            **dict.fromkeys(protocol.TYPED_EDITS, self._write),
        }

    async def run(self, endpoint: str, *, task_status: trio.TaskStatus[tuple[str, ...]] = trio.TASK_STATUS_IGNORED) -> None:
        node = self.node
        if endpoint.startswith("ipc://"):
            folder = os.path.dirname(endpoint[len("ipc://") :])
            if folder:
                os.makedirs(folder, exist_ok=True)
        options = node.security.options(node._port_options, CLIENT_DOMAIN)
        listener = node._runtime.listen(endpoint, options)
        node._listeners.append(listener)  # the node closes its listeners when it stops
        log.info("%s: serving clients on %s", node.node_id, ", ".join(listener.endpoints))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(listener.endpoints)
            async for port in listener:
                # the client's key, authenticated by CURVE (None without keys)
                key = port.remote.public_key if port.remote is not None else None
                port.set_request_handler(functools.partial(self._handle, key=key))
                port.on_message = self._stream_opener(port, key)

    # ------------------------------------------------------------ requests

    def _handle(self, data: Value, key: str | None = None) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """Answer a request: at once when it needs no waiting (the reply then rides in the
        frame that carries the port's credit), else with an awaitable of the answer."""
        self.requests += 1
        try:
            request = protocol.decode_request(data)
            handler = self._ops.get(type(request))
            if handler is None:
                raise BadRequest(f"{request.OP} opens a stream: post it as the first message of a new port")
            if self.node.security.enabled:
                self._permit(key, request)
            if isinstance(request, protocol.LeaseGrant):
                result: protocol.Reply | Awaitable[protocol.Reply] = self._lease_grant(request, key)
            elif isinstance(request, Write) and request.key is not None:
                assert isinstance(data, dict)
                return self._keyed(request, request.key, key, fingerprint(data))
            else:
                result = handler(request)
        except StatesyncError as exc:
            return _error(exc)
        if inspect.isawaitable(result):
            return _answer(result)
        return protocol.encode_reply(result)

    def _keyed(
        self, request: Write, idem: protocol.IdemKey, owner: str | None, digest: bytes
    ) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """A write with an idempotency key: carried out once, its reply remembered."""
        keys = self.keys

        def staged(ops: Sequence[Op]) -> None:
            if self._sqlite is not None and ops:
                last = ops[-1]
                self._sqlite.stage_client_key((last.origin, last.seq), row(idem, owner, digest, _staged_reply(request, ops)))

        known = keys.lookup(idem, owner, digest)
        if isinstance(known, dict):
            return known
        if known is not None:  # its first request is still running: wait for it (run it if that one fails)
            return keys.once(idem, owner, digest, lambda: _answer(self._write(request, staged)))

        entry = keys.claim(idem, owner, digest)
        try:
            result = self._write(request, staged)
        except StatesyncError as exc:
            reply = _error(exc)
            keys.finish(idem, entry, reply)
            return reply
        except BaseException:
            keys.finish(idem, entry, None)
            raise
        if not inspect.isawaitable(result):
            reply = protocol.encode_reply(result)
            keys.finish(idem, entry, reply)
            return reply
        return self._keyed_later(idem, entry, result)

    async def _keyed_later(self, idem: protocol.IdemKey, entry: Any, result: Awaitable[protocol.Reply]) -> dict[str, Any]:
        reply = None
        try:
            reply = await _answer(result)
            return reply
        finally:
            self.keys.finish(idem, entry, reply)

    def _write(self, request: Write, on_ops: Callable[[Sequence[Op]], None] | None = None) -> protocol.Reply | Awaitable[protocol.Reply]:
        node = self.node
        for path, _ in request.touched():
            if path:
                unreserved(path)
        if isinstance(request, protocol.Set) and request.lease is not None:
            return self._leased_set(request)
        if isinstance(request, protocol.SetMany):
            rs, _ = node._write_many_now(list(request.items), request.ack, request.timeout_s, on_ops)
            if isinstance(rs, list):
                return protocol.SetManyReply(tuple(_receipt(r) for r in rs))
            return _later(rs, lambda rs: protocol.SetManyReply(tuple(_receipt(r) for r in rs)))
        if isinstance(request, protocol.Set | protocol.Delete):
            remove = isinstance(request, protocol.Delete)
            value = None if isinstance(request, protocol.Delete) else request.value
            r, _ = node._write_now(request.path, value, remove, request.ack, request.timeout_s, on_ops=on_ops)
        else:
            type_name, action, args = request.edit()
            r, _ = node._typed_now(request.path, type_name, action, args, request.ack, request.timeout_s, on_ops)
        if isinstance(r, Receipt):
            return protocol.WriteReply(_receipt(r))
        return _later(r, lambda r: protocol.WriteReply(_receipt(r)))

    async def _leased_set(self, request: protocol.Set) -> protocol.WriteReply:
        assert request.lease is not None
        lease = self.node._leases.handle(request.lease.id, request.lease.token)
        r = await self.node.set(request.path, request.value, ack=request.ack, timeout_s=request.timeout_s, lease=lease)
        return protocol.WriteReply(_receipt(r))

    def _permit(self, key: str | None, request: protocol.Request) -> None:
        """Raise AccessDenied unless the client's key may make this request now."""
        touched = request.touched() if isinstance(request, Write) else []
        # lease requests check as writes with no path (a read key may not hold leases)
        node = self.node

        def leaf_at(path: Path) -> bool:
            value = node.get(path, ABSENT)
            return value is not ABSENT and not isinstance(value, dict)

        node.security.check_request(key, request.OP, touched, leaf_at)

    def _hello(self, request: protocol.Hello) -> protocol.HelloReply:
        node = self.node
        if request.protocol != protocol.PROTOCOL:
            raise ProtocolMismatch(
                f"node {node.node_id} speaks client protocol {protocol.PROTOCOL}, the client {request.protocol}; "
                "use the same statesync version on both sides"
            )
        return protocol.HelloReply(
            node.node_id, protocol.PROTOCOL, list(node.endpoints), list(getattr(node, "client_endpoints", ()))
        )

    def _get(self, request: protocol.Get) -> protocol.GetReply:
        value = self.node.get(request.path, ABSENT)
        if value is ABSENT:
            return protocol.GetReply(False, None)
        if isinstance(value, dict) and protocol.tree_size(value, INLINE_BYTES_MAX) > INLINE_BYTES_MAX:
            raise TooLarge("the subtree is too large for one answer; read it with a snapshot stream")
        if not protocol.fits({"value": value}, protocol.estimate(value)):
            raise TooLarge(
                f"the value at {request.path!r} is over the client protocol's limit of {MESSAGE_BYTES_MAX:,} bytes per message"
            )
        return protocol.GetReply(True, value)


    def _conflicts(self, request: protocol.Conflicts) -> protocol.ConflictsReply:
        path = request.path
        versions: list[protocol.VersionData] = []
        budget = MESSAGE_BYTES_MAX // 2
        for c in self.node.conflicts(path):
            size = protocol.estimate(c.value)
            shown = c.value if size <= budget and protocol.fits({"v": c.value}, size) else None
            budget -= 0 if shown is None else size
            versions.append(protocol.VersionData(shown, c.origin, c.seq, c.hlc, shown is None and c.value is not None))
        value = self.node.get(path, ABSENT)
        found = value is not ABSENT
        if isinstance(value, dict) or value is ABSENT or protocol.estimate(value) > budget:
            value = None  # conflicts are per leaf; a subtree is not shown here
        return protocol.ConflictsReply(tuple(versions), found, value)

    def _status(self, request: protocol.Status) -> protocol.StatusReply:
        node = self.node
        status: dict[str, Any] = node.status()
        config = node.config
        status["client_endpoints"] = list(getattr(node, "client_endpoints", ()))
        status["clients"] = {"streams": self.streams, "requests": self.requests}
        status["config"] = {
            "strategy": config.strategies().describe(),
            "data_dir": config.data_dir,
            "durability": config.durability,
            "sync_interval_s": config.sync_interval_s,
            "peers": list(config.peers),
        }
        return protocol.StatusReply(status)

    async def _sync(self, request: protocol.Sync) -> protocol.SyncReply:
        return protocol.SyncReply(await self.node.sync(timeout_s=request.timeout_s or SYNC_TIMEOUT_S))

    def _cut(self, request: protocol.Cut) -> protocol.Empty:
        self.node._faults.cut(request.peer)
        return protocol.Empty()

    def _heal(self, request: protocol.Heal) -> protocol.Empty:
        self.node._faults.heal(request.peer)
        return protocol.Empty()

    async def _lease_grant(self, request: protocol.LeaseGrant, key: str | None = None) -> protocol.LeaseReply:
        if len(request.client) > CLIENT_ID_CHARS_MAX:
            raise BadRequest(f"a lease_grant's client id is at most {CLIENT_ID_CHARS_MAX} characters")
        # with keys, a client is its key (a client id cannot be varied to pass the per-client bound)
        lease = await self.node._leases.grant(request.ttl_s, client=f"key:{key}" if key else request.client)
        return protocol.LeaseReply(lease.id, lease.token, lease.ttl_s)

    async def _lease_keepalive(self, request: protocol.LeaseKeepalive) -> protocol.LeaseReply:
        ttl_s = self.node._leases.keepalive(request.lease.id, request.lease.token)
        return protocol.LeaseReply(request.lease.id, "", ttl_s)

    async def _lease_revoke(self, request: protocol.LeaseRevoke) -> protocol.Empty:
        await self.node._leases.revoke(request.lease.id, request.lease.token)
        return protocol.Empty()

    # ------------------------------------------------------------- streams

    def _stream_opener(self, port: ports.MessagePort, key: str | None) -> Callable[[ports.MessageEvent], None]:
        def opened(event: ports.MessageEvent) -> None:
            self._on_message(port, event, key)

        return opened

    def _on_message(self, port: ports.MessagePort, event: ports.MessageEvent, key: str | None = None) -> None:
        port.on_message = None  # a stream port takes one opening message
        try:
            request = protocol.decode_request(event.data)
            if not isinstance(request, protocol.Watch | protocol.Snapshot):
                raise BadRequest(
                    f"a stream opens with {{'op': 'watch' | 'snapshot', 'prefix': ...}}, not {request.OP!r} "
                    "(requests go through port.request)"
                )
            if self.node.security.enabled:
                self.node.security.check_request(key, request.OP, (), lambda _: False)
            if self.streams >= STREAMS_MAX or self._nursery is None:
                raise TooManyStreams(f"the node serves at most {STREAMS_MAX} watches and snapshots at once; close some")
        except StatesyncError as exc:
            with contextlib.suppress(ports.PortsError):
                port.post_message({"kind": "error", **protocol.error_reply(exc)})
            port.close()
            return
        self.streams += 1
        if isinstance(request, protocol.Watch):
            self._nursery.start_soon(self._watch, port, request.prefix, request.initial, request.resume)
        else:
            self._nursery.start_soon(self._snapshot, port, request.prefix)

    async def _watch(self, port: ports.MessagePort, prefix: Path, initial: bool, resume: str | None = None) -> None:
        node = self.node
        try:
            async with node.watch(prefix, resume=resume) as watch:
                # Subscribed and read in one step (no checkpoint in between).
                value = node.get(prefix, ABSENT) if initial and resume is None else ABSENT
                port.on_close = lambda _event: watch.close()
                if port.closed:
                    return
                ready: dict[str, Any] = {"kind": "ready", "resume": watch.start_token}
                if resume is not None:
                    ready["resumed"] = True  # the changes after the token follow (or a lagged)
                await self._send_tree(port, value, ready)
                async for event in watch:
                    if event.kind == "lagged":
                        await self._send_tree(port, event.value, {"kind": "lagged", "path": event.key, "resume": event.resume})
                    else:
                        msg = protocol.change_message(
                            event.kind, event.path, event.value, event.old, origin=event.origin, seq=event.seq,
                            resume=event.resume, delta=event.delta,
                        )
                        await port.send(msg)
                if not port.closed:
                    await port.send({"kind": "closed", "reason": f"node {node.node_id} is stopping"})
        except BadResumeToken as exc:  # refused before subscribing
            with contextlib.suppress(ports.PortsError):
                port.post_message({"kind": "error", **protocol.error_reply(exc)})
        except (ports.PortsError, StatesyncError):
            pass  # the client went away, or the node is stopping
        finally:
            self.streams -= 1
            port.close()

    async def _snapshot(self, port: ports.MessagePort, prefix: Path) -> None:
        try:
            await self._send_tree(port, self.node.get(prefix, ABSENT), {"kind": "end"})
        except (ports.PortsError, StatesyncError):
            pass
        finally:
            self.streams -= 1
            port.close()

    async def _send_tree(self, port: ports.MessagePort, value: Value | AbsentType, tail: dict[str, Any]) -> None:
        """Send ``tail`` carrying ``value``: inline when small, else after leaf chunks."""
        for msg in protocol.tree_messages(value, tail):
            await port.send(msg)


async def serve_clients(node: Node, *, task_status: trio.TaskStatus[tuple[str, ...]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``node``'s clients on ``node.config.client``; reports the bound endpoints."""
    config = node.config
    endpoint = client_endpoint(config.node_id, config.data_dir, config.client)
    if endpoint is None:
        task_status.started(())
        return
    await ClientService(node).run(endpoint, task_status=task_status)

