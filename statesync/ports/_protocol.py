"""The ports protocol as a pure state machine: sequencing, credit, transfer, relays, close.

No trio, no zmq, no clock, no randomness here: the time comes in as ``now``
(seconds, any monotonic clock) with the calls that need it, new port ids from
the ``new_id`` function given at construction. The driver (the runtime, or
the simulator) owns the connections and the tasks.

Inputs
======

- per connection (a :class:`~statesync.ports._outbox.Conn`): :meth:`link_up`
  once its handshake is done, :meth:`receive` for every decoded envelope
  (``Msgs``, ``Msg``, ``Credit``, ``Close``, ``Locate``, ``Marker``,
  ``Open``), :meth:`link_down` when it is gone;
- local calls: :meth:`new_channel`, :meth:`connect`, :meth:`post` /
  :meth:`post_plain` (with ports to transfer), :meth:`request` /
  :meth:`respond`, :meth:`consumed` (the user took a message),
  :meth:`close`, :meth:`close_all`, :meth:`dial_done`.

Outputs
=======

Collected in :attr:`PortsProtocol.out` (an :class:`Output`) for the driver to
carry out and clear: connections with envelopes queued to send (``kicks``;
the envelopes themselves wait in the ``Conn``'s queues), ports with new
deliveries (``delivered``, and ``scheduled`` for a close to announce), ports
whose writers may go on (``writable``), request completions (``responses``)
and failures (``failed``), ends retired here (``retired``: closed or moved),
close events to fire on a violating end (``close_soon``), incoming ports
(``incoming``), runtimes worth dialing (``dials``), protocol violations, and
``relays_changed``. Request deadlines are kept by
:class:`~statesync.ports._requests.Deadlines`, heartbeat verdicts by
:mod:`statesync.ports._liveness`.

Ports, flow control, ordering
=============================

Every end of an entangled pair has a random 63-bit id, stable when it moves
between processes; the *entry table* maps an id to the local end (a
:class:`~statesync.ports._sequencing.PortEnd`) or to a
:class:`~statesync.ports._sequencing.Relay` (next hop toward an end that
lives elsewhere). Sending to the partner is routing by its id. Each end
numbers its outgoing messages (one counter for normal messages, one for
priority ones); the receiver delivers each stream in order, holds early
arrivals (bounded) and drops duplicates. Flow control is end to end, per port:
at most ``window`` messages may be unconsumed by the receiver; the receiver
grants credit as its user takes messages. Beyond the window ``post`` raises
PortQueueFull; so does a full connection queue.

Relocation (transferring a port to another process)
===================================================

When end ``a`` (partner ``b``) is posted in ``transfer`` over a port whose
partner lives elsewhere, its state travels inside the carrying message as a
``PortRef`` (counters, window, generation ``moves``). The old runtime keeps a
*relay* entry for ``a`` pointing at the next hop, and re-sends the messages
``a`` had queued (not yet taken by its user), with their sequence numbers,
right behind the carrier on the same connection. Every runtime the carrier
passes through installs relays for ``a`` (onward) and for ``b`` (backward),
so ``b``'s messages follow ``a`` and ``a``'s reach ``b`` at once: nothing
waits, nothing is lost, and the receiver's sequence numbers put everything in
order.

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
When an end comes back to the runtime where its partner lives, the partner's
old route ends there: a marker behind it releases the relays of the trip.

Closing
=======

``close`` sends ``Close(seq, pseq)``: the partner fires ``close`` once it has
taken every message before those numbers (or at once, ``CLOSE_NOW``, when the
path is gone). A connection that dies closes every port routed through it, on
both sides; a relay toward a dead connection passes the close on. A pair that
closes sends a marker of generation ``GEN_ALL`` down its route, releasing
every relay on the way.

Invariants (checked by the simulator, :mod:`statesync.testing._portsim`)
========================================================================

Per-port order; no loss and no duplicate while both ends live; a ``close`` on
every surviving end when the other one closes or its path dies; relays
released once the ends found each other or closed; no entry left for a closed
port.

Known limit: a runtime an end passed through can keep the relay it used for the
partner direction, and a port carried through several hops can leave relays
that nothing uses; they forward nothing, cost a table entry, and are freed
when their connection closes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any, Final

import attrs

from statesync.ports._envelope import (
    CLOSE_NOW,
    KIND_ERROR,
    KIND_MESSAGE,
    KIND_REQUEST,
    KIND_RESPONSE,
    Close,
    Credit,
    Locate,
    Marker,
    Msg,
    Msgs,
    Open,
    PortRef,
)
from statesync.ports._errors import (
    PortClosedError,
    PortQueueFull,
    PortsError,
    PortTransferredError,
)
from statesync.ports._outbox import Conn
from statesync.ports._sequencing import (
    CLOSE_ITEM,
    DUPLICATE,
    REORDER_FULL,
    Item,
    PortEnd,
    Relay,
    accept,
    queued_in_order,
)

GEN_ALL: Final = 1 << 62
"""A marker generation that releases every relay on its way (used when a pair closes)."""

TRANSFERRED: Final = "the port was transferred; the receiver of the message owns it"

Exported = list[tuple[PortEnd, list[tuple[bool, int, bytes | Item]]]]


@attrs.frozen
class Retired:
    """``port`` is no longer usable by its user object here: fail its waiters with ``error``."""

    port: PortEnd
    error: PortsError


@attrs.frozen
class Response:
    """The answer to a request: wake ``waiter`` (``kind`` is KIND_RESPONSE or KIND_ERROR)."""

    waiter: object
    kind: int
    payload: bytes


@attrs.frozen
class Failed:
    """A request's ``waiter`` gets ``error`` instead of an answer (its port closed or moved)."""

    waiter: object
    error: PortsError


