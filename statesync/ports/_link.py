"""Connections and listeners of the ports runtime: a :class:`Link` is a protocol
:class:`~statesync.ports._outbox.Conn` carried by a
:class:`~statesync.ports._transport.Transport`, with its sender task.

Sending is adaptive: when a link is idle, a post encodes the frame and sends
it from the caller at once (no task switch on the latency path); while the
sender task has not yet run, further messages queue and go out together, at
most ``batch_messages_max`` / ``batch_bytes_max`` per frame.

Handshake and liveness
======================

The connecting (active) side speaks first: ``Hello`` (runtime id, protocol
version, reachable endpoints, window, heartbeat timeout); the listening side
answers ``Welcome`` or ``Bye`` with a reason. Then ``Open`` creates a logical
port on the listener, which hands it to ``async for port in listener``. Each
side pings an idle connection every ``heartbeat_interval_s`` (or faster, a
quarter of the peer's announced timeout) and declares it dead after
``heartbeat_timeout_s`` of silence (a SIGSTOPped peer, or one whose Python is
stuck while libzmq still answers ZeroMQ pings), on EHOSTUNREACH or a TCP
disconnect (a SIGKILLed peer) or on ``Bye`` (graceful close; it is queued
behind everything already queued, so it never overtakes forwarded messages).
A dead connection fires ``close`` on every port that used it, on both sides.
ZeroMQ heartbeats run underneath. A frame that does not decode is counted,
logged and dropped; a connection that sends more than ``BAD_FRAMES_MAX`` is
dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Literal, Protocol

import trio

from statesync.errors import PortClosedError, SocketClosed
from statesync.ports import _codec
from statesync.ports._liveness import Liveness
from statesync.ports._options import PortOptions
from statesync.ports._outbox import Conn
from statesync.ports._transport import Transport

if TYPE_CHECKING:
    from statesync.ports._host import PortState
    from statesync.ports._port import MessagePort
    from statesync.ports._zsocket import TrioSocket


class LinkHost(Protocol):
    """What links and listeners need from their runtime."""

    def link_dead(self, link: Link, reason: str, *, send_bye: bool = False) -> None: ...

    def wake_writers(self, ports: Iterable[object]) -> None: ...

    def handle_for(self, st: PortState) -> MessagePort: ...

    def close_port(self, st: PortState, reason: str, *, local: str) -> None: ...

    def listener_closed(self, listener: Listener) -> None: ...


class Link(Conn):
    """One connection to another runtime (either side), with its queues."""

    def __init__(
        self,
        host: LinkHost,
        options: PortOptions,
        transport: Transport,
        *,
        role: Literal["active", "passive"],
        now: float,
        listener: Listener | None = None,
        endpoint: str = "",
        key: bytes | None = None,
    ) -> None:
        super().__init__(
            queue_max=options.link_queue_max,
            queue_bytes_max=options.link_queue_bytes_max,
            window=options.port_window,
            accepts=role == "passive" and listener is not None,
        )
        self.host = host
        self.options = options
        self.transport = transport
        self.role = role
        #: the routing id of a listener's peer (its key in ``listener.links``)
        self.key = key
        self.listener = listener
        self.endpoint = endpoint
        self.pending_frame: bytes | None = None
        self.inline_ok = True
        self.sender_parked = False
        self.lot = trio.lowlevel.ParkingLot()
        self.up = trio.Event()
        self.gone = trio.Event()
        self.live = Liveness(now, now, now, options.heartbeat_interval_s)
        self.frames_sent = 0
        self.frames_received = 0
        self.bad_frames = 0
        #: why the handshake failed (a CURVE refusal or mismatch), for ``connect``'s error
        self.failure: str | None = None
        self.monitor: TrioSocket | None = None

    def __repr__(self) -> str:
        return f"<link {self.role} {self.endpoint or self.key!r} to {self.remote_id}>"

    def peer_timeout(self, timeout_ms: int) -> None:
        self.live.peer_timeout(timeout_ms, self.options.heartbeat_interval_s)

    @property
    def hello_timeout_ms(self) -> int:
        return int(self.options.heartbeat_timeout_s * 1000)

    def say_bye(self, reason: str) -> None:
        """Queue a Bye behind everything already queued (so that it cannot overtake
        forwarded messages or markers), send what can be sent now, accept nothing more."""
        if not self.put_bye(reason):
            return
        self.flush_now()
        self.wake_sender()

    # -- sending --------------------------------------------------------------------

    def _next_frame(self) -> bytes | None:
        o = self.options
        taken = self.take_frame(o.batch_messages_max, o.batch_bytes_max)
        if taken is None:
            return None
        if self.blocked_ports:
            self.host.wake_writers(self.take_blocked())
        envs, priority = taken
        return _codec.encode_envelopes(envs, priority=priority)

    def flush_now(self) -> bool:
        """Send queued frames without blocking; True when nothing is left."""
        while not self.dead:
            frame = self.pending_frame
            if frame is None:
                if not self.prio and not self.normal:
                    return True
                frame = self._next_frame()
                if frame is None:
                    return True
                self.pending_frame = frame
            try:
                ok = self.transport.try_send(frame)
            except SocketClosed:
                return True
            except ConnectionError as e:
                self.host.link_dead(self, str(e))
                return True
            if not ok:
                return False
            self.pending_frame = None
            self.frames_sent += 1
            self.live.last_send = trio.current_time()
        return True

    def kick(self) -> None:
        """Something was queued: send it now if the link is idle, else wake the sender.

        Idle means: nothing was sent inline since the sender task last emptied
        the queue or a frame last arrived (a new scheduling turn). So the first
        message of a turn goes at once, from the caller, and the rest of the
        turn's messages queue and leave together.
        """
        if self.dead:
            return
        if self.inline_ok and self.pending_frame is None and self.up.is_set():
            self.inline_ok = False
            if self.flush_now():
                return
        self.wake_sender()

    def wake_sender(self) -> None:
        if self.sender_parked:
            self.sender_parked = False
            self.lot.unpark_all()

    async def sender_task(self) -> None:
        try:
            while not self.dead:
                if self.pending_frame is None and not self.prio and not self.normal:
                    self.inline_ok = True
                    self.sender_parked = True
                    await self.lot.park()
                    continue
                if self.flush_now():
                    continue  # the queue is empty: park (producers batch up meanwhile)
                await self.transport.wait_room()
        except SocketClosed:
            pass


class Listener:
    """Incoming ports on a bound endpoint: ``async for port in listener``.

    ``endpoints`` are the actual bound endpoints (a ``tcp://127.0.0.1:*`` bind
    reports its port). ``close()`` stops listening and closes its connections.
    """

    def __init__(
        self,
        host: LinkHost,
        options: PortOptions,
        endpoints: tuple[str, ...],
        sock: TrioSocket | None = None,
    ) -> None:
        self.runtime = host
        self.options = options
        #: the ROUTER of a ZeroMQ listener (None for an in-memory one)
        self.sock = sock
        self.endpoints = endpoints
        self.curve = options.curve is not None
        #: handshake failures (CURVE listeners only), watched to log who was refused
        self.monitor: TrioSocket | None = None
        self.links: dict[bytes, Link] = {}
        self._queue: deque[PortState] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self.closed = False

    def __repr__(self) -> str:
        return f"<Listener {', '.join(self.endpoints)}>"

    def __aiter__(self) -> AsyncIterator[MessagePort]:
        return self

    async def __anext__(self) -> MessagePort:
        while True:
            if self._queue:
                await trio.lowlevel.checkpoint()
                if self._queue:
                    st = self._queue.popleft()
                    return self.runtime.handle_for(st)
            if self.closed:
                raise StopAsyncIteration
            await self._lot.park()

    async def accept(self) -> MessagePort:
        """The next incoming port (``PortClosedError`` once the listener is closed)."""
        try:
            return await self.__anext__()
        except StopAsyncIteration as exc:
            raise PortClosedError("the listener is closed") from exc

    def offer(self, st: PortState) -> bool:
        if self.closed or len(self._queue) >= self.options.accept_backlog:
            return False
        self._queue.append(st)
        self._lot.unpark_all()
        return True

    def close(self) -> None:
        """Stop listening: close its connections (their ports get ``close``) and its socket."""
        if self.closed:
            return
        self.closed = True
        rt = self.runtime
        for link in list(self.links.values()):
            rt.link_dead(link, "the listener closed", send_bye=True)
        while self._queue:
            reason = "the listener closed"
            rt.close_port(self._queue.popleft(), reason, local=reason)
        self._lot.unpark_all()
        rt.listener_closed(self)
