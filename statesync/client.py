"""``statesync.Client``: a blocking, thread-safe client of one node, for ordinary programs.

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
answer, then raises :class:`NodeUnavailable` naming the endpoint. Reads are
retried on a fresh connection when the old one died under them; a write is
retried only when it certainly was not sent (otherwise :class:`ConnectionLost`
says it may or may not have been applied). Watches re-subscribe on their own
and then deliver one ``lagged`` event carrying the whole current subtree,
since changes made while disconnected are not replayed one by one.

Against a node with keys (CURVE), the client needs its own key pair and the
node's public key: ``Client(endpoint, secret_key_file="me.key_secret",
server_key=...)``, or the key in the endpoint (``tcp://host:7111?key=<Z85>``,
as the node's log prints it), or the ``STATESYNC_KEY`` and
``STATESYNC_SERVER_KEY`` environment variables. A node that refuses the key
raises :class:`NodeRefused` at once (no retry); a request the key may not make
raises :class:`AccessDenied`.

The wire protocol is described in ``statesync/node/_service.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Literal

import attrs
import trio

from statesync import ports
from statesync.core import (
    InvalidPath,
    InvalidValue,
    Path,
    PathLike,
    StatesyncError,
    Value,
    WriteConcernError,
    as_path,
    format_path,
)
from statesync.security import load_public_key, load_secret_key_file

__all__ = [
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
    "Watch",
    "WatchEvent",
    "WriteResult",
]

log = logging.getLogger("statesync.client")

PROTOCOL: Final = 1
ENV_NODE: Final = "STATESYNC_NODE"
"""Environment variable naming the default node endpoint."""
ENV_KEY: Final = "STATESYNC_KEY"
"""Environment variable naming the client's secret key file (``NAME.key_secret``)."""
ENV_SERVER_KEY: Final = "STATESYNC_SERVER_KEY"
"""Environment variable holding the node's public key (Z85, or a ``NAME.key`` file)."""
_READS: Final = frozenset({"hello", "get", "conflicts", "status", "sync", "cut", "heal"})
_BACKOFF_MIN_S: Final = 0.02
_BACKOFF_MAX_S: Final = 1.0

Ack = Literal["local", "all"] | int


# ----------------------------------------------------------------------- errors


class ClientError(StatesyncError):
    """Base of the errors a :class:`Client` raises on its own behalf."""


class NodeUnavailable(ClientError):
    """No node answered at the endpoint in time; the message says what to check."""


class NodeRefused(ClientError):
    """The node turned this client away at the handshake: it does not admit this key, the
    server key is wrong, or one side uses keys and the other does not. Retrying does not
    help; the message says what to check."""


class ConnectionLost(ClientError):
    """The connection died during a write: it may or may not have been applied."""


class ClientClosed(ClientError):
    """The client was closed; make a new one."""


class InvalidArgument(ClientError, ValueError):
    """An argument of a Client method is out of range; the message says which."""


def _check_ack(ack: object) -> None:
    if ack in ("local", "all") or (isinstance(ack, int) and not isinstance(ack, bool) and ack >= 0):
        return
    raise InvalidArgument(f"ack = {ack!r}; use 'local', 'all' or a number of peers")


class NodeError(StatesyncError):
    """The node refused or failed a request; ``type_name`` is its error class there."""

    def __init__(self, message: str, *, type_name: str) -> None:
        super().__init__(message)
        self.type_name = type_name


class AccessDenied(NodeError):
    """This client's key may not do that on the node (a read-only key writing, a write
    key outside its prefixes); nothing was changed."""


def _raise_for(reply: Value, endpoint: str) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise NodeError(f"the node at {endpoint} sent an answer this client does not understand", type_name="Protocol")
    if reply.get("ok"):
        return reply
    type_name = str(reply.get("type", "Error"))
    text = str(reply.get("error", "unknown error"))
    if type_name == "WriteConcernError":
        missing = reply.get("missing")
        dot = reply.get("dot")
        origin, seq = (str(dot[0]), int(dot[1])) if isinstance(dot, list) and len(dot) == 2 and isinstance(dot[1], int) else ("", 0)
        raise WriteConcernError(
            text, missing=tuple(str(m) for m in missing) if isinstance(missing, list) else (), dot=(origin, seq)
        )
    if type_name == "InvalidPath":
        raise InvalidPath(text)
    if type_name == "InvalidValue":
        raise InvalidValue(text)
    if type_name == "AccessDenied":
        raise AccessDenied(f"the node at {endpoint} refused: {text}", type_name=type_name)
    raise NodeError(text, type_name=type_name)


