"""The replication protocol as a pure state machine.

One ``Replicator`` per node wraps its ``Replica``. Events go in (a local
write, a link up or down, a decoded message from a link, a tick), and the
effects come out of :meth:`Replicator.take_output`: ops to make durable,
messages to send, links to close, write-concern completions and failures,
change records for watchers. Time comes in with every event as a ``Now``
(monotonic seconds for timers, wall milliseconds for the hybrid clock);
randomness (sync jitter) comes from the ``rand`` function given at
construction. Nothing here does I/O.

The contract with the caller (the node, or the simulator) is:

    take the output; make ``persist`` (and a new ``snapshot`` if set) durable;
    only then send ``sends``, close ``closes`` and resolve ``completed``.

That ordering is what makes "an op is durable before the write returns or
any peer sees it" and "an ack covers only durable ops" true.

Protocol, per link (a connection to one peer):

- Handshake: the active side sends HELLO; the passive side answers WELCOME or
  REFUSE (protocol version, same or duplicate node id, clock skew beyond
  ``max_drift_s``) and closes. Both sides then send the other what its
  vector lacks (a catch-up, from the op log, or a snapshot).
- Push: every local write goes to every up link, coalesced per link into
  bounded OPS messages at ``take_output`` time.
- Ack: a receiver acknowledges with its cumulative vector, delayed: one ACK
  per link ``ack_delay_s`` after the first op not yet acknowledged (a timer
  wish in ``next_tick_s``) or after ``ack_ops_max`` ops, at once when the OPS
  asks for it (``ack_now``: it holds a write whose concern a writer waits on,
  or it is a retransmission) and for a sync response; it only covers ops
  that are applied (and, by the contract above, durable).
- Retransmit: own ops a peer has not acknowledged ``retransmit_timeout_s``
  after they were sent go again, with exponential backoff, at most
  ``retransmit_attempts_max`` times (then anti-entropy carries them).
- Write concern: ``local`` completes once durable; ``all`` once every peer
  that was up at write time acknowledged; ``N`` once N peers did. At the
  deadline, a failure names the peers that did not acknowledge; the write
  stays and spreads later.
- Anti-entropy: every ``sync_interval_s`` (with jitter) a SYNC_REQUEST with
  the vector plus buffered dots goes to every up link; the answer holds only
  the ops the requester lacks, from any origin, in chunks bounded in bytes,
  with a ``more`` mark that makes the requester ask again at once.
- Snapshot: when the log no longer holds what a peer lacks, the answer is a
  frozen snapshot sent in chunks the receiver pulls with SNAPSHOT_REQUEST
  (transfer id and offset), so a transfer resumes after a reconnect.
- Log compaction: ops every known peer acknowledged leave the log (causal
  stability); the log is also bounded in length.
- Membership: on handshake each side sends the members it knows with their
  endpoints; new ones are reported so the node can connect to them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from statesync.core._context import CausalContext
from statesync.core._hlc import hlc_wall_ms
from statesync.core._messages import (
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Hello,
    Members,
    Message,
    Ops,
    Refuse,
    RefuseReason,
    SnapshotChunk,
    SnapshotRequest,
    SyncRequest,
    SyncResponse,
    Welcome,
)
from statesync.core._op import Change, Op
from statesync.core._path import PathLike
from statesync.core._peers import LinkState, PeerState
from statesync.core._replica import Replica
from statesync.core._replication import (
    AckSpec,
    LinkId,
    Now,
    Output,
    ReplicatorConfig,
    WriteStatus,
    WriteTicket,
    check_ack,
)
from statesync.core._sizes import op_size
from statesync.core._snapshots import OutgoingSnapshot, SnapshotTransfers
from statesync.core._value import Value
from statesync.errors import ReplicationArgumentError, WriteConcernError

# The replicator and what the simulator and older tests import from here.
__all__ = ["AckSpec", "Now", "Output", "Replicator", "ReplicatorConfig", "op_size"]

_NOBODY: frozenset[str] = frozenset()
_DEFAULT_CONFIG = ReplicatorConfig()


class Replicator(SnapshotTransfers):
    """One node's side of the replication protocol (see the module doc)."""

    def __init__(
        self,
        replica: Replica,
        *,
        config: ReplicatorConfig = _DEFAULT_CONFIG,
        rand: Callable[[], float],
        known_peers: Iterable[str] = (),
        endpoints: tuple[str, ...] = (),
        instance: str = "",
        now: Now | None = None,
    ) -> None:
        self.replica = replica
        self.instance = instance
        self.record_changes = True
        """Produce change records in the output (turn off when nobody watches: faster)."""
        self.node_id = replica.node_id
        self.config = config
        self._rand = rand
        self.endpoints = endpoints
        self._links: dict[LinkId, LinkState] = {}
        self.peers: dict[str, PeerState] = {p: PeerState(p) for p in known_peers if p != self.node_id}
        self._out = Output()
        self._outbox: dict[LinkId, list[Op]] = {}
        self._up: list[tuple[LinkId, PeerState]] = []
        """Up links and their peers, kept in step with link state (hot path of writes)."""
        self._ack_due: set[LinkId] = set()
        self._tickets: dict[int, WriteTicket] = {}
        self._next_ticket = 1
        self._next_transfer = 1
        self._snapshots_out: dict[str, OutgoingSnapshot] = {}
        start = now.mono_s if now is not None else 0.0
        self._next_sync_s = start + self._interval()
        self._next_compact_s = start + config.compact_interval_s
        self.counters: dict[str, int] = {
            "ops_sent": 0,
            "ops_received": 0,
            "ops_retransmitted": 0,
            "sync_requests": 0,
            "snapshots_sent": 0,
            "snapshots_installed": 0,
            "bad_messages": 0,
            "refused": 0,
        }

    # ------------------------------------------------------------ helpers

    def _interval(self) -> float:
        c = self.config
        return c.sync_interval_s * (1.0 + c.sync_jitter * (2.0 * self._rand() - 1.0))

    def _send(self, link: LinkId, msg: Message) -> None:
        self._out.sends.append((link, msg))

    def _up_links(self) -> list[LinkState]:
        return [link for link in self._links.values() if link.up]

    def up_peers(self) -> list[str]:
        return sorted(link.peer for link in self._links.values() if link.up and link.peer)

    def _close(self, link: LinkState, reason: str, now: Now) -> None:
        self._out.closes.append((link.id, reason))
        self._drop_link(link, now)

    def _drop_link(self, link: LinkState, now: Now) -> None:
        self._links.pop(link.id, None)
        self._up = [(i, p) for i, p in self._up if i != link.id]
        self._outbox.pop(link.id, None)
        self._ack_due.discard(link.id)
        if link.up and link.peer is not None:
            peer = self.peers.get(link.peer)
            if peer is not None and peer.link == link.id:
                peer.link = None
                peer.retransmit_at_s = None
                peer.last_seen_s = now.mono_s
            self._out.peers_down.append(link.peer)

    # ------------------------------------------------------------- events

    def write(
        self,
        path: PathLike,
        value: Value = None,
        *,
        remove: bool = False,
        ack: AckSpec = "local",
        timeout_s: float | None = None,
        now: Now,
    ) -> WriteTicket:
        """A local write (put, subtree write, or remove) with its write concern.

        Raises InvalidPath / InvalidValue for a bad write (nothing happens).
        """
        check_ack(ack)
        changes = self._out.changes if self.record_changes else None
        if remove:
            op = self.replica.remove(path, now.wall_ms, changes)
        else:
            op = self.replica.put(path, value, now.wall_ms, changes)
        return self._issue([op], ack, timeout_s, now)

    def write_typed(
        self,
        edit: Callable[[int, list[Change] | None], Op],
        *,
        ack: AckSpec = "local",
        timeout_s: float | None = None,
        now: Now,
    ) -> WriteTicket:
        """A typed edit with its write concern: ``edit(wall_ms, changes)`` is a Replica typed method
        bound to its other arguments (``functools.partial(replica.text_insert, path, pos, s)``).

        Raises InvalidOperation for a bad edit (nothing happens).
        """
        check_ack(ack)
        op = edit(now.wall_ms, self._out.changes if self.record_changes else None)
        return self._issue([op], ack, timeout_s, now)

    def write_many(
        self,
        items: Iterable[tuple[PathLike, Value]],
        *,
        ack: AckSpec = "local",
        timeout_s: float | None = None,
        now: Now,
    ) -> WriteTicket:
        """Several puts with one write concern: one ticket, on the last op.

        Acknowledgements are cumulative per origin, so the last op's concern
        covers the others. Raises InvalidPath / InvalidValue at the first bad
        item; the items before it are written (and returned in no ticket:
        they still replicate).
        """
        check_ack(ack)
        changes = self._out.changes if self.record_changes else None
        replica = self.replica
        try:
            ops = replica.put_many(items, now.wall_ms, changes)
        except BaseException:
            if replica.last_ops:  # the items before the bad one are written: they replicate
                self._issue(replica.last_ops, "local", None, now)
            raise
        if not ops:
            raise ReplicationArgumentError("write_many needs at least one item; give it one or more (path, value) pairs")
        return self._issue(ops, ack, timeout_s, now)

    def _issue(self, ops: list[Op], ack: AckSpec, timeout_s: float | None, now: Now) -> WriteTicket:
        """Persist, push to every up link, and track the concern of ``ops``."""
        self._out.persist.extend(ops)
        last = ops[-1]
        up = self._up
        for link_id, peer in up:
            box = self._outbox.get(link_id)
            if box is None:
                self._outbox[link_id] = list(ops)
            else:
                box.extend(ops)
            peer.pushed = last.seq
            if peer.retransmit_at_s is None:
                # (Re)arm retransmission, also after an earlier cycle gave up.
                peer.attempts = 0
                peer.retransmit_at_s = now.mono_s + self.config.retransmit_timeout_s
        required = frozenset(peer.node_id for _, peer in up) if ack == "all" else _NOBODY
        ticket = WriteTicket(
            id=self._next_ticket,
            op=last,
            ack=ack,
            deadline_s=(now.mono_s + timeout_s) if timeout_s is not None else None,
            required=required,
            ops=ops if len(ops) > 1 else None,
        )
        self._next_ticket += 1
        if ack in ("local", 0) or (ack == "all" and not required):
            ticket.status = WriteStatus.DONE
            self._out.completed.append(ticket)
        else:
            self._tickets[ticket.id] = ticket
        return ticket

    def connected(self, link: LinkId, *, active: bool, now: Now) -> None:
        """A transport link opened; the active side starts the handshake."""
        self._links[link] = LinkState(link, active, now.mono_s)
        if active:
            self._send(link, self._hello(Hello, now))

    def _hello(self, cls: type[Hello] | type[Welcome], now: Now) -> Hello | Welcome:
        return cls(
            node_id=self.node_id,
            protocol_version=PROTOCOL_VERSION,
            vv=dict(self.replica.vv),
            wall_ms=now.wall_ms,
            capabilities=self.config.capabilities,
            listen=self.endpoints,
            instance=self.instance,
        )

    def disconnected(self, link: LinkId, now: Now) -> None:
        """A transport link closed (by either side, or found dead)."""
        state = self._links.get(link)
        if state is not None:
            self._drop_link(state, now)

    def received(self, link: LinkId, msg: object, now: Now) -> None:
        """A decoded message arrived on ``link``."""
        state = self._links.get(link)
        if state is None:
            return
        if not state.up:
            self._handshake(state, msg, now)
            return
        assert state.peer is not None
        peer = self.peers[state.peer]
        peer.last_seen_s = now.mono_s
        if isinstance(msg, Ops):
            self._receive_ops(state, peer, msg.ops, now, msg.ack_now)
        elif isinstance(msg, Ack):
            self._on_ack(peer, msg.vv, now)
        elif isinstance(msg, SyncRequest):
            self._on_sync_request(state, peer, msg, now)
        elif isinstance(msg, SyncResponse):
            self._receive_ops(state, peer, msg.ops, now, True)
            peer.last_sync_s = now.mono_s
            if msg.more:
                self._request_sync(state)
        elif isinstance(msg, SnapshotChunk):
            self._on_snapshot_chunk(state, peer, msg, now)
        elif isinstance(msg, SnapshotRequest):
            self._on_snapshot_request(state, peer, msg, now)
        elif isinstance(msg, Members):
            self._on_members(msg)
        elif isinstance(msg, Hello | Welcome):
            pass  # a duplicate of the handshake: harmless
        elif isinstance(msg, Bye):
            self._out.notices.append(f"{peer.node_id} said goodbye ({msg.reason or 'no reason'})")
            self._close(state, msg.reason or "bye", now)
        elif isinstance(msg, Refuse):
            self._out.notices.append(f"{peer.node_id} dropped us: {msg.reason} {msg.detail}".rstrip())
            self._close(state, msg.reason, now)
        else:
            self._bad(state, f"unexpected {type(msg).__name__} after the handshake", now)

    def _bad(self, link: LinkState, what: str, now: Now) -> None:
        self.counters["bad_messages"] += 1
        link.bad_messages += 1
        if link.bad_messages >= self.config.bad_messages_max:
            who = link.peer or f"link {link.id}"
            self._out.notices.append(f"closing {who}: {link.bad_messages} protocol violations ({what})")
            self._send(link.id, Refuse(RefuseReason.BAD_INPUT, what))
            self._close(link, RefuseReason.BAD_INPUT, now)

    def bad_frame(self, link: LinkId, what: str, now: Now) -> None:
        """The transport could not decode a frame from ``link`` (counted; repeated: closed)."""
        state = self._links.get(link)
        if state is not None:
            self._bad(state, what, now)

    # ---------------------------------------------------------- handshake

    def _handshake(self, link: LinkState, msg: object, now: Now) -> None:
        expected = Welcome if link.active else Hello
        if isinstance(msg, Refuse) and link.active:
            self.counters["refused"] += 1
            self._out.notices.append(f"refused by the peer: {msg.reason} {msg.detail}".rstrip())
            self._close(link, msg.reason, now)
            return
        if isinstance(msg, Bye):
            self._close(link, msg.reason or "bye", now)
            return
        if not isinstance(msg, expected):
            # Overtaken by a later message, or noise: drop it. Anything that
            # mattered comes again; a link that never completes the handshake
            # is closed after handshake_timeout_s.
            self.counters["dropped_before_handshake"] = self.counters.get("dropped_before_handshake", 0) + 1
            return
        reason = self._refusal(link, msg, now)
        if reason is not None:
            code, detail = reason
            self.counters["refused"] += 1
            self._out.notices.append(f"refusing {msg.node_id!r}: {detail}")
            self._send(link.id, Refuse(code, detail))
            self._close(link, code, now)
            return
        if not link.active:
            self._send(link.id, self._hello(Welcome, now))
        self._peer_up(link, msg, now)

    def _preferred(self, link: LinkState, peer: str) -> bool:
        return (self.node_id < peer) == link.active

    def _refusal(self, link: LinkState, msg: Hello | Welcome, now: Now) -> tuple[str, str] | None:
        if msg.protocol_version != PROTOCOL_VERSION:
            return (
                RefuseReason.VERSION,
                f"protocol version {msg.protocol_version} is not {PROTOCOL_VERSION}; run the same statesync release on every node",
            )
        if msg.node_id == self.node_id:
            return (
                RefuseReason.SAME_ID,
                f"both ends are node {msg.node_id!r}; give every node its own id (or remove the peer entry pointing at itself)",
            )
        existing = next((x for x in self._links.values() if x.up and x.peer == msg.node_id), None)
        if existing is not None:
            if not (existing.instance and existing.instance == msg.instance):
                return (
                    RefuseReason.DUPLICATE_ID,
                    f"node {msg.node_id!r} is already connected; two live nodes share that id",
                )
            # The same peer process connected both ways at once: keep the link
            # whose active side has the smaller node id. Both ends apply the
            # same rule, so exactly one link survives.
            if self._preferred(link, msg.node_id) and not self._preferred(existing, msg.node_id):
                self._send(existing.id, Bye(RefuseReason.DUPLICATE_LINK))
                self._close(existing, RefuseReason.DUPLICATE_LINK, now)
            else:
                return (RefuseReason.DUPLICATE_LINK, f"already linked to {msg.node_id!r} the other way")
        skew_ms = msg.wall_ms - now.wall_ms
        if abs(skew_ms) > self.config.max_drift_s * 1000:
            return (
                RefuseReason.CLOCK_SKEW,
                f"clocks differ by {abs(skew_ms) / 1000:.1f} s, beyond max_drift_s = {self.config.max_drift_s:g}; synchronize clocks (NTP)",
            )
        return None

    def _peer_up(self, link: LinkState, msg: Hello | Welcome, now: Now) -> None:
        link.up = True
        link.peer = msg.node_id
        link.instance = msg.instance
        peer = self.peers.get(msg.node_id)
        if peer is None:
            peer = self.peers[msg.node_id] = PeerState(msg.node_id)
        peer.link = link.id
        self._up.append((link.id, peer))
        peer.last_seen_s = now.mono_s
        peer.endpoints = tuple(msg.listen)
        self._merge_acked(peer, msg.vv, now)
        peer.pushed = self.replica.seq
        peer.attempts = 0
        peer.retransmit_at_s = None
        self._out.peers_up.append(msg.node_id)
        members = tuple(
            (p.node_id, p.endpoints)
            for p in self.peers.values()
            if p.endpoints and p.node_id != msg.node_id
        )
        if self.endpoints:
            members = ((self.node_id, self.endpoints), *members)
        self._send(link.id, Members(members[: self.config.members_max]))
        self._catch_up(link, peer, CausalContext(msg.vv), now)
        if peer.snapshot_in is not None:
            inc = peer.snapshot_in
            self._send(link.id, SnapshotRequest(inc.transfer_id, len(inc.entries)))

    def _catch_up(self, link: LinkState, peer: PeerState, ctx: CausalContext, now: Now) -> None:
        """Send the peer what ``ctx`` (its state) lacks: log ops or a snapshot."""
        log = self.replica.log
        if log.lacking(ctx):
            self._start_snapshot(link, peer, now)
            return
        ops, more = log.missing(ctx, bytes_max=self.config.sync_chunk_bytes_max, size=op_size)
        if ops or more:
            self.counters["ops_sent"] += len(ops)
            self._send(link.id, SyncResponse(tuple(ops), more))

    # ------------------------------------------------------- ops and acks

    def _receive_ops(self, link: LinkState, peer: PeerState, ops: tuple[Op, ...], now: Now, ack_now: bool) -> None:
        replica = self.replica
        waiting = replica.pending_count
        applied = replica.receive_many(ops, self._out.changes if self.record_changes else None)
        self.counters["ops_received"] += len(ops)
        if applied:
            self._out.persist.extend(applied)
        if replica.pending_count > waiting and now.mono_s >= link.gap_sync_after_s:
            # Ops arrived ahead of ones they depend on: something was lost on
            # the way. Ask for what is missing now rather than at the next
            # sync round (at most once per retransmit timeout per link).
            link.gap_sync_after_s = now.mono_s + self.config.retransmit_timeout_s
            self.counters["gap_syncs"] = self.counters.get("gap_syncs", 0) + 1
            self._request_sync(link)
        # Acknowledge even duplicates: the sender may be retransmitting because an ack was lost.
        # Delayed and cumulative: at once when the sender asks (a writer waits on a concern),
        # after ack_ops_max ops, else ack_delay_s after the first op not yet acknowledged.
        link.unacked_ops += len(ops)
        cfg = self.config
        if ack_now or link.unacked_ops >= cfg.ack_ops_max or cfg.ack_delay_s <= 0:
            self._ack_due.add(link.id)
        elif link.ack_at_s is None:
            link.ack_at_s = now.mono_s + cfg.ack_delay_s
        drift_ms = self.config.max_drift_s * 1000
        for op in ops:
            if op.origin == peer.node_id and hlc_wall_ms(op.hlc) - now.wall_ms > drift_ms:
                skew = (hlc_wall_ms(op.hlc) - now.wall_ms) / 1000
                detail = f"writes stamped {skew:.1f} s ahead of our clock, beyond max_drift_s = {self.config.max_drift_s:g}"
                self._out.notices.append(f"dropping {peer.node_id}: {detail} (its ops are kept)")
                self._send(link.id, Refuse(RefuseReason.CLOCK_SKEW, detail))
                self._close(link, RefuseReason.CLOCK_SKEW, now)
                return

    def _merge_acked(self, peer: PeerState, vv: dict[str, int], now: Now) -> bool:
        acked = peer.acked
        progressed = False
        for node, n in vv.items():
            if acked.get(node, 0) < n:
                acked[node] = n
                progressed = True
        if progressed and self._tickets:
            self._check_tickets(peer)
        return progressed

    def _on_ack(self, peer: PeerState, vv: dict[str, int], now: Now) -> None:
        if self._merge_acked(peer, vv, now):
            if peer.acked.get(self.node_id, 0) >= peer.pushed:
                peer.retransmit_at_s = None
                peer.attempts = 0
            else:
                peer.attempts = 0
                peer.retransmit_at_s = now.mono_s + self.config.retransmit_timeout_s

    def _check_tickets(self, peer: PeerState) -> None:
        mine = peer.acked.get(self.node_id, 0)
        done: list[WriteTicket] = []
        for ticket in self._tickets.values():
            if ticket.op.seq > mine or peer.node_id in ticket.acked:
                continue
            if ticket.ack == "all" and peer.node_id not in ticket.required:
                continue
            ticket.acked.add(peer.node_id)
            if (ticket.ack == "all" and ticket.acked >= ticket.required) or (
                type(ticket.ack) is int and len(ticket.acked) >= ticket.ack
            ):
                done.append(ticket)
        for ticket in done:
            del self._tickets[ticket.id]
            ticket.status = WriteStatus.DONE
            self._out.completed.append(ticket)

    # -------------------------------------------------------- anti-entropy

    def _request_sync(self, link: LinkState) -> None:
        ctx = self.replica.received_context()
        self.counters["sync_requests"] += 1
        cloud = ctx.cloud
        bound = self.config.sync_cloud_dots_max
        if len(cloud) <= bound:
            dots = sorted(cloud)
        else:  # the lowest above the applied front: what the peer would send first
            front = ctx.vv
            dots = sorted(heapq.nsmallest(bound, cloud, key=lambda d: d[1] - front.get(d[0], 0)))
        self._send(link.id, SyncRequest(ctx.vv, tuple(dots)))

    def sync_now(self, now: Now) -> None:
        """Start an anti-entropy round with every up link now."""
        for link in self._up_links():
            inc = self.peers[link.peer].snapshot_in  # type: ignore[index]
            if inc is not None:
                # A snapshot from this peer is under way: pull its next chunk again
                # (idempotent) instead of asking for ops it would answer with a snapshot.
                self._send(link.id, SnapshotRequest(inc.transfer_id, len(inc.entries)))
            else:
                self._request_sync(link)
        self._next_sync_s = now.mono_s + self._interval()

    def _on_sync_request(self, link: LinkState, peer: PeerState, msg: SyncRequest, now: Now) -> None:
        self._merge_acked(peer, msg.vv, now)
        ctx = CausalContext(msg.vv, msg.cloud)
        log = self.replica.log
        if log.lacking(ctx):
            self._start_snapshot(link, peer, now)
            return
        ops, more = log.missing(ctx, bytes_max=self.config.sync_chunk_bytes_max, size=op_size)
        self.counters["ops_sent"] += len(ops)
        self._send(link.id, SyncResponse(tuple(ops), more))

    def _on_members(self, msg: Members) -> None:
        known = len(self.peers)
        for node_id, endpoints in msg.members[: self.config.members_max]:
            if node_id == self.node_id or not endpoints:
                continue
            peer = self.peers.get(node_id)
            if peer is None:
                if known >= self.config.members_max:
                    continue
                peer = self.peers[node_id] = PeerState(node_id, endpoints=tuple(endpoints))
                known += 1
                self._out.discovered.append((node_id, tuple(endpoints)))
            elif not peer.endpoints:
                peer.endpoints = tuple(endpoints)
                if peer.link is None:
                    self._out.discovered.append((node_id, tuple(endpoints)))

    # --------------------------------------------------------------- time

    def tick(self, now: Now) -> None:
        """Run whatever timers are due at ``now``."""
        t = now.mono_s
        cfg = self.config
        if t >= self._next_sync_s:
            self.sync_now(now)
        for link in list(self._links.values()):
            if link.ack_at_s is not None and t >= link.ack_at_s:
                self._ack_due.add(link.id)
            if not link.up and t - link.opened_s >= cfg.handshake_timeout_s:
                self._out.notices.append(f"link {link.id}: no handshake within {cfg.handshake_timeout_s:g} s")
                self._close(link, "handshake-timeout", now)
        for peer in self.peers.values():
            if peer.retransmit_at_s is not None and t >= peer.retransmit_at_s and peer.link is not None:
                self._retransmit(peer, now)
        if self._tickets:
            for ticket in [k for k in self._tickets.values() if k.deadline_s is not None and t >= k.deadline_s]:
                self._fail(ticket)
        for transfer in [x for x in self._snapshots_out.values() if t - x.touched_s > cfg.snapshot_ttl_s]:
            del self._snapshots_out[transfer.transfer_id]
        if t >= self._next_compact_s:
            self.compact()
            self._next_compact_s = t + cfg.compact_interval_s

    def _retransmit(self, peer: PeerState, now: Now) -> None:
        cfg = self.config
        have = peer.acked.get(self.node_id, 0)
        if have >= peer.pushed or peer.attempts >= cfg.retransmit_attempts_max:
            peer.retransmit_at_s = None
            return
        log = self.replica.log
        start = max(have, log.low(self.node_id))
        ops: list[Op] = []
        budget = cfg.ops_message_bytes_max
        for seq in range(start + 1, peer.pushed + 1):
            op = log.get(self.node_id, seq)
            if op is None:
                break
            budget -= op_size(op)
            if ops and (budget < 0 or len(ops) >= cfg.ops_message_count_max):
                break
            ops.append(op)
        if ops and peer.link is not None:
            self.counters["ops_retransmitted"] += len(ops)
            self._send(peer.link, Ops(tuple(ops), True))
        peer.attempts += 1
        delay = min(cfg.retransmit_timeout_s * cfg.retransmit_backoff**peer.attempts, cfg.retransmit_timeout_max_s)
        peer.retransmit_at_s = now.mono_s + delay

    def _fail(self, ticket: WriteTicket) -> None:
        del self._tickets[ticket.id]
        if ticket.ack == "all":
            missing = tuple(sorted(ticket.required - ticket.acked))
            wanted = "every peer connected at write time"
        else:
            missing = tuple(sorted(p for p in self.peers if p not in ticket.acked))
            wanted = f"{ticket.ack} peer(s)"
        ticket.status = WriteStatus.FAILED
        who = ", ".join(missing) if missing else "none known"
        ticket.error = WriteConcernError(
            f"write {ticket.op.origin}:{ticket.op.seq} is durable here but was not acknowledged by {wanted} "
            f"in time; missing: {who}. It stays and spreads when they are back.",
            missing=missing,
            dot=(ticket.op.origin, ticket.op.seq),
        )
        self._out.failed.append(ticket)

    def next_tick_s(self) -> float:
        """When the replicator next wants :meth:`tick` (monotonic seconds)."""
        t = min(self._next_sync_s, self._next_compact_s)
        cfg = self.config
        for link in self._links.values():
            if not link.up:
                t = min(t, link.opened_s + cfg.handshake_timeout_s)
            elif link.ack_at_s is not None:
                t = min(t, link.ack_at_s)
        for peer in self.peers.values():
            if peer.retransmit_at_s is not None:
                t = min(t, peer.retransmit_at_s)
        for ticket in self._tickets.values():
            if ticket.deadline_s is not None:
                t = min(t, ticket.deadline_s)
        return t

    # ----------------------------------------------------------- housekeeping

    def stable(self) -> dict[str, int]:
        """Per origin, the highest seq every known peer has acknowledged."""
        vv = self.replica.vv
        if not self.peers:
            return dict(vv)
        return {
            origin: min(n, *(p.acked.get(origin, 0) for p in self.peers.values()))
            for origin, n in vv.items()
        }

    def compact(self) -> int:
        """Drop causally stable ops from the log (and deleted runs of typed values)."""
        stable = self.stable()
        if self.replica.tree.typed_paths:
            self.replica.compact_typed(stable)
        return self.replica.log.compact(stable)

    def shutdown(self, now: Now, reason: str = RefuseReason.SHUTDOWN) -> None:
        """Say goodbye on every link and close them."""
        for link in list(self._links.values()):
            self._send(link.id, Bye(reason))
            self._close(link, reason, now)

    def take_output(self) -> Output:
        """The effects accumulated since the last call (see the module doc)."""
        out = self._out
        cfg = self.config
        if self._outbox:
            # Frames holding an op a writer waits on (its concern) ask for an ack at once.
            waited = {t.op.seq for t in self._tickets.values()} if self._tickets else None
            for link_id, ops in self._outbox.items():
                if not ops:
                    continue
                chunk: list[Op] = []
                budget = cfg.ops_message_bytes_max
                for op in ops:
                    size = op_size(op)
                    if chunk and (budget - size < 0 or len(chunk) >= cfg.ops_message_count_max):
                        out.sends.append((link_id, Ops(tuple(chunk), _waited_on(chunk, waited, self.node_id))))
                        chunk = []
                        budget = cfg.ops_message_bytes_max
                    chunk.append(op)
                    budget -= size
                if chunk:
                    out.sends.append((link_id, Ops(tuple(chunk), _waited_on(chunk, waited, self.node_id))))
                self.counters["ops_sent"] += len(ops)
            self._outbox = {}
        if self._ack_due:
            vv = self.replica.vv
            for link_id in self._ack_due:
                link = self._links.get(link_id)
                if link is not None:
                    link.unacked_ops = 0
                    link.ack_at_s = None
                    out.sends.append((link_id, Ack(dict(vv))))
            self._ack_due = set()
        self._out = Output()
        return out

    # ------------------------------------------------------------- status

    def status(self, now: Now) -> dict[str, object]:
        """Peers, lag each way, unacknowledged writes, log length, last sync."""
        vv = self.replica.vv
        peers = {}
        for p in sorted(self.peers.values(), key=lambda p: p.node_id):
            they_lack = sum(max(0, n - p.acked.get(o, 0)) for o, n in vv.items())
            we_lack = sum(max(0, n - vv.get(o, 0)) for o, n in p.acked.items())
            peers[p.node_id] = {
                "connected": p.link is not None,
                "endpoints": list(p.endpoints),
                "they_lack_ops": they_lack,
                "we_lack_ops": we_lack,
                "unacked_own_ops": max(0, self.replica.seq - p.acked.get(self.node_id, 0)),
                "last_sync_age_s": None if p.last_sync_s is None else round(now.mono_s - p.last_sync_s, 3),
                "snapshot_in": None
                if p.snapshot_in is None
                else [len(p.snapshot_in.entries), p.snapshot_in.total],
            }
        return {
            "node_id": self.node_id,
            "vv": dict(vv),
            "peers": peers,
            "pending_writes": len(self._tickets),
            "log_ops": len(self.replica.log),
            "causal_buffer_ops": self.replica.pending_count,
            "snapshots_out": len(self._snapshots_out),
            "counters": dict(self.counters),
            **self.replica.stats(),
        }



def _waited_on(ops: list[Op], waited: set[int] | None, origin: str) -> bool:
    """Whether ``ops`` hold one of ours whose write concern a writer waits on."""
    return waited is not None and any(op.seq in waited and op.origin == origin for op in ops)
