"""What the blocking and the asyncio client share, with no I/O: settings and argument checks,
the calls and their replies, the handshake's checks, the retry policy of a request, the
idempotency keys of writes, and a watch's bookkeeping.

Each client keeps only its I/O: the blocking one a trio thread with a port runtime
(:mod:`statesync.client._loop`), the asyncio one pyzmq's asyncio sockets
(:mod:`statesync.aio._session`). Time comes in as an argument (``now``), so the
policy here is the same under either clock and testable without a node.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Generic, Protocol, TypeVar

import attrs

from statesync import ports, protocol
from statesync._backoff import Backoff
from statesync.core import ABSENT, AbsentType, Path, PathLike, Value, as_path, format_path
from statesync.errors import (
    BadRequest,
    BadResumeToken,
    ClientError,
    ConnectionLost,
    InvalidArgument,
    MessageTooLarge,
    NodeError,
    NodeRefused,
    NodeUnavailable,
    PortClosedError,
    PortTransferredError,
    ProtocolMismatch,
    RequestFailed,
    RequestTimeout,
    StatesyncError,
)
from statesync.node._results import Conflict, Receipt
from statesync.node._watch import WatchEvent
from statesync.security import load_public_key, load_secret_key_file

T = TypeVar("T")
C = TypeVar("C")

log = logging.getLogger("statesync.client")

ENV_NODE: Final = "STATESYNC_NODE"
"""Environment variable naming the default node endpoint."""
ENV_KEY: Final = "STATESYNC_KEY"
"""Environment variable naming the client's secret key file (``NAME.key_secret``)."""
ENV_SERVER_KEY: Final = "STATESYNC_SERVER_KEY"
"""Environment variable holding the node's public key (Z85, or a ``NAME.key`` file)."""
WRITE_MARGIN_S: Final = 5.0
"""A write waits for its answer this long past its write concern's timeout."""
BACKOFF_MIN_S: Final = 0.02
"""First wait before connecting (or sending) again; it doubles up to BACKOFF_MAX_S."""
BACKOFF_MAX_S: Final = 1.0
PAYLOAD_BYTES_MAX: Final = 1_040_000
"""Largest request payload: under the wire's 1 MiB limit on one bytes field (MessageTooLarge beyond)."""
START_MARGIN_S: Final = 5.0
"""Starting a watch waits for the subscription this long past ``connect_timeout_s``."""
INFLIGHT_MAX: Final = 256
"""Default bound on the writes one client keeps in flight with ``submit`` (``inflight_max``)."""


def backoff() -> Backoff:
    """The one reconnect/resend policy of both clients."""
    return Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S)


def port_options(keys: ports.CurveKeys | None) -> ports.PortOptions:
    """The port options both clients use (the same Hello, window and heartbeats on the wire)."""
    return ports.PortOptions(payload_bytes_max=PAYLOAD_BYTES_MAX, heartbeat_interval_s=1.0, heartbeat_timeout_s=5.0, curve=keys)


# ------------------------------------------------------------------ settings


@attrs.frozen
class Settings:
    """A client's checked arguments; :meth:`of` raises ClientError naming what is wrong."""

    endpoint: str
    dial: str
    """The address with the server key the transport checks."""
    keys: ports.CurveKeys | None
    server_key: str | None
    timeout_s: float
    connect_timeout_s: float
    watch_buffer_max: int
    inflight_max: int

    @classmethod
    def of(
        cls,
        endpoint: str | None,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        watch_buffer_max: int,
        inflight_max: int = INFLIGHT_MAX,
        secret_key_file: str | os.PathLike[str] | None,
        server_key: str | os.PathLike[str] | None,
    ) -> Settings:
        endpoint = endpoint or os.environ.get(ENV_NODE)
        if not endpoint:
            raise ClientError(f"no node endpoint: pass Client('ipc:///path/to/client.sock') or set {ENV_NODE}")
        try:
            address, endpoint_key = ports.split_key(endpoint)
        except ports.InvalidKey as exc:
            raise ClientError(str(exc)) from exc
        if "://" not in address or address.split("://", 1)[0] not in ("ipc", "tcp", "inproc"):
            raise ClientError(f"{address!r} is not a node endpoint; use ipc:///path/to/client.sock or tcp://host:port")
        if min(timeout_s, connect_timeout_s, watch_buffer_max, inflight_max) <= 0:
            raise ClientError("timeout_s, connect_timeout_s, watch_buffer_max and inflight_max must be positive")
        keys, server = client_keys(secret_key_file, server_key, endpoint_key)
        return cls(endpoint, ports.with_key(address, server), keys, server, timeout_s, connect_timeout_s, watch_buffer_max, inflight_max)


