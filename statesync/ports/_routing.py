"""Routing of the ports protocol (pure): the entry table, relays, transfer, direct routes.

:class:`Routing` is the base of :class:`~statesync.ports._protocol.PortsProtocol`
(see its module docstring for the relocation protocol): it exports an end that
moves away (its state into a ``PortRef``, a relay left behind, its queued
messages re-sent behind the carrier), materializes one that arrives, installs
relays for a carrier passing through, and switches routes once ``Locate``
told where the partner lives (``Marker`` releases the old route's relays).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from statesync.errors import PortsError, PortTransferredError
from statesync.ports._envelope import CLOSE_NOW, KIND_MESSAGE, Close, Locate, Marker, Msg, PortRef
from statesync.ports._outbox import Conn
from statesync.ports._outputs import Dial, Output
from statesync.ports._sequencing import Item, PortEnd, Relay, queued_in_order

GEN_ALL: Final = 1 << 62
"""A marker generation that releases every relay on its way (used when a pair closes)."""
TRANSFERRED: Final = "the port was transferred; the receiver of the message owns it"
UNTOLD_MAX: Final = 4096
"""Ends remembered as gone without their partners told (the oldest is forgotten)."""

Exported = list[tuple[PortEnd, list[tuple[bool, int, bytes | Item]]]]


class Routing:
    """Where every port id goes from this runtime, and how that changes."""

    def __init__(
        self,
        runtime_id: str,
        new_id: Callable[[], int],
        new_end: Callable[[int, int, int, int], PortEnd],
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
        #: ends that went here without their partners being told (their only route
        #: died): id -> why; a message still coming for one is answered (bounded)
        self._untold: dict[int, str] = {}

    def new_id(self) -> int:
        while True:
            i = self._rand_id()
            if i and i not in self.entries:
                return i

    def _kick(self, conn: Conn) -> None:
        self.out.kicks[conn] = None

    def _forward(self, e: Relay, m: object, conn: Conn, now: float, *, prio: bool = False) -> None:
        e.used = now
        e.feed = conn
        e.hop.put(m, prio=prio)
        self.out.kicks[e.hop] = None

    # -- relocation: export / materialize -------------------------------------------

    def _export(
        self, st: PortEnd, hop: Conn, exported: Exported, now: float, via: int
    ) -> PortRef:
        """Turn a local end into a relay toward ``hop``; its queued messages follow (the
        message carrying it goes to port ``via``)."""
        pe = self.entries.get(st.partner)
        partner_gen = pe.gen if isinstance(pe, Relay) else pe.moves if pe is not None else 0
        queued, first_seq, first_pseq = queued_in_order(st)
        close_seq = close_pseq = -1
        if st.partner_gone:
            close_seq, close_pseq = st.seq_in, st.pseq_in
        elif st.close_at is not None:
            close_seq, close_pseq = st.close_at
        moves = st.moves + 1
        # (id, partner, moves, partner_gen, window; out and in sequence numbers; the two
        # directions' credit counters; where the partner closed)
        ref = PortRef(
            st.id, st.partner, moves, partner_gen, st.window,
            st.seq_out, st.pseq_out, first_seq, first_pseq,
            st.sent, st.credited, st.consumed, st.granted,
            close_seq, close_pseq,
        )  # fmt: skip
        self._retire(st, PortTransferredError(TRANSFERRED))
        st.exported = True
        if self.entries.get(st.id) is st:
            feed = pe.hop if isinstance(pe, Relay) else None
            self.entries[st.id] = Relay(hop, moves, st.partner, now, st.trail, via, feed)
            if feed is hop:
                # the partner lives beyond ``hop`` too: what the end sends from where it
                # goes never comes back here, so its route to the partner from here
                # serves nobody any more
                del self.entries[st.partner]
                self.out.relays_changed = True
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
                    refs = tuple(self._export(p, hop, exported, now, st.id) for p in x.ports)
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
            else:
                self._release_behind(ref.partner, conn)
            st.remote = conn.info
            st.trail = conn
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
                st.awaiting = old_route.hop
            if isinstance(pe, Relay) and not st.partner_gone:
                pe.hop.put(Locate(st.partner, st.id, self.id, self.endpoints, st.moves, True))
                self._kick(pe.hop)
        return tuple(states)

    def _relay_refs(self, m: Msg, in_conn: Conn, out: Conn, now: float) -> None:
        """A carrier passes through: install relays so both directions follow."""
        refs = m.ports
        for ref in refs:
            old = self.entries.get(ref.id)
            if old is not None and not isinstance(old, Relay) and not old.done:
                continue  # an id collision or a forged ref: leave the local end alone
            if isinstance(old, Relay):
                self._bounced(ref, old, in_conn)
            self.entries[ref.id] = Relay(out, ref.moves, ref.partner, now, in_conn, m.dst, in_conn)
        for ref in refs:
            if out is in_conn:
                # the carrier goes back the way it came: the end will be beyond that
                # connection, and what it sends its partner does not come back here
                continue
            if ref.partner not in self.entries and ref.close_seq < 0:
                self.entries[ref.partner] = Relay(in_conn, ref.partner_gen, ref.id, now, feed=out)
            else:
                self._release_behind(ref.partner, in_conn)

    def _bounced(self, ref: PortRef, old: Relay, in_conn: Conn) -> None:
        """An end comes back over the connection its relay here sent it on (the message
        carrying it found its way there back here): the relay the carrier installed on
        the other side only sends back here what went there before the carrier came
        back. A marker of the end's generation behind that releases it."""
        if old.hop is in_conn and not in_conn.dead:
            in_conn.put(Marker(ref.id, ref.moves))
            self._kick(in_conn)

    def _release_behind(self, partner: int, in_conn: Conn) -> None:
        """An end passing through (or arriving) finds its partner living here: the
        relays toward the partner it used until now, from the runtime it came from,
        serve nobody any more (only the end sends to its partner). A marker of every
        generation goes back to release them, behind anything the end sent on them."""
        pe = self.entries.get(partner)
        if pe is not None and not isinstance(pe, Relay) and not in_conn.dead:
            in_conn.put(Marker(partner, GEN_ALL))
            self._kick(in_conn)

    def conn_to(self, runtime_id: str) -> Conn | None:
        return self._by_runtime.get(runtime_id)

    # -- direct routes after a move -------------------------------------------------

    def _on_locate(self, m: Locate, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay):
            self._forward(e, m, conn, now)
        elif e is None:
            self._tell_untold(m.dst, conn)
        elif not e.partner_gone and e.partner == m.src:
            e.partner_home = (m.runtime_id, m.endpoints, m.moves)
            if m.reply:
                pe = self.entries.get(e.partner)
                if isinstance(pe, Relay):
                    pe.hop.put(Locate(e.partner, e.id, self.id, self.endpoints, e.moves, False))
                    self._kick(pe.hop)
            self._try_direct(e, now)

    def _on_marker(self, m: Marker, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if e is not None and not isinstance(e, Relay):
            if e.awaiting is conn and m.gen != GEN_ALL:
                e.awaiting = None  # the old route is drained
            return
        if isinstance(e, Relay) and e.gen <= m.gen:
            p = self.entries.get(e.partner)
            if p is not None and not isinstance(p, Relay) and not p.done and p.partner == m.dst:
                # the route of an end living here: only that end changes it (every
                # marker that may release it is sent from here)
                return
            del self.entries[m.dst]
            if isinstance(p, Relay) and p.partner == m.dst and p.hop is not e.hop:
                # what comes for the partner until its own marker does comes that way
                p.feed = e.hop
            # A marker that comes back over the relay's own hop was sent by the end
            # itself (see _release_trail): it goes on the way the end came.
            nxt = e.back if conn is e.hop else e.hop
            if nxt is not None and nxt is not conn and not nxt.dead:
                nxt.put(m)
                self._kick(nxt)
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

    def _drop_route(self, pid: int, e: Relay) -> None:
        """The pair ``pid`` belongs to is done with relay ``e`` here: it goes, and a marker
        of every generation goes back the way the end came (``e.back``), releasing the
        relays its trip left behind (the chain of backs ends here otherwise)."""
        if self.entries.get(pid) is e:
            del self.entries[pid]
        back = e.back
        if back is not None and back is not e.hop and not back.dead:
            back.put(Marker(pid, GEN_ALL))
            self._kick(back)
        self.out.relays_changed = True

    def _untold_gone(self, st: PortEnd, reason: str) -> None:
        untold = self._untold
        if len(untold) >= UNTOLD_MAX:
            del untold[next(iter(untold))]
        untold[st.id] = reason

    def _tell_untold(self, dst: int, conn: Conn) -> None:
        """Something came for ``dst``, which lives here no more: if its partner was not
        told, a Close for ``dst`` goes back the way it came (see ``_on_close``)."""
        reason = self._untold.pop(dst, None)
        if reason is not None and not conn.dead:
            conn.put(Close(dst, CLOSE_NOW, CLOSE_NOW, reason))
            self._kick(conn)

    def _release_trail(self, st: PortEnd, *, partner: bool = True) -> None:
        """Nothing will be sent to ``st`` any more (and, with ``partner``, nothing to its
        partner from afar): release the relays ``st``'s trips left along the way, with
        markers of every generation sent back the way it came."""
        trail, st.trail = st.trail, None
        if trail is not None and not trail.dead:
            trail.put(Marker(st.id, GEN_ALL))
            if partner:
                trail.put(Marker(st.partner, GEN_ALL))
            self._kick(trail)

    # -- what the protocol provides ----------------------------------------------------

    def _retire(self, st: PortEnd, err: PortsError, *, moving_locally: bool = False) -> None:
        raise NotImplementedError

    def _check_close(self, st: PortEnd) -> None:
        raise NotImplementedError