@attrs.frozen
class Incoming:
    """A connection opened port ``port`` here (offer it to the listener of ``conn``)."""

    conn: Conn
    port: PortEnd


@attrs.frozen
class Dial:
    """Connecting to runtime ``runtime_id`` would give a direct route (then call ``dial_done``)."""

    runtime_id: str
    endpoints: tuple[str, ...]


@attrs.frozen
class Violation:
    """``port`` was closed because its partner broke the protocol."""

    port: PortEnd
    reason: str


@attrs.define
class Output:
    """What the driver has to carry out; it empties each container as it does."""

    kicks: dict[Conn, None] = attrs.Factory(dict)
    delivered: dict[PortEnd, None] = attrs.Factory(dict)
    scheduled: dict[PortEnd, None] = attrs.Factory(dict)
    writable: dict[PortEnd, None] = attrs.Factory(dict)
    responses: list[Response] = attrs.Factory(list)
    failed: list[Failed] = attrs.Factory(list)
    retired: list[Retired] = attrs.Factory(list)
    close_soon: list[PortEnd] = attrs.Factory(list)
    incoming: list[Incoming] = attrs.Factory(list)
    dials: list[Dial] = attrs.Factory(list)
    violations: list[Violation] = attrs.Factory(list)
    relays_changed: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.kicks
            or self.delivered
            or self.scheduled
            or self.writable
            or self.responses
            or self.failed
            or self.retired
            or self.close_soon
            or self.incoming
            or self.dials
            or self.violations
        )


