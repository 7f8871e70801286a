"""Envelope messages of the ports layer (wire tags 32-63).

User payloads travel as opaque ``bytes`` (made by ``encode_payload`` at
``post_message`` time) inside these envelopes, so that a payload that does not
decode only fires ``messageerror`` on its port. Port ids are random 63-bit
integers, unique per entangled end and stable when the end moves between
processes. Sequence numbers count each end's outgoing messages from 1, one
counter per stream (normal and priority).
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from statesync.wire import register_message

PROTOCOL_VERSION: Final = 1

# Kinds of a Msg
KIND_MESSAGE: Final = 0
KIND_REQUEST: Final = 1
KIND_RESPONSE: Final = 2
KIND_ERROR: Final = 3

#: ``Close.seq`` / ``Close.pseq`` value meaning "close at once, do not wait for
#: earlier messages" (the path they were on is gone).
CLOSE_NOW: Final = 0


@attrs.frozen
class Greeting:
    """The fields of both handshake frames: who the sender is and how it paces a connection.

    ``heartbeat_timeout_ms``: the sender declares the connection dead after this
    much silence, so the receiver pings at least four times as often.
    """

    runtime_id: str
    version: int
    endpoints: tuple[str, ...]
    window: int
    heartbeat_timeout_ms: int = 0


@attrs.frozen
class Hello(Greeting):
    """First frame on a connection, from the connecting (active) side."""

    TAG: ClassVar[int] = 32


@attrs.frozen
class Welcome(Greeting):
    """The listening (passive) side's answer to Hello."""

    TAG: ClassVar[int] = 33


@attrs.frozen
class Bye:
    """The sender closes (or refuses, or does not know) this connection."""

    TAG: ClassVar[int] = 34
    reason: str


@attrs.frozen
class Ping:
    """Application-level heartbeat, sent when a connection was otherwise idle."""

    TAG: ClassVar[int] = 35


@attrs.frozen
class PortRef:
    """The state of a port end that moves to another process (inside a Msg).

    ``moves`` counts the end's moves so far, this one included; relays left on
    the way carry it as their generation. ``partner_gen`` is the generation the
    sender knew for the partner end. ``seq_in``/``pseq_in`` are the first
    sequence numbers not yet taken by the user (queued messages follow the
    carrier, re-sent with their numbers). ``sent``/``credited`` and
    ``consumed``/``granted`` are the flow-control counters of each direction.
    ``close_seq``/``close_pseq`` are set when the partner has closed and its last
    messages are still on their way (-1: not closed).
    """

    TAG: ClassVar[int] = 36
    id: int
    partner: int
    moves: int
    partner_gen: int
    window: int
    seq_out: int
    pseq_out: int
    seq_in: int
    pseq_in: int
    sent: int
    credited: int
    consumed: int
    granted: int
    close_seq: int = -1
    close_pseq: int = -1


@attrs.frozen
class Open:
    """The active side opened a logical port: create end ``port`` whose partner is ``partner``."""

    TAG: ClassVar[int] = 37
    port: int
    partner: int
    window: int


@attrs.frozen
class Msgs:
    """Plain messages for ``dst``, normal stream, numbered from ``seq`` (the hot path)."""

    TAG: ClassVar[int] = 38
    dst: int
    seq: int
    payloads: tuple[bytes, ...]


@attrs.frozen
class Msg:
    """One message for ``dst`` with everything: kind, request id, stream, ports."""

    TAG: ClassVar[int] = 39
    dst: int
    seq: int
    prio: bool
    kind: int
    req_id: int
    payload: bytes
    ports: tuple[PortRef, ...] = ()


@attrs.frozen
class Credit:
    """The partner of ``dst`` has taken ``consumed`` messages in all: ``dst`` may send more."""

    TAG: ClassVar[int] = 40
    dst: int
    consumed: int


@attrs.frozen
class Close:
    """The partner of ``dst`` closed after sending messages up to ``seq - 1``/``pseq - 1``."""

    TAG: ClassVar[int] = 41
    dst: int
    seq: int
    pseq: int
    reason: str


@attrs.frozen
class Locate:
    """``src`` (the partner of ``dst``) lives in runtime ``runtime_id`` after ``moves`` moves."""

    TAG: ClassVar[int] = 42
    dst: int
    src: int
    runtime_id: str
    endpoints: tuple[str, ...]
    moves: int
    reply: bool


@attrs.frozen
class Marker:
    """End of a route: relays for ``dst`` of generation <= ``gen`` forward this and forget."""

    TAG: ClassVar[int] = 43
    dst: int
    gen: int


ENVELOPES: Final = (
    Hello,
    Welcome,
    Bye,
    Ping,
    PortRef,
    Open,
    Msgs,
    Msg,
    Credit,
    Close,
    Locate,
    Marker,
)

for _cls in ENVELOPES:
    register_message(_cls)
