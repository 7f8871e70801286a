"""Snapshot transfer: the part of the replication protocol that ships a whole state.

When the op log no longer holds what a peer lacks, the sender freezes a
snapshot and sends it in chunks bounded in bytes; the receiver pulls them with
SNAPSHOT_REQUEST (transfer id and offset), so a transfer resumes after a lost
chunk or a reconnect, and says when it has everything (offset -1) so that the
sender can release the frozen copy. One chunk stays in flight ahead of the
receiver's requests.

:class:`SnapshotTransfers` holds both directions; :class:`Replicator` is one.
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Final

import attrs

from statesync.core._context import vv_leq
from statesync.core._messages import Message, SnapshotChunk, SnapshotRequest
from statesync.core._peers import IncomingSnapshot, LinkState, PeerState
from statesync.core._replica import Replica, Snapshot
from statesync.core._replication import LinkId, Now, Output, ReplicatorConfig
from statesync.core._sizes import entries_size

SNAPSHOT_WINDOW_CHUNKS: Final = 2
"""Snapshot chunks out at once: the one requested and the next."""
SNAPSHOT_ENDS_MAX: Final = 1 << 16
"""Chunk boundaries remembered per transfer (beyond that they are recomputed)."""

_second: Final = itemgetter(1)


@attrs.define
class OutgoingSnapshot:
    """A frozen snapshot being sent to one peer, and how far it went."""

    transfer_id: str
    peer: str
    snapshot: Snapshot
    touched_s: float
    sent_entries: int = 0
    """Entries sent from the start without a gap (a resend from an offset lowers it)."""
    requested: int = -1
    """The offset of the latest SNAPSHOT_REQUEST (-1: none yet)."""
    ends: dict[int, int] = attrs.Factory(dict)
    """Where the chunk starting at an offset ends (computed once per chunk)."""
    chunk_entries: int = 256
    """Entries in the last chunk sized: the first guess for the next one."""

    def chunk_end(self, offset: int, budget: int) -> int:
        """Where the chunk starting at ``offset`` ends for at most ``budget`` bytes (one entry at least)."""
        end = self.ends.get(offset)
        if end is not None:
            return end
        entries = self.snapshot.entries
        total = len(entries)
        count = self.chunk_entries
        grows = 0
        shrunk = False
        while True:
            # Size a candidate slice; shrink it in proportion while it is too big
            # (at least one entry goes), grow it a few times while it is far too small.
            end = min(total, offset + count)
            size = entries_size(entries[offset:end])
            if size > budget and end - offset > 1:
                count = max(1, min(end - offset - 1, (end - offset) * budget // size))
                shrunk = True
                continue
            if not shrunk and end < total and size <= budget // 2 and grows < 4:
                count = (end - offset) * budget // max(size, 1)
                grows += 1
                continue
            break
        self.chunk_entries = max(1, end - offset)
        if len(self.ends) < SNAPSHOT_ENDS_MAX:
            self.ends[offset] = end
        return end


class SnapshotTransfers:
    """Both directions of snapshot transfer, as part of the replicator's state machine.

    The host class provides the replicator state named below and ``_send``.
    """

    node_id: str
    config: ReplicatorConfig
    replica: Replica
    record_changes: bool
    counters: dict[str, int]
    peers: dict[str, PeerState]
    _out: Output
    _ack_due: set[LinkId]
    _links: dict[LinkId, LinkState]
    _snapshots_out: dict[str, OutgoingSnapshot]
    _next_transfer: int

    def _send(self, link: LinkId, msg: Message) -> None:
        raise NotImplementedError

    def _start_snapshot(self, link: LinkState, peer: PeerState, now: Now, *, fresh: bool = False) -> None:
        for transfer in list(self._snapshots_out.values()):
            if transfer.peer == peer.node_id:
                if fresh:
                    del self._snapshots_out[transfer.transfer_id]
                    break
                # The receiver pulls chunks; only if it went quiet (a lost
                # chunk, or it restarted) offer the first chunk again: it
                # either resumes from where it is or starts over.
                if now.mono_s - transfer.touched_s > self.config.retransmit_timeout_s:
                    self._send_chunk(link, transfer, 0, now)
                return
        if len(self._snapshots_out) >= self.config.snapshot_transfers_max:
            oldest = min(self._snapshots_out.values(), key=lambda t: t.touched_s)
            del self._snapshots_out[oldest.transfer_id]
        transfer_id = f"{self.node_id}/{self._next_transfer}"
        self._next_transfer += 1
        transfer = OutgoingSnapshot(transfer_id, peer.node_id, self.replica.snapshot(), now.mono_s)
        self._snapshots_out[transfer_id] = transfer
        self.counters["snapshots_sent"] += 1
        self._out.notices.append(
            f"sending a snapshot of {len(transfer.snapshot.entries)} paths to {peer.node_id} (its log position was compacted away)"
        )
        self._send_window(link, transfer, 0, now)

    def _send_window(self, link: LinkState, transfer: OutgoingSnapshot, offset: int, now: Now) -> None:
        """Have the chunk at ``offset`` and the one after it sent (skipping what already went).

        One chunk stays in flight ahead of the receiver's requests, so that the
        sender's encoding and the receiver's decoding overlap instead of taking
        turns. A request for an offset not beyond the previous one (a repeat:
        a chunk or the request was lost) sends again from there.
        """
        if offset <= transfer.requested:
            transfer.sent_entries = min(transfer.sent_entries, offset)
        transfer.requested = offset
        total = len(transfer.snapshot.entries)
        pos = offset
        for _ in range(SNAPSHOT_WINDOW_CHUNKS):
            if pos >= total:
                break
            if pos >= transfer.sent_entries:
                self._send_chunk(link, transfer, pos, now)
            pos = transfer.chunk_end(pos, self.config.snapshot_chunk_bytes_max)

    def _send_chunk(self, link: LinkState, transfer: OutgoingSnapshot, offset: int, now: Now) -> None:
        entries = transfer.snapshot.entries
        end = transfer.chunk_end(offset, self.config.snapshot_chunk_bytes_max)
        if offset <= transfer.sent_entries:
            transfer.sent_entries = max(transfer.sent_entries, end)
        transfer.touched_s = now.mono_s
        self.counters["snapshot_chunks_sent"] = self.counters.get("snapshot_chunks_sent", 0) + 1
        self._send(
            link.id,
            SnapshotChunk(
                transfer.transfer_id,
                offset,
                len(entries),
                transfer.snapshot.vv,
                entries[offset:end],
            ),
        )

    def _on_snapshot_request(self, link: LinkState, peer: PeerState, msg: SnapshotRequest, now: Now) -> None:
        transfer = self._snapshots_out.get(msg.transfer_id)
        if msg.offset < 0:  # the receiver has it all: release the frozen snapshot
            if transfer is not None and transfer.peer == peer.node_id:
                del self._snapshots_out[msg.transfer_id]
            return
        if transfer is None or transfer.peer != peer.node_id:
            self._start_snapshot(link, peer, now, fresh=True)
            return
        if msg.offset < len(transfer.snapshot.entries):
            self._send_window(link, transfer, msg.offset, now)

    def _on_snapshot_chunk(self, link: LinkState, peer: PeerState, msg: SnapshotChunk, now: Now) -> None:
        inc = peer.snapshot_in
        if (inc is None or inc.transfer_id != msg.transfer_id) and vv_leq(msg.vv, self.replica.vv):
            # A late or duplicate chunk of a snapshot this replica already has all of
            # (one just installed, or a stale transfer offered again): starting it over,
            # or asking for a fresh one, would loop while such chunks keep coming
            # (multi-chunk snapshots made it storm). Release it at the sender instead.
            # A transfer of this peer still under way is older than this one, whose
            # state we hold: drop it too, so that syncing (and its acks) resumes.
            peer.snapshot_in = None
            self._send(link.id, SnapshotRequest(msg.transfer_id, -1))
            return
        if msg.offset == 0 and (inc is None or inc.transfer_id != msg.transfer_id):
            inc = peer.snapshot_in = IncomingSnapshot(msg.transfer_id, msg.total, dict(msg.vv), [])
        if inc is None or inc.transfer_id != msg.transfer_id or msg.total != inc.total:
            # A chunk of a transfer we do not hold. With none under way, ask for a
            # fresh one; with another under way, leave it (the pulls of the one under
            # way bring a fresh transfer if the sender dropped it): restarting on
            # every stray chunk made restarts feed each other under duplication.
            if inc is None:
                self._send(link.id, SnapshotRequest("", 0))
            return
        if msg.offset != len(inc.entries):
            # A gap (a chunk was lost) or the sender offering the first chunk again
            # (it heard nothing for a while): say where we are. Any other chunk
            # behind us is a duplicate of one we hold: nothing to do.
            if msg.offset > len(inc.entries) or msg.offset == 0:
                self._send(link.id, SnapshotRequest(inc.transfer_id, len(inc.entries)))
            return
        inc.entries.extend(msg.entries)
        if msg.entries:
            inc.hlc = max(inc.hlc, max(map(_second, chain.from_iterable(map(_second, msg.entries))), default=0))
        if len(inc.entries) < inc.total:
            self._send(link.id, SnapshotRequest(inc.transfer_id, len(inc.entries)))
            return
        peer.snapshot_in = None
        entries = tuple(inc.entries)
        self.replica.install_snapshot(
            Snapshot(inc.vv, inc.hlc, entries), self._out.changes if self.record_changes else None
        )
        if self.config.persists:
            self._out.snapshot = self.replica.snapshot()
        self.counters["snapshots_installed"] += 1
        self._out.notices.append(f"installed a snapshot of {inc.total} paths from {peer.node_id}")
        self._send(link.id, SnapshotRequest(inc.transfer_id, -1))
        # Every peer learns the new vector at once (not only the sender): the
        # ops it brought may be ones another peer waits to see acknowledged
        # before it compacts its log, and no op may come from there to ack.
        self._ack_due.update(lid for lid, ls in self._links.items() if ls.up)

    def snapshot_progress(self) -> dict[str, tuple[int, int]]:
        """Incoming snapshot transfers: peer -> (entries received, total)."""
        return {
            p.node_id: (len(p.snapshot_in.entries), p.snapshot_in.total)
            for p in self.peers.values()
            if p.snapshot_in is not None
        }
