"""The client's background thread: one trio run with one port runtime, the connection
to the node (made on first use, re-made with backoff), requests with their retry
rules, snapshot streams and watch subscriptions.

What may be retried comes from the protocol (:data:`statesync.protocol.RETRY_SAFE`):
a request in that set goes again on a fresh connection when the old one died
under it; any other request (a write) goes again only when it certainly was not
sent, else :class:`~statesync.errors.ConnectionLost` says it may or may not have
been applied.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import trio

from statesync import ports, protocol
from statesync._backoff import Backoff
from statesync.core import ABSENT, AbsentType, Path, Value, format_path
from statesync.errors import (
    ClientClosed,
    ClientError,
    ConnectionLost,
    NodeError,
    NodeRefused,
    NodeUnavailable,
    ProtocolMismatch,
    StatesyncError,
)
from statesync.node._watch import WatchEvent

if TYPE_CHECKING:
    from statesync.client._client import Client
    from statesync.client._watch import Watch

log = logging.getLogger("statesync.client")

R = TypeVar("R")

BACKOFF_MIN_S: Final = 0.02
"""First wait before connecting again; it doubles up to BACKOFF_MAX_S."""
BACKOFF_MAX_S: Final = 1.0
PAYLOAD_BYTES_MAX: Final = 1_040_000
"""Largest request payload: under the wire's 1 MiB limit on one bytes field (MessageTooLarge beyond)."""


def _backoff() -> Backoff:
    return Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S)


def reply_of(data: object, cls: type[R], endpoint: str) -> R:
    """Decode a reply; an error reply raises its error (an access refusal names the node)."""
    refused = isinstance(data, dict) and data.get("code") == protocol.ErrorCode.ACCESS_DENIED
    return protocol.decode_reply(data, cls, prefix=f"the node at {endpoint} refused: " if refused else "")


def stream_reader(endpoint: str) -> protocol.StreamReader[WatchEvent]:
    """A reader of one stream's messages, making the node's WatchEvents (an access refusal names the node)."""
    return protocol.StreamReader(WatchEvent, prefix=f"the node at {endpoint}: ")


