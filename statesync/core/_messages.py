"""Replication protocol messages: plain frozen classes.

The wire layer gives them bytes (each class has a stable ``TAG``); the
replicator consumes and produces them. Nothing here does I/O.
"""

from __future__ import annotations

from typing import ClassVar, TypeAlias

import attrs

from statesync.core._context import Dot
from statesync.core._op import Op, Version
from statesync.core._path import Path

PROTOCOL_VERSION = 1

SnapshotEntry: TypeAlias = tuple[Path, tuple[Version, ...]]


class RefuseReason:
    """Stable codes sent in :class:`Refuse` and :class:`Bye`."""

    VERSION = "protocol-version"
    DUPLICATE_ID = "duplicate-node-id"
    DUPLICATE_LINK = "duplicate-link"
    SAME_ID = "same-node-id"
    CLOCK_SKEW = "clock-skew"
    UNAUTHORIZED = "unauthorized"
    BAD_INPUT = "bad-input"
    SHUTDOWN = "shutdown"
    BAD_HANDSHAKE = "bad-handshake"


@attrs.frozen
class Greeting:
    """The fields of both handshake messages: who the sender is and what it has."""

    node_id: str
    protocol_version: int
    vv: dict[str, int]
    wall_ms: int
    capabilities: tuple[str, ...] = ()
    listen: tuple[str, ...] = ()
    instance: str = ""
    """Random per process start: tells a second link from the same process
    apart from a second process using the same node id."""


@attrs.frozen
class Hello(Greeting):
    """First message of a connection, sent by the connecting (active) side."""

    TAG: ClassVar[int] = 1


@attrs.frozen
class Welcome(Greeting):
    """The listening (passive) side's acceptance of a Hello."""

    TAG: ClassVar[int] = 2


@attrs.frozen
class Refuse:
    """A refused handshake (or a peer dropped later), with a reason code and text."""

    TAG: ClassVar[int] = 3
    reason: str
    detail: str = ""


@attrs.frozen
class Ops:
    """A batch of ops pushed to a peer (fresh local writes or retransmissions)."""

    TAG: ClassVar[int] = 4
    ops: tuple[Op, ...]
    ack_now: bool = False
    """The sender waits on a write concern (or retransmits): acknowledge at once,
    not after the receiver's ack delay. On the wire only when true."""


@attrs.frozen
class Ack:
    """Cumulative acknowledgement: every op this vector covers is applied and durable."""

    TAG: ClassVar[int] = 5
    vv: dict[str, int]


@attrs.frozen
class SyncRequest:
    """Anti-entropy: what the sender has (applied vector plus buffered dots)."""

    TAG: ClassVar[int] = 6
    vv: dict[str, int]
    cloud: tuple[Dot, ...] = ()


@attrs.frozen
class SyncResponse:
    """A bounded chunk of ops the requester lacks, from any origin; ``more`` if there are others."""

    TAG: ClassVar[int] = 7
    ops: tuple[Op, ...]
    more: bool = False


@attrs.frozen
class SnapshotChunk:
    """One chunk of a state snapshot, for a peer the op log can no longer serve.

    ``transfer_id`` names one frozen snapshot; ``offset`` is the index of the
    first entry in this chunk out of ``total``; ``vv`` is the snapshot's vector.
    """

    TAG: ClassVar[int] = 8
    transfer_id: str
    offset: int
    total: int
    vv: dict[str, int]
    entries: tuple[SnapshotEntry, ...]


@attrs.frozen
class SnapshotRequest:
    """Ask for snapshot entries from ``offset`` on.

    An empty ``transfer_id`` asks for a new transfer; ``offset`` -1 says the
    transfer is complete and the sender may release it.
    """

    TAG: ClassVar[int] = 9
    transfer_id: str
    offset: int = 0


@attrs.frozen
class Bye:
    """An orderly goodbye: the sender closes the connection after this."""

    TAG: ClassVar[int] = 10
    reason: str = ""


@attrs.frozen
class Members:
    """Membership gossip: the members the sender knows, with their endpoints."""

    TAG: ClassVar[int] = 11
    members: tuple[tuple[str, tuple[str, ...]], ...]


Message: TypeAlias = (
    Hello
    | Welcome
    | Refuse
    | Ops
    | Ack
    | SyncRequest
    | SyncResponse
    | SnapshotChunk
    | SnapshotRequest
    | Bye
    | Members
)

MESSAGE_TYPES: tuple[type[Message], ...] = (
    Hello,
    Welcome,
    Refuse,
    Ops,
    Ack,
    SyncRequest,
    SyncResponse,
    SnapshotChunk,
    SnapshotRequest,
    Bye,
    Members,
)
