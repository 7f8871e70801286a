"""The port runtime: ZeroMQ sockets, connections, routing of port messages, relocation.

Socket layout
=============

A listener binds one **ROUTER** (``ROUTER_MANDATORY=1``: a send to a full or
gone peer fails with EAGAIN / EHOSTUNREACH instead of being silently dropped).
``connect`` opens one **DEALER** per remote endpoint, shared by every logical
port to that endpoint. So one ZeroMQ connection carries all the ports between a
pair of processes, each side's outbound traffic goes through its own queue:

- the connecting side's DEALER blocks at its high-water mark and never drops:
  it has its own backpressure per peer, as the notes recommend;
- the listening side answers every peer through the one ROUTER. Since the
  ROUTER's POLLOUT is socket-wide, a peer that is full (EAGAIN) is backed off
  on a timer, per connection, instead of being spun on; other peers are not
  held up. EHOSTUNREACH means the peer is gone: the connection is dead.

The alternative (a DEALER per direction, each side binding) would need every
connecting process to listen, and two TCP connections per pair; a DEALER per
accepted peer on the passive side is impossible with ZeroMQ's accept model.

Each connection (a :class:`Link`) has two bounded queues (priority and
normal), a sender task and, on the DEALER side, its own receiver task plus a
socket monitor (a TCP disconnect kills the link at once, and the DEALER is
closed so that ZeroMQ cannot silently reconnect it and lose frames in between).
A listener has one receiver task for all its peers. Every socket is created and
configured in :meth:`PortRuntime._make_socket`, the one place where CURVE keys
and the ZAP domain are set (``MAXMSGSIZE`` there bounds what a peer can make us
buffer).

Security (CURVE)
================

With ``PortOptions.curve`` (a key pair), a listener's ROUTER is a CURVE server
and ``connect`` makes a CURVE client of the key named in the endpoint
(``tcp://host:port?key=<Z85>``; a CURVE listener reports its endpoints that way,
so they travel with their key). The runtime serves ZAP (RFC 27) itself: a REP
socket on ``inproc://zeromq.zap.01`` in its own zmq context, bound before the
first CURVE listener binds, read by a trio task through the adapter (no thread,
no asyncio). Each request goes to the runtime's *authorizer* with the
listener's ZAP domain, so one runtime can admit different keys on different
listeners; an admitted connection gets its key as ``User-Id``. The listener's
receiver reads that metadata from every frame: the first one (the ``Hello``) is
checked with the authorizer again, and later ones must carry the link's key.
``RemoteInfo.public_key`` tells the code above who is on the other side.
ZAP only runs at the handshake, so after a policy change
:meth:`PortRuntime.recheck_links` closes the connections whose key is no
longer admitted. A connecting side whose handshake fails (refused key, wrong
server key, CURVE on one side only) would be retried by ZeroMQ forever in
silence; its socket monitor turns the failure into a
:class:`~statesync.ports.HandshakeFailed` that says which and what to check,
and a CURVE listener's monitor logs, rate-limited, the handshakes it failed.

The runtime
===========

A :class:`PortRuntime` owns the zmq context, the sockets, the tables and the
tasks of one trio run. :func:`open_runtime` gives an explicit one whose tasks
live in the caller's ``async with`` block (tests run several in one process);
the module-level ``listen``/``connect``/``MessageChannel()`` use
:func:`current_runtime`, a per-run default kept in a ``trio.lowlevel.RunVar``
and hosted by a ``trio.lowlevel.spawn_system_task``: nothing to set up, one
runtime per run, and at the end of the run trio cancels the system task, whose
``finally`` closes every socket (finite linger) and terminates the context, so
nothing outlives ``trio.run``. A graceful end (relays released, ``Bye``
behind what is queued) is ``await shutdown()`` / ``await rt.aclose()``.

Sending is adaptive: when a link is idle, ``post_message`` encodes the frame and
sends it from the caller at once (no task switch on the latency path); while
the sender task has not yet run, further messages queue and go out together,
consecutive messages to one port merged into one ``Msgs`` envelope, at most
``batch_messages_max`` / ``batch_bytes_max`` per frame. Receiving drains every
queued frame per wake-up and runs ``message`` listeners inline from the receive
task (in-process posts are dispatched by a dispatcher task instead, never from
inside ``post_message``).

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

Ports, flow control, ordering
=============================

Every end of an entangled pair has a random 63-bit id, stable when it moves
between processes; the runtime's *entry table* maps an id to the local end
(an active :class:`_PortState`) or to a :class:`_Relay` (next hop toward an end
that lives elsewhere). Sending to the partner is routing by its id. Each end
numbers its outgoing messages (one counter for normal messages, one for
priority ones); the receiver delivers each stream in order, holds early
arrivals (bounded) and drops duplicates. Flow control is end to end, per port:
at most ``window`` messages may be unconsumed by the receiver (queued while it
is not started, or not yet taken); the receiver grants credit as its user takes
messages. Beyond the window ``post_message`` raises PortQueueFull; so does a
full connection queue. ``wait_writable()`` / ``send()`` wait for room.

Relocation (transferring a port to another process)
===================================================

When end ``a`` (partner ``b``) is posted in ``transfer`` over a port whose
partner lives elsewhere, its state travels inside the carrying message as a
:class:`PortRef` (counters, window, generation ``moves``). The old runtime keeps
a *relay* entry for ``a`` pointing at the next hop, and re-sends the messages
``a`` had queued (not yet taken by its user), with their sequence numbers, right
behind the carrier on the same connection. Every runtime the carrier passes
through installs relays for ``a`` (onward) and for ``b`` (backward), so
``b``'s messages follow ``a`` and ``a``'s reach ``b`` at once: nothing waits,
nothing is lost, and the receiver's sequence numbers put everything in order.

Then the two ends find each other: the moved end sends ``Locate`` (its runtime
id, endpoints and generation) along its route; the partner answers with its
own. Each side that has (or can make) a direct connection to the other switches
its route: it sends a ``Marker`` along the old route and then uses the direct
one. A relay forwards the marker and forgets itself (generations stop a
marker from removing a newer relay of a later move). Messages sent on the
direct route may overtake ones still on the old route; sequence numbers
restore the order. Who dials: if both sides listen, the one with the smaller
runtime id; otherwise the one that can. If neither listens, the relays stay
and traffic keeps flowing through them for as long as their runtime runs.
A runtime closed with :meth:`PortRuntime.aclose` first waits (bounded) until
its relays are released or idle, so that a broker can hand ports over and exit
without losing a message in flight. When an end comes back to the runtime where
its partner lives, the partner's old route ends there: a marker behind it
releases the relays of the trip.

Known limit: a runtime an end passed through can keep the relay it used for the
partner direction, and a port carried through several hops can leave relays
that nothing uses; they forward nothing, cost a table entry, and are freed
when their connection closes.
"""

from __future__ import annotations

import heapq
import inspect
import logging
import math
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import trio
import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from statesync._ratelimit import RateLimitedLog
from statesync.core import Value
from statesync.ports import _codec
from statesync.ports._curve import (
    HANDSHAKE_EVENTS,
    ZAP_ENDPOINT,
    Authorizer,
    AuthRequest,
    describe_connect_failure,
    describe_listen_failure,
    split_key,
    with_key,
)
from statesync.ports._envelope import (
    CLOSE_NOW,
    KIND_ERROR,
    KIND_MESSAGE,
    KIND_REQUEST,
    KIND_RESPONSE,
    PROTOCOL_VERSION,
    Bye,
    Close,
    Credit,
    Hello,
    Locate,
    Marker,
    Msg,
    Msgs,
    Open,
    Ping,
    PortRef,
    Welcome,
)
from statesync.ports._errors import (
    ConnectError,
    HandshakeFailed,
    InvalidKey,
    PortClosedError,
    PortQueueFull,
    PortsError,
    PortTransferredError,
    RuntimeMismatch,
    SocketClosed,
)
from statesync.ports._options import DEFAULT_OPTIONS, PortOptions
from statesync.ports._zsocket import SEND_BACKOFF_FIRST_S, TrioSocket
from statesync.wire import (
    DEFAULT_LIMITS,
    DecodeError,
    decode_frame,
    encode_frame,
)

if TYPE_CHECKING:
    from statesync.ports._port import MessagePort

from statesync.ports import _port

logger = logging.getLogger("statesync.ports")

GEN_ALL: Final = 1 << 62
"""A marker generation that releases every relay on its way (used when a pair closes)."""
BAD_FRAMES_MAX: Final = 16
"""Undecodable frames a connection may send before it is dropped."""
REORDER_FACTOR: Final = 2
"""Early arrivals held per port, in windows."""
RUN_READY_ITEMS_MAX: Final = 4096
"""Messages dispatched to listeners per turn before yielding to other tasks."""
_ENVELOPES_PER_FRAME_MAX: Final = min(1024, DEFAULT_LIMITS.batch_len_max)


class _CloseItem:
    """The end of a port's queue: its partner closed (or the link died)."""

    __slots__ = ()


CLOSE_ITEM: Final = _CloseItem()


class _Item:
    """A queued message that is not a plain one (request, priority, with ports)."""

    __slots__ = ("kind", "payload", "ports", "prio", "req_id")

    def __init__(
        self, kind: int, prio: bool, req_id: int, payload: bytes, ports: tuple[_PortState, ...]
    ) -> None:
        self.kind = kind
        self.prio = prio
        self.req_id = req_id
        self.payload = payload
        self.ports = ports


QueueEntry = bytes | _Item | _CloseItem


class _Relay:
    """Entry for an end that lives elsewhere: send what is addressed to it over ``hop``."""

    __slots__ = ("gen", "hop", "partner", "used")

    def __init__(self, hop: Link, gen: int, partner: int) -> None:
        self.hop = hop
        self.gen = gen
        self.partner = partner
        self.used = trio.current_time()  # last time it forwarded something


