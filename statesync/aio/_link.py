"""One connection to a node for asyncio: a DEALER from ``zmq.asyncio`` carrying the ports
frames, with the pure :class:`~statesync.ports._protocol.PortsProtocol` doing the rest.

The wire is the trio runtime's (a node cannot tell the two apart): the same
socket options (``make_socket``), ``Hello`` first on its own priority frame,
``Welcome`` back, then ``Open`` and the ports' messages in frames the
protocol's connection queue (``Conn.take_frame``) makes, ``Ping`` when idle,
``Bye`` on close. Time is the asyncio loop's clock.

Sending: a kick sends the queued frames at once from the caller (pyzmq's
``send`` first tries without blocking); a frame that meets the high-water
mark waits in its future and the rest follow when it went (backpressure, no
task). Receiving is one task per connection; a second task watches the
socket's monitor (a TCP disconnect, a CURVE refusal) and heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any, Final, cast

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from statesync.errors import (
    ConnectError,
    HandshakeFailed,
    MessageTooLarge,
    PortClosedError,
    RequestFailed,
    RequestTimeout,
)
from statesync.ports import PortOptions, split_key
from statesync.ports._codec import decode, decode_envelopes, encode, encode_envelopes
from statesync.ports._curve import HANDSHAKE_EVENTS, describe_connect_failure
from statesync.ports._envelope import (
    KIND_ERROR,
    KIND_MESSAGE,
    PROTOCOL_VERSION,
    Bye,
    Hello,
    Ping,
    Welcome,
)
from statesync.ports._liveness import Liveness, Verdict
from statesync.ports._outbox import Conn
from statesync.ports._protocol import PortsProtocol
from statesync.ports._sequencing import CLOSE_ITEM, Item, PortEnd
from statesync.ports._transport import make_socket, normalize_endpoint
from statesync.wire import DecodeError

log = logging.getLogger("statesync.aio")

BAD_FRAMES_MAX: Final = 16
"""Undecodable frames the node may send before the connection is dropped (as the trio runtime)."""
TICK_MAX_S: Final = 0.25


def _expire(fut: asyncio.Future[tuple[int, bytes]], timeout_s: float) -> None:
    if not fut.done():
        fut.set_exception(RequestTimeout(f"no response within {timeout_s:g} s; the partner is slow or gone"))


class End(PortEnd):
    """A port end with the asyncio event its reader waits on."""

    __slots__ = ("changed",)

    def __init__(self, id_: int, partner: int, window: int, moves: int = 0) -> None:
        super().__init__(id_, partner, window, moves)
        self.changed = asyncio.Event()


class AioConn(Conn):
    """The protocol's view of the connection; a kick sends at once."""

    def __init__(self, link: Link, options: PortOptions) -> None:
        super().__init__(
            queue_max=options.link_queue_max,
            queue_bytes_max=options.link_queue_bytes_max,
            window=options.port_window,
        )
        self.link = link

    def kick(self) -> None:
        self.link.flush()


