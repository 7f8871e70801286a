"""What the ports protocol sends on one connection: a :class:`Conn` and its two queues.

Pure (no trio, no zmq, no clock). The protocol appends envelopes to a
connection's queues; the transport driver takes them out a frame at a time
with :meth:`Conn.take_frame` (priority queue first; consecutive plain messages
to one port merged into one ``Msgs``) and encodes them. A ``Conn`` is the
protocol's handle of a link: the runtime's ``Link`` and the simulator's
connections derive from it.

Three kinds of entries sit in the queues, told apart by type:

- a plain user message: a ``(dst, seq, payload)`` tuple (the hot path);
- another user message (request, response, priority, with ports): a
  :class:`UserMsg` (the ``Msg`` and its payload size);
- a control or forwarded envelope: the envelope itself.

User messages count against the connection's bounds (``queue_max``,
``queue_bytes_max``); control and forwarded ones do not (they are bounded by
the windows of the ports they belong to).
"""

from __future__ import annotations

from collections import deque
from typing import Final

import attrs

from statesync.ports._envelope import Bye, Msg, Msgs
from statesync.wire import DEFAULT_LIMITS

ENVELOPES_PER_FRAME_MAX: Final = min(1024, DEFAULT_LIMITS.batch_len_max)


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


class UserMsg:
    """A queued user ``Msg`` (not a plain one) with its payload size."""

    __slots__ = ("msg", "size")

    def __init__(self, msg: Msg, size: int) -> None:
        self.msg = msg
        self.size = size


class Conn:
    """One connection to another runtime as the protocol sees it: queues and peer facts."""

    def __init__(
        self,
        *,
        queue_max: int,
        queue_bytes_max: int,
        window: int,
        accepts: bool = False,
    ) -> None:
        self.queue_max = queue_max
        self.queue_bytes_max = queue_bytes_max
        #: the port window agreed at the handshake (the smaller of the two sides')
        self.window = window
        #: the other side may open ports here (a listener's connection)
        self.accepts = accepts
        self.prio: deque[object] = deque()
        self.normal: deque[object] = deque()
        self.user_count = 0
        self.user_bytes = 0
        self.closing = False  # a Bye is queued: nothing more is accepted
        self.dead = False
        self.reason = ""
        self.remote_id: str | None = None
        self.remote_endpoints: tuple[str, ...] = ()
        #: the other side's CURVE public key (authenticated), None without CURVE
        self.remote_key: str | None = None
        self.remote_address: str | None = None
        #: ports waiting for room in this connection's queue
        self.blocked_ports: set[object] = set()
        #: ids of ports whose carrier waits in the normal queue (see :meth:`put`)
        self.in_transit: set[int] = set()

    def kick(self) -> None:
        """The driver's hook, called by the driver after queuing here (the protocol
        reports what it queued in ``Output.kicks`` and never calls it)."""

    @property
    def info(self) -> RemoteInfo | None:
        if self.remote_id is None:
            return None
        return RemoteInfo(
            self.remote_id, self.remote_endpoints, self.remote_key, self.remote_address
        )

    @property
    def queued(self) -> bool:
        return bool(self.prio or self.normal)

    # -- putting ------------------------------------------------------------------

    def has_room(self, size: int) -> bool:
        if self.user_count == 0:
            return True
        return self.user_count < self.queue_max and self.user_bytes + size <= self.queue_bytes_max

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
        (self.prio if prio else self.normal).append(UserMsg(msg, size))
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

    def put_bye(self, reason: str) -> bool:
        """Queue a Bye behind everything already queued and accept nothing more.

        False if one was queued already.
        """
        if self.closing:
            return False
        self.normal.append(Bye(reason))
        self.closing = True
        return True

    def clear(self) -> None:
        self.prio.clear()
        self.normal.clear()
        self.in_transit.clear()
        self.user_count = 0
        self.user_bytes = 0

    # -- taking ---------------------------------------------------------------------

    def take_frame(self, count_max: int, bytes_max: int) -> tuple[list[object], bool] | None:
        """The envelopes of the next frame and whether it is a priority frame (None: empty).

        At most ``count_max`` messages and about ``bytes_max`` payload bytes.
        """
        if self.prio:
            queue = self.prio
            priority = True
        elif self.normal:
            queue = self.normal
            priority = False
        else:
            return None
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
        while queue and count < count_max and nbytes < bytes_max and len(envs) < ENVELOPES_PER_FRAME_MAX:
            entry = popleft()
            if type(entry) is tuple:
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
            if type(entry) is UserMsg:
                msg: object = entry.msg
                user_count += 1
                user_bytes += entry.size
                nbytes += entry.size
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
        return envs, priority

    def take_blocked(self) -> set[object]:
        """The ports that waited for room here (the caller wakes their writers)."""
        blocked, self.blocked_ports = self.blocked_ports, set()
        return blocked