# ----------------------------------------------------------------------- values


@attrs.frozen
class WriteResult:
    """What a write returns: its dot (``origin``, ``seq``), timestamp and who acknowledged it."""

    path: str
    origin: str
    seq: int
    hlc: int
    acked_by: tuple[str, ...]

    @property
    def dot(self) -> tuple[str, int]:
        return (self.origin, self.seq)

    @classmethod
    def _of(cls, raw: dict[str, Any]) -> WriteResult:
        return cls(str(raw["path"]), str(raw["origin"]), int(raw["seq"]), int(raw["hlc"]), tuple(raw["acked_by"]))


@attrs.frozen
class Conflict:
    """One concurrent version of a leaf (see :meth:`Client.conflicts`)."""

    value: Value
    origin: str
    seq: int
    hlc: int


@attrs.frozen
class WatchEvent:
    """One change under a watched prefix.

    ``kind`` is ``put``, ``delete`` or ``lagged``. ``path`` is the leaf path (a
    tuple; ``key`` its text form); ``value`` and ``old`` the values after and
    before (None where there is none); ``origin`` and ``seq`` name the write.
    A ``lagged`` event means changes were skipped (the watcher fell behind, or
    the connection was re-made): ``path`` is then the watched prefix and
    ``value`` the whole current subtree there (None if empty).
    """

    kind: str
    path: Path
    value: Value
    old: Value
    origin: str
    seq: int

    @property
    def key(self) -> str:
        return format_path(self.path)

    @property
    def deleted(self) -> bool:
        return self.kind == "delete"

    def to_plain(self) -> dict[str, Value]:
        return {"kind": self.kind, "path": self.key, "value": self.value, "old": self.old, "origin": self.origin, "seq": self.seq}


def _assemble(leaves: list[tuple[Path, Value]]) -> Value:
    """Rebuild a subtree from its leaves (relative paths)."""
    root: dict[str, Value] = {}
    for path, value in leaves:
        if not path:
            return value
        node = root
        for seg in path[:-1]:
            child = node.setdefault(seg, {})
            assert isinstance(child, dict)
            node = child
        node[path[-1]] = value
    return root


class _TreeReader:
    """Collects leaf chunks and the closing message of a subtree sent by the node."""

    def __init__(self) -> None:
        self.leaves: list[tuple[Path, Value]] = []

    def feed(self, msg: dict[str, Any]) -> bool:
        if msg.get("kind") == "leaves":
            for segments, value in msg["leaves"]:
                self.leaves.append((tuple(segments), value))
            return True
        return False

    def value(self, msg: dict[str, Any]) -> tuple[bool, Value]:
        found = bool(msg.get("found"))
        if msg.get("omitted_count"):
            paths = ", ".join(format_path(tuple(p)) for p in msg.get("omitted", [])[:5])
            raise NodeError(
                f"{msg['omitted_count']} values under this path are over the client protocol's 1 MB message limit "
                f"(for example {paths}); read them on the node itself",
                type_name="TooLarge",
            )
        value = _assemble(self.leaves) if msg.get("chunked") else msg.get("value")
        self.leaves = []
        return found, value


# ----------------------------------------------------------------------- watches


