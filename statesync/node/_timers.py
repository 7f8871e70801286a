"""The node's timers: the replicator's tick, and the garbage collector's tuning.

The replicator says when it next wants a tick (``next_tick_s``: sync
rounds, retransmission, write deadlines, handshake timeouts, log
compaction). :class:`Ticker` sleeps until then, ticks it, and asks for the
output to be flushed. Anything that may move that deadline earlier (a
write, a frame) calls :meth:`Ticker.poke`, which wakes the task only when
the replicator now wants a tick sooner than the task waits for: waking it
on every write and every frame cost a task switch and a cancel scope on the
latency path.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable

import trio

from statesync.core import Now, Replicator


class Ticker:
    """Ticks the replicator when it asks; ``on_tick`` then has its output flushed."""

    def __init__(self, rep: Replicator, now: Callable[[], Now], on_tick: Callable[[], None]) -> None:
        self._rep = rep
        self._now = now
        self._on_tick = on_tick
        self._reset = trio.Event()
        self._deadline = math.inf
        self.paused = False
        """No ticks while set (the disk-full alarm: the replicator is left as it is); clear it
        and :meth:`poke` to resume."""

    def poke(self) -> None:
        """Wake the task only if the replicator now wants a tick sooner than it waits for."""
        if self._rep.next_tick_s() < self._deadline:
            self._reset.set()

    async def run(self) -> None:
        rep = self._rep
        while True:
            deadline = self._deadline = math.inf if self.paused else rep.next_tick_s()
            with trio.move_on_at(deadline):
                await self._reset.wait()
            self._reset = trio.Event()
            if not self.paused and trio.current_time() >= rep.next_tick_s():
                rep.tick(self._now())
                self._on_tick()


async def tune_gc(interval_s: float) -> None:
    """Young collections every 50,000 allocations, a full one every ``interval_s``.

    The replica holds millions of long-lived objects; with the default
    thresholds the collector keeps traversing them. Startup's objects are
    frozen (never traversed again); cycles made later are still reclaimed
    by the periodic full collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    while True:
        await trio.sleep(interval_s)
        gc.collect()
