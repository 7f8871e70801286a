"""The port runtime: transports, connections, handshakes, liveness; it drives the protocol.

Socket layout: :mod:`statesync.ports._transport`; CURVE: :mod:`statesync.ports._curve`.

Handshake and liveness: :mod:`statesync.ports._link`.

The ports protocol itself (sequencing, credit, transfer and relays, close) is
the pure state machine of :mod:`statesync.ports._protocol`; this module keeps
the sockets, CURVE/ZAP and the tasks, and :class:`~statesync.ports._hosting.PortHosting`
carries out the protocol's outputs. A runtime closed with
:meth:`PortRuntime.aclose` first waits (bounded) until its relays are released
or idle, so that a broker can hand ports over and exit without losing a
message in flight.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Final

import trio
import zmq

from statesync._ratelimit import RateLimitedLog
from statesync.errors import (
    ConnectError,
    HandshakeFailed,
    InvalidKey,
    PortClosedError,
    PortsError,
    SocketClosed,
)
from statesync.ports import _codec, _memory
from statesync.ports._curve import (
    HANDSHAKE_EVENTS,
    ZAP_ENDPOINT,
    Authorizer,
    AuthRequest,
    describe_connect_failure,
    describe_listen_failure,
    serve_zap,
    split_key,
    with_key,
)
from statesync.ports._envelope import PROTOCOL_VERSION, Bye, Hello, Ping, Welcome
from statesync.ports._host import PortState, RequestHandler
from statesync.ports._hosting import PortHosting
from statesync.ports._link import Link, Listener
from statesync.ports._liveness import Verdict
from statesync.ports._options import DEFAULT_OPTIONS, PortOptions
from statesync.ports._outbox import RemoteInfo
from statesync.ports._port import MessagePort
from statesync.ports._transport import (
    Transport,
    ZmqDealer,
    ZmqRouterPeer,
    frame_property,
    make_socket,
    next_monitor_event,
    normalize_endpoint,
)
from statesync.ports._zsocket import TrioSocket
from statesync.wire import DecodeError, decode_frame, encode_frame

__all__ = ["Link", "Listener", "PortRuntime", "RemoteInfo", "RequestHandler"]

logger = logging.getLogger("statesync.ports")

BAD_FRAMES_MAX: Final = 16
"""Undecodable frames a connection may send before it is dropped."""
RECV_BATCH_MAX: Final = 256


def _new_port_id() -> int:
    return secrets.randbits(63)


class PortRuntime(PortHosting):
    """Per-process (per trio run) owner of the zmq context, sockets, tasks and port tables.

    Use :func:`open_runtime` for an explicit one (tests put several in one
    process), or the module-level functions, which use :func:`current_runtime`.
    """

    def __init__(
        self,
        options: PortOptions | None = None,
        *,
        context: zmq.Context[Any] | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        super().__init__(options or DEFAULT_OPTIONS, secrets.token_hex(8), _new_port_id)
        self._authorizer = authorizer
        self._zap: TrioSocket | None = None
        #: connections refused by the authorizer (at the handshake or the first frame)
        self.refused = 0
        self._handshake_log = RateLimitedLog(
            logger, logging.WARNING, what="failed CURVE handshakes"
        )
        self._ctx: zmq.Context[Any] = context if context is not None else zmq.Context()
        self._own_ctx = context is None
        self._links: set[Link] = set()
        self._dealers: dict[str, Link] = {}
        self._listeners: list[Listener] = []
        self._handshake_lot = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        return f"<PortRuntime {self.id}>"

    def _attach(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._heartbeat_task)
        nursery.start_soon(self._dispatch_task)
        nursery.start_soon(self._timer_task)
        pending, self._pending_spawn = self._pending_spawn, []
        for fn, args in pending:
            nursery.start_soon(fn, *args)

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Endpoints other processes can use to reach this runtime."""
        if self.options.advertise:
            return self.options.advertise
        return tuple(
            e for ls in self._listeners for e in ls.endpoints if not e.startswith("inproc://")
        )

    def new_channel(self) -> tuple[MessagePort, MessagePort]:
        self.check_run()
        a, b = self.proto.new_channel(self.options.port_window)
        assert isinstance(a, PortState) and isinstance(b, PortState)
        return self.handle_for(a), self.handle_for(b)

    # -- CURVE: the ZAP handler ------------------------------------------------------

    def _ensure_zap(self) -> None:
        """Bind the ZAP handler in this runtime's context (before any CURVE listener binds).

        libzmq asks the handler at ``inproc://zeromq.zap.01`` of the socket's own
        context about every CURVE handshake; with no handler bound it would admit
        every key. The handler is a REP socket served by a task of this runtime,
        through the trio adapter (a zmq call, then a refresh of ``EVENTS``: a
        skipped refresh loses handshakes).
        """
        if self._zap is not None:
            return
        if self._authorizer is None:
            raise ConnectError(
                "a CURVE listener needs an authorizer (open_runtime(..., authorizer=fn)) "
                "to decide which keys it admits"
            )
        sock: zmq.Socket[Any] = self._ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as e:
            sock.close(0)
            raise ConnectError(
                f"cannot start the CURVE authenticator ({e.strerror}): another port runtime "
                "already authenticates in this zmq context; give each runtime with CURVE "
                "listeners its own context"
            ) from e
        self._zap = TrioSocket(sock)
        self._spawn(serve_zap, self._zap, self._authorize)

    def _authorize(self, request: AuthRequest) -> str | None:
        authorizer = self._authorizer
        if authorizer is None:
            return "this runtime has no authorizer"
        try:
            reason = authorizer(request)
        except Exception:  # a broken policy refuses; it never crashes the runtime
            logger.exception("the authorizer failed; refusing %s", request.public_key)
            reason = "the authorizer failed"
        if reason is not None:
            self.refused += 1
        return reason

    def recheck_links(self) -> list[tuple[RemoteInfo, str]]:
        """Ask the authorizer again about every connection authenticated with CURVE.

        Call it after the policy changed (a key removed): ZAP checks a key only
        at the handshake. Connections it now refuses are closed (a Bye with the
        reason; their ports get ``close``). Returns what was closed and why.
        Connections this runtime made are checked against the domain of the
        options they were made with.
        """
        closed: list[tuple[RemoteInfo, str]] = []
        if self._authorizer is None:
            return closed  # nothing decides about keys here: nothing to withdraw
        for link in list(self._links):
            key = link.remote_key
            if key is None or link.dead:
                continue
            domain = (link.listener.options if link.listener is not None else link.options).zap_domain
            reason = self._authorize(
                AuthRequest(domain, key, link.remote_address or "", "recheck")
            )
            if reason is None:
                continue
            info = link.info or RemoteInfo(link.remote_id or "", (), key, link.remote_address)
            closed.append((info, reason))
            self.link_dead(link, f"access withdrawn: {reason}", send_bye=True)
        return closed

    # -- listen / connect ------------------------------------------------------------

    def listen(self, endpoint: str, options: PortOptions | None = None) -> Listener:
        """Bind ``endpoint`` (tcp://, ipc://, inproc://) and return its :class:`Listener`.

        With ``options.curve`` the listener is a CURVE server: only keys the
        runtime's authorizer admits for ``options.zap_domain`` get through the
        handshake, and its ``endpoints`` carry its public key (``?key=``).
        """
        self.check_run()
        options = options or self.options
        if endpoint.startswith(_memory.SCHEME):
            return self._listen_memory(endpoint, options)
        address, key = split_key(endpoint)
        if key is not None:
            raise InvalidKey(
                f"listen on {address}: a listener uses its own key pair (PortOptions.curve); "
                "drop ?key= from the endpoint"
            )
        if options.curve is not None:
            self._ensure_zap()  # before the bind: a handshake must never find no handler
        sock = make_socket(self._ctx, zmq.ROUTER, options)
        monitor: zmq.Socket[Any] | None = None
        if options.curve is not None:
            monitor = sock.get_monitor_socket(HANDSHAKE_EVENTS)
        try:
            sock.bind(normalize_endpoint(endpoint))
        except zmq.ZMQError as e:
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(0)
            sock.close(0)
            raise ConnectError(
                f"cannot listen on {endpoint}: {e.strerror}; pick another endpoint"
            ) from e
        bound = sock.getsockopt(zmq.LAST_ENDPOINT)
        bound_text = bound.decode() if isinstance(bound, bytes) else str(bound)
        eps = (with_key(bound_text, options.curve.public if options.curve else None),)
        listener = Listener(self, options, eps, TrioSocket(sock))
        self._listeners.append(listener)
        self.proto.endpoints = self.endpoints
        if monitor is not None:
            listener.monitor = TrioSocket(monitor)
            self._spawn(self._listener_monitor_task, listener)
        self._spawn(self._router_receiver, listener)
        return listener

    def listener_closed(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
            self.proto.endpoints = self.endpoints
        if listener.monitor is not None and listener.sock is not None:
            with suppress(zmq.ZMQError):
                listener.sock.sock.disable_monitor()
            listener.monitor.close(0)
        if listener.sock is not None:
            listener.sock.close(listener.options.linger_s)

    async def connect(self, endpoint: str, options: PortOptions | None = None) -> MessagePort:
        """Open a port to the listener at ``endpoint`` (sharing the connection if one exists)."""
        self.check_run()
        options = options or self.options
        link = await self._get_link(endpoint, options)
        if link.dead:
            raise ConnectError(f"the connection to {endpoint} closed: {link.reason}")
        a = self.proto.connect(link, options.port_window, trio.current_time())
        assert isinstance(a, PortState)
        self._apply()
        return self.handle_for(a)

    async def _get_link(self, endpoint: str, options: PortOptions) -> Link:
        link = self._dealers.get(endpoint)
        if link is None or link.dead:
            if endpoint.startswith(_memory.SCHEME):
                link = self._open_memory(endpoint, options)
            else:
                link = self._open_dealer(endpoint, options)
        if not link.up.is_set():
            with trio.move_on_after(options.connect_timeout_s):
                while not link.up.is_set() and not link.dead:
                    await self._handshake_lot.park()
            if not link.up.is_set():
                if link.failure is not None:
                    raise HandshakeFailed(link.failure)
                if not link.dead:
                    self.link_dead(link, "no handshake answer")
                raise ConnectError(
                    f"no answer from {endpoint} within {options.connect_timeout_s} s "
                    f"({link.reason}); is a listener running there?"
                )
        return link

    def _open_dealer(self, endpoint: str, options: PortOptions) -> Link:
        address, server_key = split_key(endpoint)
        if server_key is not None and options.curve is None:
            raise ConnectError(
                f"{address} is a CURVE endpoint (it has ?key=) and this side has no key pair: "
                "set PortOptions.curve"
            )
        if server_key is None and options.curve is not None:
            raise ConnectError(
                f"connecting to {address} with CURVE needs the listener's public key: "
                f"write the endpoint as {address}?key=<its public key>"
            )
        sock = make_socket(self._ctx, zmq.DEALER, options, server_key)
        mon = sock.get_monitor_socket(int(zmq.EVENT_DISCONNECTED) | HANDSHAKE_EVENTS)
        try:
            sock.connect(normalize_endpoint(address))
        except zmq.ZMQError as e:
            sock.disable_monitor()
            mon.close(0)
            sock.close(0)
            raise ConnectError(
                f"cannot connect to {endpoint}: {e.strerror}; check the endpoint"
            ) from e
        monitor = TrioSocket(mon)
        link = self._new_active(endpoint, options, ZmqDealer(TrioSocket(sock), monitor))
        link.monitor = monitor
        link.remote_key = server_key
        self._spawn(self._link_receiver, link)
        self._spawn(self._monitor_task, link)
        return link

    def _new_active(self, endpoint: str, options: PortOptions, transport: Transport) -> Link:
        """A connecting side's link: its Hello goes at once, before the link is up."""
        link = Link(self, options, transport, role="active", now=trio.current_time(), endpoint=endpoint)
        self._links.add(link)
        self._dealers[endpoint] = link
        hello = Hello(self.id, PROTOCOL_VERSION, self.endpoints, options.port_window, link.hello_timeout_ms)
        link.put(hello, prio=True)
        link.flush_now()
        self._spawn(link.sender_task)
        return link

    # -- in-memory connections (memory://name, inside one trio run) ----------------------

    def _listen_memory(self, endpoint: str, options: PortOptions) -> Listener:
        table = _memory.registry()
        if endpoint in table and not table[endpoint][1].closed:
            raise ConnectError(f"cannot listen on {endpoint}: it is in use; pick another name")
        listener = Listener(self, options, (endpoint,))
        table[endpoint] = (self, listener)
        self._listeners.append(listener)
        self.proto.endpoints = self.endpoints
        return listener

    def _open_memory(self, endpoint: str, options: PortOptions) -> Link:
        other, listener = _memory.lookup(endpoint)
        mine, theirs = _memory.MemoryTransport.pair()
        link = self._new_active(endpoint, options, mine)
        other.accept_memory(listener, theirs)
        self._spawn(self._link_receiver, link)
        return link

    def accept_memory(self, listener: Listener, transport: _memory.MemoryTransport) -> None:
        key = secrets.token_bytes(8)
        now = trio.current_time()
        link = Link(self, listener.options, transport, role="passive", now=now, listener=listener, key=key)
        listener.links[key] = link
        self._links.add(link)
        self._spawn(self._link_receiver, link)

    # -- receiving -----------------------------------------------------------------------

    async def _link_receiver(self, link: Link) -> None:
        """The receiver of a connection with its own transport (a DEALER, in-memory).
        A listener's in-memory connection starts with the peer's Hello."""
        transport = link.transport
        try:
            while not link.dead:
                frames = await transport.recv_batch(RECV_BATCH_MAX)
                link.live.last_recv = trio.current_time()
                if (
                    link.role == "passive"
                    and not link.up.is_set()
                    and not self._hello(link, frames.pop(0))
                ):
                    return
                self._on_frames(link, frames)
                self._apply(receiving=True)
                self._run_ready()
        except SocketClosed:
            pass
        except ConnectionError as e:
            self.link_dead(link, f"the connection was lost ({e})")

    def _hello(self, link: Link, data: bytes) -> bool:
        """The first frame of a listener's in-memory connection: a Hello, or it closes."""
        try:
            frame = decode_frame(data)
        except DecodeError:
            frame = None
        hello = frame.messages[0] if frame is not None and frame.messages else None
        listener = link.listener
        assert listener is not None
        reason = None
        if not isinstance(hello, Hello):
            reason = "the connection did not start with Hello"
        elif hello.version != PROTOCOL_VERSION:
            reason = f"protocol version {hello.version} is not {PROTOCOL_VERSION}"
        elif len(listener.links) > listener.options.links_max:
            reason = "too many connections"
        if reason is not None or not isinstance(hello, Hello) or frame is None:
            link.up.set()  # so that the Bye goes out
            self.link_dead(link, reason or "", send_bye=True)
            return False
        self._accepted(link, hello)
        now = trio.current_time()
        for m in frame.messages[1:]:
            self._on_message(link, m, now)
        return True

    @staticmethod
    async def _watch_monitor(mon: TrioSocket, ended: Callable[[], bool], on_event: Callable[[int, Any], None]) -> None:
        """Hand each event of a socket monitor to ``on_event`` until ``ended()`` or the monitor closes."""
        try:
            while not ended():
                event, value = await next_monitor_event(mon)
                on_event(event, value)
        except SocketClosed:
            pass

    async def _monitor_task(self, link: Link) -> None:
        mon = link.monitor
        assert mon is not None

        def on_event(event: int, value: Any) -> None:
            if event == zmq.EVENT_DISCONNECTED and link.up.is_set():
                self.link_dead(link, "the connection was lost")
            elif event & HANDSHAKE_EVENTS and not link.up.is_set():
                # ZeroMQ would retry the handshake forever, silently: fail now, saying why.
                link.failure = describe_connect_failure(event, value, link.endpoint, link.options.curve)
                self.link_dead(link, link.failure)

        await self._watch_monitor(mon, lambda: link.dead, on_event)

    async def _listener_monitor_task(self, listener: Listener) -> None:
        """Log (rate-limited) the connections a CURVE listener's handshake turned away."""
        mon = listener.monitor
        assert mon is not None

        def on_event(event: int, value: Any) -> None:
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return  # the authorizer's refusal was logged where it was decided
            self._handshake_log.log(
                "a connection to %s (%s) failed the CURVE handshake: %s",
                listener.endpoints[0],
                listener.options.zap_domain,
                describe_listen_failure(event, value),
            )

        await self._watch_monitor(mon, lambda: listener.closed, on_event)

    async def _router_receiver(self, listener: Listener) -> None:
        """The receiver of a listener's ROUTER, for all its peers. A CURVE listener's
        frames come with the ZAP handler's ``User-Id`` (the key the handshake
        authenticated), checked against the link on every frame."""
        sock = listener.sock
        assert sock is not None
        curve = listener.curve
        links = listener.links
        try:
            while not listener.closed:
                batch: list[list[zmq.Frame]] | list[list[bytes]]
                if curve:
                    batch = await sock.recv_frames_batch(RECV_BATCH_MAX)
                else:
                    batch = await sock.recv_multipart_batch(RECV_BATCH_MAX)
                now = trio.current_time()
                for parts in batch:
                    if len(parts) != 2:
                        self.bad_frames += 1
                        continue
                    rid_part, data_part = parts
                    user_id: str | None = None
                    if type(rid_part) is bytes:
                        rid = rid_part
                        data = data_part
                    else:
                        assert isinstance(rid_part, zmq.Frame) and isinstance(data_part, zmq.Frame)
                        rid = rid_part.bytes
                        data = data_part.bytes
                        user_id = frame_property(data_part, "User-Id")
                    assert isinstance(data, bytes)
                    link = links.get(rid)
                    if link is None:
                        address = None
                        if isinstance(data_part, zmq.Frame):
                            address = frame_property(data_part, "Peer-Address")
                        self._on_unknown_peer(listener, rid, data, user_id, address)
                        continue
                    if curve and user_id != link.remote_key:
                        self.link_dead(link, "a frame came with another key", send_bye=True)
                        continue
                    link.live.last_recv = now
                    link.inline_ok = True
                    self._on_frame(link, data)
                self._apply(receiving=True)
                self._run_ready()
        except SocketClosed:
            pass

    def _on_unknown_peer(
        self,
        listener: Listener,
        rid: bytes,
        data: bytes,
        user_id: str | None = None,
        address: str | None = None,
    ) -> None:
        try:
            frame = decode_frame(data)
        except DecodeError:
            self.bad_frames += 1
            return
        hello = frame.messages[0] if frame.messages else None
        if not isinstance(hello, Hello):
            self._send_raw_bye(listener, rid, "unknown connection; it was closed, reconnect")
            return
        if listener.curve:
            # ZAP admitted this key at the handshake; the policy may have changed since.
            if not user_id:
                self._send_raw_bye(listener, rid, "no authenticated key")
                return
            reason = self._authorize(
                AuthRequest(listener.options.zap_domain, user_id, address or "", "hello")
            )
            if reason is not None:
                self._send_raw_bye(
                    listener, rid, "the node refused this key: not on its authorized list"
                )
                return
        if hello.version != PROTOCOL_VERSION:
            self._send_raw_bye(
                listener, rid, f"protocol version {hello.version} is not {PROTOCOL_VERSION}"
            )
            return
        if len(listener.links) >= listener.options.links_max:
            self._send_raw_bye(listener, rid, "too many connections")
            return
        assert listener.sock is not None
        link = Link(
            self,
            listener.options,
            ZmqRouterPeer(listener.sock, rid),
            role="passive",
            now=trio.current_time(),
            listener=listener,
            key=rid,
        )
        if listener.curve:
            link.remote_key = user_id
            link.remote_address = address
        listener.links[rid] = link
        self._accepted(link, hello)
        now = trio.current_time()
        for m in frame.messages[1:]:
            self._on_message(link, m, now)

    def _accepted(self, link: Link, hello: Hello) -> None:
        """A listener's new connection said Hello: answer Welcome, start its sender."""
        link.remote_id = hello.runtime_id
        link.remote_endpoints = hello.endpoints
        link.window = min(link.options.port_window, hello.window)
        link.peer_timeout(hello.heartbeat_timeout_ms)
        self._links.add(link)
        link.put(
            Welcome(self.id, PROTOCOL_VERSION, self.endpoints, link.window, link.hello_timeout_ms),
            prio=True,
        )
        self._link_up(link)
        link.kick()
        self._spawn(link.sender_task)

    def _send_raw_bye(self, listener: Listener, rid: bytes, reason: str) -> None:
        assert listener.sock is not None
        with suppress(zmq.ZMQError, SocketClosed):
            listener.sock.try_send_multipart((rid, encode_frame([Bye(reason)], priority=True)))

    def _on_frames(self, link: Link, frames: list[bytes]) -> None:
        link.inline_ok = True
        for f in frames:
            if link.dead:
                return
            self._on_frame(link, f)

    def _on_frame(self, link: Link, data: bytes) -> None:
        link.frames_received += 1
        try:
            messages = _codec.decode_envelopes(data)
        except DecodeError as e:
            self.bad_frames += 1
            link.bad_frames += 1
            logger.warning("dropped an undecodable frame from %r: %s", link, e)
            if link.bad_frames > BAD_FRAMES_MAX:
                self.link_dead(link, "the peer sent too many bad frames", send_bye=True)
            return
        now = link.live.last_recv
        for m in messages:
            self._on_message(link, m, now)
            if link.dead:
                return

    def _on_message(self, link: Link, m: object, now: float) -> None:
        try:
            if link.up.is_set():
                handler = self.proto.handlers.get(type(m))  # PortsProtocol.receive, written out
                if handler is not None:
                    handler(m, link, now)
                    return
            elif not isinstance(m, Welcome | Bye):
                self.bad_frames += 1
                logger.warning("dropped an unexpected %s from %r", type(m).__name__, link)
                return
            if type(m) is Welcome:
                self._on_welcome(m, link)
            elif type(m) is Bye:
                self._on_bye(m, link)
            elif type(m) is not Ping and type(m) is not Hello:  # a repeated Hello: nothing to do
                self.bad_frames += 1
                logger.warning("dropped an unexpected %s from %r", type(m).__name__, link)
        except Exception:  # input from the network never crashes anything
            self.bad_frames += 1
            logger.exception("failed to handle %s from %r", type(m).__name__, link)

    # -- handshake and link life ------------------------------------------------------

    def _on_welcome(self, m: Welcome, link: Link) -> None:
        if link.role != "active" or link.up.is_set():
            return
        if m.version != PROTOCOL_VERSION:
            self.link_dead(
                link, f"the listener speaks protocol {m.version}, not {PROTOCOL_VERSION}"
            )
            return
        link.remote_id = m.runtime_id
        link.remote_endpoints = m.endpoints
        link.window = min(link.options.port_window, m.window)
        link.peer_timeout(m.heartbeat_timeout_ms)
        self._link_up(link)
        link.kick()

    def _on_bye(self, m: Bye, link: Link) -> None:
        if link.role == "active" and not link.up.is_set() and link.failure is None:
            link.failure = f"{split_key(link.endpoint)[0]} refused the connection: {m.reason}"
        self.link_dead(link, f"the peer closed the connection ({m.reason})")

    def _link_up(self, link: Link) -> None:
        link.up.set()
        self._handshake_lot.unpark_all()
        self.proto.link_up(link, trio.current_time())
        self._apply()

    def link_dead(self, link: Link, reason: str, *, send_bye: bool = False) -> None:
        if link.dead:
            return
        if send_bye and link.up.is_set() and not link.closing:
            link.normal.clear()  # what was queued is lost anyway: the Bye goes first
            link.say_bye(reason)
        link.dead = True
        link.gone.set()
        self._handshake_lot.unpark_all()
        logger.info("connection %r closed: %s", link, reason)
        self._links.discard(link)
        if link.key is None:
            if self._dealers.get(link.endpoint) is link:
                del self._dealers[link.endpoint]
        elif link.listener is not None and link.listener.links.get(link.key) is link:
            del link.listener.links[link.key]
        link.transport.close(link.options.linger_s)  # a ROUTER peer's does nothing
        link.pending_frame = None
        link.lot.unpark_all()
        self.proto.link_down(link, reason)  # every route through this link is gone
        self._apply()

    # -- heartbeats -------------------------------------------

    async def _heartbeat_task(self) -> None:
        while True:
            now = trio.current_time()
            tick = 0.25
            for link in list(self._links):
                o = link.options
                tick = min(tick, link.live.ping_interval_s / 2)
                if link.dead:
                    continue
                verdict = link.live.verdict(
                    now,
                    link.up.is_set(),
                    o.heartbeat_timeout_s,
                    o.connect_timeout_s,
                    link.transport.input_waiting,
                )
                if verdict is Verdict.HANDSHAKE_TIMEOUT:
                    self.link_dead(link, "the handshake timed out")
                elif verdict is Verdict.SILENT:
                    logger.info(
                        "heartbeat timeout on %r: queued %d+%d, pending frame %s, sender parked %s, "
                        "last send %.2f s ago, %s",
                        link,
                        len(link.prio),
                        len(link.normal),
                        link.pending_frame is not None,
                        link.sender_parked,
                        now - link.live.last_send,
                        link.transport.describe(),
                    )
                    self.link_dead(
                        link,
                        f"nothing arrived for {now - link.live.last_recv:.1f} s (heartbeat timeout)",
                        send_bye=True,  # a stopped peer reads it when it resumes
                    )
                elif verdict is Verdict.PING:
                    link.put(Ping(), prio=True)
                    link.kick()
            await trio.sleep(max(0.005, tick))

    # -- direct routes after a move -------------------------------------------------

    def _dial(self, runtime_id: str, endpoints: tuple[str, ...]) -> None:
        self._spawn(self._dial_task, runtime_id, endpoints)

    async def _dial_task(self, runtime_id: str, endpoints: tuple[str, ...]) -> None:
        try:
            for ep in endpoints:
                if self.proto.conn_to(runtime_id) is not None:
                    return
                try:
                    link = await self._get_link(ep, self.options)
                except (ConnectError, PortsError) as e:
                    logger.info("could not reach runtime %s at %s: %s", runtime_id, ep, e)
                    continue
                if link.remote_id == runtime_id:
                    return
        finally:
            self.proto.dial_done(runtime_id)

    # -- shutdown ---------------------------------------------------------------------------

    async def aclose(self, timeout_s: float = 5.0, *, relay_idle_s: float = 1.0) -> bool:
        """Close gracefully: wait (up to ``timeout_s``) until no relay of this runtime is
        in use, close every port (partners get ``close``), say Bye on every
        connection (behind what is queued), close sockets.

        A relay is in use until the two ends it joins have found a direct route
        (then it is released) or it has forwarded nothing for ``relay_idle_s``
        (nothing is in flight through it; ends that can only talk through this
        runtime lose their route when it exits, and get ``close``). Returns False
        if relays were still busy at the timeout (what was in flight through them
        is lost).
        """
        if self.closed:
            return True
        with trio.move_on_after(timeout_s):
            while True:
                busy, wait_s = self.proto.relays_busy(trio.current_time(), relay_idle_s)
                if not busy:
                    break
                self._relays_changed = trio.Event()
                with trio.move_on_after(wait_s + 0.001):
                    await self._relays_changed.wait()
        released = self.proto.relays_busy(trio.current_time(), relay_idle_s)[0] == 0
        self.proto.close_all("the process is closing")
        self._apply()
        for link in list(self._links):
            if link.up.is_set():
                link.say_bye("the process is closing")
        with trio.move_on_after(min(timeout_s, 1.0)):
            for link in list(self._links):
                while not link.dead and (link.queued or link.pending_frame is not None):
                    link.flush_now()
                    await trio.sleep(0.001)
        self._teardown()
        return released

    def _teardown(self) -> None:
        """Close everything now (sync); safe to call twice."""
        if self.closed:
            return
        self.closed = True
        for link in list(self._links):
            if link.up.is_set() and not link.dead:
                link.say_bye("the process is closing")
            self.link_dead(link, "the process is closing")
        for listener in list(self._listeners):
            listener.close()
        if self._zap is not None:
            self._zap.close(0)
        self.proto.retire_all(PortClosedError("the port runtime is closed"))
        self._apply()
        if self._own_ctx:
            self._ctx.term()
