"""The worker-pool pattern over ports: spread requests to the least busy port."""

from __future__ import annotations

from collections.abc import Iterable

import trio

from statesync.core import Value
from statesync.errors import PoolClosed, PoolQueueFull, RequestTimeout
from statesync.ports._options import InvalidOptions
from statesync.ports._port import MessagePort


class PortPool:
    """Sends each request to the port with the fewest requests in flight.

    Each port carries at most ``per_port_max`` requests at once; beyond that,
    callers wait in a bounded queue of ``queue_max`` waiters, and one more
    raises :class:`PoolQueueFull` at once. Closed ports leave the pool; when
    none is left, requests raise :class:`PoolClosed`. A request whose port
    closes while it is in flight raises PortClosedError and is not retried
    (the worker may have run it).
    """

    def __init__(
        self, ports: Iterable[MessagePort] = (), *, per_port_max: int = 8, queue_max: int = 256
    ) -> None:
        if per_port_max < 1 or queue_max < 0:
            raise InvalidOptions(
                f"PortPool needs per_port_max >= 1 and queue_max >= 0, not {per_port_max}, {queue_max}"
            )
        self.per_port_max = per_port_max
        self.queue_max = queue_max
        self._busy: dict[MessagePort, int] = {}
        self._waiting = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        for p in ports:
            self.add(p)

    def __len__(self) -> int:
        return len(self._busy)

    @property
    def in_flight(self) -> int:
        """Requests being answered now, over all ports."""
        return sum(self._busy.values())

    @property
    def waiting(self) -> int:
        """Requests waiting for a free port."""
        return self._waiting

    def add(self, port: MessagePort) -> None:
        """Add a worker port (a port whose partner has a request handler)."""
        if port not in self._busy:
            self._busy[port] = 0
            self._lot.unpark_all()

    def remove(self, port: MessagePort) -> None:
        """Take a port out of the pool (requests in flight on it finish)."""
        self._busy.pop(port, None)

    def close(self) -> None:
        """Refuse new requests; waiting ones raise PoolClosed."""
        self._closed = True
        self._lot.unpark_all()

    def _prune(self) -> None:
        for p in [p for p in self._busy if p.closed]:
            del self._busy[p]

    async def _acquire(self) -> MessagePort:
        while True:
            if self._closed:
                raise PoolClosed("the pool is closed")
            self._prune()
            if not self._busy:
                raise PoolClosed("every port of the pool is closed")
            best = min(self._busy, key=self._busy.__getitem__)
            if self._busy[best] < self.per_port_max:
                self._busy[best] += 1
                return best
            if self._waiting >= self.queue_max:
                raise PoolQueueFull(
                    f"{self._waiting} requests already wait for a free port (queue_max={self.queue_max}); "
                    "retry later or add workers"
                )
            self._waiting += 1
            try:
                await self._lot.park()
            finally:
                self._waiting -= 1

    def _release(self, port: MessagePort) -> None:
        if port in self._busy:
            self._busy[port] -= 1
        self._lot.unpark_all()

    async def request(self, data: object, *, timeout_s: float | None = 30.0) -> Value:
        """Like :meth:`MessagePort.request` on the least busy port; ``timeout_s`` covers the wait too."""
        with trio.move_on_after(timeout_s if timeout_s is not None else float("inf")) as scope:
            port = await self._acquire()
            try:
                return await port.request(data, timeout_s=None)
            finally:
                self._release(port)
        assert scope.cancelled_caught
        raise RequestTimeout(
            f"no response within {timeout_s} s from the pool (waiting for a port included)"
        )
