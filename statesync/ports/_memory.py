"""The in-memory transport: ``memory://name`` endpoints inside one trio run.

:class:`MemoryTransport` implements :class:`~statesync.ports._transport.Transport`
with a bounded queue of frames per direction (``frames_max``; a full one makes
``try_send`` return False and the sender wait in ``wait_room``, as a DEALER at
its high-water mark does). Frames are the same bytes the ZeroMQ transport
carries, so the runtime above, its handshake, heartbeats and protocol, run
unchanged: tests use it to run several runtimes in one process without
sockets. Closing one end ends the other's receiver with
the builtin ``ConnectionError`` (a disconnect; the runtime catches it).

Listeners are found by name in a registry kept per trio run.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final, Protocol

import trio

from statesync.errors import ConnectError, SocketClosed

if TYPE_CHECKING:
    from statesync.ports._link import Listener


class MemoryHost(Protocol):
    """A runtime that accepts in-memory connections on its listeners."""

    def accept_memory(self, listener: Listener, transport: MemoryTransport) -> None: ...


SCHEME: Final = "memory://"
FRAMES_MAX: Final = 1024
"""Frames queued per direction before the sender has to wait."""

_REGISTRY: trio.lowlevel.RunVar[dict[str, tuple[MemoryHost, Listener]]] = trio.lowlevel.RunVar(
    "statesync_ports_memory"
)


def registry() -> dict[str, tuple[MemoryHost, Listener]]:
    """The memory listeners of this trio run, by endpoint."""
    try:
        return _REGISTRY.get()
    except LookupError:
        table: dict[str, tuple[MemoryHost, Listener]] = {}
        _REGISTRY.set(table)
        return table


def lookup(endpoint: str) -> tuple[MemoryHost, Listener]:
    found = registry().get(endpoint)
    if found is None or found[1].closed:
        raise ConnectError(f"nothing listens on {endpoint} in this trio run; listen there first")
    return found


class MemoryTransport:
    """One end of an in-memory connection."""

    own_receiver = True

    def __init__(self, frames_max: int = FRAMES_MAX) -> None:
        self.frames_max = frames_max
        self.inbox: deque[bytes] = deque()
        self.peer: MemoryTransport | None = None
        self.closed = False
        self._input = trio.lowlevel.ParkingLot()
        self._room = trio.lowlevel.ParkingLot()

    @classmethod
    def pair(cls, frames_max: int = FRAMES_MAX) -> tuple[MemoryTransport, MemoryTransport]:
        a, b = cls(frames_max), cls(frames_max)
        a.peer, b.peer = b, a
        return a, b

    def _peer_open(self) -> MemoryTransport:
        if self.closed:
            raise SocketClosed("the in-memory connection is closed")
        peer = self.peer
        if peer is None or peer.closed:
            raise ConnectionError("the other side closed the in-memory connection")
        return peer

    def try_send(self, frame: bytes) -> bool:
        peer = self._peer_open()
        if len(peer.inbox) >= peer.frames_max:
            return False
        peer.inbox.append(frame)
        peer._input.unpark_all()
        return True

    async def wait_room(self) -> None:
        while True:
            peer = self._peer_open()
            if len(peer.inbox) < peer.frames_max:
                await trio.lowlevel.checkpoint()
                return
            await self._room.park()

    def input_waiting(self) -> bool:
        return bool(self.inbox)

    async def recv_batch(self, max_count: int) -> list[bytes]:
        while not self.inbox:
            self._peer_open()
            await self._input.park()
        out: list[bytes] = []
        inbox = self.inbox
        while inbox and len(out) < max_count:
            out.append(inbox.popleft())
        if self.peer is not None:
            self.peer._room.unpark_all()
        await trio.lowlevel.checkpoint()
        return out

    def close(self, linger_s: float) -> None:
        if self.closed:
            return
        self.closed = True
        self._input.unpark_all()
        self._room.unpark_all()
        peer = self.peer
        if peer is not None:
            peer._input.unpark_all()
            peer._room.unpark_all()

    def describe(self) -> str:
        return f"{len(self.inbox)} frames waiting"
