"""The blocking :class:`Client` API: reads, writes, watches, keys, lifetime."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

import trio

from statesync import ports, protocol
from statesync.client._lease import PRESENCE_TTL_S, Lease, Presence, close_leases, grant
from statesync.client._loop import Loop
from statesync.client._watch import Watch, run_callback
from statesync.core import ABSENT, PathLike, as_path, format_path
from statesync.errors import BadRequest, ClientClosed, ClientError, InvalidArgument, TooLarge
from statesync.node._results import Conflict, Receipt
from statesync.node._watch import WatchEvent
from statesync.security import load_public_key, load_secret_key_file

ENV_NODE: Final = "STATESYNC_NODE"
"""Environment variable naming the default node endpoint."""
ENV_KEY: Final = "STATESYNC_KEY"
"""Environment variable naming the client's secret key file (``NAME.key_secret``)."""
ENV_SERVER_KEY: Final = "STATESYNC_SERVER_KEY"
"""Environment variable holding the node's public key (Z85, or a ``NAME.key`` file)."""
WRITE_MARGIN_S: Final = 5.0
"""A write waits for its answer this long past its write concern's timeout."""


def _receipt(data: protocol.ReceiptData) -> Receipt:
    return Receipt(as_path(data.path), data.origin, data.seq, data.hlc, tuple(data.acked_by))


def _checked(ack: object, timeout_s: object) -> tuple[protocol.Ack, float | None]:
    """A write concern (or a sync's timeout), checked by the protocol's rules before anything is sent."""
    try:
        return protocol.check_ack(ack), protocol.check_timeout(timeout_s)
    except BadRequest as exc:
        raise InvalidArgument(str(exc)) from exc


