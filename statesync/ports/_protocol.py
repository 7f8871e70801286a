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
every relay on the way; a Close passing a relay also drops the relay toward
its sender there. Each end remembers the connection it last arrived by (its
*trail*): once nothing can be sent to it any more, markers of every
generation go back along the trail (a marker that comes back over a relay's
own hop goes on where the end came from), releasing what its trips left. An
end that comes home to its partner's runtime waits for its old route's marker;
if that connection dies first, what was on it is lost and the pair closes.
Ends queued in a port that closes (or in its reorder buffer) close too.

Invariants (checked by the simulator, :mod:`statesync.testing._portsim`)
========================================================================

Per-port order; no loss and no duplicate while both ends live; a ``close`` on
every surviving end when the other one closes or its path dies; relays
released once the ends found each other or closed; no entry left for a closed
port.

Paths that fail
===============

Each relay remembers the connection what it forwards comes by (its *feed*):
when that connection dies before the marker that would release the relay
came, what was on it may be lost, so the relay goes and a Close goes on to
its end. An end that hears from the path (not from its partner) that the
pair is over tells its partner with a Close of its own; when it cannot (its
route died too), a Close for the end itself goes back along its trail,
following each relay's feed toward the partner, and a message still coming
for the gone end is answered with one (``_untold``, bounded). Two ends that
ride in each other's messages (a transfer cycle) would chase each other
forever: the carrier that comes back over the hop of its destination's relay
carrying the port that relay's end rides with is taken as the cycle's proof,
and the ports close.

Known limits: the simulator still finds 20 of 5,000 seeds (0.4%; 183 before
these rules) where a close never comes (14), a relay stays (2), or messages are
lost without a close (4; e.g. seed 938: an end comes home while its partner's
route switch before that is still draining, and the marker of the newer route
releases a relay the older one's messages still pass). Replay one with
``python -m statesync.sim ports --seed N``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from statesync.errors import (
    PortClosedError,
    PortQueueFull,
    PortsError,
    PortTransferredError,
)
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
)
from statesync.ports._outbox import Conn
from statesync.ports._outputs import (
    Dial,
    Failed,
    Incoming,
    Output,
    Response,
    Retired,
    Violation,
)
from statesync.ports._routing import GEN_ALL, TRANSFERRED, Exported, Routing

__all__ = [
    "GEN_ALL",
    "Dial",
    "Failed",
    "Incoming",
    "Output",
    "PortsProtocol",
    "Response",
    "Retired",
    "Violation",
]
from statesync.ports._sequencing import (
    CLOSE_ITEM,
    DUPLICATE,
    REORDER_FULL,
    TAKEN,
    Item,
    PortEnd,
    Relay,
    accept,
)