class _Pending:
    """A request waiting for its response.

    The requesting task sleeps in ``wait_task_rescheduled`` and is woken by the
    response, a failure, or the runtime's timer task at its deadline: cheaper
    than a cancel scope and an Event per request (about 25 us here).
    """

    __slots__ = ("done", "error", "kind", "payload", "task", "timed_out")

    def __init__(self) -> None:
        self.kind = KIND_RESPONSE
        self.payload = b""
        self.error: PortsError | None = None
        self.done = False
        self.timed_out = False
        self.task: trio.lowlevel.Task | None = None

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def fail(self, error: PortsError) -> None:
        if not self.done:
            self.error = error
            self.finish()

    async def wait(self) -> None:
        """Until finished (cancellable: an outer cancel scope still applies)."""
        if self.done:
            await trio.lowlevel.checkpoint()
            return
        self.task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


@attrs.frozen
class RemoteInfo:
    """Who is on the other side of a port, when known.

    ``runtime_id`` identifies the remote process's port runtime; ``endpoints``
    are the endpoints it advertised (empty when it does not listen).
    ``public_key`` is the other side's CURVE public key (Z85) when the
    connection uses CURVE: authenticated by the handshake (on a listener, the
    ``User-Id`` the ZAP handler gave the connection; on the connecting side,
    the listener's key named in the endpoint, which the listener proved it
    holds). None without CURVE. ``address`` is the peer's IP address as the
    listener saw it (None on the connecting side or without CURVE).
    """

    runtime_id: str
    endpoints: tuple[str, ...]
    public_key: str | None = None
    address: str | None = None


RequestHandler = Callable[[Value], object]
"""Answers a request: returns the answer (anything ``post_message`` accepts) or an awaitable of it."""


