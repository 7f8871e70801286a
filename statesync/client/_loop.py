"""The client's background thread: one trio run with one port runtime, the connection
to the node (made on first use, re-made with backoff), requests with their retry
rules, snapshot streams and watch subscriptions.

The connecting, retry and watch rules are :mod:`statesync.client._common`'s,
shared with the asyncio client; this module is the trio I/O that follows them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from statesync import ports, protocol
from statesync.client._common import (
    HELLO,
    Attempts,
    Call,
    Connecting,
    Resubscribing,
    port_options,
    reply_of,
    run_watch,
    stream_reader,
)
from statesync.client._common import request as send_request
from statesync.core import AbsentType, Path, Value, format_path
from statesync.errors import (
    ClientClosed,
    ClientError,
    ConnectionLost,
    NodeUnavailable,
    ProtocolMismatch,
)

if TYPE_CHECKING:
    from statesync.client._client import Client
    from statesync.client._watch import Watch

log = logging.getLogger("statesync.client")

R = TypeVar("R")


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
        async with ports.open_runtime(port_options(self.client.settings.keys)) as runtime:
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

    def submit(self, call: Call[Any], future: Future[Any]) -> None:
        """Start ``call`` in the loop without waiting; its result (or error) goes to ``future``."""
        if threading.current_thread() is self.thread:
            raise ClientError("Client.submit was called from the client's own thread; call it from another thread")
        assert self.token is not None and self._nursery is not None
        try:
            self.token.run_sync_soon(self._nursery.start_soon, self._complete, call, future)
        except trio.RunFinishedError as exc:
            raise ClientClosed(f"the client of {self.client.endpoint} is closed; make a new Client") from exc

    async def _complete(self, call: Call[Any], future: Future[Any]) -> None:
        try:
            result = call.result(await self.request(call.request, call.reply, call.timeout_s))
        except trio.Cancelled:
            future.set_exception(ClientClosed(f"the client of {self.client.endpoint} closed before the write was answered"))
            raise
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def stop(self) -> None:
        stop, token = self._stop, self.token
        if stop is not None and token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=token)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=10.0)

    # -- connecting

    async def _connect(self, deadline: float, patient: bool = False) -> tuple[ports.MessagePort, protocol.HelloReply]:
        """A new port to the node, checked with ``hello``; retries with backoff until ``deadline``."""
        assert self.runtime is not None
        settings = self.client.settings
        # without keys, once connected before, a refusal is most likely the node restarting
        patient = settings.keys is None and (patient or self.node_id is not None)
        tries = Connecting(settings.endpoint, trio.current_time(), deadline, patient=patient)
        while True:
            remaining = tries.remaining(trio.current_time())
            options = attrs.evolve(self.runtime.options, connect_timeout_s=max(remaining, 0.05))
            try:
                with trio.fail_after(remaining):
                    port = await self.runtime.connect(settings.dial, options)
                    try:
                        reply = tries.hello(await port.request(HELLO, timeout_s=remaining))
                    except BaseException:
                        port.close()
                        raise
            except ports.HandshakeFailed as exc:
                await trio.sleep(tries.handshake_failed(exc, trio.current_time()))
                continue
            except (ports.PortsError, trio.TooSlowError, OSError) as exc:
                await trio.sleep(tries.failed(exc, trio.current_time(), timed_out=isinstance(exc, trio.TooSlowError)))
                continue
            except ProtocolMismatch as exc:
                raise tries.refused(exc) from exc
            return port, reply

    async def _request_port(self, deadline: float, patient: bool = False) -> ports.MessagePort:
        assert self._connect_lock is not None
        async with self._connect_lock:
            port = self.port
            if port is not None and not port.closed:
                return port
            port, hello = await self._connect(deadline, patient)
            self.port = port
            self.node_id = hello.node_id
            return port

    async def request(self, request: protocol.Request, cls: type[R], timeout_s: float) -> R:
        """Send ``request`` and decode its reply as ``cls``, retrying as the protocol allows."""
        tries = Attempts(self.client.endpoint, request, timeout_s, trio.current_time())
        return reply_of(await send_request(self, tries, self.client.connect_timeout_s), cls, self.client.endpoint)

    # -- the request I/O (statesync.client._common.RequestIO)

    def now(self) -> float:
        return trio.current_time()

    async def connection(self, deadline: float, patient: bool) -> ports.MessagePort:
        return await self._request_port(deadline, patient)

    def dead(self, conn: ports.MessagePort) -> bool:
        return conn.closed

    def forget(self, conn: ports.MessagePort) -> None:
        if self.port is conn:
            self.port = None

    async def send(self, conn: ports.MessagePort, msg: dict[str, Any], timeout_s: float) -> object:
        return await conn.request(msg, timeout_s=timeout_s)

    def sleep(self, seconds: float) -> Awaitable[None]:
        return trio.sleep(seconds)

    # -- streams

    async def stream_tree(self, prefix: Path, timeout_s: float) -> Value | AbsentType:
        """The subtree at ``prefix`` (ABSENT: nothing), streamed in chunks; each message must come within ``timeout_s``."""
        port, _ = await self._connect(trio.current_time() + min(timeout_s, self.client.connect_timeout_s))
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
        subs = Resubscribing(self.client.connect_timeout_s, timeout_s)
        await run_watch(watch, _WatchIO(self, watch), subs, started, self.client.endpoint)


class _WatchIO:
    """A blocking watch's subscriptions on the loop's port runtime (statesync.client._common.WatchIO)."""

    def __init__(self, loop: Loop, watch: Watch) -> None:
        self.loop = loop
        self.watch = watch
        self.events: AsyncIterator[ports.MessageEvent] | None = None

    async def connect(self, within_s: float) -> ports.MessagePort:
        port, _ = await self.loop._connect(trio.current_time() + within_s)
        return port

    def open(self, conn: ports.MessagePort, msg: dict[str, Any]) -> None:
        self.watch._port = conn
        self.events = conn.__aiter__()
        conn.post_message(msg)

    async def next_message(self, conn: ports.MessagePort) -> object | None:
        assert self.events is not None
        async for event in self.events:
            if event.type == "message":
                return event.data
        return None

    def close(self, conn: ports.MessagePort) -> None:
        conn.close()
        self.watch._port = None

    def sleep(self, seconds: float) -> Awaitable[None]:
        return trio.sleep(seconds)

    async def resumed(self) -> None:
        watch = self.watch
        assert watch._resume is not None
        await watch._resume.wait()
        with watch._cond:
            watch._lagged = False
            watch._resume_asked = False
        watch._resume = trio.Event()
