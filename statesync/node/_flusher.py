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

**The disk-full alarm.** A commit that fails for want of space
(:class:`~statesync.errors.StorageFull`) does not take the node down: the
output it belonged to is held (nothing of it happens: no send, no ack, no
resolve), and the alarm goes on (``on_alarm(True)``: the node then refuses
local writes at once, :meth:`Flusher.check_writable`, and its links stop
taking frames in, so peers keep their ops and send them again later), and
the ticker pauses (no timers run, so nothing piles up however long the alarm
lasts). What output is made meanwhile stays in the replicator (one output, as
after a slow round).
Every ``disk_probe_interval_s``, and at once on :meth:`Flusher.probe`, the
held commit is tried again, and if it still fails, a checkpoint that would
shrink the log (it covers the held ops, so once written they are durable).
Once either goes through, the held output is carried out and the alarm ends.
A checkpoint that finds the disk full is only skipped (its commit was made).

It also owns the node's :class:`~statesync.node._timers.Ticker` (a tick's
output goes the same way) and ``progress``, an event set after every round,
which :meth:`Flusher.drain` and ``Node.sync`` wait on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import trio

from statesync.core import Now, Op, Output, Replicator, Snapshot
from statesync.errors import StorageFull
from statesync.node._config import NodeConfig
from statesync.node._effects import Commit, EffectsApplier
from statesync.node._timers import Ticker
from statesync.storage import Store

T = TypeVar("T")
log = logging.getLogger("statesync.node")


