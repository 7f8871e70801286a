"""The flusher: the trio side of the effects pipeline.

Every replicator call (a write, a frame, a tick) may leave output. The
flusher hands it to the :class:`~statesync.node._effects.EffectsApplier`:

- on a durable node, the flusher task takes everything that accumulated
  since its last round, writes the commit in the store's worker thread (one
  transaction: group commit), then applies the rest (send, close, resolve,
  publish). Callers only mark the output dirty (:meth:`Flusher.mark_dirty`);
- on an in-memory node nothing is committed, so handling the output never
  waits: :meth:`Flusher.flush` applies it at once, in the task that produced
  it, sparing a task switch on every write and every received frame (the
  task still runs what others only marked dirty).

Local writes on an in-memory node coalesce (:meth:`Flusher.wrote`): the
first write of a scheduling turn is flushed at once and opens the turn (an
idle link never holds a write); the writes that follow while the writer runs
on stay in the replicator's outbox and join the next frame, which goes when
the flusher task runs (the writer yielded), or at once when the writes held
reach ``coalesce_ops_max``, ``coalesce_bytes_max`` or ``coalesce_hold_max_s``.
So a burst of ``await node.set`` never goes out as one frame per write, and
an ``ack="local"`` write completes without a task round trip.

On a durable node with ``durability="process"`` (no fsync: a commit of a
few ops costs tens of µs), :meth:`Flusher.commit_now` commits a small output
in the caller's task, without the worker thread's round trip or a wake-up of
the flusher task, so an ``await node.set`` returns at once, durable; a
checkpoint that falls due then is left to the task (in the worker thread),
and until it is written every commit goes through the task, in order.
A large output, or ``durability="fsync"``, always goes through the task.

It also owns the node's :class:`~statesync.node._timers.Ticker` (a tick's
output goes the same way) and ``progress``, an event set after every round,
which :meth:`Flusher.drain` and ``Node.sync`` wait on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio

from statesync.core import Now, Replicator, Snapshot
from statesync.node._config import NodeConfig
from statesync.node._effects import EffectsApplier
from statesync.node._timers import Ticker
from statesync.storage import Store

T = TypeVar("T")


class Flusher:
    """Carries the replicator's output through the effects applier, committing first."""

    def __init__(
        self, rep: Replicator, effects: EffectsApplier, store: Store, now: Callable[[], Now], config: NodeConfig
    ) -> None:
        self._rep = rep
        self._effects = effects
        self._store = store
        self._durable = effects.durable
        self.ticker = Ticker(rep, now, self._set_dirty)
        self._dirty = trio.Event()
        self._busy = False
        self._progress: trio.Event | None = None
        self._store_limiter = trio.CapacityLimiter(1)
        self._inline = self._durable and config.durability == "process"
        self._inline_ops_max = config.commit_inline_ops_max
        self._failed: BaseException | None = None
        self._checkpoint_due: Snapshot | None = None
        """A checkpoint taken after an inline commit, for the task to write."""
        self._ops_max = config.coalesce_ops_max
        self._bytes_max = config.coalesce_bytes_max
        self._hold_max_s = config.coalesce_hold_max_s
        self._turn_open = False
        """A write was flushed since the task last ran: writes that follow join the next frame."""
        self._held_ops = 0
        self._held_bytes = 0
        self._held_since_s = 0.0
        self.counters = {"writes_coalesced": 0, "coalesced_flushes": 0}

    def _set_dirty(self) -> None:
        self._dirty.set()

    def mark_dirty(self) -> None:
        """Have the flusher task handle the output (and the timer look again)."""
        self._dirty.set()
        self.ticker.poke()

    def wrote(self, ops: int, nbytes: int, now_s: float) -> bool:
        """A local write whose concern is met (in-memory, ``ack="local"``), at ``now_s``: flush it now or hold it.

        Returns True when it flushed a full coalesced frame: the writer should
        then yield, so that the peers' links and the other tasks get their turn.
        """
        if self._durable or self._busy:
            self.mark_dirty()
            return False
        if not self._turn_open:
            # Idle: the write goes at once; the task closes the turn when it runs.
            self._turn_open = True
            self._dirty.set()
            self.flush()
            return False
        if not self._held_ops:
            self._held_since_s = now_s
        self._held_ops += ops
        self._held_bytes += nbytes
        if self._held_ops < self._ops_max and self._held_bytes < self._bytes_max and now_s - self._held_since_s < self._hold_max_s:
            self.counters["writes_coalesced"] += 1
            return False
        self.counters["coalesced_flushes"] += 1
        self.flush()
        return True

    def commit_now(self, ops: int) -> bool:
        """Commit and apply the output here, now, if it is small enough (``ops``: what the caller
        just added); False: it goes through the task (the caller then waits as before)."""
        if not self._inline or self._busy or self._dirty.is_set() or self._checkpoint_due is not None:
            return False
        if ops > self._inline_ops_max:
            return False
        out = self._rep.take_output()
        if out:
            effects = self._effects
            commit = effects.commit_for(out)
            if commit is not None:
                try:
                    commit.write(self._store)
                except BaseException as exc:
                    # As in the task: a store that fails takes the node down (the writer hears it too).
                    self._failed = exc
                    self._dirty.set()
                    raise
            checkpoint = effects.checkpoint_for(out)
            if checkpoint is not None:  # O(state): written by the task, in the worker thread
                self._checkpoint_due = checkpoint
                self.mark_dirty()
            effects.apply(out)
        self.ticker.poke()
        self._progressed()
        return True

    def flush(self) -> None:
        """Have the output handled: now if that cannot wait (in-memory), else by the task."""
        if self._durable or self._busy:
            self.mark_dirty()
            return
        self._held_ops = self._held_bytes = 0
        out = self._rep.take_output()
        if out:
            self._effects.run(out, None)
        self.ticker.poke()
        self._progressed()

    async def drain(self) -> None:
        """Wait until every output produced so far is committed and handed to the links."""
        while (self._dirty.is_set() or self._busy) and self._failed is None:
            await self.progress.wait()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            if self._failed is not None:
                raise self._failed
            self._dirty = trio.Event()
            self._turn_open = False
            self._held_ops = self._held_bytes = 0
            self._busy = True
            await self._round()
            self._busy = False
            self._progressed()

    async def _round(self) -> None:
        """Everything accumulated so far: commit it (one transaction), checkpoint if due, apply it.

        (Its own frame, so that the output, its commit and a checkpoint are
        freed before the task waits for the next round.)
        """
        due = self._checkpoint_due
        if due is not None:
            await self.in_store(self._store.save_snapshot, due)
            self._checkpoint_due = None
        out = self._rep.take_output()
        if out:
            effects = self._effects
            commit = effects.commit_for(out)
            if commit is not None:
                await self.in_store(commit.write, self._store)
            checkpoint = effects.checkpoint_for(out)
            if checkpoint is not None:
                await self.in_store(self._store.save_snapshot, checkpoint)
            effects.apply(out)

    async def in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call: in the store's worker thread on a durable node, else here."""
        if self._durable:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._store_limiter)
        return fn(*args)

    @property
    def progress(self) -> trio.Event:
        """Set (and replaced) after the next round of output handled."""
        if self._progress is None:
            self._progress = trio.Event()
        return self._progress

    def _progressed(self) -> None:
        # made only when someone waits on it: a flush per frame or write pays nothing
        if self._progress is not None:
            self._progress.set()
            self._progress = None