class _PortState:
    """One end of an entangled pair living in this runtime (survives its user objects)."""

    __slots__ = (
        "close_at",
        "close_fired",
        "close_reason",
        "consumed",
        "credited",
        "done",
        "exported",
        "granted",
        "handle",
        "handler",
        "handler_busy",
        "id",
        "iterating",
        "lot",
        "moves",
        "next_req",
        "partner",
        "partner_gone",
        "partner_home",
        "pending",
        "pseq_in",
        "pseq_out",
        "queue",
        "remote",
        "reorder",
        "runtime",
        "sent",
        "seq_in",
        "seq_out",
        "started",
        "window",
        "writers",
    )

    def __init__(
        self, runtime: PortRuntime, id_: int, partner: int, window: int, moves: int = 0
    ) -> None:
        self.runtime = runtime
        self.id = id_
        self.partner = partner
        self.window = window
        self.moves = moves
        self.seq_out = 1
        self.pseq_out = 1
        self.seq_in = 1
        self.pseq_in = 1
        self.sent = 0
        self.credited = 0
        self.consumed = 0
        self.granted = 0
        self.queue: deque[QueueEntry] = deque()
        self.reorder: dict[tuple[bool, int], bytes | _Item] = {}
        self.started = False
        self.done = False  # closed here, or transferred away
        self.exported = False
        self.partner_gone = False
        self.close_at: tuple[int, int] | None = None
        self.close_reason = ""
        self.close_fired = False
        self.handle: MessagePort | None = None
        self.iterating = 0
        self.lot = trio.lowlevel.ParkingLot()
        self.writers = trio.lowlevel.ParkingLot()
        self.pending: dict[int, _Pending] = {}
        self.next_req = 1
        self.handler: RequestHandler | None = None
        self.handler_busy = 0
        self.partner_home: tuple[str, tuple[str, ...], int] | None = None
        self.remote: RemoteInfo | None = None

    def __repr__(self) -> str:
        return f"<port {self.id:#x} partner {self.partner:#x} in {self.runtime.id}>"

    @property
    def grant_step(self) -> int:
        return max(1, self.window // 4)


def _halted(st: _PortState) -> bool:
    """A listener stopped, closed or transferred the port, or an iterator took over."""
    return st.done or not st.started or st.iterating > 0


class Link:
    """One ZeroMQ connection to another runtime (either side), with its queues."""

    def __init__(
        self,
        runtime: PortRuntime,
        options: PortOptions,
        *,
        role: Literal["active", "passive"],
        sock: TrioSocket,
        rid: bytes | None = None,
        listener: Listener | None = None,
        endpoint: str = "",
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.role = role
        self.sock = sock
        self.rid = rid
        self.listener = listener
        self.endpoint = endpoint
        self.prio: deque[object] = deque()
        self.normal: deque[object] = deque()
        self.user_count = 0
        self.user_bytes = 0
        self.pending_frame: bytes | None = None
        self.inline_ok = True
        self.sender_parked = False
        self.lot = trio.lowlevel.ParkingLot()
        self.up = trio.Event()
        self.gone = trio.Event()
        self._dead = False
        self.closing = False  # a Bye is queued: nothing more is accepted
        self.deferred = False  # a heartbeat verdict was put off once for waiting input
        self.reason = ""
        self.remote_id: str | None = None
        self.remote_endpoints: tuple[str, ...] = ()
        self.window = options.port_window
        #: how often to ping when idle: ours, or faster if the peer's timeout asks for it
        self.ping_interval_s = options.heartbeat_interval_s
        now = trio.current_time()
        self.created = now
        self.last_recv = now
        self.last_send = now
        self.blocked_ports: set[_PortState] = set()
        #: ids of ports whose carrier waits in the normal queue (see :meth:`put`)
        self.in_transit: set[int] = set()
        self.bad_frames = 0
        self.monitor: TrioSocket | None = None
        self.frames_sent = 0
        self.frames_received = 0
        #: the other side's CURVE public key (authenticated), None without CURVE
        self.remote_key: str | None = None
        self.remote_address: str | None = None
        #: why the handshake failed (a CURVE refusal or mismatch), for ``connect``'s error
        self.failure: str | None = None

    def __repr__(self) -> str:
        return f"<link {self.role} {self.endpoint or self.rid!r} to {self.remote_id}>"

    @property
    def dead(self) -> bool:
        return self._dead

    def peer_timeout(self, timeout_ms: int) -> None:
        """The peer declares us dead after ``timeout_ms`` of silence: ping often enough."""
        if timeout_ms > 0:
            self.ping_interval_s = min(self.options.heartbeat_interval_s, timeout_ms / 4000)

    @property
    def hello_timeout_ms(self) -> int:
        return int(self.options.heartbeat_timeout_s * 1000)

    @property
    def info(self) -> RemoteInfo | None:
        if self.remote_id is None:
            return None
        return RemoteInfo(
            self.remote_id, self.remote_endpoints, self.remote_key, self.remote_address
        )

    # -- queues ---------------------------------------------------------------------

    def has_room(self, size: int) -> bool:
        if self.user_count == 0:
            return True
        o = self.options
        return (
            self.user_count < o.link_queue_max and self.user_bytes + size <= o.link_queue_bytes_max
        )

    def put_plain(self, dst: int, seq: int, payload: bytes) -> None:
        if self.closing:
            return
        self.normal.append((dst, seq, payload))
        self.user_count += 1
        self.user_bytes += len(payload)

    def put_user(self, msg: Msg) -> None:
        if self.closing:
            return
        size = len(msg.payload)
        prio = msg.prio and msg.dst not in self.in_transit
        (self.prio if prio else self.normal).append((msg, size))
        self.user_count += 1
        self.user_bytes += size
        if not prio and msg.ports:
            self.in_transit.update(ref.id for ref in msg.ports)

    def put(self, msg: object, *, prio: bool = False) -> None:
        """Queue a control (or forwarded) message; not bounded by the user limits.

        A priority message for a port whose carrier still waits in the normal
        queue goes behind it: it must not reach the next runtime before the port.
        """
        if self.closing:
            return
        if prio and getattr(msg, "dst", None) in self.in_transit:
            prio = False
        if prio:
            self.prio.append(msg)
            return
        self.normal.append(msg)
        if type(msg) is Msg and msg.ports:
            self.in_transit.update(ref.id for ref in msg.ports)

    def say_bye(self, reason: str) -> None:
        """Queue a Bye behind everything already queued (so that it cannot overtake
        forwarded messages or markers), send what can be sent now, accept nothing more."""
        if self.closing:
            return
        self.normal.append(Bye(reason))
        self.closing = True
        self.flush_now()
        if self.sender_parked:
            self.sender_parked = False
            self.lot.unpark_all()

    # -- sending --------------------------------------------------------------------

    def _next_frame(self) -> bytes | None:
        if self.prio:
            queue = self.prio
            priority = True
        elif self.normal:
            queue = self.normal
            priority = False
        else:
            return None
        o = self.options
        count_max = o.batch_messages_max
        bytes_max = o.batch_bytes_max
        envs: list[object] = []
        count = 0
        nbytes = 0
        user_count = 0
        user_bytes = 0
        run_dst = -1
        run_next = -1
        run_seq = 0
        run: list[bytes] = []
        popleft = queue.popleft
        while (
            queue
            and count < count_max
            and nbytes < bytes_max
            and len(envs) < _ENVELOPES_PER_FRAME_MAX
        ):
            entry = popleft()
            if type(entry) is tuple:
                if len(entry) == 3:
                    dst, seq, payload = entry
                    size = len(payload)
                    user_count += 1
                    user_bytes += size
                    nbytes += size
                    count += 1
                    if dst == run_dst and seq == run_next:
                        run.append(payload)
                        run_next += 1
                        continue
                    if run:
                        envs.append(Msgs(run_dst, run_seq, tuple(run)))
                    run = [payload]
                    run_dst = dst
                    run_seq = seq
                    run_next = seq + 1
                    continue
                msg, size = entry
                user_count += 1
                user_bytes += size
                nbytes += size
                count += 1
            else:
                msg = entry
                count += 1
            if run:
                envs.append(Msgs(run_dst, run_seq, tuple(run)))
                run = []
                run_dst = -1
            if self.in_transit and type(msg) is Msg and msg.ports:
                # the carrier leaves now: what follows cannot overtake it any more
                self.in_transit.difference_update(ref.id for ref in msg.ports)
            envs.append(msg)
        if run:
            envs.append(Msgs(run_dst, run_seq, tuple(run)))
        self.user_count -= user_count
        self.user_bytes -= user_bytes
        if self.blocked_ports and user_count:
            self.runtime._wake_blocked(self)
        return _codec.encode_envelopes(envs, priority=priority)

    def _try_send_frame(self, frame: bytes) -> bool:
        if self.rid is None:
            return self.sock.try_send(frame)
        return self.sock.try_send_multipart((self.rid, frame))

    def flush_now(self) -> bool:
        """Send queued frames without blocking; True when nothing is left."""
        while not self.dead:
            frame = self.pending_frame
            if frame is None:
                frame = self._next_frame()
                if frame is None:
                    return True
                self.pending_frame = frame
            try:
                ok = self._try_send_frame(frame)
            except SocketClosed:
                return True
            except zmq.ZMQError as e:
                self.runtime._link_dead(self, f"the peer is unreachable ({e.strerror})")
                return True
            if not ok:
                return False
            self.pending_frame = None
            self.frames_sent += 1
            self.last_send = trio.current_time()
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
        if self.sender_parked:
            self.sender_parked = False
            self.lot.unpark_all()

    async def sender_task(self) -> None:
        backoff_s = SEND_BACKOFF_FIRST_S
        try:
            while not self.dead:
                if self.pending_frame is None and not self.prio and not self.normal:
                    self.inline_ok = True
                    self.sender_parked = True
                    await self.lot.park()
                    continue
                if self.flush_now():
                    backoff_s = SEND_BACKOFF_FIRST_S
                    continue  # the queue is empty: park (producers batch up meanwhile)
                if self.rid is None:
                    await self.sock.wait_for(zmq.POLLOUT)
                else:
                    # a ROUTER's POLLOUT is socket-wide: back this peer off on a timer
                    await trio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, 0.02)
        except SocketClosed:
            pass


class Listener:
    """Incoming ports on a bound endpoint: ``async for port in listener``.

    ``endpoints`` are the actual bound endpoints (a ``tcp://127.0.0.1:*`` bind
    reports its port). ``close()`` stops listening and closes its connections.
    """

    def __init__(
        self,
        runtime: PortRuntime,
        options: PortOptions,
        sock: TrioSocket,
        endpoints: tuple[str, ...],
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.sock = sock
        self.endpoints = endpoints
        self.curve = options.curve is not None
        #: handshake failures (CURVE listeners only), watched to log who was refused
        self.monitor: TrioSocket | None = None
        self.links: dict[bytes, Link] = {}
        self._queue: deque[_PortState] = deque()
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
                    return self.runtime._handle_for(st)
            if self.closed:
                raise StopAsyncIteration
            await self._lot.park()

    async def accept(self) -> MessagePort:
        """The next incoming port (``PortClosedError`` once the listener is closed)."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise PortClosedError("the listener is closed") from None

    def _offer(self, st: _PortState) -> bool:
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
            rt._link_dead(link, "the listener closed", send_bye=True)
        while self._queue:
            rt._close_port(self._queue.popleft(), "the listener closed")
        self._lot.unpark_all()
        if self in rt._listeners:
            rt._listeners.remove(self)
        if self.monitor is not None:
            with suppress(zmq.ZMQError):
                self.sock.sock.disable_monitor()
            self.monitor.close(0)
        self.sock.close(self.options.linger_s)

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def _next_monitor_event(mon: TrioSocket) -> tuple[int, int]:
    """The next (event, value) from a ZeroMQ monitor socket, skipping what does not parse."""
    while True:
        parts = await mon.recv_multipart()
        try:
            parsed = parse_monitor_message(parts)
            return int(parsed["event"]), int(parsed["value"])
        except Exception:
            continue


def _frame_property(frame: zmq.Frame, name: str) -> str:
    """A metadata property of a received frame ("" when the connection has none)."""
    try:
        return str(frame.get(name))
    except zmq.ZMQError:
        return ""


def _normalize_endpoint(endpoint: str) -> str:
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        return endpoint[:-2] + ":*"
    return endpoint


class PortRuntime:
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
        self.options = options or DEFAULT_OPTIONS
        self._authorizer = authorizer
        self._zap: TrioSocket | None = None
        #: connections refused by the authorizer (at the handshake or the first frame)
        self.refused = 0
        self._handshake_log = RateLimitedLog(
            logger, logging.WARNING, what="failed CURVE handshakes"
        )
        self.id = secrets.token_hex(8)
        self._ctx: zmq.Context[Any] = context if context is not None else zmq.Context()
        self._own_ctx = context is None
        self._token = trio.lowlevel.current_trio_token()
        #: the thread of that run: a cheap first check on the hot paths
        self.thread_id = threading.get_ident()
        self.payload_bytes_max = self.options.payload_bytes_max
        self._entries: dict[int, _PortState | _Relay] = {}
        self._links: set[Link] = set()
        self._by_runtime: dict[str, Link] = {}
        self._dealers: dict[str, Link] = {}
        self._listeners: list[Listener] = []
        self._nursery: trio.Nursery | None = None
        self._pending_spawn: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] = []
        self._ready: dict[_PortState, None] = {}
        self._dispatch_lot = trio.lowlevel.ParkingLot()
        self._dispatch_parked = False
        self._pending_direct: dict[str, set[int]] = {}
        self._dialing: set[str] = set()
        self._relays_changed = trio.Event()
        self._handshake_lot = trio.lowlevel.ParkingLot()
        self._deadlines: list[tuple[float, int, _Pending]] = []
        self._deadline_seq = 0
        self._timer_target = math.inf
        self._timer_scope: trio.CancelScope | None = None
        self.closed = False
        self.bad_frames = 0
        self._handlers: dict[type, Callable[[Any, Link], None]] = {
            Msgs: self._on_msgs,
            Msg: self._on_msg,
            Credit: self._on_credit,
            Close: self._on_close,
            Locate: self._on_locate,
            Marker: self._on_marker,
            Open: self._on_open,
            Ping: self._on_ping,
            Bye: self._on_bye,
            Hello: self._on_hello_late,
            Welcome: self._on_welcome,
        }

    def __repr__(self) -> str:
        return f"<PortRuntime {self.id}>"

    # -- tasks ----------------------------------------------------------------------------

    def _spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        if self._nursery is None:
            self._pending_spawn.append((fn, args))
        else:
            self._nursery.start_soon(fn, *args)

    def _attach(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._heartbeat_task)
        nursery.start_soon(self._dispatch_task)
        nursery.start_soon(self._timer_task)
        pending, self._pending_spawn = self._pending_spawn, []
        for fn, args in pending:
            nursery.start_soon(fn, *args)

    def _check_run(self) -> None:
        """Raise unless called from the trio run (and thread) that owns this runtime."""
        if self.closed:
            raise PortClosedError("the port runtime is closed")
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            raise RuntimeMismatch(
                "ports are used from outside trio.run; call them from trio tasks"
            ) from None
        if token is not self._token:
            raise RuntimeMismatch(
                "this port belongs to another trio run; ports cannot move between runs"
            )

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Endpoints other processes can use to reach this runtime."""
        if self.options.advertise:
            return self.options.advertise
        return tuple(
            e for ls in self._listeners for e in ls.endpoints if not e.startswith("inproc://")
        )

    # -- sockets (the one place they are created and configured) ---------------------

    def _make_socket(
        self, kind: int, options: PortOptions, server_key: str | None = None
    ) -> zmq.Socket[Any]:
        """A socket configured from ``options``; ``server_key``: the listener's key (DEALER)."""
        s: zmq.Socket[Any] = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, int(options.linger_s * 1000))
        s.setsockopt(zmq.SNDHWM, options.sndhwm)
        s.setsockopt(zmq.RCVHWM, options.rcvhwm)
        s.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(options.zmq_heartbeat_interval_s * 1000)))
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(options.zmq_heartbeat_timeout_s * 1000)))
        s.setsockopt(
            zmq.HEARTBEAT_TTL, min(6_553_599, max(100, int(options.zmq_heartbeat_ttl_s * 1000)))
        )
        s.setsockopt(zmq.RECONNECT_IVL, max(1, int(options.reconnect_interval_s * 1000)))
        s.setsockopt(zmq.RECONNECT_IVL_MAX, max(1, int(options.reconnect_interval_max_s * 1000)))
        # a peer that sends a frame no decoder would accept is disconnected by libzmq
        # before the frame is buffered
        s.setsockopt(zmq.MAXMSGSIZE, DEFAULT_LIMITS.frame_bytes_max + 1024)
        if kind == zmq.ROUTER:
            s.setsockopt(zmq.ROUTER_MANDATORY, 1)
        elif kind == zmq.DEALER:
            s.setsockopt(zmq.ROUTING_ID, secrets.token_bytes(12))
            s.setsockopt(zmq.IMMEDIATE, 1)
        keys = options.curve
        if keys is not None:
            # A handshake that stalls (a peer that opens TCP and says nothing) is
            # dropped by libzmq after this long.
            s.setsockopt(zmq.HANDSHAKE_IVL, max(1, int(options.connect_timeout_s * 1000)))
            s.setsockopt(zmq.CURVE_PUBLICKEY, keys.public.encode("ascii"))
            s.setsockopt(zmq.CURVE_SECRETKEY, keys.secret.encode("ascii"))
            if kind == zmq.ROUTER:
                s.setsockopt(zmq.CURVE_SERVER, 1)
                # the ZAP handler (see _ensure_zap) decides per domain which keys it admits
                s.setsockopt(zmq.ZAP_DOMAIN, options.zap_domain.encode("ascii"))
            else:
                assert server_key is not None
                s.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode("ascii"))
        return s

    # -- CURVE: the ZAP handler ------------------------------------------------------

    def set_authorizer(self, authorizer: Authorizer | None) -> None:
        """Replace the function that decides which keys CURVE listeners admit."""
        self._authorizer = authorizer

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
            ) from None
        self._zap = TrioSocket(sock)
        self._spawn(self._zap_task, self._zap)

    async def _zap_task(self, zap: TrioSocket) -> None:
        try:
            while True:
                (request,) = await zap.recv_multipart_batch(1)
                try:
                    reply = self._zap_reply(request)
                except Exception:  # never leave the REP socket without its reply
                    logger.exception("the ZAP handler failed on a request; refusing it")
                    reply = [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"error", b"", b""]
                if not zap.try_send_multipart(reply):
                    await zap.send_multipart(reply)
        except SocketClosed:
            pass

    def _zap_reply(self, msg: list[bytes]) -> list[bytes]:
        """The ZAP reply (RFC 27) to one request: 200 with the key as User-Id, or 400."""
        if len(msg) < 6:
            logger.warning("refused a malformed ZAP request (%d frames)", len(msg))
            return [b"1.0", msg[1] if len(msg) > 1 else b"", b"400", b"malformed request", b"", b""]
        version, request_id, domain, address, _identity, mechanism = msg[:6]
        credentials = msg[6:]
        if version != b"1.0" or mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            return [b"1.0", request_id, b"400", b"CURVE is required", b"", b""]
        key = z85.encode(credentials[0]).decode("ascii")
        request = AuthRequest(
            domain.decode("ascii", "replace"), key, address.decode("ascii", "replace"), "handshake"
        )
        reason = self._authorize(request)
        if reason is not None:
            return [b"1.0", request_id, b"400", reason.encode("utf-8", "replace")[:200], b"", b""]
        return [b"1.0", request_id, b"200", b"OK", key.encode("ascii"), b""]

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
            self._link_dead(link, f"access withdrawn: {reason}", send_bye=True)
        return closed

    # -- listen / connect ------------------------------------------------------------

    def listen(self, endpoint: str, options: PortOptions | None = None) -> Listener:
        """Bind ``endpoint`` (tcp://, ipc://, inproc://) and return its :class:`Listener`.

        With ``options.curve`` the listener is a CURVE server: only keys the
        runtime's authorizer admits for ``options.zap_domain`` get through the
        handshake, and its ``endpoints`` carry its public key (``?key=``).
        """
        self._check_run()
        options = options or self.options
        address, key = split_key(endpoint)
        if key is not None:
            raise InvalidKey(
                f"listen on {address}: a listener uses its own key pair (PortOptions.curve); "
                "drop ?key= from the endpoint"
            )
        if options.curve is not None:
            self._ensure_zap()  # before the bind: a handshake must never find no handler
        sock = self._make_socket(zmq.ROUTER, options)
        monitor: zmq.Socket[Any] | None = None
        if options.curve is not None:
            monitor = sock.get_monitor_socket(HANDSHAKE_EVENTS)
        try:
            sock.bind(_normalize_endpoint(endpoint))
        except zmq.ZMQError as e:
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(0)
            sock.close(0)
            raise ConnectError(
                f"cannot listen on {endpoint}: {e.strerror}; pick another endpoint"
            ) from None
        bound = sock.getsockopt(zmq.LAST_ENDPOINT)
        bound_text = bound.decode() if isinstance(bound, bytes) else str(bound)
        eps = (with_key(bound_text, options.curve.public if options.curve else None),)
        listener = Listener(self, options, TrioSocket(sock), eps)
        self._listeners.append(listener)
        if monitor is not None:
            listener.monitor = TrioSocket(monitor)
            self._spawn(self._router_curve_receiver, listener)
            self._spawn(self._listener_monitor_task, listener)
        else:
            self._spawn(self._router_receiver, listener)
        return listener

    async def connect(self, endpoint: str, options: PortOptions | None = None) -> MessagePort:
        """Open a port to the listener at ``endpoint`` (sharing the connection if one exists)."""
        self._check_run()
        options = options or self.options
        link = await self._get_link(endpoint, options)
        if link.dead:
            raise ConnectError(f"the connection to {endpoint} closed: {link.reason}")
        window = min(options.port_window, link.window)
        a = _PortState(self, self._new_id(), 0, window)
        b_id = self._new_id()
        a.partner = b_id
        a.remote = link.info
        a.started = False
        self._entries[a.id] = a
        self._entries[b_id] = _Relay(link, 0, a.id)
        # Priority queue: a priority message posted right after connect must not
        # overtake the Open that creates its port on the other side.
        link.put(Open(b_id, a.id, window), prio=True)
        link.kick()
        return self._handle_for(a)

    async def _get_link(self, endpoint: str, options: PortOptions) -> Link:
        link = self._dealers.get(endpoint)
        if link is None or link.dead:
            link = self._open_dealer(endpoint, options)
        if not link.up.is_set():
            with trio.move_on_after(options.connect_timeout_s):
                while not link.up.is_set() and not link.dead:
                    await self._handshake_lot.park()
            if not link.up.is_set():
                if link.failure is not None:
                    raise HandshakeFailed(link.failure)
                if not link.dead:
                    self._link_dead(link, "no handshake answer")
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
        sock = self._make_socket(zmq.DEALER, options, server_key)
        mon = sock.get_monitor_socket(int(zmq.EVENT_DISCONNECTED) | HANDSHAKE_EVENTS)
        try:
            sock.connect(_normalize_endpoint(address))
        except zmq.ZMQError as e:
            sock.disable_monitor()
            mon.close(0)
            sock.close(0)
            raise ConnectError(
                f"cannot connect to {endpoint}: {e.strerror}; check the endpoint"
            ) from None
        link = Link(self, options, role="active", sock=TrioSocket(sock), endpoint=endpoint)
        link.monitor = TrioSocket(mon)
        link.remote_key = server_key
        self._links.add(link)
        self._dealers[endpoint] = link
        link.put(
            Hello(
                self.id,
                PROTOCOL_VERSION,
                self.endpoints,
                options.port_window,
                link.hello_timeout_ms,
            ),
            prio=True,
        )
        # the Hello goes now even though the link is not up yet
        link.flush_now()
        self._spawn(link.sender_task)
        self._spawn(self._dealer_receiver, link)
        self._spawn(self._monitor_task, link)
        return link

    # -- receiving -----------------------------------------------------------------------

    async def _dealer_receiver(self, link: Link) -> None:
        sock = link.sock
        try:
            while not link.dead:
                frames = await sock.recv_batch(256)
                link.last_recv = trio.current_time()
                self._on_frames(link, frames)
                self._run_ready()
        except SocketClosed:
            pass

    async def _monitor_task(self, link: Link) -> None:
        mon = link.monitor
        assert mon is not None
        try:
            while not link.dead:
                event, value = await _next_monitor_event(mon)
                if event == zmq.EVENT_DISCONNECTED and link.up.is_set():
                    self._link_dead(link, "the connection was lost")
                elif event & HANDSHAKE_EVENTS and not link.up.is_set():
                    # ZeroMQ would retry the handshake forever, silently: fail now, saying why.
                    link.failure = describe_connect_failure(
                        event, value, link.endpoint, link.options.curve
                    )
                    self._link_dead(link, link.failure)
        except SocketClosed:
            pass

    async def _listener_monitor_task(self, listener: Listener) -> None:
        """Log (rate-limited) the connections a CURVE listener's handshake turned away."""
        mon = listener.monitor
        assert mon is not None
        try:
            while not listener.closed:
                event, value = await _next_monitor_event(mon)
                if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    continue  # the authorizer's refusal was logged where it was decided
                self._handshake_log.log(
                    "a connection to %s (%s) failed the CURVE handshake: %s",
                    listener.endpoints[0],
                    listener.options.zap_domain,
                    describe_listen_failure(event, value),
                )
        except SocketClosed:
            pass

    async def _router_receiver(self, listener: Listener) -> None:
        sock = listener.sock
        try:
            while not listener.closed:
                batch = await sock.recv_multipart_batch(256)
                now = trio.current_time()
                for parts in batch:
                    if len(parts) != 2:
                        self.bad_frames += 1
                        continue
                    rid, data = parts
                    link = listener.links.get(rid)
                    if link is None:
                        self._on_unknown_peer(listener, rid, data)
                        continue
                    link.last_recv = now
                    link.inline_ok = True
                    self._on_frame(link, data)
                self._run_ready()
        except SocketClosed:
            pass

    async def _router_curve_receiver(self, listener: Listener) -> None:
        """The receiver of a CURVE listener: frames come with the ZAP handler's ``User-Id``
        (the key the handshake authenticated), checked against the link on every frame."""
        sock = listener.sock
        try:
            while not listener.closed:
                batch = await sock.recv_frames_batch(256)
                now = trio.current_time()
                for parts in batch:
                    if len(parts) != 2:
                        self.bad_frames += 1
                        continue
                    rid_frame, data_frame = parts
                    rid = rid_frame.bytes
                    user_id = _frame_property(data_frame, "User-Id")
                    link = listener.links.get(rid)
                    if link is None:
                        address = _frame_property(data_frame, "Peer-Address")
                        self._on_unknown_peer(listener, rid, data_frame.bytes, user_id, address)
                        continue
                    if user_id != link.remote_key:
                        self._link_dead(link, "a frame came with another key", send_bye=True)
                        continue
                    link.last_recv = now
                    link.inline_ok = True
                    self._on_frame(link, data_frame.bytes)
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
        link = Link(
            self, listener.options, role="passive", sock=listener.sock, rid=rid, listener=listener
        )
        link.remote_id = hello.runtime_id
        link.remote_endpoints = hello.endpoints
        if listener.curve:
            link.remote_key = user_id
            link.remote_address = address
        link.window = min(listener.options.port_window, hello.window)
        link.peer_timeout(hello.heartbeat_timeout_ms)
        listener.links[rid] = link
        self._links.add(link)
        link.put(
            Welcome(self.id, PROTOCOL_VERSION, self.endpoints, link.window, link.hello_timeout_ms),
            prio=True,
        )
        self._link_up(link)
        link.kick()
        self._spawn(link.sender_task)
        for m in frame.messages[1:]:
            self._on_message(link, m)

    def _send_raw_bye(self, listener: Listener, rid: bytes, reason: str) -> None:
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
                self._link_dead(link, "the peer sent too many bad frames", send_bye=True)
            return
        for m in messages:
            self._on_message(link, m)
            if link.dead:
                return

    def _on_message(self, link: Link, m: object) -> None:
        handler = self._handlers.get(type(m))
        if handler is None or (not link.up.is_set() and not isinstance(m, Welcome | Bye)):
            self.bad_frames += 1
            logger.warning("dropped an unexpected %s from %r", type(m).__name__, link)
            return
        try:
            handler(m, link)
        except Exception:  # input from the network never crashes anything
            self.bad_frames += 1
            logger.exception("failed to handle %s from %r", type(m).__name__, link)

    # -- handshake and link life ------------------------------------------------------

    def _on_welcome(self, m: Welcome, link: Link) -> None:
        if link.role != "active" or link.up.is_set():
            return
        if m.version != PROTOCOL_VERSION:
            self._link_dead(
                link, f"the listener speaks protocol {m.version}, not {PROTOCOL_VERSION}"
            )
            return
        link.remote_id = m.runtime_id
        link.remote_endpoints = m.endpoints
        link.window = min(link.options.port_window, m.window)
        link.peer_timeout(m.heartbeat_timeout_ms)
        self._link_up(link)
        link.kick()

    def _on_hello_late(self, m: Hello, link: Link) -> None:
        pass  # a repeated Hello on an established connection: nothing to do

    def _on_ping(self, m: Ping, link: Link) -> None:
        pass

    def _on_bye(self, m: Bye, link: Link) -> None:
        if link.role == "active" and not link.up.is_set() and link.failure is None:
            link.failure = f"{split_key(link.endpoint)[0]} refused the connection: {m.reason}"
        self._link_dead(link, f"the peer closed the connection ({m.reason})")

    def _link_up(self, link: Link) -> None:
        link.up.set()
        self._handshake_lot.unpark_all()
        rid = link.remote_id
        assert rid is not None
        self._by_runtime.setdefault(rid, link)
        waiting = self._pending_direct.pop(rid, None)
        if waiting:
            for pid in waiting:
                st = self._entries.get(pid)
                if isinstance(st, _PortState):
                    self._try_direct(st)

    def _link_dead(self, link: Link, reason: str, *, send_bye: bool = False) -> None:
        if link.dead:
            return
        if send_bye and link.up.is_set() and not link.closing:
            link.normal.clear()  # what was queued is lost anyway: the Bye goes first
            link.say_bye(reason)
        link._dead = True
        link.closing = True
        link.reason = reason
        link.gone.set()
        self._handshake_lot.unpark_all()
        logger.info("connection %r closed: %s", link, reason)
        self._links.discard(link)
        if link.remote_id is not None and self._by_runtime.get(link.remote_id) is link:
            del self._by_runtime[link.remote_id]
            for other in self._links:
                if other.remote_id == link.remote_id and other.up.is_set():
                    self._by_runtime[link.remote_id] = other
                    break
        if link.rid is None:
            if self._dealers.get(link.endpoint) is link:
                del self._dealers[link.endpoint]
            if link.monitor is not None:
                with suppress(zmq.ZMQError):
                    link.sock.sock.disable_monitor()
                link.monitor.close(0)
            link.sock.close(link.options.linger_s)
        elif link.listener is not None and link.listener.links.get(link.rid) is link:
            del link.listener.links[link.rid]
        link.prio.clear()
        link.normal.clear()
        link.pending_frame = None
        link.lot.unpark_all()
        self._wake_blocked(link)
        # every route through this link is gone
        for pid, e in list(self._entries.items()):
            if type(e) is not _Relay or e.hop is not link:
                continue
            if self._entries.get(pid) is e:
                del self._entries[pid]
            p = self._entries.get(e.partner)
            if type(p) is _PortState:
                if p.partner == pid:
                    self._partner_closed(p, reason)
            elif type(p) is _Relay and p.hop is not link:
                p.hop.put(Close(e.partner, CLOSE_NOW, CLOSE_NOW, reason))
                p.hop.kick()
                del self._entries[e.partner]
        self._relays_changed.set()

    # -- heartbeats and dispatch tasks -------------------------------------------

    async def _heartbeat_task(self) -> None:
        while True:
            now = trio.current_time()
            tick = 0.25
            for link in list(self._links):
                o = link.options
                tick = min(tick, link.ping_interval_s / 2)
                if link.dead:
                    continue
                if not link.up.is_set():
                    if now - link.created > o.connect_timeout_s:
                        self._link_dead(link, "the handshake timed out")
                    continue
                if now - link.last_recv > o.heartbeat_timeout_s:
                    if not link.deferred and self._input_waiting(link):
                        # Input is waiting: maybe this process was busy, not the peer.
                        # Give the receiver one turn before judging (only one: a
                        # listener's socket may always have input from other peers).
                        link.deferred = True
                        continue
                    logger.info(
                        "heartbeat timeout on %r: queued %d+%d, pending frame %s, sender parked %s, "
                        "last send %.2f s ago, events %d",
                        link,
                        len(link.prio),
                        len(link.normal),
                        link.pending_frame is not None,
                        link.sender_parked,
                        now - link.last_send,
                        link.sock.events,
                    )
                    self._link_dead(
                        link,
                        f"nothing arrived for {now - link.last_recv:.1f} s (heartbeat timeout)",
                        send_bye=True,  # a stopped peer reads it when it resumes
                    )
                    continue
                link.deferred = False
                if now - link.last_send >= link.ping_interval_s:
                    link.put(Ping(), prio=True)
                    link.kick()
            await trio.sleep(max(0.005, tick))

    @staticmethod
    def _input_waiting(link: Link) -> bool:
        try:
            return bool(link.sock.refresh() & zmq.POLLIN)
        except (zmq.ZMQError, SocketClosed):
            return False

    def _add_deadline(self, deadline: float, pending: _Pending) -> None:
        """Time ``pending`` out at ``deadline`` (trio time) unless it finishes first."""
        self._deadline_seq += 1
        heapq.heappush(self._deadlines, (deadline, self._deadline_seq, pending))
        if len(self._deadlines) > 4096 and len(self._deadlines) > 4 * sum(
            1 for _, _, p in self._deadlines if not p.done
        ):
            self._deadlines = [d for d in self._deadlines if not d[2].done]
            heapq.heapify(self._deadlines)
        if deadline < self._timer_target and self._timer_scope is not None:
            self._timer_scope.cancel()  # re-arm earlier (rare: timeouts mostly grow)

    async def _timer_task(self) -> None:
        while True:
            now = trio.current_time()
            heap = self._deadlines
            while heap and (heap[0][0] <= now or heap[0][2].done):
                _, _, pending = heapq.heappop(heap)
                if not pending.done:
                    pending.timed_out = True
                    pending.finish()
            self._timer_target = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=self._timer_target) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None

    async def _dispatch_task(self) -> None:
        while True:
            if not self._ready:
                self._dispatch_parked = True
                await self._dispatch_lot.park()
                continue
            self._run_ready()
            await trio.lowlevel.checkpoint()

    def _schedule(self, st: _PortState) -> None:
        self._ready[st] = None
        if self._dispatch_parked:
            self._dispatch_parked = False
            self._dispatch_lot.unpark_all()

    def _notify(self, st: _PortState) -> None:
        """Items arrived in ``st``'s queue."""
        if st.iterating:
            st.lot.unpark_all()
        elif st.started or st.partner_gone:
            self._ready[st] = None

    def _run_ready(self) -> None:
        budget = RUN_READY_ITEMS_MAX
        ready = self._ready
        while ready and budget > 0:
            st = next(iter(ready))
            del ready[st]
            budget -= self._drain_to_listeners(st, budget)
        if ready and self._dispatch_parked:
            self._dispatch_parked = False
            self._dispatch_lot.unpark_all()

    def _drain_to_listeners(self, st: _PortState, budget: int) -> int:
        handle = st.handle
        n = 0
        if st.done or handle is None:
            return 0
        queue = st.queue
        if not st.started or st.iterating:
            if st.partner_gone and not st.close_fired and queue and queue[-1] is CLOSE_ITEM:
                self._fire_close(st)
            return 0
        fire = handle._fire_message
        popleft = queue.popleft
        step = st.grant_step
        while queue and n < budget:
            entry = queue[0]
            if type(entry) is bytes:
                popleft()
                n += 1
                st.consumed += 1
                if st.consumed - st.granted >= step:
                    self._grant(st)
                fire(entry, ())
                if _halted(st):
                    break
                continue
            if entry is CLOSE_ITEM:
                queue.popleft()
                self._fire_close(st)
                break
            assert isinstance(entry, _Item)
            if entry.kind == KIND_REQUEST:
                if not self._start_request(st, entry):
                    break
                queue.popleft()
                n += 1
                continue
            queue.popleft()
            n += 1
            self._consumed(st)
            fire(entry.payload, tuple(self._handle_for(p) for p in entry.ports))
            if _halted(st):
                break
        if queue and n >= budget:
            self._ready[st] = None
        return n

    def _fire_close(self, st: _PortState) -> None:
        if st.close_fired:
            return
        st.close_fired = True
        if st.handle is not None:
            st.handle._fire_close(st.close_reason)

    def _consumed(self, st: _PortState) -> None:
        st.consumed += 1
        if st.consumed - st.granted >= st.grant_step:
            self._grant(st)

    def _grant(self, st: _PortState) -> None:
        st.granted = st.consumed
        if st.partner_gone:
            return
        e = self._entries.get(st.partner)
        if type(e) is _PortState:
            self._credit_local(e, st.consumed)
        elif type(e) is _Relay:
            e.hop.put(Credit(st.partner, st.consumed), prio=True)
            e.hop.kick()

    def _credit_local(self, st: _PortState, consumed: int) -> None:
        if consumed > st.credited:
            st.credited = consumed
            if st.writers:
                st.writers.unpark_all()

    def _wake_blocked(self, link: Link) -> None:
        blocked, link.blocked_ports = link.blocked_ports, set()
        for st in blocked:
            st.writers.unpark_all()

    # -- ids and handles ---------------------------------------------------------------

    def _new_id(self) -> int:
        while True:
            i = secrets.randbits(63)
            if i and i not in self._entries:
                return i

    def _handle_for(self, st: _PortState) -> MessagePort:
        h = _port.MessagePort._from_state(st)
        st.handle = h
        return h

    def new_channel(self) -> tuple[MessagePort, MessagePort]:
        self._check_run()
        window = self.options.port_window
        a = _PortState(self, self._new_id(), 0, window)
        self._entries[a.id] = a
        b = _PortState(self, self._new_id(), a.id, window)
        self._entries[b.id] = b
        a.partner = b.id
        return self._handle_for(a), self._handle_for(b)

    # -- sending ---------------------------------------------------------------------

    def _room(self, st: _PortState, size: int) -> trio.lowlevel.ParkingLot | None:
        """None if ``st`` may post a message of ``size`` bytes now, else where to wait."""
        if st.sent - st.credited >= st.window:
            return st.writers
        e = self._entries.get(st.partner)
        if type(e) is _Relay and not e.hop.has_room(size):
            e.hop.blocked_ports.add(st)
            return st.writers
        return None

    def _post_plain(self, st: _PortState, payload: bytes) -> None:
        """:meth:`_post` for the common case (a normal message without ports), made short."""
        partner = self._entries.get(st.partner)
        if type(partner) is not _Relay:
            self._post(st, KIND_MESSAGE, 0, payload, (), False)
            return
        if st.sent - st.credited >= st.window:
            raise PortQueueFull(
                f"the partner has not taken {st.window} messages yet (the port's window); "
                "await port.wait_writable() or use await port.send()"
            )
        link = partner.hop
        if link.closing:
            raise PortClosedError(f"the port's connection is closing ({link.reason or 'Bye sent'})")
        size = len(payload)
        if link.user_count and (
            link.user_count >= link.options.link_queue_max
            or link.user_bytes + size > link.options.link_queue_bytes_max
        ):
            raise PortQueueFull(
                f"the connection's send queue is full ({link.user_count} messages, {link.user_bytes} bytes); "
                "await port.wait_writable() or use await port.send()"
            )
        seq = st.seq_out
        st.seq_out = seq + 1
        st.sent += 1
        link.normal.append((st.partner, seq, payload))
        link.user_count += 1
        link.user_bytes += size
        link.kick()

    def _post(  # noqa: PLR0917
        self,
        st: _PortState,
        kind: int,
        req_id: int,
        payload: bytes,
        ports: tuple[_PortState, ...],
        prio: bool,
    ) -> None:
        """Send one message from ``st`` to its partner; raises PortQueueFull when there is no room."""
        partner = self._entries.get(st.partner)
        counted = kind not in (KIND_RESPONSE, KIND_ERROR)
        if counted and st.sent - st.credited >= st.window:
            raise PortQueueFull(
                f"the partner has not taken {st.window} messages yet (the port's window); "
                "await port.wait_writable() or use await port.send()"
            )
        if isinstance(partner, _Relay):
            link = partner.hop
            if link.closing:
                raise PortClosedError(
                    f"the port's connection is closing ({link.reason or 'Bye sent'})"
                )
            if counted and not link.has_room(len(payload)):
                raise PortQueueFull(
                    f"the connection's send queue is full ({link.user_count} messages, {link.user_bytes} bytes); "
                    "await port.wait_writable() or use await port.send()"
                )
        elif partner is None:
            raise PortClosedError("the port's partner is closed")
        if prio:
            seq = st.pseq_out
            st.pseq_out = seq + 1
        else:
            seq = st.seq_out
            st.seq_out = seq + 1
        if counted:
            st.sent += 1
        if isinstance(partner, _PortState):
            for p in ports:
                self._neuter(p)
            if kind == KIND_MESSAGE and not prio and not ports:
                self._accept(partner, False, seq, payload)
            else:
                self._accept(partner, prio, seq, _Item(kind, prio, req_id, payload, ports))
            if partner.started or partner.iterating or partner.partner_gone:
                self._schedule(partner)
            return
        link = partner.hop
        if kind == KIND_MESSAGE and not prio and not ports:
            link.put_plain(st.partner, seq, payload)
        else:
            exported: list[tuple[_PortState, list[tuple[bool, int, bytes | _Item]]]] = []
            refs = tuple(self._export(p, link, exported) for p in ports)
            link.put_user(Msg(st.partner, seq, prio, kind, req_id, payload, refs))
            self._send_exported(exported, link)
        link.kick()

    # -- relocation: export / materialize -------------------------------------------

    def _export(
        self,
        st: _PortState,
        hop: Link,
        exported: list[tuple[_PortState, list[tuple[bool, int, bytes | _Item]]]],
    ) -> PortRef:
        """Turn a local end into a relay toward ``hop``; its queued messages follow."""
        pe = self._entries.get(st.partner)
        partner_gen = pe.moves if type(pe) is _PortState else pe.gen if type(pe) is _Relay else 0
        queued: list[tuple[bool, int, bytes | _Item]] = []
        n_normal = sum(1 for x in st.queue if type(x) is bytes or (type(x) is _Item and not x.prio))
        n_prio = sum(1 for x in st.queue if type(x) is _Item and x.prio)
        seq = st.seq_in - n_normal
        pseq = st.pseq_in - n_prio
        first_seq, first_pseq = seq, pseq
        for x in st.queue:
            if type(x) is bytes:
                queued.append((False, seq, x))
                seq += 1
            elif type(x) is _Item:
                if x.prio:
                    queued.append((True, pseq, x))
                    pseq += 1
                else:
                    queued.append((False, seq, x))
                    seq += 1
        for (prio, s), x2 in sorted(st.reorder.items()):
            queued.append((prio, s, x2))
        close_seq = close_pseq = -1
        if st.partner_gone:
            close_seq, close_pseq = st.seq_in, st.pseq_in
        elif st.close_at is not None:
            close_seq, close_pseq = st.close_at
        moves = st.moves + 1
        ref = PortRef(
            id=st.id,
            partner=st.partner,
            moves=moves,
            partner_gen=partner_gen,
            window=st.window,
            seq_out=st.seq_out,
            pseq_out=st.pseq_out,
            seq_in=first_seq,
            pseq_in=first_pseq,
            sent=st.sent,
            credited=st.credited,
            consumed=st.consumed,
            granted=st.granted,
            close_seq=close_seq,
            close_pseq=close_pseq,
        )
        self._retire(
            st,
            PortTransferredError("the port was transferred; the receiver of the message owns it"),
        )
        st.exported = True
        if self._entries.get(st.id) is st:
            self._entries[st.id] = _Relay(hop, moves, st.partner)
        exported.append((st, queued))
        return ref

    def _send_exported(
        self, exported: list[tuple[_PortState, list[tuple[bool, int, bytes | _Item]]]], hop: Link
    ) -> None:
        """Re-send exported ends' queued messages behind their carrier (recursively)."""
        i = 0
        while i < len(exported):
            st, queued = exported[i]
            i += 1
            for prio, seq, x in queued:
                if type(x) is bytes:
                    hop.put(Msg(st.id, seq, prio, KIND_MESSAGE, 0, x, ()), prio=prio)
                else:
                    assert isinstance(x, _Item)
                    refs = tuple(self._export(p, hop, exported) for p in x.ports)
                    hop.put(Msg(st.id, seq, prio, x.kind, x.req_id, x.payload, refs), prio=prio)

    def _materialize(self, refs: tuple[PortRef, ...], link: Link) -> tuple[_PortState, ...]:
        states = []
        replaced: dict[int, _Relay] = {}
        for ref in refs:
            st = _PortState(self, ref.id, ref.partner, max(1, ref.window), ref.moves)
            st.seq_out = ref.seq_out
            st.pseq_out = ref.pseq_out
            st.seq_in = ref.seq_in
            st.pseq_in = ref.pseq_in
            st.sent = ref.sent
            st.credited = ref.credited
            st.consumed = ref.consumed
            st.granted = ref.granted
            if ref.close_seq >= 0:
                st.close_at = (ref.close_seq, ref.close_pseq)
            old = self._entries.get(ref.id)
            if type(old) is _PortState and not old.done:
                # an id collision (or a forged ref): refuse the newcomer
                st.done = True
                states.append(st)
                continue
            if type(old) is _Relay:
                replaced[ref.id] = old
            self._entries[ref.id] = st
            states.append(st)
        for ref, st in zip(refs, states, strict=True):
            if st.done:
                continue
            if ref.partner not in self._entries and st.close_at is None:
                self._entries[ref.partner] = _Relay(link, ref.partner_gen, ref.id)
            st.remote = link.info
        for st in states:
            if st.done:
                continue
            self._check_close(st)
            pe = self._entries.get(st.partner)
            old_route = replaced.get(st.id)
            if old_route is not None and type(pe) is _PortState and not old_route.hop.dead:
                # The end came back to where its partner lives: the partner's old
                # route toward it ends here. Like a switch: a marker behind what
                # was sent on it releases the relays on the way.
                old_route.hop.put(Marker(st.id, st.moves))
                old_route.hop.kick()
            if type(pe) is _Relay and not st.partner_gone:
                pe.hop.put(Locate(st.partner, st.id, self.id, self.endpoints, st.moves, True))
                pe.hop.kick()
        return tuple(states)

    def _relay_refs(self, refs: tuple[PortRef, ...], in_link: Link, out: Link) -> None:
        """A carrier passes through: install relays so both directions follow."""
        for ref in refs:
            old = self._entries.get(ref.id)
            if type(old) is _PortState and not old.done:
                continue  # an id collision or a forged ref: leave the local end alone
            self._entries[ref.id] = _Relay(out, ref.moves, ref.partner)
        for ref in refs:
            if ref.partner not in self._entries and ref.close_seq < 0:
                self._entries[ref.partner] = _Relay(in_link, ref.partner_gen, ref.id)

    # -- incoming addressed messages ------------------------------------------------

    def _on_msgs(self, m: Msgs, link: Link) -> None:
        e = self._entries.get(m.dst)
        if type(e) is _PortState:
            st = e
            seq = m.seq
            if seq == st.seq_in and not st.reorder and not st.done and st.close_at is None:
                payloads = m.payloads
                st.queue.extend(payloads)
                st.seq_in = seq + len(payloads)
                if len(st.queue) > st.window + 1:
                    self._violation(st, "the partner sent beyond its window")
                    return
                self._notify(st)
                return
            for i, p in enumerate(m.payloads):
                self._accept(st, False, seq + i, p)
        elif type(e) is _Relay:
            e.used = trio.current_time()
            e.hop.put(m)
            e.hop.kick()

    def _on_msg(self, m: Msg, link: Link) -> None:
        e = self._entries.get(m.dst)
        if type(e) is _Relay:
            if m.ports:
                self._relay_refs(m.ports, link, e.hop)
            e.used = trio.current_time()
            e.hop.put(m, prio=m.prio)
            e.hop.kick()
            return
        states = self._materialize(m.ports, link) if m.ports else ()
        if type(e) is _PortState:
            if m.kind == KIND_MESSAGE and not m.prio and not states:
                self._accept(e, False, m.seq, m.payload)
            else:
                self._accept(e, m.prio, m.seq, _Item(m.kind, m.prio, m.req_id, m.payload, states))
        else:
            # nobody here: the ports it carried are lost; tell their partners
            for st in states:
                self._close_port(st, "the message carrying the port could not be delivered")

    def _accept(self, st: _PortState, prio: bool, seq: int, item: bytes | _Item) -> None:
        if st.done or st.partner_gone:
            if type(item) is _Item:
                for p in item.ports:
                    self._close_port(p, "the port it was sent to is closed")
            return
        expected = st.pseq_in if prio else st.seq_in
        if seq != expected:
            if seq > expected:
                if len(st.reorder) >= st.window * REORDER_FACTOR:
                    self._violation(st, "too many messages arrived out of order")
                    return
                st.reorder[(prio, seq)] = item
            return  # else a duplicate
        self._take_in(st, item)
        seq += 1
        reorder = st.reorder
        while reorder:
            nxt = reorder.pop((prio, seq), None)
            if nxt is None:
                break
            self._take_in(st, nxt)
            seq += 1
        if prio:
            st.pseq_in = seq
        else:
            st.seq_in = seq
        if len(st.queue) > st.window + 1:
            self._violation(st, "the partner sent beyond its window")
            return
        if st.close_at is not None:
            self._check_close(st)
        self._notify(st)

    def _take_in(self, st: _PortState, item: bytes | _Item) -> None:
        if type(item) is _Item and item.kind in (KIND_RESPONSE, KIND_ERROR):
            pending = st.pending.pop(item.req_id, None)
            if pending is not None:
                pending.kind = item.kind
                pending.payload = item.payload
                pending.finish()
            return  # a late answer is dropped
        st.queue.append(item)

    def _violation(self, st: _PortState, reason: str) -> None:
        logger.warning("closing %r: %s", st, reason)
        self.bad_frames += 1
        self._close_port(st, reason, notify_self=True)

    def _on_credit(self, m: Credit, link: Link) -> None:
        e = self._entries.get(m.dst)
        if type(e) is _PortState:
            self._credit_local(e, m.consumed)
        elif type(e) is _Relay:
            e.used = trio.current_time()
            e.hop.put(m, prio=True)
            e.hop.kick()

    def _on_close(self, m: Close, link: Link) -> None:
        e = self._entries.get(m.dst)
        if type(e) is _Relay:
            e.used = trio.current_time()
            e.hop.put(m)
            e.hop.kick()
            del self._entries[m.dst]
            self._relays_changed.set()
        elif type(e) is _PortState:
            self._partner_closing(e, m.seq, m.pseq, m.reason)

    def _partner_closing(self, st: _PortState, seq: int, pseq: int, reason: str) -> None:
        st.close_reason = reason
        if seq == CLOSE_NOW:
            self._partner_closed(st, reason)
            return
        st.close_at = (seq, pseq)
        self._check_close(st)

    def _check_close(self, st: _PortState) -> None:
        at = st.close_at
        if at is not None and st.seq_in >= at[0] and st.pseq_in >= at[1]:
            self._partner_closed(st, st.close_reason or "the partner closed the port")

    def _partner_closed(self, st: _PortState, reason: str) -> None:
        """The partner end is gone: no more messages will come; queue the close event."""
        if st.partner_gone or st.done:
            return
        st.partner_gone = True
        st.close_at = None
        st.close_reason = reason
        st.reorder.clear()
        pe = self._entries.get(st.partner)
        if type(pe) is _Relay:
            del self._entries[st.partner]
            if not pe.hop.dead:
                pe.hop.put(Marker(st.partner, GEN_ALL))
                pe.hop.kick()
            self._relays_changed.set()
        if self._entries.get(st.id) is st:
            del self._entries[st.id]
        self._forget_direct(st)
        err = PortClosedError(f"the port's partner is gone ({reason})")
        for p in st.pending.values():
            p.fail(err)
        st.pending.clear()
        st.writers.unpark_all()
        st.queue.append(CLOSE_ITEM)
        st.lot.unpark_all()
        self._schedule(st)

    def _on_locate(self, m: Locate, link: Link) -> None:
        e = self._entries.get(m.dst)
        if type(e) is _Relay:
            e.used = trio.current_time()
            e.hop.put(m)
            e.hop.kick()
        elif type(e) is _PortState and not e.partner_gone and e.partner == m.src:
            e.partner_home = (m.runtime_id, m.endpoints, m.moves)
            if m.reply:
                pe = self._entries.get(e.partner)
                if type(pe) is _Relay:
                    pe.hop.put(Locate(e.partner, e.id, self.id, self.endpoints, e.moves, False))
                    pe.hop.kick()
            self._try_direct(e)

    def _on_marker(self, m: Marker, link: Link) -> None:
        e = self._entries.get(m.dst)
        if type(e) is _Relay and e.gen <= m.gen:
            del self._entries[m.dst]
            if not e.hop.dead:
                e.hop.put(m)
                e.hop.kick()
            self._relays_changed.set()

    def _on_open(self, m: Open, link: Link) -> None:
        listener = link.listener
        if listener is None or link.role != "passive":
            link.put(Close(m.partner, CLOSE_NOW, CLOSE_NOW, "this side does not accept ports"))
            link.kick()
            return
        existing = self._entries.get(m.port)
        # a runtime connected to itself finds its own route entry for the new end
        self_connected = type(existing) is _Relay and link.remote_id == self.id
        if existing is not None and not self_connected:
            link.put(Close(m.partner, CLOSE_NOW, CLOSE_NOW, "port id collision; connect again"))
            link.kick()
            return
        st = _PortState(
            self, m.port, m.partner, max(1, min(m.window, listener.options.port_window))
        )
        st.remote = link.info
        self._entries[st.id] = st
        if m.partner not in self._entries:
            self._entries[m.partner] = _Relay(link, 0, st.id)
        if not listener._offer(st):
            self._close_port(st, "the listener's backlog is full")

    # -- direct routes after a move -------------------------------------------------

    def _try_direct(self, st: _PortState) -> None:
        home = st.partner_home
        if home is None or st.done or st.partner_gone:
            return
        runtime_id, endpoints, moves = home
        if runtime_id == self.id:
            return
        e = self._entries.get(st.partner)
        if type(e) is not _Relay or e.gen > moves:
            return
        if e.hop.remote_id == runtime_id:
            st.remote = e.hop.info
            return
        link = self._by_runtime.get(runtime_id)
        if link is not None and link.up.is_set() and not link.dead:
            e.hop.put(Marker(st.partner, moves))
            e.hop.kick()
            self._entries[st.partner] = _Relay(link, moves, st.id)
            st.remote = link.info
            return
        self._pending_direct.setdefault(runtime_id, set()).add(st.id)
        mine = self.endpoints
        if endpoints and (not mine or self.id < runtime_id) and runtime_id not in self._dialing:
            self._dialing.add(runtime_id)
            self._spawn(self._dial, runtime_id, endpoints)

    def _forget_direct(self, st: _PortState) -> None:
        if st.partner_home is not None:
            s = self._pending_direct.get(st.partner_home[0])
            if s is not None:
                s.discard(st.id)

    async def _dial(self, runtime_id: str, endpoints: tuple[str, ...]) -> None:
        try:
            for ep in endpoints:
                if runtime_id in self._by_runtime:
                    return
                try:
                    link = await self._get_link(ep, self.options)
                except (ConnectError, PortsError) as e:
                    logger.info("could not reach runtime %s at %s: %s", runtime_id, ep, e)
                    continue
                if link.remote_id == runtime_id:
                    return
        finally:
            self._dialing.discard(runtime_id)

    # -- closing ports -------------------------------------------------------------------

    def _retire(self, st: _PortState, err: PortsError) -> None:
        """``st`` stops being usable here (closed or transferred): wake and fail its waiters."""
        st.done = True
        st.started = False
        for p in st.pending.values():
            p.fail(err)
        st.pending.clear()
        st.lot.unpark_all()
        st.writers.unpark_all()
        self._ready.pop(st, None)
        self._forget_direct(st)
        if st.handle is not None:
            st.handle._detach(err)
            st.handle = None

    def _neuter(self, st: _PortState) -> None:
        """``st`` moves to a new user object in this runtime: the old object becomes unusable."""
        err = PortTransferredError("the port was transferred; the receiver of the message owns it")
        st.started = False
        for p in st.pending.values():
            p.fail(err)
        st.pending.clear()
        self._ready.pop(st, None)
        st.lot.unpark_all()
        st.writers.unpark_all()
        if st.handle is not None:
            st.handle._detach(err)
            st.handle = None

    def _close_port(self, st: _PortState, reason: str, *, notify_self: bool = False) -> None:
        """Close a local end: its partner gets ``close``; with ``notify_self`` it does too."""
        if st.done:
            return
        if not st.partner_gone:
            pe = self._entries.get(st.partner)
            if type(pe) is _PortState:
                self._partner_closing(pe, st.seq_out, st.pseq_out, reason)
            elif type(pe) is _Relay:
                pe.hop.put(Close(st.partner, st.seq_out, st.pseq_out, reason))
                pe.hop.kick()
                del self._entries[st.partner]
                self._relays_changed.set()
        if self._entries.get(st.id) is st:
            del self._entries[st.id]
        if notify_self and st.handle is not None and not st.close_fired:
            st.partner_gone = True
            st.close_reason = reason
            st.queue.clear()
            st.queue.append(CLOSE_ITEM)
            self._fire_close_soon(st)
        st.queue.clear()
        st.reorder.clear()
        self._retire(st, PortClosedError(f"the port is closed ({reason})"))

    def _fire_close_soon(self, st: _PortState) -> None:
        handle = st.handle
        if handle is None:
            return
        st.close_fired = True

        async def fire() -> None:
            handle._fire_close(st.close_reason)

        self._spawn(fire)

    # -- requests -------------------------------------------------------------------------

    def _start_request(self, st: _PortState, item: _Item) -> bool:
        handler = st.handler
        if handler is not None and st.handler_busy >= self.options.request_concurrency_max:
            return False
        self._consumed(st)
        req_id = item.req_id
        if handler is None:
            self._respond(st, req_id, KIND_ERROR, _codec.encode("the port has no request handler"))
            return True
        try:
            data = _codec.decode(item.payload)
        except DecodeError as e:
            self._respond(
                st, req_id, KIND_ERROR, _codec.encode(f"the request does not decode: {e}")
            )
            return True
        try:
            result = handler(data)
        except Exception as e:
            logger.exception("request handler of %r failed", st)
            self._respond(st, req_id, KIND_ERROR, _codec.encode(f"{type(e).__name__}: {e}"))
            return True
        if inspect.isawaitable(result):
            st.handler_busy += 1
            self._spawn(self._finish_request, st, req_id, result)
        else:
            self._respond_value(st, req_id, result)
        return True

    async def _finish_request(self, st: _PortState, req_id: int, result: Awaitable[object]) -> None:
        try:
            value = await result
        except Exception as e:
            logger.exception("request handler of %r failed", st)
            self._respond(st, req_id, KIND_ERROR, _codec.encode(f"{type(e).__name__}: {e}"))
        else:
            self._respond_value(st, req_id, value)
        finally:
            st.handler_busy -= 1
            if st.iterating:
                st.lot.unpark_all()
            elif st.queue and st.started and not st.done:
                self._schedule(st)

    def _respond_value(self, st: _PortState, req_id: int, value: object) -> None:
        try:
            payload = _codec.encode(value)
        except PortsError as e:
            self._respond(st, req_id, KIND_ERROR, _codec.encode(f"the handler's answer: {e}"))
            return
        except Exception as e:  # DataCloneError and friends
            self._respond(
                st, req_id, KIND_ERROR, _codec.encode(f"the handler's answer cannot be sent: {e}")
            )
            return
        self._respond(st, req_id, KIND_RESPONSE, payload)

    def _respond(self, st: _PortState, req_id: int, kind: int, payload: bytes) -> None:
        if st.done or st.partner_gone:
            return
        with suppress(PortsError):
            self._post(st, kind, req_id, payload, (), False)

    # -- shutdown ---------------------------------------------------------------------------

    def relay_count(self) -> int:
        """Relays through which other runtimes' ports may still talk (see :meth:`aclose`)."""
        return sum(
            1 for e in self._entries.values() if type(e) is _Relay and self._is_forwarding(e)
        )

    def _is_forwarding(self, e: _Relay) -> bool:
        """A relay this runtime may still be needed for: not the route of a local end,
        and not one whose partner's route leaves by the same connection (both ends
        then live beyond it and traffic between them does not come back here)."""
        p = self._entries.get(e.partner)
        if type(p) is _PortState:
            return p.done
        return not (type(p) is _Relay and p.hop is e.hop)

    def _relays_busy(self, idle_s: float) -> tuple[int, float]:
        """(relays that forwarded something in the last ``idle_s``, seconds until the
        first of them has been idle that long)."""
        now = trio.current_time()
        busy = 0
        wait_s = idle_s
        for e in self._entries.values():
            if type(e) is _Relay and self._is_forwarding(e) and now - e.used < idle_s:
                busy += 1
                wait_s = min(wait_s, idle_s - (now - e.used))
        return busy, wait_s

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
                busy, wait_s = self._relays_busy(relay_idle_s)
                if not busy:
                    break
                self._relays_changed = trio.Event()
                with trio.move_on_after(wait_s + 0.001):
                    await self._relays_changed.wait()
        released = self._relays_busy(relay_idle_s)[0] == 0
        for e in list(self._entries.values()):
            if type(e) is _PortState:
                self._close_port(e, "the process is closing")
        for link in list(self._links):
            if link.up.is_set():
                link.say_bye("the process is closing")
        with trio.move_on_after(min(timeout_s, 1.0)):
            for link in list(self._links):
                while not link.dead and (
                    link.prio or link.normal or link.pending_frame is not None
                ):
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
            self._link_dead(link, "the process is closing")
        for listener in list(self._listeners):
            listener.close()
        if self._zap is not None:
            self._zap.close(0)
        for e in list(self._entries.values()):
            if type(e) is _PortState:
                self._retire(e, PortClosedError("the port runtime is closed"))
        self._entries.clear()
        if self._own_ctx:
            self._ctx.term()