class Flusher:
    """Carries the replicator's output through the effects applier, committing first."""

    def __init__(
        self,
        rep: Replicator,
        effects: EffectsApplier,
        store: Store,
        now: Callable[[], Now],
        config: NodeConfig,
        *,
        on_alarm: Callable[[bool], None] = lambda on: None,
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
        self._node_id = config.node_id
        self._on_alarm = on_alarm
        self._probe_interval_s = config.disk_probe_interval_s
        self._probe = trio.Event()
        self._held: tuple[Output, Commit] | None = None
        """The output whose commit found the disk full, and that commit (alarm on)."""
        self._full: StorageFull | None = None
        """The last StorageFull seen while the alarm is on."""
        self._alarm_since_s = 0.0
        self.alarm_counts = {"raised": 0, "writes_refused": 0, "probes": 0, "compactions": 0}

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
        if not self._inline or self._busy or self._dirty.is_set() or self._checkpoint_due is not None or self._held is not None:
            return False
        if ops > self._inline_ops_max:
            return False
        taken = self._take()
        if taken is not None:
            out, commit = taken
            effects = self._effects
            if commit is not None:
                try:
                    commit.write(self._store)
                except StorageFull as exc:
                    self._raise_alarm(exc, out, commit)
                    raise self.held_error() from exc
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
        """Wait until every output produced so far is committed and handed to the links
        (or the disk-full alarm holds it)."""
        while (self._dirty.is_set() or self._busy) and self._failed is None and self._held is None:
            await self.progress.wait()

    # ------------------------------------------------------------ the disk-full alarm

    @property
    def alarm(self) -> StorageFull | None:
        """While the disk-full alarm is on: the last StorageFull seen; else None."""
        return self._full if self._held is not None else None

    def check_writable(self) -> None:
        """Raise StorageFull at once while the alarm is on (a local write is refused)."""
        full = self.alarm
        if full is not None:
            self.alarm_counts["writes_refused"] += 1
            raise _full_error(
                full,
                "is full",
                "the write was refused, nothing of it was stored; free space there (or let a "
                "checkpoint compact the log) and the node resumes by itself",
            )

    def held_error(self, ops: Sequence[Op] | None = None) -> StorageFull:
        """What a waiting writer hears when the alarm goes on: its write (``ops``; None: it is
        held) is held uncommitted, or committed but waiting for acks that cannot come in now."""
        assert self._full is not None and self._held is not None
        held = {(op.origin, op.seq) for op in self._held[1].ops}
        if ops is None or any((op.origin, op.seq) in held for op in ops):
            then = "it is not acknowledged; it stays in memory and is committed when space returns, or is lost if the node stops first"
            return _full_error(self._full, "filled up under this write", then)
        then = "this write is durable here, but no peer's acknowledgement is taken in until space returns; it spreads then"
        return _full_error(self._full, "filled up while this write waited for its acknowledgements", then)

    def probe(self) -> None:
        """Try the held commit again now (space was freed, or the log compacted)."""
        self._probe.set()

    def alarm_status(self) -> dict[str, Any]:
        full = self.alarm
        out: dict[str, Any] = {"disk_full": full is not None, **self.alarm_counts}
        if full is not None:
            out.update(folder=full.folder, free_bytes=full.free_bytes, for_s=round(trio.current_time() - self._alarm_since_s, 3))
        return out

    def _raise_alarm(self, exc: StorageFull, out: Output, commit: Commit) -> None:
        self._held = (out, commit)
        self._full = exc
        self._alarm_since_s = trio.current_time()
        self.alarm_counts["raised"] += 1
        log.error(
            "%s: DISK FULL under %s (%s bytes free): local writes are refused and peers' ops not "
            "acknowledged until space returns; reads, watches and status go on",
            self._node_id, exc.folder, f"{exc.free_bytes:,}",
        )  # fmt: skip
        self._on_alarm(True)
        self.ticker.paused = True  # no timers meanwhile: nothing piles up in the replicator
        self._dirty.set()  # the task, waiting for output, now waits for its probe instead

    async def _retry_held(self) -> None:
        """The alarm's probe: the held commit again, else a compaction; success ends the alarm."""
        assert self._held is not None
        out, commit = self._held
        self.alarm_counts["probes"] += 1
        compacted = False
        try:
            await self.in_store(commit.write, self._store)
        except StorageFull as exc:
            self._full = exc
            snapshot = self._effects.compaction()
            if snapshot is None:
                return
            try:
                await self.in_store(self._store.save_snapshot, snapshot)
            except StorageFull as exc2:
                self._full = exc2
                return
            self._effects.compacted()
            self._checkpoint_due = None  # older than this one: writing it now would lose ops
            self.alarm_counts["compactions"] += 1
            compacted = True  # the checkpoint covers every op held: they are durable now
        self._held = None
        log.warning(
            "%s: the disk-full alarm is over after %.1f s (%s): writes are accepted again",
            self._node_id, trio.current_time() - self._alarm_since_s, "the log was compacted" if compacted else "space returned",
        )  # fmt: skip
        self._on_alarm(False)
        self.ticker.paused = False
        self.ticker.poke()
        checkpoint = None if compacted else self._effects.checkpoint_for(out)
        if checkpoint is not None:
            await self._checkpoint(checkpoint)
        self._effects.apply(out)
        self._dirty.set()  # then what accumulated meanwhile

    async def _checkpoint(self, snapshot: Snapshot) -> None:
        """Write a checkpoint; on a full disk skip it (the commits it would compact are made)."""
        try:
            await self.in_store(self._store.save_snapshot, snapshot)
        except StorageFull as exc:
            log.warning("%s: a checkpoint was skipped: %s", self._node_id, exc)

    # --------------------------------------------------------------------- the task

    async def run(self) -> None:
        while True:
            if self._held is not None:
                with trio.move_on_after(self._probe_interval_s):
                    await self._probe.wait()
                self._probe = trio.Event()
                self._busy = True
                await self._retry_held()
                self._busy = False
                self._progressed()
                continue
            await self._dirty.wait()
            if self._failed is not None:
                raise self._failed
            if self.alarm is not None:  # it went on in a writer's task (commit_now)
                continue
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
            self._checkpoint_due = None
            await self._checkpoint(due)
        taken = self._take()
        if taken is None:
            return
        out, commit = taken
        if commit is not None:
            try:
                await self.in_store(commit.write, self._store)
            except StorageFull as exc:
                self._raise_alarm(exc, out, commit)
                return
        checkpoint = self._effects.checkpoint_for(out)
        if checkpoint is not None:
            await self._checkpoint(checkpoint)
        self._effects.apply(out)

    def _take(self) -> tuple[Output, Commit | None] | None:
        """The replicator's output so far and what of it to commit first; None: nothing."""
        out = self._rep.take_output()
        return (out, self._effects.commit_for(out)) if out else None

    async def save_unless_full(self, what: str, fn: Callable[..., object], *args: Any) -> None:
        """A store call whose loss costs nothing lasting (the peer list: learned again);
        on a full disk it is skipped with a warning rather than ending the node."""
        try:
            await self.in_store(fn, *args)
        except StorageFull as exc:
            log.warning("%s: %s not saved: %s", self._node_id, what, exc)

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


def _full_error(full: StorageFull, state: str, then: str) -> StorageFull:
    text = f"the disk under {full.folder} {state} ({full.free_bytes:,} bytes free): {then}"
    return StorageFull(text, folder=full.folder, free_bytes=full.free_bytes)