class Loop:
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
        options = ports.PortOptions(
            payload_bytes_max=PAYLOAD_BYTES_MAX, heartbeat_interval_s=1.0, heartbeat_timeout_s=5.0, curve=self.client._keys
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
        except trio.RunFinishedError as exc:
            raise ClientClosed(f"the client of {self.client.endpoint} is closed; make a new Client") from exc

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

    async def _connect(self, deadline: float) -> tuple[ports.MessagePort, protocol.HelloReply]:
        """A new port to the node, checked with ``hello``; retries with backoff until ``deadline``."""
        assert self.runtime is not None
        client = self.client
        start = trio.current_time()
        limit = min(deadline, start + client.connect_timeout_s)
        backoff = _backoff()
        detail = ""
        hello = protocol.encode_request(protocol.Hello(protocol.PROTOCOL))
        while True:
            remaining = limit - trio.current_time()
            if remaining <= 0:
                raise self._unavailable(round(trio.current_time() - start, 2), detail)
            options = attrs.evolve(self.runtime.options, connect_timeout_s=max(remaining, 0.05))
            try:
                with trio.fail_after(remaining):
                    port = await self.runtime.connect(client._dial, options)
                    try:
                        reply = reply_of(await port.request(hello, timeout_s=remaining), protocol.HelloReply, client.endpoint)
                    except BaseException:
                        port.close()
                        raise
            except ports.HandshakeFailed as exc:
                raise NodeRefused(str(exc)) from exc
            except (ports.PortsError, trio.TooSlowError, OSError) as exc:
                detail = f" (last error: {exc})" if not isinstance(exc, trio.TooSlowError) else ""
                await trio.sleep(min(backoff.next_s(), max(0.0, limit - trio.current_time())))
                continue
            except ProtocolMismatch as exc:
                raise ProtocolMismatch(f"the node at {client.endpoint} refused the handshake: {exc}") from exc
            if reply.protocol != protocol.PROTOCOL:
                port.close()
                raise ProtocolMismatch(
                    f"the node at {client.endpoint} speaks client protocol {reply.protocol}, this client "
                    f"{protocol.PROTOCOL}; use the same statesync version on both sides"
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
            self.node_id = hello.node_id
            return port

    async def request(self, request: protocol.Request, cls: type[R], timeout_s: float) -> R:
        """Send ``request`` and decode its reply as ``cls``, retrying as the protocol allows."""
        endpoint = self.client.endpoint
        op = request.OP
        msg = protocol.encode_request(request)
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
            except ports.RequestTimeout as exc:
                raise NodeUnavailable(
                    f"the node at {endpoint} did not answer a {op} request within {timeout_s:g} s; it is overloaded or stuck"
                ) from exc
            except (ports.PortClosedError, ports.PortTransferredError) as exc:
                if self.port is port:
                    self.port = None
                if op not in protocol.RETRY_SAFE:
                    raise ConnectionLost(
                        f"the connection to {endpoint} closed during a {op}; it may or may not have been applied: read it back"
                    ) from exc
                continue
            except ports.MessageTooLarge as exc:
                raise ClientError(
                    f"the {op} request is too large: {exc}; the client protocol carries about 1 MB per request: "
                    "write a large subtree in several calls"
                ) from exc
            except ports.RequestFailed as exc:
                raise NodeError(f"the node at {endpoint} failed the {op} request: {exc.remote_error}") from exc
            return reply_of(reply, cls, endpoint)

    # -- streams

    async def stream_tree(self, prefix: Path, timeout_s: float) -> Value | AbsentType:
        """The subtree at ``prefix`` (ABSENT: nothing), streamed in chunks; each message must come within ``timeout_s``."""
        deadline = trio.current_time() + timeout_s
        port, _ = await self._connect(deadline)
        endpoint = self.client.endpoint
        try:
            port.post_message(protocol.encode_request(protocol.Snapshot(prefix)))
            reader = stream_reader(endpoint)
            it = port.__aiter__()
            while True:
                with trio.move_on_after(timeout_s) as scope:
                    try:
                        event = await it.__anext__()
                    except StopAsyncIteration:
                        event = None
                if scope.cancelled_caught:
                    raise NodeUnavailable(f"the node at {endpoint} stopped sending the snapshot for {timeout_s:g} s")
                if event is None or event.type == "close":
                    raise ConnectionLost(f"the connection to {endpoint} closed during a snapshot; try again")
                if event.type != "message":
                    continue
                item = reader.feed(event.data)
                if isinstance(item, protocol.Subtree) and item.kind == "end":
                    return item.value
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
            watch._end()

    async def _watch_loop(self, watch: Watch, timeout_s: float, started: Callable[[], None]) -> None:
        watch._token = self.token
        watch._resume = trio.Event()
        first = True
        backoff = _backoff()
        opening = protocol.encode_request(protocol.Watch(watch.prefix, initial=True))
        while not watch.closed:
            try:
                port, _ = await self._connect(trio.current_time() + (timeout_s if first else self.client.connect_timeout_s))
            except NodeUnavailable:
                if first:
                    raise
                await trio.sleep(backoff.next_s())
                continue
            except (ClientError, ProtocolMismatch) as exc:
                if first:
                    raise
                log.warning("the watch of %r ended: %s", format_path(watch.prefix), exc)
                watch._end(exc)
                return
            if watch.is_closed():
                port.close()
                return
            watch._port = port
            try:
                port.post_message(opening)
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
                backoff.reset()
            if watch.is_closed():
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
                await trio.sleep(backoff.next_s())

    async def _pump(self, watch: Watch, port: ports.MessagePort, first: bool, started: Callable[[], None]) -> bool:
        """Deliver one subscription's messages; True once it was ready."""
        reader = stream_reader(self.client.endpoint)
        ready = False
        prefix = watch.prefix
        async for event in port:
            if event.type != "message":
                continue
            item = reader.feed(event.data)
            if isinstance(item, WatchEvent):
                if not watch._push(item):
                    return ready
            elif isinstance(item, protocol.Subtree):
                if item.kind == "ready" and first:
                    ready = True
                    watch.initial = item.value
                    started()
                    continue
                ready = ready or item.kind == "ready"
                if item.kind == "lagged":
                    with watch._cond:
                        watch.lag_count += 1
                # a re-made subscription's ready, or a lagged: the whole current subtree
                if not watch._push(WatchEvent("lagged", prefix, item.value, ABSENT, "", 0)):
                    return ready
            elif isinstance(item, protocol.Closed):
                return ready
        return ready
