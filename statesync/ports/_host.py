"""What a :class:`~statesync.ports.MessagePort` needs from the runtime that hosts it.

The port object talks to its runtime only through :class:`PortHost` (the
runtime implements it), and holds a :class:`PortState`: the protocol's
:class:`~statesync.ports._sequencing.PortEnd` plus the runtime's per-port
things (wait queues, the user object, the request handler). So ``_port``
does not import the runtime, and the runtime imports ``_port``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import trio

from statesync.core import Value
from statesync.errors import PortsError
from statesync.ports._options import PortOptions
from statesync.ports._protocol import PortsProtocol
from statesync.ports._sequencing import PortEnd


class PortHandle(Protocol):
    """The user object of a port (a :class:`~statesync.ports.MessagePort`) as its
    runtime drives it: deliveries and the close event go through these."""

    def _fire_message(self, payload: bytes, ports: tuple[Any, ...]) -> object: ...

    def _fire_close(self, reason: str) -> None: ...

    def _detach(self, err: PortsError) -> None: ...

RequestHandler = Callable[[Value], object]
"""Answers a request: returns the answer (anything ``post_message`` accepts) or an awaitable of it."""


class PortState(PortEnd):
    """One end living in a runtime: the protocol's state plus the runtime's."""

    __slots__ = ("handle", "handler", "lot", "runtime", "writers")

    def __init__(self, runtime: PortHost, id_: int, partner: int, window: int, moves: int = 0) -> None:
        super().__init__(id_, partner, window, moves)
        self.runtime = runtime
        self.handle: PortHandle | None = None
        self.handler: RequestHandler | None = None
        #: iterators wait here for items; writers for room
        self.lot = trio.lowlevel.ParkingLot()
        self.writers = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        return f"<port {self.id:#x} partner {self.partner:#x} in {self.runtime.id}>"


Ports = tuple[PortState, ...]
"""Ends that travel in a message."""


class PortHost(Protocol):
    """The runtime as its ports see it."""

    id: str
    options: PortOptions
    thread_id: int
    closed: bool
    payload_bytes_max: int
    #: the runtime's protocol: ``post_message`` calls its ``post_plain`` directly
    #: (the hot path), then kicks the connection it returns or calls :meth:`apply`
    proto: PortsProtocol

    def apply(self) -> None:
        """Carry out what the protocol asked for."""

    def check_run(self) -> None:
        """Raise unless called from the trio run (and thread) that owns the runtime."""

    def room(self, st: PortState, size: int) -> trio.lowlevel.ParkingLot | None:
        """None if ``st`` may post ``size`` bytes now, else where to wait for room."""

    def post(  # noqa: PLR0917
        self, st: PortState, kind: int, req_id: int, payload: bytes, ports: Ports, prio: bool
    ) -> None:
        """Post one message of ``kind`` from ``st`` carrying ``ports`` (PortQueueFull: no room)."""

    async def request(
        self, st: PortState, payload: bytes, ports: Ports, prio: bool, deadline: float
    ) -> tuple[int, bytes] | None:
        """Send a request and wait for (kind, payload) of its answer; None at the deadline."""

    def start(self, st: PortState) -> None: ...

    def close_port(self, st: PortState, reason: str, *, local: str) -> None: ...

    def next_event(self, st: PortState) -> object:
        """For ``async for``: the next event (what the handle's ``_fire_message``
        returned), False to wait, True at the end."""

    def iteration_ended(self, st: PortState) -> None: ...
