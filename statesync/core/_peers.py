"""What the replicator knows per transport link and per peer (across its links)."""

from __future__ import annotations

import attrs

from statesync.core._messages import SnapshotEntry
from statesync.core._replication import LinkId


@attrs.define
class LinkState:
    """One transport link: its handshake state and the peer on it once up."""

    id: LinkId
    active: bool
    opened_s: float
    peer: str | None = None
    up: bool = False
    bad_messages: int = 0
    gap_sync_after_s: float = 0.0
    instance: str = ""
    unacked_ops: int = 0
    """Ops received on this link since the last ACK sent on it."""
    ack_at_s: float | None = None
    """When a delayed ACK is due on this link (None: none owed)."""


@attrs.define
class PeerState:
    """What this node knows about one peer, across its links."""

    node_id: str
    link: LinkId | None = None
    acked: dict[str, int] = attrs.field(factory=dict)
    """The peer's applied (durable) vector, as far as we know."""
    pushed: int = 0
    """The highest own seq sent to the peer."""
    retransmit_at_s: float | None = None
    attempts: int = 0
    endpoints: tuple[str, ...] = ()
    last_seen_s: float = 0.0
    last_sync_s: float | None = None
    snapshot_in: IncomingSnapshot | None = None


@attrs.define
class IncomingSnapshot:
    """A snapshot being received from a peer, chunk by chunk."""

    transfer_id: str
    total: int
    vv: dict[str, int]
    entries: list[SnapshotEntry]
    hlc: int = 0
    """The highest HLC among the entries received so far."""
