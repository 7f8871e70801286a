"""The transport interface under the ports runtime, and its ZeroMQ implementations.

A :class:`Transport` is one connection's frame pipe as a ``Link`` uses it:
whole frames of bytes (what ``_codec.encode_envelopes`` makes) go in
:meth:`~Transport.try_send`, and the runtime's receiver for the connection
hands every frame that arrives to the runtime. It is small on purpose: a
transport does not know ports, envelopes or heartbeats. To add one (the
browser issue adds WebSocket):

- ``try_send(frame) -> bool``: send without blocking, False when the
  transport is full (the link then waits in ``wait_room``); raise
  the builtin ``ConnectionError`` (caught by the link, never shown to users) when the other side is
  gone, :class:`~statesync.errors.SocketClosed` once closed;
- ``await wait_room()``: until ``try_send`` may succeed;
- ``input_waiting()``: frames wait to be read (asked before a heartbeat
  verdict: the silence may be this process's, not the peer's);
- ``close(linger_s)``: release it, flushing at most ``linger_s``;
- receiving: ``await recv_batch(max_count)`` (every frame queued, at least
  one) for a transport with its own receiver; a ZeroMQ listener's peers
  share the ROUTER's receiver instead (``own_receiver`` False).

Implementations: :class:`ZmqDealer` (a connecting side: one DEALER per
remote endpoint), :class:`ZmqRouterPeer` (one peer of a listener's ROUTER)
and :class:`~statesync.ports._memory.MemoryTransport` (in one process, for
tests).

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
configured in :func:`~statesync.ports._transport.make_socket`, the one place where CURVE keys
and the ZAP domain are set (``MAXMSGSIZE`` there bounds what a peer can make us
buffer).
"""

from __future__ import annotations

import secrets
from contextlib import suppress
from typing import Any, Protocol

import trio
import zmq
from zmq.utils.monitor import parse_monitor_message

from statesync.errors import SocketClosed
from statesync.ports._options import PortOptions
from statesync.ports._zsocket import SEND_BACKOFF_FIRST_S, SEND_BACKOFF_MAX_S, TrioSocket
from statesync.wire import DEFAULT_LIMITS


class Transport(Protocol):
    """One connection's frame pipe (see the module docstring)."""

    own_receiver: bool

    def try_send(self, frame: bytes) -> bool: ...

    async def wait_room(self) -> None: ...

    def input_waiting(self) -> bool: ...

    async def recv_batch(self, max_count: int) -> list[bytes]: ...

    def close(self, linger_s: float) -> None: ...

    def describe(self) -> str:
        """A few words on its state, for a log line about a dead connection."""


class ZmqDealer:
    """A DEALER (a connecting side): blocks at its high-water mark, never drops."""

    own_receiver = True

    def __init__(self, sock: TrioSocket, monitor: TrioSocket | None) -> None:
        self.sock = sock
        self.monitor = monitor

    def try_send(self, frame: bytes) -> bool:
        try:
            return self.sock.try_send(frame)
        except zmq.ZMQError as e:
            raise ConnectionError(f"the peer is unreachable ({e.strerror})") from e

    async def wait_room(self) -> None:
        await self.sock.wait_for(zmq.POLLOUT)

    def input_waiting(self) -> bool:
        return _input_waiting(self.sock)

    async def recv_batch(self, max_count: int) -> list[bytes]:
        return await self.sock.recv_batch(max_count)

    def close(self, linger_s: float) -> None:
        if self.monitor is not None:
            with suppress(zmq.ZMQError):
                self.sock.sock.disable_monitor()
            self.monitor.close(0)
        self.sock.close(linger_s)

    def describe(self) -> str:
        return f"events {self.sock.events}"


class ZmqRouterPeer:
    """One peer of a listener's ROUTER (``ROUTER_MANDATORY``: a full peer gets EAGAIN,
    a gone one EHOSTUNREACH). POLLOUT is socket-wide, so a full peer is backed off
    on a timer instead of being spun on; other peers are not held up."""

    own_receiver = False

    def __init__(self, sock: TrioSocket, rid: bytes) -> None:
        self.sock = sock
        self.rid = rid
        self._backoff_s = SEND_BACKOFF_FIRST_S

    def try_send(self, frame: bytes) -> bool:
        try:
            ok = self.sock.try_send_multipart((self.rid, frame))
        except zmq.ZMQError as e:
            raise ConnectionError(f"the peer is unreachable ({e.strerror})") from e
        if ok:
            self._backoff_s = SEND_BACKOFF_FIRST_S
        return ok

    async def wait_room(self) -> None:
        await trio.sleep(self._backoff_s)
        self._backoff_s = min(self._backoff_s * 2, SEND_BACKOFF_MAX_S)

    def input_waiting(self) -> bool:
        return _input_waiting(self.sock)

    async def recv_batch(self, max_count: int) -> list[bytes]:
        raise NotImplementedError("a ROUTER peer is read by its listener's receiver")

    def close(self, linger_s: float) -> None:
        pass  # the ROUTER belongs to the listener

    def describe(self) -> str:
        return f"events {self.sock.events}"


def _input_waiting(sock: TrioSocket) -> bool:
    try:
        return bool(sock.refresh() & zmq.POLLIN)
    except (zmq.ZMQError, SocketClosed):
        return False


# -- ZeroMQ sockets ---------------------------------------------------------------


def make_socket(
    ctx: zmq.Context[Any], kind: int, options: PortOptions, server_key: str | None = None
) -> zmq.Socket[Any]:
    """A socket configured from ``options``; ``server_key``: the listener's key (DEALER).

    The one place where sockets are configured, CURVE keys and the ZAP domain
    set (``MAXMSGSIZE`` bounds what a peer can make us buffer).
    """
    s: zmq.Socket[Any] = ctx.socket(kind)
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
            # the ZAP handler (see PortRuntime._ensure_zap) decides per domain which keys it admits
            s.setsockopt(zmq.ZAP_DOMAIN, options.zap_domain.encode("ascii"))
        else:
            assert server_key is not None
            s.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode("ascii"))
    return s


async def next_monitor_event(mon: TrioSocket) -> tuple[int, int]:
    """The next (event, value) from a ZeroMQ monitor socket, skipping what does not parse."""
    while True:
        parts = await mon.recv_multipart()
        try:
            parsed = parse_monitor_message(parts)
            return int(parsed["event"]), int(parsed["value"])
        except Exception:
            continue


def frame_property(frame: zmq.Frame, name: str) -> str:
    """A metadata property of a received frame ("" when the connection has none)."""
    try:
        return str(frame.get(name))
    except zmq.ZMQError:
        return ""


def normalize_endpoint(endpoint: str) -> str:
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        return endpoint[:-2] + ":*"
    return endpoint