class ClientBase:
    """The arguments and settings both clients take; a client adds its I/O in :meth:`_start`.

    ``endpoint`` defaults to the ``STATESYNC_NODE`` environment variable.
    ``timeout_s`` bounds each call (a write with ``ack`` other than ``local``
    gets its own ``timeout_s`` plus a margin); ``connect_timeout_s`` is how
    long a call waits for an unreachable node before :class:`NodeUnavailable`;
    ``inflight_max`` bounds the writes kept in flight by ``submit``.

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
        inflight_max: int = INFLIGHT_MAX,
        secret_key_file: str | os.PathLike[str] | None = None,
        server_key: str | os.PathLike[str] | None = None,
    ) -> None:
        settings = Settings.of(
            endpoint,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            watch_buffer_max=watch_buffer_max,
            inflight_max=inflight_max,
            secret_key_file=secret_key_file,
            server_key=server_key,
        )
        self.settings = settings
        self.endpoint = settings.endpoint
        self.server_key: str | None = settings.server_key
        """The node's public key this client checks (None: no CURVE)."""
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.watch_buffer_max = watch_buffer_max
        self._calls = Calls(settings)
        self._closed = False
        self._start()

    def _start(self) -> None:
        """The client's own state (its I/O), after the settings."""


def client_keys(
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


def checked(ack: object, timeout_s: object) -> tuple[protocol.Ack, float | None]:
    """A write concern (or a sync's timeout), checked by the protocol's rules before anything is sent."""
    try:
        return protocol.check_ack(ack), protocol.check_timeout(timeout_s)
    except BadRequest as exc:
        raise InvalidArgument(str(exc)) from exc


def receipt(data: protocol.ReceiptData) -> Receipt:
    return Receipt(as_path(data.path), data.origin, data.seq, data.hlc, tuple(data.acked_by))


# --------------------------------------------------------------------- calls


@attrs.frozen
class Call(Generic[T]):
    """One request a client method makes: what to send, the reply class, how long to wait, the result."""

    request: protocol.Request
    reply: type[Any]
    timeout_s: float
    result: Callable[[Any], T]


def _hello_dict(reply: protocol.HelloReply) -> dict[str, Any]:
    return {"node_id": reply.node_id, "protocol": reply.protocol, "endpoints": reply.endpoints, "client_endpoints": reply.client_endpoints}


def _conflicts(reply: protocol.ConflictsReply) -> list[Conflict]:
    return [Conflict(v.value, v.origin, v.seq, v.hlc, v.omitted) for v in reply.versions]


def _same(reply: T) -> T:
    return reply


def _receipts(reply: protocol.SetManyReply) -> list[Receipt]:
    return [receipt(r) for r in reply.receipts]


class Keys:
    """A client's idempotency keys: a random client id and a sequence, one key per write.

    The id is 128 random bits, so no other client can guess it; a forked child
    takes a new one (:meth:`renew`) so parent and child never share keys.
    """

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.client_id = secrets.token_hex(16)
        self._seq = itertools.count(1)

    def next(self) -> protocol.IdemKey:
        return protocol.IdemKey(self.client_id, next(self._seq))


class Calls:
    """The requests behind each client method, built and checked the same way in both clients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys()

    def ping(self) -> Call[dict[str, Any]]:
        return Call(protocol.Hello(protocol.PROTOCOL), protocol.HelloReply, self.settings.timeout_s, _hello_dict)

    def plain(self, request: protocol.Request, reply: type[T], timeout_s: float | None = None) -> Call[T]:
        """``request`` with its reply as the result (the lease requests); ``timeout_s`` defaults to the client's."""
        return Call(request, reply, timeout_s or self.settings.timeout_s, _same)

    def get(self, path: Path) -> Call[protocol.GetReply]:
        return Call(protocol.Get(path), protocol.GetReply, self.settings.timeout_s, _same)

    def conflicts(self, path: PathLike) -> Call[list[Conflict]]:
        return Call(protocol.Conflicts(as_path(path)), protocol.ConflictsReply, self.settings.timeout_s, _conflicts)

    def status(self) -> Call[dict[str, Any]]:
        return Call(protocol.Status(), protocol.StatusReply, self.settings.timeout_s, lambda r: r.status)

    def sync(self, timeout_s: float) -> Call[bool]:
        _, timeout = checked("local", timeout_s)
        return Call(protocol.Sync(timeout), protocol.SyncReply, timeout_s + WRITE_MARGIN_S, lambda r: r.answered)

    def _concern(self, ack: object, timeout_s: float | None) -> tuple[protocol.Ack, float]:
        ack, concern = checked(ack, timeout_s)
        return ack, concern if concern is not None else self.settings.timeout_s

    def set(
        self, path: PathLike, value: Any, ack: object, timeout_s: float | None, lease: protocol.LeaseRef | None = None
    ) -> Call[Receipt]:
        ack, concern = self._concern(ack, timeout_s)
        request = protocol.Set(as_path(path), value, ack=ack, timeout_s=concern, key=self.keys.next(), lease=lease)
        return Call(request, protocol.WriteReply, concern + WRITE_MARGIN_S, lambda r: receipt(r.receipt))

    def set_many(self, items: Iterable[tuple[PathLike, Any]], ack: object, timeout_s: float | None) -> Call[list[Receipt]]:
        ack, concern = self._concern(ack, timeout_s)
        pairs = tuple((as_path(p), v) for p, v in items)
        request = protocol.SetMany(pairs, ack=ack, timeout_s=concern, key=self.keys.next())
        return Call(request, protocol.SetManyReply, concern + WRITE_MARGIN_S, _receipts)

    def delete(self, path: PathLike, ack: object, timeout_s: float | None) -> Call[Receipt]:
        ack, concern = self._concern(ack, timeout_s)
        request = protocol.Delete(as_path(path), ack=ack, timeout_s=concern, key=self.keys.next())
        return Call(request, protocol.WriteReply, concern + WRITE_MARGIN_S, lambda r: receipt(r.receipt))

    def edit(
        self, cls: type[protocol.TypedEdit], path: PathLike, fields: tuple[Any, ...], ack: object, timeout_s: float | None
    ) -> Call[Receipt]:
        """A typed edit (``protocol.TextInsert`` and its kin) with its fields, keyed like ``set``."""
        ack, concern = self._concern(ack, timeout_s)
        request = cls(as_path(path), *fields, ack=ack, timeout_s=concern, key=self.keys.next())
        return Call(request, protocol.WriteReply, concern + WRITE_MARGIN_S, lambda r: receipt(r.receipt))

    def cut(self, peer: str) -> Call[None]:
        return Call(protocol.Cut(peer), protocol.Empty, self.settings.timeout_s, lambda _: None)

    def heal(self, peer: str | None) -> Call[None]:
        return Call(protocol.Heal(peer), protocol.Empty, self.settings.timeout_s, lambda _: None)


def found(reply: protocol.GetReply, default: Any) -> Any:
    return reply.value if reply.found else default


def or_default(value: Value | AbsentType, default: Any) -> Any:
    return default if value is ABSENT else value


# ---------------------------------------------------------------- replies


def reply_of(data: object, cls: type[T], endpoint: str) -> T:
    """Decode a reply; an error reply raises its error (an access refusal names the node)."""
    refused = isinstance(data, dict) and data.get("code") == protocol.ErrorCode.ACCESS_DENIED
    return protocol.decode_reply(data, cls, prefix=f"the node at {endpoint} refused: " if refused else "")


def stream_reader(endpoint: str) -> protocol.StreamReader[WatchEvent]:
    """A reader of one stream's messages, making the node's WatchEvents (an access refusal names the node)."""
    return protocol.StreamReader(WatchEvent, prefix=f"the node at {endpoint}: ")


# ---------------------------------------------------------------- connecting


HELLO: Final = protocol.encode_request(protocol.Hello(protocol.PROTOCOL))


def unavailable(endpoint: str, waited: float, detail: str) -> NodeUnavailable:
    address, _ = ports.split_key(endpoint)
    hint = ""
    if address.startswith("ipc://") and not os.path.exists(address[len("ipc://") :]):
        hint = " (its socket file does not exist)"
    return NodeUnavailable(
        f"no statesync node answered at {endpoint}{hint} within {waited:g} s{detail}; "
        "check that the node is running and that this is its client endpoint (the 'client' setting, shown by its log)"
    )


class Connecting:
    """One connect's attempts, with backoff, until ``deadline`` (the caller bounds it:
    ``connect_timeout_s`` for a first connection, a call's whole timeout after a lost one)."""

    def __init__(self, endpoint: str, now: float, deadline: float, *, patient: bool = False) -> None:
        self.endpoint = endpoint
        self.start = now
        self.limit = deadline
        self.patient = patient
        """A client without keys reconnecting (after a lost connection, or to a node that
        answered before): a refused handshake (a restarting node may refuse half-open
        connections) is tried again too, until the deadline, which then names it as the
        last error. A client with keys is refused at once (its key was revoked)."""
        self.backoff = backoff()
        self.detail = ""

    def remaining(self, now: float) -> float:
        """Seconds left for the next attempt; NodeUnavailable when none are."""
        remaining = self.limit - now
        if remaining <= 0:
            raise unavailable(self.endpoint, round(now - self.start, 2), self.detail)
        return remaining

    def failed(self, exc: BaseException, now: float, *, timed_out: bool) -> float:
        """An attempt failed (no answer, refused socket): the seconds to wait before the next."""
        self.detail = "" if timed_out else f" (last error: {exc})"
        return min(self.backoff.next_s(), max(0.0, self.limit - now))

    def handshake_failed(self, exc: BaseException, now: float) -> float:
        """The node refused the handshake: NodeRefused at once, or (patient) the seconds to wait."""
        if not self.patient:
            raise NodeRefused(str(exc)) from exc
        return self.failed(exc, now, timed_out=False)

    def refused(self, exc: ProtocolMismatch) -> ProtocolMismatch:
        return ProtocolMismatch(f"the node at {self.endpoint} refused the handshake: {exc}")

    def hello(self, data: object) -> protocol.HelloReply:
        """The node's answer to ``hello``, checked: ProtocolMismatch when it speaks another version."""
        reply = reply_of(data, protocol.HelloReply, self.endpoint)
        if reply.protocol != protocol.PROTOCOL:
            raise ProtocolMismatch(
                f"the node at {self.endpoint} speaks client protocol {reply.protocol}, this client "
                f"{protocol.PROTOCOL}; use the same statesync version on both sides"
            )
        return reply


# ----------------------------------------------------------------- requests


RETRY_SAFE_OPS: Final = protocol.RETRY_SAFE | protocol.WRITE_OPS
"""What these clients send again after a lost connection: reads, and writes (they carry a key)."""


class Attempts:
    """One request's tries, by the protocol's retry rules, until its deadline.

    A request goes again on a fresh connection when the one it went on died
    before the answer, if it is safe to (:data:`statesync.protocol.RETRY_SAFE`,
    or a write carrying an idempotency key, which the node answers with the
    original receipt); waits between tries back off. The call's whole timeout
    bounds it: a node that restarts within it answers the retry.
    """

    def __init__(self, endpoint: str, request: protocol.Request, timeout_s: float, now: float) -> None:
        self.endpoint = endpoint
        self.op = request.OP
        self.timeout_s = timeout_s
        self.msg = protocol.encode_request(request)
        self.deadline = now + timeout_s
        self.retry = self.op in protocol.RETRY_SAFE or getattr(request, "key", None) is not None
        self.backoff = backoff()
        self.lost_once = False

    def remaining(self, now: float) -> float:
        """Seconds left; NodeUnavailable when none are."""
        remaining = self.deadline - now
        if remaining <= 0:
            raise NodeUnavailable(f"the node at {self.endpoint} did not answer within {self.timeout_s:g} s; it is overloaded or stuck")
        return remaining

    def connect_deadline(self, now: float, connect_timeout_s: float) -> float:
        """How long connecting may take: ``connect_timeout_s`` first, the call's whole deadline after a lost connection."""
        return self.deadline if self.lost_once else min(self.deadline, now + connect_timeout_s)

    def lost(self, exc: BaseException, now: float) -> float:
        """The connection closed under the request: seconds to wait before the next try, or raise ConnectionLost."""
        if not self.retry:
            raise ConnectionLost(
                f"the connection to {self.endpoint} closed during a {self.op}; it may or may not have been applied: read it back"
            ) from exc
        self.lost_once = True
        return min(self.backoff.next_s(), max(0.0, self.deadline - now))

    def error(self, exc: BaseException) -> StatesyncError:
        """The error a failed try raises (not a lost connection)."""
        if isinstance(exc, RequestTimeout):
            return NodeUnavailable(
                f"the node at {self.endpoint} did not answer a {self.op} request within {self.timeout_s:g} s; it is overloaded or stuck"
            )
        if isinstance(exc, MessageTooLarge):
            return ClientError(
                f"the {self.op} request is too large: {exc}; the client protocol carries about 1 MB per request: "
                "write a large subtree in several calls"
            )
        remote = exc.remote_error if isinstance(exc, RequestFailed) else str(exc)
        return NodeError(f"the node at {self.endpoint} failed the {self.op} request: {remote}")


class RequestIO(Protocol[C]):
    """What a request needs of a client's I/O (``C``: its connection to the node)."""

    def now(self) -> float: ...

    async def connection(self, deadline: float, patient: bool) -> C:
        """The current connection, made (checked with ``hello``) if there is none, until ``deadline``
        (``patient``: after a lost one, see :attr:`Connecting.patient`)."""

    def dead(self, conn: C) -> bool: ...

    def forget(self, conn: C) -> None:
        """``conn`` died: the next request makes a new one."""

    async def send(self, conn: C, msg: dict[str, Any], timeout_s: float) -> object: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...


async def request(io: RequestIO[C], tries: Attempts, connect_timeout_s: float) -> object:
    """Send a request through ``io`` by the retry rules of ``tries``; the raw reply."""
    while True:
        conn = await io.connection(tries.connect_deadline(io.now(), connect_timeout_s), tries.lost_once)
        remaining = tries.remaining(io.now())
        if io.dead(conn):  # died since: nothing was sent on it yet, so any request may go again
            io.forget(conn)
            continue
        try:
            return await io.send(conn, tries.msg, remaining)
        except LOST as exc:
            io.forget(conn)
            await io.sleep(tries.lost(exc, io.now()))
        except FAILED as exc:
            raise tries.error(exc) from exc


LOST: Final = (PortClosedError, PortTransferredError)
"""Errors of a request whose connection died under it (see :meth:`Attempts.lost`)."""
FAILED: Final = (RequestTimeout, MessageTooLarge, RequestFailed)
"""Errors of a request that got no usable answer (see :meth:`Attempts.error`)."""


# ------------------------------------------------------------------- watches


class WatchBuffer:
    """A watch's state both clients keep: the buffered events, lag and reconnect counts.

    The I/O side (a trio task, an asyncio task) feeds it what a subscription
    sends (:meth:`feed`); the consumer takes events. :meth:`_notify` tells the
    consumer something changed (a condition, an event: each client's own).
    """

    def __init__(self, prefix: Path, buffer_max: int, resume: str | None = None) -> None:
        self.prefix = prefix
        self.resume = resume
        """The resume token of the last event (or subtree) received: a re-made subscription
        starts after it, so a reconnect or a node restart loses no change (None: none yet)."""
        self.error: StatesyncError | None = None
        """What ended the watch when it was not ``close()`` (for example NodeRefused)."""
        self.initial: Value | AbsentType = ABSENT
        self.lag_count = 0
        self.reconnects = 0
        self._buffer_max = buffer_max
        self._buffer: deque[WatchEvent] = deque()
        self._closed = False
        self._lagged = False

    @property
    def closed(self) -> bool:
        return self._closed

    def is_closed(self) -> bool:
        """Whether the watch ended (a method, so a type checker re-reads it after a wait)."""
        return self._closed

    def pending(self) -> int:
        """Events buffered and not yet taken."""
        return len(self._buffer)

    def _notify(self) -> None:
        """Wake the consumer (called with the client's lock held, if it has one)."""

    def _end(self, error: StatesyncError | None = None) -> None:
        """No more events (``error`` says why, if not ``close()``)."""
        if error is not None:
            self.error = error
        self._closed = True
        self._notify()

    def _push_now(self, event: WatchEvent) -> bool:
        """Queue an event; False when the buffer overflowed (events dropped, resubscribe later)."""
        if self._closed:
            return False
        if len(self._buffer) >= self._buffer_max:
            self._buffer.clear()
            self._lagged = True
            self.resume = None  # the events dropped here are gone: the next subscription starts afresh
            self.lag_count += 1
            self._notify()
            return False
        self._buffer.append(event)
        if event.resume:
            self.resume = event.resume
        self._notify()
        return True

    def _push(self, event: WatchEvent) -> bool:
        return self._push_now(event)

    def _count_lag(self) -> None:
        self.lag_count += 1

    def feed(self, item: object, sub: Subscription) -> bool:
        """Take one item of the subscription; False when the subscription is over (closed, overflowed)."""
        if isinstance(item, WatchEvent):
            return self._push(item)
        if isinstance(item, protocol.Subtree):
            if item.kind == "ready" and (sub.first or item.resumed):
                sub.ready = True
                if not item.resumed:
                    self.initial = item.value
                    self.resume = item.resume or None
                if sub.first:
                    sub.started()
                return True  # a resumed subscription: the changes after the token follow
            first = not sub.ready and sub.first
            sub.ready = sub.ready or item.kind in ("ready", "lagged")
            if item.kind == "lagged":
                self._count_lag()
            # a re-made subscription's ready, or a lagged: the whole current subtree
            pushed = self._push(WatchEvent("lagged", self.prefix, item.value, ABSENT, "", 0, item.resume))
            if first:
                sub.started()
            return pushed
        return not isinstance(item, protocol.Closed)


@attrs.define
class Subscription:
    """One subscription of a watch (one port): whether it is the first and whether it got ready."""

    first: bool
    started: Callable[[], None]
    ready: bool = False


class Resubscribing:
    """A watch's subscriptions over reconnects: what a failure means, how long to wait."""

    def __init__(self, connect_timeout_s: float, first_timeout_s: float) -> None:
        self.first = True
        self.backoff = backoff()
        self._connect_timeout_s = connect_timeout_s
        self._first_timeout_s = first_timeout_s

    def connect_within_s(self) -> float:
        return self._first_timeout_s if self.first else self._connect_timeout_s

    def connect_failed(self, exc: StatesyncError) -> float | None:
        """Connecting failed: seconds to wait and try again, or None when the watch ends with ``exc``.

        The first subscription raises (the caller of ``watch`` sees why).
        """
        if self.first:
            raise exc
        if isinstance(exc, NodeUnavailable):
            return self.backoff.next_s()
        return None

    def pump_failed(self, exc: Exception) -> None:
        """A subscription failed after it began; only the first one's error reaches the caller."""
        if self.first and not isinstance(exc, ports.PortsError):
            raise exc

    def pumped(self, sub: Subscription) -> None:
        if sub.ready:
            self.first = False
            self.backoff.reset()


def opening(prefix: Path, resume: str | None = None) -> dict[str, Any]:
    """The message that opens a watch's subscription: with its current value, or after ``resume``."""
    return protocol.encode_request(protocol.Watch(prefix, initial=True, resume=resume))


class WatchIO(Protocol[C]):
    """What a watch's subscriptions need of a client's I/O (``C``: one stream port)."""

    async def connect(self, within_s: float) -> C:
        """A new stream port to the node, checked with ``hello`` (a refusal ends the watch)."""

    def open(self, conn: C, msg: dict[str, Any]) -> None:
        """Post the opening message; ``conn`` is the watch's current port until :meth:`close`."""

    async def next_message(self, conn: C) -> object | None:
        """The next message on ``conn`` (None: it closed)."""

    def close(self, conn: C) -> None: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...

    async def resumed(self) -> None:
        """Until the consumer of a watch that lagged asks for more; then clear the lag."""


async def run_watch(watch: WatchBuffer, io: WatchIO[C], subs: Resubscribing, started: Callable[[], None], endpoint: str) -> None:
    """A watch's subscriptions, one after another, until it is closed (raises only before it started).

    Each subscription after the first resumes from the last token received; a node that
    refuses it (its data folder was made afresh) gets a fresh subscription, seen as ``lagged``.
    """
    while not watch.is_closed():
        try:
            conn = await io.connect(subs.connect_within_s())
        except (NodeUnavailable, ClientError, ProtocolMismatch) as exc:
            wait_s = subs.connect_failed(exc)
            if wait_s is None:
                log.warning("the watch of %r ended: %s", format_path(watch.prefix), exc)
                watch._end(exc)
                return
            await io.sleep(wait_s)
            continue
        if watch.is_closed():
            io.close(conn)
            return
        sub = Subscription(subs.first, started)
        reader = stream_reader(endpoint)
        try:
            io.open(conn, opening(watch.prefix, watch.resume))
            while (data := await io.next_message(conn)) is not None and watch.feed(reader.feed(data), sub):
                pass
        except (ports.PortsError, StatesyncError) as exc:
            subs.pump_failed(exc)
            if isinstance(exc, BadResumeToken):
                watch.resume = None
        finally:
            io.close(conn)
        subs.pumped(sub)
        if watch.is_closed():
            return
        if watch._lagged:
            await io.resumed()  # the consumer fell behind: resubscribe once it asks for more
        else:
            watch.reconnects += 1
            await io.sleep(subs.backoff.next_s())
