"""Knobs of the ports layer, in one frozen attrs class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from statesync.errors import PortsError
from statesync.ports._curve import CurveKeys
from statesync.wire import DEFAULT_LIMITS


class InvalidOptions(PortsError, ValueError):
    """A :class:`PortOptions` field is out of range; the message names it."""


def _bound(op: str, limit: int) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not (value > limit if op == ">" else value >= limit):
            raise InvalidOptions(f"PortOptions.{attribute.name} must be {op} {limit}, not {value!r}")

    return check


_positive = _bound(">", 0)
_non_negative = _bound(">=", 0)


def _seconds(default: float) -> Any:
    """A duration field, in seconds, above zero."""
    return attrs.field(default=default, validator=_positive)


@attrs.frozen
class PortOptions:
    """Everything tunable about ports, connections and their sockets.

    Pass one to :func:`~statesync.ports.listen`, :func:`~statesync.ports.connect`
    or :func:`~statesync.ports.open_runtime`. Connections made by a listener use
    the listener's options; connections made by ``connect`` (or to follow a
    transferred port) use the connector's.

    Liveness works at two levels. ZeroMQ heartbeats (``zmq_heartbeat_*``)
    drop a TCP connection whose peer process is stopped or gone. Application
    heartbeats (``heartbeat_*``) catch what ZeroMQ cannot see (a peer whose
    Python code is stuck while libzmq's thread still answers pings, a
    connection that ZeroMQ silently re-establishes): each side sends a ping
    frame every ``heartbeat_interval_s`` when it has sent nothing else, and a
    connection from which nothing arrived for ``heartbeat_timeout_s`` is
    declared dead; every port on it then gets a ``close`` event.

    Security: with ``curve`` set, a listener is a CURVE server whose ZAP domain
    is ``zap_domain`` (the runtime's authorizer decides, per domain, which keys
    it admits), and ``connect`` needs the listener's public key in the endpoint
    (``tcp://host:port?key=<Z85>``); all traffic is then encrypted and both
    ends authenticated. All sockets are created and configured in one place
    (``statesync.ports._transport.make_socket``).
    """

    # -- application-level liveness
    heartbeat_interval_s: float = attrs.field(default=1.0, validator=_positive)
    """Send a ping when nothing else was sent on a connection for this long."""
    heartbeat_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    """Declare a connection dead when nothing arrived on it for this long."""
    connect_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    """``connect`` fails with ConnectError when the handshake takes longer."""

    # -- ZeroMQ-level liveness (ZMQ_HEARTBEAT_IVL / _TIMEOUT / _TTL)
    zmq_heartbeat_interval_s: float = _seconds(1.0)
    """libzmq pings a TCP connection this often (ZMQ_HEARTBEAT_IVL)."""
    zmq_heartbeat_timeout_s: float = _seconds(5.0)
    """libzmq drops a TCP connection whose ping went unanswered this long (ZMQ_HEARTBEAT_TIMEOUT)."""
    zmq_heartbeat_ttl_s: float = _seconds(5.0)
    """The peer's libzmq drops the connection after this long without a ping (ZMQ_HEARTBEAT_TTL)."""

    # -- sockets
    linger_s: float = attrs.field(default=0.5, validator=_non_negative)
    """How long closing a socket may wait to flush what it holds (libzmq's default is forever)."""
    sndhwm: int = attrs.field(default=1000, validator=_positive)
    """ZeroMQ send high-water mark, in frames (each frame is a batch of messages)."""
    rcvhwm: int = attrs.field(default=1000, validator=_positive)
    """ZeroMQ receive high-water mark, in frames."""
    reconnect_interval_s: float = _seconds(0.1)
    reconnect_interval_max_s: float = _seconds(2.0)
    """libzmq redials a lost connection after ``reconnect_interval_s``, doubling up to this."""

    # -- queues (all bounded)
    port_window: int = attrs.field(default=8192, validator=_positive)
    """Messages a port may have posted that its partner has not yet taken from its
    queue (delivered to a listener or an ``async for``). Beyond it ``post_message``
    raises PortQueueFull; ``await port.wait_writable()`` waits for room. This is
    also the bound of the receiver's queue, started or not. The smaller of the
    two sides' values applies to a connection's ports."""
    link_queue_max: int = attrs.field(default=65536, validator=_positive)
    """Messages queued for sending on one connection (all its ports together)."""
    link_queue_bytes_max: int = attrs.field(default=64 << 20, validator=_positive)
    """Bytes queued for sending on one connection (all its ports together)."""
    payload_bytes_max: int = attrs.field(default=1 << 20, validator=_positive)
    """Largest encoded payload ``post_message`` accepts (MessageTooLarge beyond)."""
    accept_backlog: int = attrs.field(default=128, validator=_positive)
    """Incoming ports a listener holds until ``async for`` takes them; beyond it they
    are closed (the connecting side gets a ``close`` event)."""
    links_max: int = attrs.field(default=1024, validator=_positive)
    """Connections one listener accepts at a time; more are refused."""
    request_concurrency_max: int = attrs.field(default=64, validator=_positive)
    """Requests one port's async handler works on at once; the rest wait in its queue."""

    # -- batching (adaptive: an idle connection sends at once, a busy one coalesces)
    batch_messages_max: int = attrs.field(default=2048, validator=_positive)
    """Messages in one frame (at most the wire's ``batch_len_max``)."""
    batch_bytes_max: int = attrs.field(default=256 << 10, validator=_positive)
    """Payload bytes in one frame (a larger single message still goes alone)."""

    # -- security
    curve: CurveKeys | None = None
    """This side's CURVE key pair (None: no encryption, no authentication)."""
    zap_domain: str = "statesync"
    """A CURVE listener's ZAP domain: what the authorizer is told the listener is for."""

    # -- addresses
    advertise: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """Endpoints other processes may use to reach this runtime (to follow a port
    transferred to it). Empty: the listeners' bound endpoints."""

    def __attrs_post_init__(self) -> None:
        if self.payload_bytes_max > DEFAULT_LIMITS.bin_bytes_max:
            # Payloads travel as one bytes field of a frame: a larger one would
            # be refused when the frame is encoded, inside the sender task.
            raise InvalidOptions(
                f"PortOptions.payload_bytes_max = {self.payload_bytes_max} exceeds the wire's bound on one "
                f"bytes field ({DEFAULT_LIMITS.bin_bytes_max}); send large data in parts"
            )
        if not 0 < len(self.zap_domain) <= 64 or not self.zap_domain.isascii():
            raise InvalidOptions("PortOptions.zap_domain must be 1 to 64 ASCII characters")
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise InvalidOptions(
                "PortOptions.heartbeat_timeout_s must exceed heartbeat_interval_s "
                f"({self.heartbeat_timeout_s} <= {self.heartbeat_interval_s})"
            )


DEFAULT_OPTIONS = PortOptions()
