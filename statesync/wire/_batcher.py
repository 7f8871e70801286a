"""The adaptive batcher: which queued messages go out together, and when.

Pure: no clock, no I/O. Time comes in as ``now_s`` (any monotonic clock, in
seconds) and the caller says whether its link is idle.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import attrs

from statesync.errors import WireSettingError

T = TypeVar("T")


class BatcherError(WireSettingError):
    """A batcher misuse: a bad setting, a negative size, an item larger than the queue."""


@attrs.frozen
class Batch(Generic[T]):
    """Items to send together, in order; ``priority`` batches hold priority items only."""

    items: tuple[T, ...]
    priority: bool
    size_bytes: int


class Batcher(Generic[T]):
    """Coalesces items into batches: at once when the link is idle, in bulk under load.

    The rules, exactly:

    1. ``offer(item, size_bytes, now_s, priority=...)`` queues the item and
       returns True, or returns False and keeps nothing when the item does not
       fit its queue: ``queue_count_max`` items / ``queue_bytes_max`` bytes for
       normal items, ``priority_count_max`` / ``priority_bytes_max`` for
       priority items. False is the backpressure signal: offer again after a
       ``take``. An item larger than its queue's byte bound can never fit and
       raises BatcherError instead.
    2. Priority items (handshake, acks, heartbeats, urgent user messages)
       overtake: while any is queued, ``take`` returns a priority batch (only
       priority items, oldest first) whatever the time and the link.
    3. Normal items go out oldest first. ``take(now_s, idle=True)`` returns them
       at once: a message on an idle link never waits. ``take(now_s,
       idle=False)`` (the link is busy) returns a batch only when one is *due*:
       ``batch_count_max`` items or ``batch_bytes_max`` bytes are queued, or
       the oldest item has waited ``batch_delay_s``. Otherwise None: the items
       keep coalescing.
    4. A batch holds at most ``batch_count_max`` items and ``batch_bytes_max``
       bytes, except that an item larger than ``batch_bytes_max`` goes alone
       in a batch of its own. A batch is never empty.
    5. ``next_deadline_s()`` is the time from which ``take(..., idle=False)``
       returns a batch (already past when a batch is due now), or None when
       nothing is queued.

    A sender loop: ``take`` while it returns batches; then sleep until an item
    is offered, the link turns idle, or ``next_deadline_s()``.
    """

    def __init__(
        self,
        *,
        batch_count_max: int = 256,
        batch_bytes_max: int = 256 * 1024,
        batch_delay_s: float = 0.002,
        queue_count_max: int = 10_000,
        queue_bytes_max: int = 16 << 20,
        priority_count_max: int = 1024,
        priority_bytes_max: int = 1 << 20,
    ) -> None:
        for name, value in (
            ("batch_count_max", batch_count_max),
            ("batch_bytes_max", batch_bytes_max),
            ("queue_count_max", queue_count_max),
            ("queue_bytes_max", queue_bytes_max),
            ("priority_count_max", priority_count_max),
            ("priority_bytes_max", priority_bytes_max),
        ):
            if type(value) is not int or value < 1:
                raise BatcherError(f"{name} must be an int >= 1, not {value!r}")
        if not batch_delay_s >= 0:
            raise BatcherError(f"batch_delay_s must be >= 0, not {batch_delay_s!r}")
        self.batch_count_max = batch_count_max
        self.batch_bytes_max = batch_bytes_max
        self.batch_delay_s = batch_delay_s
        self.queue_count_max = queue_count_max
        self.queue_bytes_max = queue_bytes_max
        self.priority_count_max = priority_count_max
        self.priority_bytes_max = priority_bytes_max
        self._normal: deque[tuple[T, int, float]] = deque()
        self._normal_bytes = 0
        self._priority: deque[tuple[T, int, float]] = deque()
        self._priority_bytes = 0

    def __len__(self) -> int:
        """Items queued, priority and normal."""
        return len(self._normal) + len(self._priority)

    @property
    def queued_bytes(self) -> int:
        return self._normal_bytes + self._priority_bytes

    def has_room(self, size_bytes: int, *, priority: bool = False) -> bool:
        """Whether ``offer`` of an item of ``size_bytes`` would be accepted now."""
        if priority:
            return (
                len(self._priority) < self.priority_count_max
                and self._priority_bytes + size_bytes <= self.priority_bytes_max
            )
        return len(self._normal) < self.queue_count_max and self._normal_bytes + size_bytes <= self.queue_bytes_max

    def offer(self, item: T, size_bytes: int, now_s: float, *, priority: bool = False) -> bool:
        """Queue ``item``; False (nothing queued) when its queue is full. See rule 1."""
        if type(size_bytes) is not int or size_bytes < 0:
            raise BatcherError(f"size_bytes must be an int >= 0, not {size_bytes!r}")
        bound = self.priority_bytes_max if priority else self.queue_bytes_max
        if size_bytes > bound:
            raise BatcherError(
                f"an item of {size_bytes} bytes can never fit a queue of {bound} bytes; "
                f"raise {'priority_bytes_max' if priority else 'queue_bytes_max'} or send smaller items"
            )
        if not self.has_room(size_bytes, priority=priority):
            return False
        if priority:
            self._priority.append((item, size_bytes, now_s))
            self._priority_bytes += size_bytes
        else:
            self._normal.append((item, size_bytes, now_s))
            self._normal_bytes += size_bytes
        return True

    def _due(self, now_s: float) -> bool:
        return (
            len(self._normal) >= self.batch_count_max
            or self._normal_bytes >= self.batch_bytes_max
            or now_s >= self._normal[0][2] + self.batch_delay_s
        )

    def take(self, now_s: float, *, idle: bool) -> Batch[T] | None:
        """The next batch to send, or None if nothing is due. See rules 2 to 4."""
        if self._priority:
            items, size = self._pop(self._priority)
            self._priority_bytes -= size
            return Batch(items, True, size)
        if self._normal and (idle or self._due(now_s)):
            items, size = self._pop(self._normal)
            self._normal_bytes -= size
            return Batch(items, False, size)
        return None

    def _pop(self, queue: deque[tuple[T, int, float]]) -> tuple[tuple[T, ...], int]:
        item, size, _ = queue.popleft()
        items = [item]
        total = size
        count_max = self.batch_count_max
        bytes_max = self.batch_bytes_max
        while queue and len(items) < count_max:
            nxt = queue[0][1]
            if total + nxt > bytes_max:
                break
            item, size, _ = queue.popleft()
            items.append(item)
            total += size
        return tuple(items), total

    def next_deadline_s(self) -> float | None:
        """When ``take(..., idle=False)`` next returns a batch; None if nothing is queued. Rule 5."""
        if self._priority:
            return self._priority[0][2]
        if not self._normal:
            return None
        oldest = self._normal[0][2]
        if len(self._normal) >= self.batch_count_max or self._normal_bytes >= self.batch_bytes_max:
            return oldest
        return oldest + self.batch_delay_s