class Watch:
    """Changes under one prefix, delivered in order: iterate it, or give a callback.

    ``initial`` holds the subtree as it was when the watch started (None if
    empty); the events that follow are the changes after that moment. The
    buffer holds at most ``buffer_max`` events; a consumer that falls that far
    behind loses them and next reads one ``lagged`` event with the whole
    current subtree. ``close()`` (or leaving a ``with`` block) ends it. A watch
    the node stops admitting (its key was removed) ends too: iteration stops
    and ``error`` says why.
    """

    def __init__(self, client: Client, prefix: Path, buffer_max: int) -> None:
        self.prefix = prefix
        self.error: ClientError | None = None
        """What ended the watch when it was not ``close()`` (for example NodeRefused)."""
        self.initial: Value = None
        self.lag_count = 0
        self.reconnects = 0
        self._client = client
        self._buffer_max = buffer_max
        self._buffer: deque[WatchEvent] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._lagged = False
        self._resume_asked = False
        self._resume: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._port: ports.MessagePort | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<Watch {format_path(self.prefix)!r}{' closed' if self._closed else ''}>"

    # -- the loop's side

    def _push(self, event: WatchEvent) -> bool:
        """Queue an event; False when the buffer overflowed (events dropped, resubscribe later)."""
        with self._cond:
            if self._closed:
                return False
            if len(self._buffer) >= self._buffer_max:
                self._buffer.clear()
                self._lagged = True
                self.lag_count += 1
                self._cond.notify_all()
                return False
            self._buffer.append(event)
            self._cond.notify()
            return True

    # -- the consumer's side

    @property
    def closed(self) -> bool:
        return self._closed

    def _is_closed(self) -> bool:
        return self._closed

    def pending(self) -> int:
        """Events buffered and not yet taken."""
        return len(self._buffer)

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event, waiting up to ``timeout`` seconds (None: forever); None on timeout or once closed."""
        with self._cond:
            remaining = timeout
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if self._buffer:
                    return self._buffer.popleft()
                if self._closed:
                    return None
                if self._lagged and not self._resume_asked:
                    self._resume_asked = True
                    self._wake_loop()
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                self._cond.wait(remaining)

    def _wake_loop(self) -> None:
        resume, token = self._resume, self._token
        if resume is not None and token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(resume.set)

    def __iter__(self) -> Iterator[WatchEvent]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        """Stop watching; iteration ends after the events already buffered."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._client._close_watch(self)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------- the loop