class Client:
    """A blocking, thread-safe client of the node serving clients at ``endpoint``.

    ``endpoint`` defaults to the ``STATESYNC_NODE`` environment variable.
    ``timeout_s`` bounds each call (a write with ``ack`` other than ``local``
    gets its own ``timeout_s`` plus a margin); ``connect_timeout_s`` is how
    long a call waits for an unreachable node before :class:`NodeUnavailable`.

    Keys, for a node that has them: ``secret_key_file`` (default
    ``$STATESYNC_KEY``) is this client's key pair; ``server_key`` (a public key,
    or a ``NAME.key`` file) is the node's, by default the endpoint's
    ``?key=``, else ``$STATESYNC_SERVER_KEY``, else, when the key file is the
    node's own, its public key.
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
        self._lock = threading.Lock()
        self._loop_obj: Loop | None = None
        self._closed = False
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()
        _live_clients.add(self)

    def __repr__(self) -> str:
        return f"<Client {self.endpoint}{' closed' if self._closed else ''}>"

    def _loop(self) -> Loop:
        with self._lock:
            if self._closed:
                raise ClientClosed(f"the client of {self.endpoint} is closed; make a new Client")
            loop = self._loop_obj
            if loop is None or loop.pid != os.getpid() or not loop.thread.is_alive():
                loop = self._loop_obj = Loop(self)
            return loop

    def _call(self, request: protocol.Request, cls: type[Any], timeout_s: float | None = None) -> Any:
        loop = self._loop()
        return loop.run(loop.request, request, cls, timeout_s or self.timeout_s)

    @property
    def node_id(self) -> str:
        """The id of the node this client talks to (connects if needed)."""
        loop = self._loop()
        if loop.node_id is None:
            self.ping()
        return str(loop.node_id)

    # -- reads

    def ping(self) -> dict[str, Any]:
        """Check the node answers: its id, protocol version and endpoints."""
        reply: protocol.HelloReply = self._call(protocol.Hello(protocol.PROTOCOL), protocol.HelloReply)
        return {
            "node_id": reply.node_id,
            "protocol": reply.protocol,
            "endpoints": reply.endpoints,
            "client_endpoints": reply.client_endpoints,
        }

    def get(self, path: PathLike = "", default: Any = None) -> Any:
        """The value at ``path`` (a dict for a subtree), or ``default``."""
        segments = as_path(path)
        try:
            reply: protocol.GetReply = self._call(protocol.Get(segments), protocol.GetReply)
        except TooLarge:
            value = self._stream(segments)
            return default if value is ABSENT else value
        return reply.value if reply.found else default

    def snapshot(self, prefix: PathLike = "") -> Any:
        """The whole tree (or the subtree at ``prefix``) as one dict, streamed in bounded chunks.

        Returns ``{}`` when there is nothing there.
        """
        value = self._stream(as_path(prefix))
        return {} if value is ABSENT else value

    def _stream(self, prefix: tuple[str, ...]) -> Any:
        loop = self._loop()
        return loop.run(loop.stream_tree, prefix, self.timeout_s)

    def conflicts(self, path: PathLike) -> list[Conflict]:
        """The concurrent versions at ``path`` (none under last-write-wins, or when there is no conflict)."""
        reply: protocol.ConflictsReply = self._call(protocol.Conflicts(as_path(path)), protocol.ConflictsReply)
        return [Conflict(v.value, v.origin, v.seq, v.hlc, v.omitted) for v in reply.versions]

    def status(self) -> dict[str, Any]:
        """The node's status: peers, lag each way, unacknowledged writes, log size, last sync, progress."""
        reply: protocol.StatusReply = self._call(protocol.Status(), protocol.StatusReply)
        return reply.status

    def sync(self, timeout_s: float = 10.0) -> bool:
        """Run an anti-entropy round on the node now; True when every connected peer answered."""
        _, timeout = _checked("local", timeout_s)
        reply: protocol.SyncReply = self._call(protocol.Sync(timeout), protocol.SyncReply, timeout_s + WRITE_MARGIN_S)
        return reply.answered

    # -- writes

    def set(self, path: PathLike, value: Any, *, ack: protocol.Ack = "local", timeout_s: float | None = None, lease: Lease | None = None) -> Receipt:
        """Write ``value`` at ``path`` (a dict writes a subtree).

        ``ack``: ``"local"`` returns once durable on the node, ``"all"`` once
        every connected peer acknowledged, ``N`` once N peers did; past
        ``timeout_s`` a WriteConcernError names the peers that did not answer
        (the write stays, and spreads later). With ``lease`` (from
        :meth:`lease`) the key is deleted on every replica when the lease ends.
        """
        ack, concern = self._concern(ack, timeout_s)
        ref = None if lease is None else lease.check()
        reply: protocol.WriteReply = self._call(protocol.Set(as_path(path), value, ack=ack, timeout_s=concern, lease=ref), protocol.WriteReply, concern + WRITE_MARGIN_S)
        return _receipt(reply.receipt)

    def set_many(self, items: Iterable[tuple[PathLike, Any]], *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> list[Receipt]:
        """Several writes committed together (one transaction, one round of acks)."""
        ack, concern = self._concern(ack, timeout_s)
        request = protocol.SetMany(tuple((as_path(p), v) for p, v in items), ack=ack, timeout_s=concern)
        reply: protocol.SetManyReply = self._call(request, protocol.SetManyReply, concern + WRITE_MARGIN_S)
        return [_receipt(r) for r in reply.receipts]

    def delete(self, path: PathLike, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> Receipt:
        """Remove ``path`` and everything beneath it."""
        ack, concern = self._concern(ack, timeout_s)
        reply: protocol.WriteReply = self._call(protocol.Delete(as_path(path), ack=ack, timeout_s=concern), protocol.WriteReply, concern + WRITE_MARGIN_S)
        return _receipt(reply.receipt)

    def _concern(self, ack: object, timeout_s: float | None) -> tuple[protocol.Ack, float]:
        ack, concern = _checked(ack, timeout_s)
        return ack, concern if concern is not None else self.timeout_s

    # -- leases and presence (statesync.client._lease, docs/leases.md)

    def lease(self, ttl_s: float) -> Lease:
        """A lease on the node, kept alive by this client until revoked, the ``with`` block ends or the client closes."""
        return grant(self, ttl_s)

    def presence(self, prefix: PathLike, state: Any, *, participant: str | None = None, ttl_s: float = PRESENCE_TTL_S) -> Presence:
        """Join ``prefix`` as one participant (``prefix.<participant>`` = ``state``, on a lease of its own)."""
        return Presence(self, prefix, state, participant=participant, ttl_s=ttl_s)

    # -- watches

    def watch(self, prefix: PathLike = "", callback: Callable[[WatchEvent], object] | None = None) -> Watch:
        """Watch changes under ``prefix``; returns once subscribed.

        Without ``callback``, iterate the returned :class:`Watch` (it blocks).
        With one, ``callback(event)`` runs for each event in a thread of its
        own (one per watch, in order; an exception is logged and the watch goes
        on). Close the watch, or the client, to stop.
        """
        path = as_path(prefix)
        watch = Watch(self, path, self.watch_buffer_max)
        loop = self._loop()
        loop.run(loop.start_watch, watch, self.connect_timeout_s)
        self._watches.add(watch)
        if callback is not None:
            watch._thread = threading.Thread(target=run_callback, args=(watch, callback), name=f"statesync-watch {format_path(path)}", daemon=True)
            watch._thread.start()
        return watch

    def _close_watch(self, watch: Watch) -> None:
        self._watches.discard(watch)
        loop = self._loop_obj
        if loop is None or loop.token is None or loop.pid != os.getpid():
            return

        def close() -> None:
            resume = watch._resume
            if resume is not None:
                resume.set()
            port = watch._port
            if port is not None:
                port.close()

        with contextlib.suppress(trio.RunFinishedError):
            loop.token.run_sync_soon(close)

    # -- fault injection (demos and tests)

    def cut(self, peer: str) -> None:
        """Fault injection: the node drops all traffic with ``peer`` until :meth:`heal`."""
        self._call(protocol.Cut(peer), protocol.Empty)

    def heal(self, peer: str | None = None) -> None:
        """Undo :meth:`cut` for ``peer`` (None: for every peer)."""
        self._call(protocol.Heal(peer), protocol.Empty)

    # -- lifetime

    def close(self) -> None:
        """Revoke its leases, close watches and the connection; the client cannot be used afterwards."""
        if not self._closed:
            close_leases(self)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, self._loop_obj = self._loop_obj, None
        for watch in list(self._watches):
            watch.close()
        if loop is not None and loop.pid == os.getpid():
            loop.stop()
        _live_clients.discard(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _client_keys(
    secret_key_file: str | os.PathLike[str] | None,
    server_key: str | os.PathLike[str] | None,
    endpoint_key: str | None,
) -> tuple[ports.CurveKeys | None, str | None]:
    """This client's key pair and the node's public key (None, None: no CURVE)."""
    key_file = secret_key_file if secret_key_file is not None else os.environ.get(ENV_KEY) or None
    keys = load_secret_key_file(key_file) if key_file is not None else None
    server: str | None
    if server_key is not None:
        server = load_public_key(server_key)
    elif endpoint_key is not None:
        server = endpoint_key
    elif os.environ.get(ENV_SERVER_KEY):
        server = load_public_key(os.environ[ENV_SERVER_KEY], f"${ENV_SERVER_KEY}")
    else:
        server = keys.public if keys is not None else None  # the node's own key file
    if keys is not None and server == keys.secret:
        raise ClientError(
            "the server key given is this client's SECRET key; give the node's public key, and make a "
            "new key pair (the secret one was exposed)"
        )
    if server is not None and keys is None:
        raise ClientError(
            f"a server key is given but no key pair for this client: pass secret_key_file= or set {ENV_KEY} "
            "(statesync keygen NAME makes one; the node must list its public key)"
        )
    return keys, server


_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for client in list(_live_clients):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            client.close()