# -- the per-run default runtime ---------------------------------------------------

_CURRENT: trio.lowlevel.RunVar[PortRuntime] = trio.lowlevel.RunVar("statesync_ports_runtime")


async def _host(rt: PortRuntime) -> None:
    try:
        async with trio.open_nursery() as n:
            rt._attach(n)
            await trio.sleep_forever()
    except Exception:
        logger.exception("the port runtime failed; its ports are closed")
    finally:
        rt._teardown()


def current_runtime() -> PortRuntime:
    """The default port runtime of this trio run, created on first use.

    It lives in a trio system task: at the end of ``trio.run`` it closes every
    socket (finite linger) and terminates its zmq context. For a graceful end
    (relays released, Bye sent) await :func:`shutdown` first.
    """
    try:
        rt = _CURRENT.get()
    except LookupError:
        rt = None
    if rt is None or rt.closed:
        rt = PortRuntime()
        _CURRENT.set(rt)
        trio.lowlevel.spawn_system_task(_host, rt, name="statesync.ports runtime")
    return rt


async def shutdown(timeout_s: float = 5.0) -> bool:
    """Gracefully close this run's default runtime (see :meth:`PortRuntime.aclose`)."""
    try:
        rt = _CURRENT.get()
    except LookupError:
        return True
    return await rt.aclose(timeout_s)


@asynccontextmanager
async def open_runtime(
    options: PortOptions | None = None,
    *,
    context: zmq.Context[Any] | None = None,
    authorizer: Authorizer | None = None,
) -> AsyncIterator[PortRuntime]:
    """An explicit port runtime whose tasks live in this block; closed gracefully at exit.

    ``authorizer`` decides which keys CURVE listeners admit (see :class:`AuthRequest`).
    """
    rt = PortRuntime(options, context=context, authorizer=authorizer)
    try:
        async with trio.open_nursery() as n:
            rt._attach(n)
            try:
                yield rt
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(rt.options.linger_s + 5.0):
                    await rt.aclose(timeout_s=2.0)
                n.cancel_scope.cancel()
    finally:
        rt._teardown()


def listen(endpoint: str, options: PortOptions | None = None) -> Listener:
    """Listen on ``endpoint`` (tcp://, ipc://, inproc://) in this run's default runtime.

    ``async for port in listen(...)`` yields each incoming port.
    """
    return current_runtime().listen(endpoint, options)


async def connect(endpoint: str, options: PortOptions | None = None) -> MessagePort:
    """Open a port to the listener at ``endpoint`` (this run's default runtime)."""
    return await current_runtime().connect(endpoint, options)