class _Loop:
    """The background thread: a trio run with one port runtime."""

    def __init__(self, client: Client) -> None:
        self.pid = os.getpid()
        self.client = client
        self.port: ports.MessagePort | None = None
        self.node_id: str | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._connect_lock: trio.Lock | None = None
        self.runtime: ports.PortRuntime | None = None
        self.thread = threading.Thread(target=self._main, name=f"statesync-client {client.endpoint}", daemon=True)
        self.thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise ClientError(f"the client's background thread could not start: {self._failure}") from self._failure

    def _main(self) -> None:
        try:
            trio.run(self._amain)
        except BaseException as exc:
            if not self._ready.is_set():
                self._failure = exc
            else:
                log.exception("the statesync client's background thread failed")
        finally:
            self._ready.set()

    async def _amain(self) -> None:
        # Payloads stay under the wire's 1 MiB limit on one bytes field: a larger
        # request fails at the call with MessageTooLarge.
        options = ports.PortOptions(
            payload_bytes_max=1_040_000, heartbeat_interval_s=1.0, heartbeat_timeout_s=5.0, curve=self.client._keys
        )
        async with ports.open_runtime(options) as runtime:
            self.runtime = runtime
            self.token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._connect_lock = trio.Lock()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if threading.current_thread() is self.thread:
            raise ClientError("a Client method was called from the client's own thread; call it from another thread")
        with contextlib.suppress(RuntimeError):
            trio.lowlevel.current_trio_token()
            raise ClientError(
                "statesync.Client is blocking and was called from trio code: call it through trio.to_thread.run_sync, "
                "or use the node's trio API (statesync.open_node)"
            )
        try:
            return trio.from_thread.run(fn, *args, trio_token=self.token)
        except trio.RunFinishedError:
            raise ClientClosed(f"the client of {self.client.endpoint} is closed; make a new Client") from None

    def stop(self) -> None:
        stop, token = self._stop, self.token
        if stop is not None and token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=token)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=10.0)

    # -- connecting

    def _unavailable(self, waited: float, detail: str) -> NodeUnavailable:
        endpoint = self.client.endpoint
        address, _ = ports.split_key(endpoint)
        hint = ""
        if address.startswith("ipc://") and not os.path.exists(address[len("ipc://") :]):
            hint = " (its socket file does not exist)"
        return NodeUnavailable(
            f"no statesync node answered at {endpoint}{hint} within {waited:g} s{detail}; "
            "check that the node is running and that this is its client endpoint (the 'client' setting, shown by its log)"
        )

    async def _connect(self, deadline: float) -> tuple[ports.MessagePort, dict[str, Any]]:
        """A new port to the node, checked with ``hello``; retries with backoff until ``deadline``."""
        assert self.runtime is not None
        client = self.client
        start = trio.current_time()
        limit = min(deadline, start + client.connect_timeout_s)
        backoff = _BACKOFF_MIN_S
        detail = ""
        while True:
            remaining = limit - trio.current_time()
            if remaining <= 0:
                raise self._unavailable(round(trio.current_time() - start, 2), detail)
            options = attrs.evolve(self.runtime.options, connect_timeout_s=max(remaining, 0.05))
            try:
                with trio.fail_after(remaining):
                    port = await self.runtime.connect(client._dial, options)
                    try:
                        reply = _raise_for(await port.request({"op": "hello", "protocol": PROTOCOL}, timeout_s=remaining), client.endpoint)
                    except BaseException:
                        port.close()
                        raise
            except ports.HandshakeFailed as exc:
                raise NodeRefused(str(exc)) from None
            except (ports.PortsError, trio.TooSlowError, OSError) as exc:
                detail = f" (last error: {exc})" if not isinstance(exc, trio.TooSlowError) else ""
                await trio.sleep(min(backoff, max(0.0, limit - trio.current_time())))
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            if reply.get("protocol") != PROTOCOL:
                port.close()
                raise NodeError(
                    f"the node at {client.endpoint} speaks client protocol {reply.get('protocol')}, this client {PROTOCOL}; "
                    "use the same statesync version on both sides",
                    type_name="ProtocolMismatch",
                )
            return port, reply

    async def _request_port(self, deadline: float) -> ports.MessagePort:
        assert self._connect_lock is not None
        async with self._connect_lock:
            port = self.port
            if port is not None and not port.closed:
                return port
            port, hello = await self._connect(deadline)
            self.port = port
            self.node_id = str(hello.get("node_id"))
            return port

    async def request(self, msg: dict[str, Value], timeout_s: float) -> dict[str, Any]:
        endpoint = self.client.endpoint
        op = str(msg["op"])
        deadline = trio.current_time() + timeout_s
        while True:
            port = await self._request_port(deadline)
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                raise NodeUnavailable(f"the node at {endpoint} did not answer within {timeout_s:g} s; it is overloaded or stuck")
            if port.closed:  # died since: nothing was sent on it yet, so any request may go again
                if self.port is port:
                    self.port = None
                continue
            try:
                reply = await port.request(msg, timeout_s=remaining)
            except ports.RequestTimeout:
                raise NodeUnavailable(
                    f"the node at {endpoint} did not answer a {op} request within {timeout_s:g} s; it is overloaded or stuck"
                ) from None
            except (ports.PortClosedError, ports.PortTransferredError):
                if self.port is port:
                    self.port = None
                if op not in _READS:
                    raise ConnectionLost(
                        f"the connection to {endpoint} closed during a {op}; it may or may not have been applied: read it back"
                    ) from None
                continue
            except ports.MessageTooLarge as exc:
                raise ClientError(
                    f"the {op} request is too large: {exc}; the client protocol carries about 1 MB per request: "
                    "write a large subtree in several calls"
                ) from None
            except ports.RequestFailed as exc:
                raise NodeError(f"the node at {endpoint} failed the request: {exc.remote_error}", type_name="RequestFailed") from None
            return _raise_for(reply, endpoint)

    # -- streams

    async def stream_tree(self, op: str, prefix: Path, timeout_s: float) -> tuple[bool, Value]:
        """A snapshot of the subtree at ``prefix``, streamed in chunks; each message must come within ``timeout_s``."""
        deadline = trio.current_time() + timeout_s
        port, _ = await self._connect(deadline)
        try:
            port.post_message({"op": op, "prefix": format_path(prefix)})
            reader = _TreeReader()
            it = port.__aiter__()
            while True:
                with trio.move_on_after(timeout_s) as scope:
                    try:
                        event = await it.__anext__()
                    except StopAsyncIteration:
                        event = None
                if scope.cancelled_caught:
                    raise NodeUnavailable(f"the node at {self.client.endpoint} stopped sending the snapshot for {timeout_s:g} s")
                if event is None or event.type == "close":
                    raise ConnectionLost(f"the connection to {self.client.endpoint} closed during a snapshot; try again")
                if not isinstance(event.data, dict):
                    continue
                msg: dict[str, Any] = event.data
                if reader.feed(msg):
                    continue
                if msg.get("kind") == "error":
                    _raise_for({"ok": False, **msg}, self.client.endpoint)
                if msg.get("kind") == "end":
                    return reader.value(msg)
        finally:
            port.close()

    async def start_watch(self, watch: Watch, timeout_s: float) -> None:
        assert self._nursery is not None
        with trio.move_on_after(timeout_s + 5.0) as scope:
            await self._nursery.start(self._watch_task, watch, timeout_s)
        if scope.cancelled_caught:
            raise NodeUnavailable(f"the node at {self.client.endpoint} did not start the watch within {timeout_s + 5.0:g} s")

    async def _watch_task(self, watch: Watch, timeout_s: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False

        def on_started() -> None:
            nonlocal started
            started = True
            task_status.started()

        try:
            await self._watch_loop(watch, timeout_s, on_started)
        except Exception:
            if not started:
                raise
            log.exception("the watch of %r failed; it is closed", format_path(watch.prefix))
            with watch._cond:
                watch._closed = True
                watch._cond.notify_all()

    async def _watch_loop(self, watch: Watch, timeout_s: float, started: Callable[[], None]) -> None:
        watch._token = self.token
        watch._resume = trio.Event()
        first = True
        backoff = _BACKOFF_MIN_S
        while not watch._closed:
            try:
                port, _ = await self._connect(trio.current_time() + (timeout_s if first else self.client.connect_timeout_s))
            except NodeUnavailable:
                if first:
                    raise
                await trio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            except ClientError as exc:
                if first:
                    raise
                log.warning("the watch of %r ended: %s", format_path(watch.prefix), exc)
                with watch._cond:
                    watch.error = exc
                    watch._closed = True
                    watch._cond.notify_all()
                return
            if watch._is_closed():
                port.close()
                return
            watch._port = port
            try:
                port.post_message({"op": "watch", "prefix": format_path(watch.prefix), "initial": True})
                ready = await self._pump(watch, port, first, started)
            except ports.PortsError:
                ready = False
            except StatesyncError:
                if first:
                    raise
                ready = False
            finally:
                port.close()
                watch._port = None
            if ready:
                first = False
                backoff = _BACKOFF_MIN_S
            if watch._is_closed():
                return
            if watch._lagged:
                # The consumer fell behind: wait until it asks for more, then resubscribe.
                await watch._resume.wait()
                with watch._cond:
                    watch._lagged = False
                    watch._resume_asked = False
                watch._resume = trio.Event()
            else:
                watch.reconnects += 1
                await trio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _pump(self, watch: Watch, port: ports.MessagePort, first: bool, started: Callable[[], None]) -> bool:
        """Deliver one subscription's messages; True once it was ready."""
        reader = _TreeReader()
        ready = False
        prefix = watch.prefix
        async for event in port:
            if event.type != "message" or not isinstance(event.data, dict):
                continue
            msg: dict[str, Any] = event.data
            if reader.feed(msg):
                continue
            kind = msg.get("kind")
            if kind in ("put", "delete"):
                ok = watch._push(
                    WatchEvent(str(kind), as_path(str(msg["path"])), msg.get("value"), msg.get("old"), str(msg.get("origin", "")), int(msg.get("seq", 0)))
                )
                if not ok:
                    return ready
            elif kind == "ready":
                _, value = reader.value(msg)
                ready = True
                if first:
                    watch.initial = value
                    started()
                elif not watch._push(WatchEvent("lagged", prefix, value, None, "", 0)):
                    return ready
            elif kind == "lagged":
                _, value = reader.value(msg)
                with watch._cond:
                    watch.lag_count += 1
                if not watch._push(WatchEvent("lagged", prefix, value, None, "", 0)):
                    return ready
            elif kind == "error":
                _raise_for({"ok": False, **msg}, self.client.endpoint)
            elif kind == "closed":
                return ready
        return ready


# ----------------------------------------------------------------------- the client


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
            raise ClientError(str(exc)) from None
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
        self._loop_obj: _Loop | None = None
        self._closed = False
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()
        _live_clients.add(self)

    def __repr__(self) -> str:
        return f"<Client {self.endpoint}{' closed' if self._closed else ''}>"

    def _loop(self) -> _Loop:
        with self._lock:
            if self._closed:
                raise ClientClosed(f"the client of {self.endpoint} is closed; make a new Client")
            loop = self._loop_obj
            if loop is None or loop.pid != os.getpid() or not loop.thread.is_alive():
                loop = self._loop_obj = _Loop(self)
            return loop

    def _call(self, msg: dict[str, Value], timeout_s: float | None = None) -> dict[str, Any]:
        loop = self._loop()
        reply: dict[str, Any] = loop.run(loop.request, msg, timeout_s or self.timeout_s)
        return reply

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
        return self._call({"op": "hello", "protocol": PROTOCOL})

    def get(self, path: PathLike = "", default: Any = None) -> Any:
        """The value at ``path`` (a dict for a subtree), or ``default``."""
        key = format_path(as_path(path))
        try:
            reply = self._call({"op": "get", "path": key})
        except NodeError as exc:
            if exc.type_name != "TooLarge":
                raise
            found, value = self._stream("snapshot", as_path(path))
            return value if found else default
        return reply["value"] if reply["found"] else default

    def snapshot(self, prefix: PathLike = "") -> Any:
        """The whole tree (or the subtree at ``prefix``) as one dict, streamed in bounded chunks.

        Returns ``{}`` when there is nothing there.
        """
        found, value = self._stream("snapshot", as_path(prefix))
        return value if found else {}

    def _stream(self, op: str, prefix: Path) -> tuple[bool, Value]:
        loop = self._loop()
        result: tuple[bool, Value] = loop.run(loop.stream_tree, op, prefix, self.timeout_s)
        return result

    def conflicts(self, path: PathLike) -> list[Conflict]:
        """The concurrent versions at ``path`` (none under last-write-wins, or when there is no conflict)."""
        reply = self._call({"op": "conflicts", "path": format_path(as_path(path))})
        return [Conflict(v["value"], v["origin"], v["seq"], v["hlc"]) for v in reply["versions"]]

    def status(self) -> dict[str, Any]:
        """The node's status: peers, lag each way, unacknowledged writes, log size, last sync, progress."""
        status: dict[str, Any] = self._call({"op": "status"})["status"]
        return status

    def sync(self, timeout_s: float = 10.0) -> bool:
        """Run an anti-entropy round on the node now; True when every connected peer answered."""
        return bool(self._call({"op": "sync", "timeout_s": timeout_s}, timeout_s + 5.0)["answered"])

    # -- writes

    def set(self, path: PathLike, value: Any, *, ack: Ack = "local", timeout_s: float | None = None) -> WriteResult:
        """Write ``value`` at ``path`` (a dict writes a subtree).

        ``ack``: ``"local"`` returns once durable on the node, ``"all"`` once
        every connected peer acknowledged, ``N`` once N peers did; past
        ``timeout_s`` a WriteConcernError names the peers that did not answer
        (the write stays, and spreads later).
        """
        msg: dict[str, Value] = {"op": "set", "path": format_path(as_path(path)), "value": value, "ack": ack}
        return WriteResult._of(self._write(msg, timeout_s)["receipt"])

    def set_many(self, items: Iterable[tuple[PathLike, Any]], *, ack: Ack = "local", timeout_s: float | None = None) -> list[WriteResult]:
        """Several writes committed together (one transaction, one round of acks)."""
        pairs: list[Value] = [[format_path(as_path(p)), v] for p, v in items]
        reply = self._write({"op": "set_many", "items": pairs, "ack": ack}, timeout_s)
        return [WriteResult._of(r) for r in reply["receipts"]]

    def delete(self, path: PathLike, *, ack: Ack = "local", timeout_s: float | None = None) -> WriteResult:
        """Remove ``path`` and everything beneath it."""
        msg: dict[str, Value] = {"op": "delete", "path": format_path(as_path(path)), "ack": ack}
        return WriteResult._of(self._write(msg, timeout_s)["receipt"])

    def _write(self, msg: dict[str, Value], timeout_s: float | None) -> dict[str, Any]:
        _check_ack(msg.get("ack"))
        if timeout_s is not None and not timeout_s > 0:
            raise InvalidArgument(f"timeout_s = {timeout_s!r} must be a positive number of seconds")
        concern = timeout_s if timeout_s is not None else self.timeout_s
        msg["timeout_s"] = concern
        return self._call(msg, concern + 5.0)

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
            watch._thread = threading.Thread(target=_run_callback, args=(watch, callback), name=f"statesync-watch {format_path(path)}", daemon=True)
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
        self._call({"op": "cut", "peer": peer})

    def heal(self, peer: str | None = None) -> None:
        """Undo :meth:`cut` for ``peer`` (None: for every peer)."""
        self._call({"op": "heal", "peer": peer})

    # -- lifetime

    def close(self) -> None:
        """Close watches and the connection; the client cannot be used afterwards."""
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


def _run_callback(watch: Watch, callback: Callable[[WatchEvent], object]) -> None:
    for event in watch:
        try:
            callback(event)
        except Exception:
            log.exception("a watch callback for %r raised; the watch goes on", format_path(watch.prefix))


_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for client in list(_live_clients):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            client.close()
