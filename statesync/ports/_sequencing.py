"""Per-port state of the ports protocol and its in-order delivery (pure).

Every end numbers its outgoing messages, one counter per stream (normal and
priority), from 1. The receiving end delivers each stream in order: a message
with the expected number is taken, early ones wait in a bounded reorder
buffer (``REORDER_FACTOR`` windows), older ones are duplicates and dropped.
Flow control is end to end: ``sent - credited`` (messages posted that the
partner has not yet taken) stays below ``window``; the receiver grants credit
(``Credit``) every ``grant_step`` messages its user takes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from statesync.ports._outbox import Conn, RemoteInfo

REORDER_FACTOR: Final = 2
"""Early arrivals held per port, in windows."""


class CloseItem:
    """The end of a port's queue: its partner closed (or the link died)."""

    __slots__ = ()


CLOSE_ITEM: Final = CloseItem()


class Item:
    """A queued message that is not a plain one (request, priority, with ports)."""

    __slots__ = ("kind", "payload", "ports", "prio", "req_id")

    def __init__(
        self, kind: int, prio: bool, req_id: int, payload: bytes, ports: tuple[PortEnd, ...]
    ) -> None:
        self.kind, self.prio, self.req_id = kind, prio, req_id
        self.payload, self.ports = payload, ports


QueueEntry = bytes | Item | CloseItem


class Relay:
    """Entry for an end that lives elsewhere: send what is addressed to it over ``hop``."""

    __slots__ = ("back", "feed", "gen", "hop", "partner", "used", "via")

    def __init__(  # noqa: PLR0917
        self,
        hop: Conn,
        gen: int,
        partner: int,
        now: float,
        back: Conn | None = None,
        via: int = 0,
        feed: Conn | None = None,
    ) -> None:
        self.hop = hop
        self.gen = gen
        self.partner = partner
        self.used = now  # last time it forwarded something
        #: where the end came from when it moved on through here (a marker coming back
        #: over ``hop`` goes on there)
        self.back = back
        #: the port whose message carried the end away over ``hop`` (0: none): the end
        #: rides in that port's queue until it arrives
        self.via = via
        #: the connection what it forwards comes by (None: from a local end); when that
        #: connection dies, what was on it is lost
        self.feed = feed


class PortEnd:
    """One end of an entangled pair living in this runtime.

    The driver may subclass it to hang its own per-port things on it (the
    runtime's wait queues and user object); the protocol makes ends through
    ``PortsProtocol.new_end``.
    """

    __slots__ = (
        "awaiting",
        "close_at",
        "close_fired",
        "close_reason",
        "consumed",
        "credited",
        "done",
        "exported",
        "grant_step",
        "granted",
        "handler_busy",
        "id",
        "iterating",
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
        "sent",
        "seq_in",
        "seq_out",
        "started",
        "trail",
        "window",
    )

    def __init__(self, id_: int, partner: int, window: int, moves: int = 0) -> None:
        self.id = id_
        self.partner = partner
        self.window = window
        #: credit goes back every this many messages taken
        self.grant_step = max(1, window // 4)
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
        self.reorder: dict[tuple[bool, int], bytes | Item] = {}
        self.started = False
        self.done = False  # closed here, or transferred away
        self.exported = False
        self.partner_gone = False
        self.close_at: tuple[int, int] | None = None
        self.close_reason = ""
        self.close_fired = False
        self.iterating = 0
        #: requests waiting for their response: request id -> the driver's waiter
        self.pending: dict[int, object] = {}
        self.next_req = 1
        self.handler_busy = 0
        self.partner_home: tuple[str, tuple[str, ...], int] | None = None
        self.remote: RemoteInfo | None = None
        #: the connection this end last arrived by (relays for its partner may remain
        #: along the way; released once the pair is closed)
        self.trail: Conn | None = None
        #: the old route's messages to this end may still come back over this
        #: connection (until its marker does): if it dies, they are lost
        self.awaiting: Conn | None = None

    def __repr__(self) -> str:
        return f"<port {self.id:#x} partner {self.partner:#x}>"

    @property
    def halted(self) -> bool:
        """Closed or transferred here, not started, or an iterator took over."""
        return self.done or not self.started or self.iterating > 0


# accept() outcomes
TAKEN: Final = 0
"""The message (and any held ones it unblocked) went to the queue."""
HELD: Final = 1
"""It came early and waits in the reorder buffer."""
DUPLICATE: Final = 2
"""Already taken: dropped."""
REORDER_FULL: Final = 3
"""It came early and the reorder buffer is full: the partner broke the protocol."""


def accept(
    st: PortEnd, prio: bool, seq: int, item: bytes | Item, take: Callable[[PortEnd, bytes | Item], None]
) -> int:
    """Put message ``seq`` of one stream in order: ``take`` gets every message now due."""
    expected = st.pseq_in if prio else st.seq_in
    if seq != expected:
        if seq < expected:
            return DUPLICATE
        if len(st.reorder) >= st.window * REORDER_FACTOR:
            return REORDER_FULL
        st.reorder[(prio, seq)] = item
        return HELD
    take(st, item)
    seq += 1
    reorder = st.reorder
    while reorder:
        nxt = reorder.pop((prio, seq), None)
        if nxt is None:
            break
        take(st, nxt)
        seq += 1
    if prio:
        st.pseq_in = seq
    else:
        st.seq_in = seq
    return TAKEN


def queued_in_order(st: PortEnd) -> tuple[list[tuple[bool, int, bytes | Item]], int, int]:
    """What ``st`` holds and its user has not taken, with sequence numbers, to move it.

    Returns the entries (queued ones, then held early ones) and the first
    normal and priority numbers not yet taken.
    """
    queued: list[tuple[bool, int, bytes | Item]] = []
    n_normal = sum(1 for x in st.queue if type(x) is bytes or (type(x) is Item and not x.prio))
    n_prio = sum(1 for x in st.queue if type(x) is Item and x.prio)
    seq = first_seq = st.seq_in - n_normal
    pseq = first_pseq = st.pseq_in - n_prio
    for x in st.queue:
        if type(x) is bytes:
            queued.append((False, seq, x))
            seq += 1
        elif type(x) is Item:
            if x.prio:
                queued.append((True, pseq, x))
                pseq += 1
            else:
                queued.append((False, seq, x))
                seq += 1
    for (prio, s), x2 in sorted(st.reorder.items(), key=lambda kv: kv[0]):
        queued.append((prio, s, x2))
    return queued, first_seq, first_pseq
