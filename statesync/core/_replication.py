"""The replicator's vocabulary: the time of an event, its knobs, write tickets,
and the :class:`Output` it hands back.

The state machine itself is :mod:`statesync.core._replicator`; what it knows
per link and per peer is :mod:`statesync.core._peers`; the snapshot transfer
part of it is :mod:`statesync.core._snapshots`.
"""

from __future__ import annotations

import enum
from typing import Literal, NamedTuple, TypeAlias

import attrs

from statesync.core._messages import Message
from statesync.core._op import Change, Op
from statesync.core._replica import Snapshot
from statesync.errors import ReplicationArgumentError, WriteConcernError

LinkId: TypeAlias = int
AckSpec: TypeAlias = Literal["local", "all"] | int


class Now(NamedTuple):
    """The time of an event: ``mono_s`` for timers, ``wall_ms`` for the clock."""

    mono_s: float
    wall_ms: int


@attrs.frozen
class ReplicatorConfig:
    """Protocol knobs. Every one has a default fit for a LAN cluster."""

    sync_interval_s: float = 2.0
    sync_jitter: float = 0.25
    """Each sync interval is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    ack_delay_s: float = 0.005
    """A receiver acknowledges ops at most this long after they arrived (cumulative:
    one ACK covers every frame in between), at once when the OPS asks for it
    (a writer waits on a write concern) or after ``ack_ops_max`` ops. 0: ack every frame."""
    ack_ops_max: int = 1024
    """Ops received since the last ACK on a link that make the next ACK go at once."""
    retransmit_timeout_s: float = 1.0
    retransmit_backoff: float = 2.0
    retransmit_timeout_max_s: float = 30.0
    retransmit_attempts_max: int = 6
    handshake_timeout_s: float = 5.0
    max_drift_s: float = 60.0
    ops_message_count_max: int = 4096
    ops_message_bytes_max: int = 1 << 20
    sync_chunk_bytes_max: int = 1 << 20
    sync_cloud_dots_max: int = 1024
    """Buffered dots named in a SYNC_REQUEST at most (the lowest ones). Naming fewer
    only means the peer may send again ops that are already buffered here."""
    snapshot_chunk_bytes_max: int = 1 << 20
    snapshot_ttl_s: float = 120.0
    snapshot_transfers_max: int = 4
    compact_interval_s: float = 1.0
    members_max: int = 64
    """Full mesh bound: members beyond this many are not reported for connection."""
    bad_messages_max: int = 20
    """Protocol violations tolerated from one link before it is closed."""
    capabilities: tuple[str, ...] = ("batch", "zstd", "snapshot")
    persists: bool = True
    """False when the host keeps nothing durable (an in-memory node): an installed
    snapshot is then not copied into ``Output.snapshot`` for saving."""


def check_ack(ack: object) -> None:
    if not (ack == "local" or ack == "all" or (type(ack) is int and ack >= 0)):  # noqa: PLR1714
        raise ReplicationArgumentError(f"ack must be 'local', 'all' or a number of peers >= 0, not {ack!r}")


class WriteStatus(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@attrs.define
class WriteTicket:
    """A local write and the state of its write concern."""

    id: int
    op: Op
    ack: AckSpec
    deadline_s: float | None
    required: frozenset[str]
    """For ``all``: the peers up at write time."""
    acked: set[str] = attrs.field(factory=set)
    status: WriteStatus = WriteStatus.PENDING
    error: WriteConcernError | None = None
    ops: list[Op] | None = None
    """For a batch (write_many): every op, the last one being ``op``."""


@attrs.define
class Output:
    """The effects of the events since the last ``take_output``."""

    persist: list[Op] = attrs.field(factory=list)
    snapshot: Snapshot | None = None
    """Set when a snapshot was installed (and ``persists``): persist the whole state."""
    sends: list[tuple[LinkId, Message]] = attrs.field(factory=list)
    closes: list[tuple[LinkId, str]] = attrs.field(factory=list)
    completed: list[WriteTicket] = attrs.field(factory=list)
    failed: list[WriteTicket] = attrs.field(factory=list)
    changes: list[Change] = attrs.field(factory=list)
    discovered: list[tuple[str, tuple[str, ...]]] = attrs.field(factory=list)
    """Members learned through gossip: (node id, endpoints) to connect to."""
    peers_up: list[str] = attrs.field(factory=list)
    peers_down: list[str] = attrs.field(factory=list)
    notices: list[str] = attrs.field(factory=list)
    """Human-readable events worth a log line (refusals, snapshots, skew)."""

    def __bool__(self) -> bool:
        return bool(
            self.persist
            or self.snapshot is not None
            or self.sends
            or self.closes
            or self.completed
            or self.failed
            or self.changes
            or self.discovered
            or self.peers_up
            or self.peers_down
            or self.notices
        )
