"""Request deadlines of the ports protocol (pure): a heap of (deadline, waiter).

A request's waiter is registered with its deadline; :meth:`Deadlines.expire`
returns, at a time ``now``, the waiters whose deadline passed and that are not
done yet (a waiter finished early is skipped and forgotten). Correlation of a
response with its request is by request id, per port (``PortEnd.pending``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Final, Generic, TypeVar

T = TypeVar("T")

COMPACT_AT: Final = 4096
"""Above this many entries the heap drops finished waiters when most of them are."""


class Deadlines(Generic[T]):
    """Deadlines of waiters; ``is_done(w)`` tells a waiter that needs no timeout any more."""

    def __init__(self, is_done: Callable[[T], bool]) -> None:
        self._is_done = is_done
        self._heap: list[tuple[float, int, T]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, deadline: float, waiter: T) -> bool:
        """Register ``waiter``; True when it is now the earliest deadline (re-arm the timer)."""
        self._seq += 1
        heap = self._heap
        heapq.heappush(heap, (deadline, self._seq, waiter))
        done = self._is_done
        if len(heap) > COMPACT_AT and len(heap) > 4 * sum(1 for _, _, w in heap if not done(w)):
            self._heap = heap = [d for d in heap if not done(d[2])]
            heapq.heapify(heap)
        return bool(heap) and heap[0][2] is waiter

    def expire(self, now: float) -> list[T]:
        """The waiters whose deadline is at or before ``now`` and that are not done."""
        heap = self._heap
        done = self._is_done
        out: list[T] = []
        while heap and (heap[0][0] <= now or done(heap[0][2])):
            _, _, waiter = heapq.heappop(heap)
            if not done(waiter):
                out.append(waiter)
        return out

    @property
    def next_deadline(self) -> float:
        """The earliest deadline still registered (``math.inf``: none)."""
        return self._heap[0][0] if self._heap else math.inf
