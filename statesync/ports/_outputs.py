"""The outputs of the ports protocol: typed records the driver carries out."""

from __future__ import annotations

import attrs

from statesync.errors import PortsError
from statesync.ports._outbox import Conn
from statesync.ports._sequencing import PortEnd


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