class PortsProtocol:
    """The ports of one runtime: its entry table and what every event does to it."""

    def __init__(
        self,
        runtime_id: str,
        new_id: Callable[[], int],
        *,
        new_end: Callable[[int, int, int, int], PortEnd] = PortEnd,
    ) -> None:
        self.id = runtime_id
        self._rand_id = new_id
        #: makes an end: (id, partner, window, moves) -> PortEnd (a driver may subclass it)
        self.new_end = new_end
        self.entries: dict[int, PortEnd | Relay] = {}
        #: endpoints other runtimes can use to reach this one (the driver keeps it current)
        self.endpoints: tuple[str, ...] = ()
        self.out = Output()
        self._by_runtime: dict[str, Conn] = {}
        self._up: set[Conn] = set()
        self._pending_direct: dict[str, set[int]] = {}
        self._dialing: set[str] = set()
        self._handlers: dict[type, Callable[[Any, Conn, float], None]] = {
            Msgs: self._on_msgs,
            Msg: self._on_msg,
            Credit: self._on_credit,
            Close: self._on_close,
            Locate: self._on_locate,
            Marker: self._on_marker,
            Open: self._on_open,
        }

    def __repr__(self) -> str:
        return f"<PortsProtocol {self.id}>"

    def new_id(self) -> int:
        while True:
            i = self._rand_id()
            if i and i not in self.entries:
                return i

    def _kick(self, conn: Conn) -> None:
        self.out.kicks[conn] = None

    def _forward(self, e: Relay, m: object, now: float, *, prio: bool = False) -> None:
        e.used = now
        e.hop.put(m, prio=prio)
        self.out.kicks[e.hop] = None

    # -- making ports -------------------------------------------------------------

    def new_channel(self, window: int) -> tuple[PortEnd, PortEnd]:
        a = self.new_end(self.new_id(), 0, window, 0)
        self.entries[a.id] = a
        b = self.new_end(self.new_id(), a.id, window, 0)
        self.entries[b.id] = b
        a.partner = b.id
        return a, b

    def connect(self, conn: Conn, window: int, now: float) -> PortEnd:
        """A new port whose partner the other side of ``conn`` creates (``Open``)."""
        window = min(window, conn.window)
        a = self.new_end(self.new_id(), 0, window, 0)
        b_id = self.new_id()
        a.partner = b_id
        a.remote = conn.info
        self.entries[a.id] = a
        self.entries[b_id] = Relay(conn, 0, a.id, now)
        # Priority queue: a priority message posted right after connect must not
        # overtake the Open that creates its port on the other side.
        conn.put(Open(b_id, a.id, window), prio=True)
        self._kick(conn)
        return a

    def _on_open(self, m: Open, conn: Conn, now: float) -> None:
        if not conn.accepts:
            conn.put(Close(m.partner, CLOSE_NOW, CLOSE_NOW, "this side does not accept ports"))
            self._kick(conn)
            return
        existing = self.entries.get(m.port)
        # a runtime connected to itself finds its own route entry for the new end
        self_connected = isinstance(existing, Relay) and conn.remote_id == self.id
        if existing is not None and not self_connected:
            conn.put(Close(m.partner, CLOSE_NOW, CLOSE_NOW, "port id collision; connect again"))
            self._kick(conn)
            return
        st = self.new_end(m.port, m.partner, max(1, min(m.window, conn.window)), 0)
        st.remote = conn.info
        self.entries[st.id] = st
        if m.partner not in self.entries:
            self.entries[m.partner] = Relay(conn, 0, st.id, now)
        self.out.incoming.append(Incoming(conn, st))

    # -- sending --------------------------------------------------------------------

    def room(self, st: PortEnd, size: int) -> bool:
        """Whether ``st`` may post a message of ``size`` bytes now (else it is told when)."""
        if st.sent - st.credited >= st.window:
            return False
        e = self.entries.get(st.partner)
        if isinstance(e, Relay) and not e.hop.has_room(size):
            e.hop.blocked_ports.add(st)
            return False
        return True

    def post_plain(self, st: PortEnd, payload: bytes, now: float) -> Conn | None:
        """:meth:`post` of a normal message without ports: returns the connection to kick."""
        partner = self.entries.get(st.partner)
        if not isinstance(partner, Relay):
            self.post(st, KIND_MESSAGE, 0, payload, (), False, now)
            return None
        if st.sent - st.credited >= st.window:
            raise _window_full(st)
        link = partner.hop
        if link.closing:
            raise PortClosedError(f"the port's connection is closing ({link.reason or 'Bye sent'})")
        if not link.has_room(len(payload)):
            raise _queue_full(link)
        seq = st.seq_out
        st.seq_out = seq + 1
        st.sent += 1
        link.put_plain(st.partner, seq, payload)
        return link

    def post(  # noqa: PLR0917
        self,
        st: PortEnd,
        kind: int,
        req_id: int,
        payload: bytes,
        ports: tuple[PortEnd, ...],
        prio: bool,
        now: float,
    ) -> None:
        """Send one message from ``st`` to its partner; raises PortQueueFull when there is no room."""
        partner = self.entries.get(st.partner)
        counted = kind not in (KIND_RESPONSE, KIND_ERROR)
        if counted and st.sent - st.credited >= st.window:
            raise _window_full(st)
        if isinstance(partner, Relay):
            link = partner.hop
            if link.closing:
                raise PortClosedError(
                    f"the port's connection is closing ({link.reason or 'Bye sent'})"
                )
            if counted and not link.has_room(len(payload)):
                raise _queue_full(link)
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
        if not isinstance(partner, Relay):
            for p in ports:
                self._retire(p, PortTransferredError(TRANSFERRED), moving_locally=True)
            if kind == KIND_MESSAGE and not prio and not ports:
                self._accept(partner, False, seq, payload)
            else:
                self._accept(partner, prio, seq, Item(kind, prio, req_id, payload, ports))
            if partner.started or partner.iterating or partner.partner_gone:
                self.out.scheduled[partner] = None
            return
        link = partner.hop
        if kind == KIND_MESSAGE and not prio and not ports:
            link.put_plain(st.partner, seq, payload)
        else:
            exported: Exported = []
            refs = tuple(self._export(p, link, exported, now) for p in ports)
            link.put_user(Msg(st.partner, seq, prio, kind, req_id, payload, refs))
            self._send_exported(exported, link, now)
        self._kick(link)

    # -- requests -------------------------------------------------------------------

    def request(  # noqa: PLR0917
        self,
        st: PortEnd,
        payload: bytes,
        ports: tuple[PortEnd, ...],
        prio: bool,
        waiter: object,
        now: float,
    ) -> int:
        """Send a request; its answer comes out as a :class:`Response` for ``waiter``."""
        req_id = st.next_req
        st.next_req += 1
        st.pending[req_id] = waiter
        try:
            self.post(st, KIND_REQUEST, req_id, payload, ports, prio, now)
        except BaseException:
            st.pending.pop(req_id, None)
            raise
        return req_id

    def forget_request(self, st: PortEnd, req_id: int) -> None:
        """The requester stopped waiting (timeout, cancel): a late answer is dropped."""
        st.pending.pop(req_id, None)

    def respond(self, st: PortEnd, req_id: int, kind: int, payload: bytes, now: float) -> None:
        """Answer request ``req_id`` (``kind``: KIND_RESPONSE or KIND_ERROR); dropped if closed."""
        if st.done or st.partner_gone:
            return
        with suppress(PortsError):
            self.post(st, kind, req_id, payload, (), False, now)

    # -- credit ---------------------------------------------------------------------

    def consumed(self, st: PortEnd) -> None:
        """The user of ``st`` took one message: grant credit every ``grant_step``."""
        st.consumed += 1
        if st.consumed - st.granted >= st.grant_step:
            self.grant(st)

    def grant(self, st: PortEnd) -> None:
        st.granted = st.consumed
        if st.partner_gone:
            return
        e = self.entries.get(st.partner)
        if isinstance(e, Relay):
            e.hop.put(Credit(st.partner, st.consumed), prio=True)
            self._kick(e.hop)
        elif e is not None:
            self._credit_local(e, st.consumed)

    def _credit_local(self, st: PortEnd, consumed: int) -> None:
        if consumed > st.credited:
            st.credited = consumed
            self.out.writable[st] = None

    def _on_credit(self, m: Credit, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay):
            self._forward(e, m, now, prio=True)
        elif e is not None:
            self._credit_local(e, m.consumed)

    # -- relocation: export / materialize -------------------------------------------

    def _export(self, st: PortEnd, hop: Conn, exported: Exported, now: float) -> PortRef:
        """Turn a local end into a relay toward ``hop``; its queued messages follow."""
        pe = self.entries.get(st.partner)
        partner_gen = pe.gen if isinstance(pe, Relay) else pe.moves if pe is not None else 0
        queued, first_seq, first_pseq = queued_in_order(st)
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
        self._retire(st, PortTransferredError(TRANSFERRED))
        st.exported = True
        if self.entries.get(st.id) is st:
            self.entries[st.id] = Relay(hop, moves, st.partner, now)
        exported.append((st, queued))
        return ref

    def _send_exported(self, exported: Exported, hop: Conn, now: float) -> None:
        """Re-send exported ends' queued messages behind their carrier (recursively)."""
        i = 0
        while i < len(exported):
            st, queued = exported[i]
            i += 1
            for prio, seq, x in queued:
                if type(x) is bytes:
                    hop.put(Msg(st.id, seq, prio, KIND_MESSAGE, 0, x, ()), prio=prio)
                else:
                    assert isinstance(x, Item)
                    refs = tuple(self._export(p, hop, exported, now) for p in x.ports)
                    hop.put(Msg(st.id, seq, prio, x.kind, x.req_id, x.payload, refs), prio=prio)

    def _materialize(self, refs: tuple[PortRef, ...], conn: Conn, now: float) -> tuple[PortEnd, ...]:
        states = []
        replaced: dict[int, Relay] = {}
        for ref in refs:
            st = self.new_end(ref.id, ref.partner, max(1, ref.window), ref.moves)
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
            old = self.entries.get(ref.id)
            if old is not None and not isinstance(old, Relay) and not old.done:
                # an id collision (or a forged ref): refuse the newcomer
                st.done = True
                states.append(st)
                continue
            if isinstance(old, Relay):
                replaced[ref.id] = old
            self.entries[ref.id] = st
            states.append(st)
        for ref, st in zip(refs, states, strict=True):
            if st.done:
                continue
            if ref.partner not in self.entries and st.close_at is None:
                self.entries[ref.partner] = Relay(conn, ref.partner_gen, ref.id, now)
            st.remote = conn.info
        for st in states:
            if st.done:
                continue
            self._check_close(st)
            pe = self.entries.get(st.partner)
            old_route = replaced.get(st.id)
            if (
                old_route is not None
                and pe is not None
                and not isinstance(pe, Relay)
                and not old_route.hop.dead
            ):
                # The end came back to where its partner lives: the partner's old
                # route toward it ends here. Like a switch: a marker behind what
                # was sent on it releases the relays on the way.
                old_route.hop.put(Marker(st.id, st.moves))
                self._kick(old_route.hop)
            if isinstance(pe, Relay) and not st.partner_gone:
                pe.hop.put(Locate(st.partner, st.id, self.id, self.endpoints, st.moves, True))
                self._kick(pe.hop)
        return tuple(states)

    def _relay_refs(self, refs: tuple[PortRef, ...], in_conn: Conn, out: Conn, now: float) -> None:
        """A carrier passes through: install relays so both directions follow."""
        for ref in refs:
            old = self.entries.get(ref.id)
            if old is not None and not isinstance(old, Relay) and not old.done:
                continue  # an id collision or a forged ref: leave the local end alone
            self.entries[ref.id] = Relay(out, ref.moves, ref.partner, now)
        for ref in refs:
            if ref.partner not in self.entries and ref.close_seq < 0:
                self.entries[ref.partner] = Relay(in_conn, ref.partner_gen, ref.id, now)

    # -- incoming addressed messages ------------------------------------------------

    def receive(self, conn: Conn, m: object, now: float) -> bool:
        """Handle one decoded envelope from ``conn``; False if it is not a port envelope."""
        handler = self._handlers.get(type(m))
        if handler is None:
            return False
        handler(m, conn, now)
        return True

    def _on_msgs(self, m: Msgs, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay):
            self._forward(e, m, now)
        elif e is not None:
            st = e
            seq = m.seq
            if seq == st.seq_in and not st.reorder and not st.done and st.close_at is None:
                payloads = m.payloads
                st.queue.extend(payloads)
                st.seq_in = seq + len(payloads)
                if len(st.queue) > st.window + 1:
                    self._violation(st, "the partner sent beyond its window")
                    return
                self.out.delivered[st] = None
                return
            for i, p in enumerate(m.payloads):
                self._accept(st, False, seq + i, p)

    def _on_msg(self, m: Msg, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay):
            if m.ports:
                self._relay_refs(m.ports, conn, e.hop, now)
            self._forward(e, m, now, prio=m.prio)
            return
        states = self._materialize(m.ports, conn, now) if m.ports else ()
        if e is not None:
            if m.kind == KIND_MESSAGE and not m.prio and not states:
                self._accept(e, False, m.seq, m.payload)
            else:
                self._accept(e, m.prio, m.seq, Item(m.kind, m.prio, m.req_id, m.payload, states))
        else:
            # nobody here: the ports it carried are lost; tell their partners
            for st in states:
                self.close(st, "the message carrying the port could not be delivered")

    def _accept(self, st: PortEnd, prio: bool, seq: int, item: bytes | Item) -> None:
        if st.done or st.partner_gone:
            if type(item) is Item:
                for p in item.ports:
                    self.close(p, "the port it was sent to is closed")
            return
        outcome = accept(st, prio, seq, item, self._take_in)
        if outcome == DUPLICATE:
            return
        if outcome == REORDER_FULL:
            self._violation(st, "too many messages arrived out of order")
            return
        if len(st.queue) > st.window + 1:
            self._violation(st, "the partner sent beyond its window")
            return
        if st.close_at is not None:
            self._check_close(st)
        self.out.delivered[st] = None

    def _take_in(self, st: PortEnd, item: bytes | Item) -> None:
        if type(item) is Item and item.kind in (KIND_RESPONSE, KIND_ERROR):
            waiter = st.pending.pop(item.req_id, None)
            if waiter is not None:
                self.out.responses.append(Response(waiter, item.kind, item.payload))
            return  # a late answer is dropped
        st.queue.append(item)

    def _violation(self, st: PortEnd, reason: str) -> None:
        self.out.violations.append(Violation(st, reason))
        self.close(st, reason, notify_self=True)

    # -- closing --------------------------------------------------------------------

    def _on_close(self, m: Close, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay):
            self._forward(e, m, now)
            del self.entries[m.dst]
            self.out.relays_changed = True
        elif e is not None:
            self._partner_closing(e, m.seq, m.pseq, m.reason)

    def _partner_closing(self, st: PortEnd, seq: int, pseq: int, reason: str) -> None:
        st.close_reason = reason
        if seq == CLOSE_NOW:
            self._partner_closed(st, reason)
            return
        st.close_at = (seq, pseq)
        self._check_close(st)

    def _check_close(self, st: PortEnd) -> None:
        at = st.close_at
        if at is not None and st.seq_in >= at[0] and st.pseq_in >= at[1]:
            self._partner_closed(st, st.close_reason or "the partner closed the port")

    def _partner_closed(self, st: PortEnd, reason: str) -> None:
        """The partner end is gone: no more messages will come; queue the close event."""
        if st.partner_gone or st.done:
            return
        st.partner_gone = True
        st.close_at = None
        st.close_reason = reason
        st.reorder.clear()
        pe = self.entries.get(st.partner)
        if isinstance(pe, Relay):
            del self.entries[st.partner]
            if not pe.hop.dead:
                pe.hop.put(Marker(st.partner, GEN_ALL))
                self._kick(pe.hop)
            self.out.relays_changed = True
        if self.entries.get(st.id) is st:
            del self.entries[st.id]
        self._forget_direct(st)
        self._fail_pending(st, PortClosedError(f"the port's partner is gone ({reason})"))
        st.queue.append(CLOSE_ITEM)
        self.out.writable[st] = None
        self.out.scheduled[st] = None

    def _fail_pending(self, st: PortEnd, error: PortsError) -> None:
        if st.pending:
            failed = self.out.failed
            for waiter in st.pending.values():
                failed.append(Failed(waiter, error))
            st.pending.clear()

    def _retire(self, st: PortEnd, err: PortsError, *, moving_locally: bool = False) -> None:
        """``st`` stops being usable by its user object here: closed, transferred away, or
        (``moving_locally``) handed to a new user object in this runtime."""
        if not moving_locally:
            st.done = True
            self._forget_direct(st)
        st.started = False
        self._fail_pending(st, err)
        self.out.retired.append(Retired(st, err))

    def close(
        self, st: PortEnd, reason: str, *, notify_self: bool = False, local: str | None = None
    ) -> None:
        """Close a local end: its partner gets ``close`` with ``reason``; with
        ``notify_self`` this end does too. ``local`` says why for this end's user
        (default: ``reason``)."""
        if st.done:
            return
        if not st.partner_gone:
            pe = self.entries.get(st.partner)
            if isinstance(pe, Relay):
                pe.hop.put(Close(st.partner, st.seq_out, st.pseq_out, reason))
                self._kick(pe.hop)
                del self.entries[st.partner]
                self.out.relays_changed = True
            elif pe is not None:
                self._partner_closing(pe, st.seq_out, st.pseq_out, reason)
        if self.entries.get(st.id) is st:
            del self.entries[st.id]
        if notify_self and not st.close_fired:
            st.partner_gone = True
            st.close_reason = reason
            self.out.close_soon.append(st)
        st.queue.clear()
        st.reorder.clear()
        self._retire(st, PortClosedError(f"the port is closed ({local or reason})"))

    def close_all(self, reason: str) -> None:
        """Close every local end (their partners get ``close``)."""
        for e in list(self.entries.values()):
            if not isinstance(e, Relay):
                self.close(e, reason)

    def retire_all(self, error: PortsError) -> None:
        """Forget everything at once (the runtime is gone): every end is retired."""
        for e in list(self.entries.values()):
            if not isinstance(e, Relay):
                self._retire(e, error)
        self.entries.clear()

    # -- connections ------------------------------------------------------------------

    def link_up(self, conn: Conn, now: float) -> None:
        """``conn``'s handshake is done (``remote_id`` and ``window`` are known)."""
        rid = conn.remote_id
        assert rid is not None
        self._up.add(conn)
        self._by_runtime.setdefault(rid, conn)
        waiting = self._pending_direct.pop(rid, None)
        if waiting:
            for pid in waiting:
                st = self.entries.get(pid)
                if st is not None and not isinstance(st, Relay):
                    self._try_direct(st, now)

    def link_down(self, conn: Conn, reason: str) -> None:
        """``conn`` is gone: every route through it ends; its ports and their partners close."""
        conn.dead = True
        conn.closing = True
        conn.reason = reason
        self._up.discard(conn)
        rid = conn.remote_id
        if rid is not None and self._by_runtime.get(rid) is conn:
            del self._by_runtime[rid]
            for other in self._up:
                if other.remote_id == rid:
                    self._by_runtime[rid] = other
                    break
        conn.clear()
        self.out.kicks.pop(conn, None)
        for st in conn.take_blocked():
            self.out.writable[st] = None
        for pid, e in list(self.entries.items()):
            if not isinstance(e, Relay) or e.hop is not conn:
                continue
            if self.entries.get(pid) is e:
                del self.entries[pid]
            p = self.entries.get(e.partner)
            if isinstance(p, Relay):
                if p.hop is not conn:
                    p.hop.put(Close(e.partner, CLOSE_NOW, CLOSE_NOW, reason))
                    self._kick(p.hop)
                    del self.entries[e.partner]
            elif p is not None and p.partner == pid:
                self._partner_closed(p, reason)
        self.out.relays_changed = True

    def conn_to(self, runtime_id: str) -> Conn | None:
        return self._by_runtime.get(runtime_id)

    # -- direct routes after a move -------------------------------------------------

    def _on_locate(self, m: Locate, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay):
            self._forward(e, m, now)
        elif e is not None and not e.partner_gone and e.partner == m.src:
            e.partner_home = (m.runtime_id, m.endpoints, m.moves)
            if m.reply:
                pe = self.entries.get(e.partner)
                if isinstance(pe, Relay):
                    pe.hop.put(Locate(e.partner, e.id, self.id, self.endpoints, e.moves, False))
                    self._kick(pe.hop)
            self._try_direct(e, now)

    def _on_marker(self, m: Marker, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay) and e.gen <= m.gen:
            del self.entries[m.dst]
            if not e.hop.dead:
                e.hop.put(m)
                self._kick(e.hop)
            self.out.relays_changed = True

    def _try_direct(self, st: PortEnd, now: float) -> None:
        home = st.partner_home
        if home is None or st.done or st.partner_gone:
            return
        runtime_id, endpoints, moves = home
        if runtime_id == self.id:
            return
        e = self.entries.get(st.partner)
        if not isinstance(e, Relay) or e.gen > moves:
            return
        if e.hop.remote_id == runtime_id:
            st.remote = e.hop.info
            return
        conn = self._by_runtime.get(runtime_id)
        if conn is not None and not conn.dead:
            e.hop.put(Marker(st.partner, moves))
            self._kick(e.hop)
            self.entries[st.partner] = Relay(conn, moves, st.id, now)
            st.remote = conn.info
            return
        self._pending_direct.setdefault(runtime_id, set()).add(st.id)
        mine = self.endpoints
        if endpoints and (not mine or self.id < runtime_id) and runtime_id not in self._dialing:
            self._dialing.add(runtime_id)
            self.out.dials.append(Dial(runtime_id, endpoints))

    def dial_done(self, runtime_id: str) -> None:
        """The dial of a :class:`Dial` output ended (connected or not)."""
        self._dialing.discard(runtime_id)

    def _forget_direct(self, st: PortEnd) -> None:
        if st.partner_home is not None:
            s = self._pending_direct.get(st.partner_home[0])
            if s is not None:
                s.discard(st.id)

    # -- relays -------------------------------------------------------------------------

    def is_forwarding(self, e: Relay) -> bool:
        """A relay this runtime may still be needed for: not the route of a local end,
        and not one whose partner's route leaves by the same connection (both ends
        then live beyond it and traffic between them does not come back here)."""
        p = self.entries.get(e.partner)
        if isinstance(p, Relay):
            return p.hop is not e.hop
        if p is not None:
            return p.done
        return True

    def relay_count(self) -> int:
        """Relays through which other runtimes' ports may still talk."""
        return sum(1 for e in self.entries.values() if isinstance(e, Relay) and self.is_forwarding(e))

    def relays_busy(self, now: float, idle_s: float) -> tuple[int, float]:
        """(relays that forwarded something in the last ``idle_s``, seconds until the
        first of them has been idle that long)."""
        busy = 0
        wait_s = idle_s
        for e in self.entries.values():
            if isinstance(e, Relay) and self.is_forwarding(e) and now - e.used < idle_s:
                busy += 1
                wait_s = min(wait_s, idle_s - (now - e.used))
        return busy, wait_s


def _window_full(st: PortEnd) -> PortQueueFull:
    return PortQueueFull(
        f"the partner has not taken {st.window} messages yet (the port's window); "
        "await port.wait_writable() or use await port.send()"
    )


def _queue_full(link: Conn) -> PortQueueFull:
    return PortQueueFull(
        f"the connection's send queue is full ({link.user_count} messages, {link.user_bytes} bytes); "
        "await port.wait_writable() or use await port.send()"
    )