class PortsProtocol(Routing):
    """The ports of one runtime: its entry table and what every event does to it."""

    def __init__(
        self,
        runtime_id: str,
        new_id: Callable[[], int],
        *,
        new_end: Callable[[int, int, int, int], PortEnd] = PortEnd,
    ) -> None:
        super().__init__(runtime_id, new_id, new_end)
        #: what :meth:`receive` calls, by envelope type (a driver's hot path may look
        #: a handler up here itself)
        self.handlers: dict[type, Callable[[Any, Conn, float], None]] = {
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

    def post_plain(self, st: PortEnd, payload: bytes, now: Callable[[], float]) -> Conn | None:
        """:meth:`post` of a normal message without ports: returns the connection to kick.

        The hot path, written out (``now`` is called only for a local partner).
        """
        partner = self.entries.get(st.partner)
        if type(partner) is not Relay:
            self.post(st, KIND_MESSAGE, 0, payload, (), False, now())
            return None
        if st.sent - st.credited >= st.window:
            raise _window_full(st)
        link = partner.hop
        if link.closing:
            raise PortClosedError(f"the port's connection is closing ({link.reason or 'Bye sent'})")
        size = len(payload)
        if link.user_count and (
            link.user_count >= link.queue_max or link.user_bytes + size > link.queue_bytes_max
        ):
            raise _queue_full(link)
        seq = st.seq_out
        st.seq_out = seq + 1
        st.sent += 1
        link.normal.append((st.partner, seq, payload))
        link.user_count += 1
        link.user_bytes += size
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
            refs = (
                tuple(self._export(p, link, exported, now, st.partner) for p in ports)
                if ports
                else ()
            )
            link.put_user(Msg(st.partner, seq, prio, kind, req_id, payload, refs))
            if exported:
                self._send_exported(exported, link, now)
        self.out.kicks[link] = None

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
            self._forward(e, m, conn, now, prio=True)
        elif e is not None:
            self._credit_local(e, m.consumed)
        else:
            self._tell_untold(m.dst, conn)

    # -- incoming addressed messages ------------------------------------------------

    def receive(self, conn: Conn, m: object, now: float) -> bool:
        """Handle one decoded envelope from ``conn``; False if it is not a port envelope."""
        handler = self.handlers.get(type(m))
        if handler is None:
            return False
        handler(m, conn, now)
        return True

    def _on_msgs(self, m: Msgs, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay):
            self._forward(e, m, conn, now)
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
        else:
            self._tell_untold(m.dst, conn)

    def _on_msg(self, m: Msg, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay):
            if not m.ports:
                self._forward(e, m, conn, now, prio=m.prio)
                return
            if e.hop is not conn or not any(ref.id == e.via for ref in m.ports):
                self._relay_refs(m, conn, e.hop, now)
                self._forward(e, m, conn, now, prio=m.prio)
                return
            # A transfer cycle: m.dst rides inside port e.via's queue, and e.via comes
            # back inside a message to m.dst. Nobody can ever take either: the route
            # goes, and the ports this message carries close below (their partners
            # learn), as the ends in their queues do.
            del self.entries[m.dst]
            self.out.relays_changed = True
            e = None
        states = self._materialize(m.ports, conn, now) if m.ports else ()
        if e is not None:
            if m.kind == KIND_MESSAGE and not m.prio and not states:
                self._accept(e, False, m.seq, m.payload)
            else:
                self._accept(e, m.prio, m.seq, Item(m.kind, m.prio, m.req_id, m.payload, states))
        else:
            # nobody here: the ports it carried are lost; tell their partners
            self._tell_untold(m.dst, conn)
            for st in states:
                self.close(st, "the message carrying the port could not be delivered")

    def _accept(self, st: PortEnd, prio: bool, seq: int, item: bytes | Item) -> None:
        if st.done or st.partner_gone:
            if type(item) is Item:
                for p in item.ports:
                    self.close(p, "the port it was sent to is closed")
            return
        if seq == (st.pseq_in if prio else st.seq_in) and not st.reorder:
            self._take_in(st, item)  # in order, nothing held: accept(), written out
            if prio:
                st.pseq_in = seq + 1
            else:
                st.seq_in = seq + 1
            outcome = TAKEN
        else:
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
        if isinstance(e, Relay) and conn is e.hop and e.feed is not conn:
            # A Close coming back from where the end went: it is gone there and its
            # partner was not told (see _tell_untold). The news goes the way the
            # partner's messages came, to the partner.
            self._drop_route(m.dst, e)
            if e.feed is not None:
                if not e.feed.dead:
                    e.feed.put(m)
                    self._kick(e.feed)
                return
            p = self.entries.get(e.partner)
            if p is not None and not isinstance(p, Relay) and p.partner == m.dst:
                self._partner_closed(p, m.reason)
        elif isinstance(e, Relay):
            self._forward(e, m, conn, now)
            self._drop_route(m.dst, e)
            # the relay toward the closed end, if one is here, served only the end
            # this Close goes to: nothing will go that way any more
            back = self.entries.get(e.partner)
            if isinstance(back, Relay) and back.partner == m.dst:
                self._drop_route(e.partner, back)
        elif e is not None:
            self._partner_closing(e, m.seq, m.pseq, m.reason)

    def _partner_closing(self, st: PortEnd, seq: int, pseq: int, reason: str) -> None:
        st.close_reason = reason
        if seq == CLOSE_NOW:
            self._partner_closed(st, reason, tell=True)
            return
        st.close_at = (seq, pseq)
        self._check_close(st)

    def _check_close(self, st: PortEnd) -> None:
        at = st.close_at
        if at is not None and st.seq_in >= at[0] and st.pseq_in >= at[1]:
            self._partner_closed(st, st.close_reason or "the partner closed the port")

    def _partner_closed(self, st: PortEnd, reason: str, *, tell: bool = False) -> None:
        """The partner end is gone: no more messages will come; queue the close event.

        With ``tell`` the news came from the path, not from the partner (which may not
        know): a Close goes to it too, releasing the relays on the way as a marker would.
        """
        if st.partner_gone or st.done:
            return
        st.partner_gone = True
        st.close_at = None
        st.close_reason = reason
        self._drop_queued(st, st.reorder.values())
        st.reorder.clear()
        pe = self.entries.get(st.partner)
        if pe is None or (isinstance(pe, Relay) and pe.hop.dead):
            # the partner may not know: a Close for this end goes back the way it came
            # (it reaches the partner if its messages come that way; see _on_close), and
            # a message still coming for it is answered with one (_tell_untold)
            self._untold_gone(st, reason)
            trail = st.trail
            if trail is not None and not trail.dead:
                trail.put(Close(st.id, CLOSE_NOW, CLOSE_NOW, reason))
                self._kick(trail)
        if isinstance(pe, Relay):
            self._drop_route(st.partner, pe)
            if not pe.hop.dead:
                pe.hop.put(
                    Close(st.partner, CLOSE_NOW, CLOSE_NOW, reason)
                    if tell
                    else Marker(st.partner, GEN_ALL)
                )
                self._kick(pe.hop)
            self.out.relays_changed = True
        if self.entries.get(st.id) is st:
            del self.entries[st.id]
        self._forget_direct(st)
        self._release_trail(st)
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
                self._drop_route(st.partner, pe)
                # behind the Close (the same connection), a marker cannot overtake it
                self._release_trail(st, partner=st.trail is pe.hop)
            else:
                if pe is not None:
                    self._partner_closing(pe, st.seq_out, st.pseq_out, reason)
                # the partner is here, or gone: nothing goes the old ways
                self._release_trail(st)
        else:
            self._release_trail(st)
        if self.entries.get(st.id) is st:
            del self.entries[st.id]
        if notify_self and not st.close_fired:
            st.partner_gone = True
            st.close_reason = reason
            self.out.close_soon.append(st)
        self._drop_queued(st, st.queue)
        st.queue.clear()
        self._drop_queued(st, st.reorder.values())
        st.reorder.clear()
        self._retire(st, PortClosedError(f"the port is closed ({local or reason})"))

    def _drop_queued(self, st: PortEnd, entries: Iterable[object]) -> None:
        """Messages ``st`` will never deliver: the ports they carry close (their partners learn)."""
        for entry in list(entries):
            if type(entry) is Item and entry.ports:
                for p in entry.ports:
                    self.close(p, "the port it was sent to is closed")

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
        self._untold.clear()

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
            assert isinstance(st, PortEnd)
            self.out.writable[st] = None
        through = [
            (pid, e) for pid, e in self.entries.items() if isinstance(e, Relay) and e.hop is conn
        ]
        for pid, e in through:
            if self.entries.get(pid) is e:
                del self.entries[pid]
            p = self.entries.get(e.partner)
            back = e.back
            if back is not None and not back.dead:
                # nobody here or behind reaches the end this way any more: the relays
                # its trip left on the way here go too
                back.put(Marker(pid, GEN_ALL))
                self._kick(back)
            if isinstance(p, Relay):
                if p.hop is not conn:
                    p.hop.put(Close(e.partner, CLOSE_NOW, CLOSE_NOW, reason))
                    self._kick(p.hop)
                    self._drop_route(e.partner, p)
            elif p is not None and p.partner == pid:
                self._partner_closed(p, reason)
            elif p is None and e.feed is not None and e.feed is not conn and not e.feed.dead:
                # no route here to the partner, but its messages came by ``feed``: a
                # Close for the end goes back that way to it (see _on_close)
                e.feed.put(Close(pid, CLOSE_NOW, CLOSE_NOW, reason))
                self._kick(e.feed)
        lost = f"messages on the way were lost ({reason})"
        for pid, x in list(self.entries.items()):
            if (
                isinstance(x, Relay)
                and x.feed is conn
                and self.entries.get(pid) is x
                and x.partner not in self.entries
            ):
                # the partner's route came this way and is gone (its marker did not
                # come yet): what was on it for the end beyond may be lost; the pair closes
                del self.entries[pid]
                if not x.hop.dead:
                    x.hop.put(Close(pid, CLOSE_NOW, CLOSE_NOW, lost))
                    self._kick(x.hop)
        for x in list(self.entries.values()):
            if not isinstance(x, Relay) and x.awaiting is conn:
                # what its partner sent on the old route is lost with the connection
                partner = self.entries.get(x.partner)
                self._partner_closed(x, lost, tell=True)
                if partner is not None and not isinstance(partner, Relay):
                    self._partner_closed(partner, lost)
        self.out.relays_changed = True


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