class Link:
    """One DEALER connection to a node's client endpoint and the ports on it."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, options: PortOptions) -> None:
        self.endpoint = endpoint
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.proto = PortsProtocol(secrets.token_hex(8), lambda: secrets.randbits(63), new_end=End)
        self.conn = AioConn(self, options)
        now = self.loop.time()
        self.live = Liveness(now, now, now, options.heartbeat_interval_s)
        self.up = asyncio.Event()
        self.gone = asyncio.Event()
        self._tasks: list[asyncio.Future[None]] = []
        self.dead = False
        self.reason = ""
        self.failure: str | None = None
        self.bad_frames = 0
        self._send_fut: asyncio.Future[Any] | None = None
        address, server_key = split_key(endpoint)
        self.sock: zmq.asyncio.Socket = make_socket(ctx, zmq.DEALER, options, server_key)  # type: ignore[assignment]
        self.conn.remote_key = server_key
        self.monitor: zmq.asyncio.Socket = self.sock.get_monitor_socket(int(zmq.EVENT_DISCONNECTED) | HANDSHAKE_EVENTS)
        try:
            self.sock.connect(normalize_endpoint(address))
        except zmq.ZMQError as e:
            self._close_sockets()
            raise ConnectError(f"cannot connect to {endpoint}: {e.strerror}; check the endpoint") from e
        hello = Hello(self.proto.id, PROTOCOL_VERSION, (), options.port_window, int(options.heartbeat_timeout_s * 1000))
        self.conn.put(hello, prio=True)
        self.flush()
        self._tasks = [
            asyncio.ensure_future(self._receiver()),
            asyncio.ensure_future(self._watchdog()),
        ]

    def __repr__(self) -> str:
        return f"<aio link {self.endpoint}{' dead' if self.dead else ''}>"

    async def wait_up(self, timeout_s: float) -> None:
        """Until the handshake is done; HandshakeFailed (refused) or ConnectError (no answer)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up_or_dead(), timeout_s)
        if self.up.is_set() and not self.dead:
            return
        if self.failure is not None:
            raise HandshakeFailed(self.failure)
        self.close("no handshake answer")
        raise ConnectError(f"no answer from {self.endpoint} within {timeout_s:g} s ({self.reason}); is a listener running there?")

    async def _up_or_dead(self) -> None:
        waits = [asyncio.ensure_future(self.up.wait()), asyncio.ensure_future(self.gone.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    # -- sending -------------------------------------------------------------------

    def flush(self) -> None:
        """Send what the protocol queued, until the socket is full (then when it has room)."""
        conn = self.conn
        o = self.options
        while not self.dead and (self._send_fut is None) and (conn.prio or conn.normal):
            taken = conn.take_frame(o.batch_messages_max, o.batch_bytes_max)
            if taken is None:
                return
            envs, priority = taken
            fut = cast("asyncio.Future[Any]", self.sock.send(encode_envelopes(envs, priority=priority), copy=False))
            self.live.last_send = self.loop.time()
            if not fut.done():
                self._send_fut = fut
                fut.add_done_callback(self._sent)
                return
            self._check_sent(fut)

    def _sent(self, fut: asyncio.Future[Any]) -> None:
        self._send_fut = None
        if self._check_sent(fut):
            self.flush()

    def _check_sent(self, fut: asyncio.Future[Any]) -> bool:
        if fut.cancelled():
            return False
        exc = fut.exception()
        if exc is not None:
            self.close(f"the node is unreachable ({exc})")
            return False
        return True

    # -- receiving -------------------------------------------------------------------

    async def _receiver(self) -> None:
        sock = self.sock
        try:
            while not self.dead:
                data = await sock.recv(copy=True)
                self.live.last_recv = self.loop.time()
                self._on_frame(data)
                self.apply()
        except (zmq.ZMQError, asyncio.CancelledError):
            pass
        except Exception:  # input from the network never crashes the client
            log.exception("the receiver of %r failed", self)
            self.close("the client's receiver failed")

    def _on_frame(self, data: bytes) -> None:
        try:
            messages = decode_envelopes(data)
        except DecodeError as e:
            self.bad_frames += 1
            log.warning("dropped an undecodable frame from %r: %s", self, e)
            if self.bad_frames > BAD_FRAMES_MAX:
                self.close("the node sent too many bad frames", bye=True)
            return
        now = self.live.last_recv
        for m in messages:
            if self.dead:
                return
            try:
                self._on_message(m, now)
            except Exception:
                self.bad_frames += 1
                log.exception("failed to handle %s from %r", type(m).__name__, self)

    def _on_message(self, m: object, now: float) -> None:
        if self.up.is_set():
            if self.proto.receive(self.conn, m, now):
                return
        elif type(m) is Welcome:
            if m.version != PROTOCOL_VERSION:
                self.close(f"the listener speaks protocol {m.version}, not {PROTOCOL_VERSION}")
                return
            conn = self.conn
            conn.remote_id = m.runtime_id
            conn.remote_endpoints = m.endpoints
            conn.window = min(self.options.port_window, m.window)
            self.live.peer_timeout(m.heartbeat_timeout_ms, self.options.heartbeat_interval_s)
            self.up.set()
            self.proto.link_up(conn, now)
            return
        if type(m) is Bye:
            if not self.up.is_set() and self.failure is None:
                self.failure = f"{split_key(self.endpoint)[0]} refused the connection: {m.reason}"
            self.close(f"the peer closed the connection ({m.reason})")
        elif type(m) is not Ping and type(m) is not Welcome:
            self.bad_frames += 1
            log.warning("dropped an unexpected %s from %r", type(m).__name__, self)

    async def _watchdog(self) -> None:
        """The socket monitor (disconnects, CURVE refusals) and the heartbeat verdicts."""
        recv = asyncio.ensure_future(self.monitor.recv_multipart())
        try:
            while not self.dead:
                o = self.options
                tick = max(0.005, min(TICK_MAX_S, self.live.ping_interval_s / 2))
                done, _ = await asyncio.wait([recv], timeout=tick)
                if done:
                    self._on_monitor(recv.result())
                    recv = asyncio.ensure_future(self.monitor.recv_multipart())
                    continue
                verdict = self.live.verdict(self.loop.time(), self.up.is_set(), o.heartbeat_timeout_s, o.connect_timeout_s, self._input_waiting)
                if verdict is Verdict.HANDSHAKE_TIMEOUT:
                    self.close("the handshake timed out")
                elif verdict is Verdict.SILENT:
                    self.close(f"nothing arrived for {self.loop.time() - self.live.last_recv:.1f} s (heartbeat timeout)", bye=True)
                elif verdict is Verdict.PING:
                    self.conn.put(Ping(), prio=True)
                    self.flush()
        except (zmq.ZMQError, asyncio.CancelledError):
            pass
        finally:
            recv.cancel()

    def _on_monitor(self, parts: list[bytes]) -> None:
        try:
            parsed = parse_monitor_message(parts)
        except Exception:
            return
        event, value = int(parsed["event"]), int(parsed["value"])
        if event == zmq.EVENT_DISCONNECTED and self.up.is_set():
            self.close("the connection was lost")
        elif event & HANDSHAKE_EVENTS and not self.up.is_set():
            self.failure = describe_connect_failure(event, value, self.endpoint, self.options.curve)
            self.close(self.failure)

    def _input_waiting(self) -> bool:
        try:
            return bool(int(self.sock.get(zmq.EVENTS)) & zmq.POLLIN)  # get: pyzmq re-arms its readers
        except zmq.ZMQError:
            return False

    # -- the protocol's outputs ----------------------------------------------------

    def apply(self) -> None:
        """Carry out what the protocol asked for (wake waiters, send)."""
        out = self.proto.out
        while out:
            responses, out.responses = out.responses, []
            for r in responses:
                fut = r.waiter
                assert isinstance(fut, asyncio.Future)
                if not fut.done():
                    fut.set_result((r.kind, r.payload))
            failed, out.failed = out.failed, []
            for f in failed:
                fut = f.waiter
                assert isinstance(fut, asyncio.Future)
                if not fut.done():
                    fut.set_exception(f.error)
            ends = [*out.delivered, *out.scheduled, *out.writable, *(r.port for r in out.retired), *out.close_soon]
            out.delivered.clear()
            out.scheduled.clear()
            out.writable.clear()
            out.retired.clear()
            out.close_soon.clear()
            for st in ends:
                assert isinstance(st, End)
                st.changed.set()
            for inc in out.incoming:  # a client accepts no ports (Conn.accepts is False)
                self.proto.close(inc.port, "this side does not accept ports")
            out.incoming.clear()
            out.dials.clear()  # nothing here moves ports: no direct route to look for
            for v in out.violations:
                log.warning("closing %r: %s", v.port, v.reason)
            out.violations.clear()
            kicks = list(out.kicks)
            out.kicks.clear()
            for conn in kicks:
                conn.kick()

    # -- ports -------------------------------------------------------------------------

    def open_port(self) -> End:
        if self.dead:
            raise PortClosedError(f"the connection to {self.endpoint} closed: {self.reason}")
        st = self.proto.connect(self.conn, self.options.port_window, self.loop.time())
        self.apply()
        assert isinstance(st, End)
        return st

    def _payload(self, data: object) -> bytes:
        payload = encode(data)
        if len(payload) > self.options.payload_bytes_max:
            raise MessageTooLarge(f"the message is {len(payload)} bytes; the limit is {self.options.payload_bytes_max}")
        return payload

    def post(self, st: End, data: object) -> None:
        """Post a normal message on ``st`` (PortQueueFull beyond its window)."""
        if st.done or st.partner_gone:
            raise PortClosedError(f"the port is closed ({st.close_reason or self.reason or 'closed here'})")
        self.proto.post(st, KIND_MESSAGE, 0, self._payload(data), (), False, self.loop.time())
        self.apply()

    async def request(self, st: End, data: object, timeout_s: float) -> object:
        """Send ``data`` as a request on ``st`` and wait for the answer (decoded)."""
        payload = self._payload(data)
        deadline = self.loop.time() + timeout_s
        while not self.proto.room(st, len(payload)):
            if st.done or st.partner_gone:
                raise PortClosedError(f"the port is closed ({st.close_reason or self.reason})")
            st.changed.clear()
            try:
                await asyncio.wait_for(st.changed.wait(), max(0.0, deadline - self.loop.time()))
            except TimeoutError as exc:
                raise RequestTimeout(f"no room to send the request within {timeout_s:g} s") from exc
        if st.done or st.partner_gone:
            raise PortClosedError(f"the port is closed ({st.close_reason or self.reason})")
        fut: asyncio.Future[tuple[int, bytes]] = self.loop.create_future()
        try:
            req_id = self.proto.request(st, payload, (), False, fut, self.loop.time())
        finally:
            self.apply()
        # a timer instead of wait_for: no task per request on the latency path
        timer = self.loop.call_at(deadline, _expire, fut, timeout_s)
        try:
            kind, answer = await fut
        finally:
            timer.cancel()
            self.proto.forget_request(st, req_id)
        if kind == KIND_ERROR:
            try:
                text = str(decode(answer))
            except DecodeError:
                text = "(undecodable error)"
            raise RequestFailed(f"the request failed on the other side: {text}", remote_error=text)
        try:
            return decode(answer)
        except DecodeError as e:
            raise RequestFailed(f"the response does not decode: {e}", remote_error="") from e

    async def next_message(self, st: End, timeout_s: float | None) -> object | None:
        """The next message posted to ``st`` (decoded); None once it closed. TimeoutError after ``timeout_s``."""
        while True:
            q = st.queue
            while q:
                entry = q.popleft()
                if entry is CLOSE_ITEM:
                    st.close_fired = True
                    return None
                payload = entry.payload if type(entry) is Item else entry
                assert isinstance(payload, bytes)
                self.proto.consumed(st)
                self.apply()
                try:
                    return decode(payload)
                except DecodeError as e:
                    log.warning("dropped an undecodable message on %r: %s", self, e)
                    continue
            if st.done:
                return None
            st.changed.clear()
            if timeout_s is None:
                await st.changed.wait()
            else:
                await asyncio.wait_for(st.changed.wait(), timeout_s)

    def close_port(self, st: End, reason: str = "the client closed it") -> None:
        if not st.done:
            self.proto.close(st, reason)
            self.apply()

    # -- lifetime ------------------------------------------------------------------------

    def close(self, reason: str, *, bye: bool = False, graceful: bool = False) -> None:
        """The connection is gone (or closed here): every port on it closes.

        ``bye``: tell the node, dropping what is queued (a failure);
        ``graceful``: what is queued goes first (the ports' Close), then Bye.
        """
        if self.dead:
            return
        if (bye or graceful) and self.up.is_set():
            if not graceful:
                self.conn.normal.clear()
            self.conn.put_bye(reason)
            self.flush()
        self.dead = True
        self.reason = reason
        self.gone.set()
        log.info("connection %r closed: %s", self, reason)
        self.proto.link_down(self.conn, reason)
        self.apply()
        for task in self._tasks:
            task.cancel()
        self._close_sockets()

    def _close_sockets(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(int(self.options.linger_s * 1000))

