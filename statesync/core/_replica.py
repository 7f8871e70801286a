"""A replica: the state tree, its causal context, its clock and its op log.

The replica enforces *causal delivery*: an op is applied only once everything
its context covers has been applied here, and each origin's ops in seq order.
An op that arrives early waits in a bounded buffer; anti-entropy fills the
gap. This is what avoids the classic trap of observed-remove maps: the applied
set is always exactly a version vector, so merging a context can never mark
as seen an op this replica has not received (which would lose the other
leaves of a subtree write).

Everything is pure: physical time comes in as ``wall_ms`` arguments.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from typing import Final

import attrs

from statesync.core._context import CausalContext, Dot, VersionVector
from statesync.core._hlc import COUNTER_BITS, HybridClock
from statesync.core._messages import SnapshotEntry
from statesync.core._op import ABSENT, PUT, REMOVE, AbsentType, Change, Op, Version
from statesync.core._oplog import OpLog
from statesync.core._path import PATH_DEPTH_MAX, SEGMENT_CHARS_MAX, Path, PathLike, as_path
from statesync.core._replicatyped import TypedWrites
from statesync.core._strategy import Strategies
from statesync.core._tree import StateTree
from statesync.core._typedops import (
    TYPED,
    body_of,
    box_of,
    freeze,
    has_box,
    is_frozen,
    plain_version,
    thaw,
)
from statesync.core._value import (
    DEFAULT_VALUE_LIMITS,
    Value,
    ValueLimits,
    check_tree_value,
    validate_value,
)
from statesync.errors import InvalidOperation, InvalidValue, ReplicationArgumentError

LOG_OPS_MAX: Final = 1_000_000
_new_op = tuple.__new__  # builds an Op without the NamedTuple constructor's overhead
PENDING_OPS_MAX: Final = 100_000


@attrs.frozen
class Snapshot:
    """A replica's whole state as plain data: its vector, clock and registers."""

    vv: dict[str, int]
    hlc: int
    entries: tuple[SnapshotEntry, ...]


@attrs.frozen
class ReplicaLimits:
    """Bounds on what a replica accepts and holds."""

    log_ops_max: int = LOG_OPS_MAX
    pending_ops_max: int = PENDING_OPS_MAX
    path_depth_max: int = PATH_DEPTH_MAX
    segment_chars_max: int = SEGMENT_CHARS_MAX
    value: ValueLimits = DEFAULT_VALUE_LIMITS


class Replica(TypedWrites):
    """One node's copy of the replicated tree (typed edits: see :class:`TypedWrites`)."""

    def __init__(
        self,
        node_id: str,
        *,
        strategies: Strategies | None = None,
        max_drift_ms: int = 60_000,
        limits: ReplicaLimits = ReplicaLimits(),
    ) -> None:
        if not node_id or not isinstance(node_id, str):
            raise ReplicationArgumentError(f"node_id must be a non-empty str, not {node_id!r}")
        self.node_id = node_id
        self.limits = limits
        self.tree = StateTree(strategies)
        self.clock = HybridClock(max_drift_ms=max_drift_ms)
        self.vv: VersionVector = {}
        """Applied dots: always a pure version vector (causal delivery)."""
        self.log = OpLog(limits.log_ops_max)
        self._pending: dict[Dot, Op] = {}
        self.last_ops: list[Op] = []
        """The ops of the latest :meth:`put_many`, also when it stopped at a bad item."""
        self._waiting: dict[str, list[tuple[int, str, int]]] = {}
        self.pending_dropped = 0

    # ----------------------------------------------------------------- state

    @property
    def seq(self) -> int:
        """The seq of this node's latest write."""
        return self.vv.get(self.node_id, 0)

    @property
    def strategies(self) -> Strategies:
        return self.tree.strategies

    def context(self) -> CausalContext:
        """What this replica has applied."""
        return CausalContext(self.vv)

    def received_context(self) -> CausalContext:
        """What it has applied plus the dots waiting in the causal buffer."""
        ctx = CausalContext(self.vv)
        ctx.compact_with(self._pending)
        return ctx

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # ---------------------------------------------------------------- reads

    def get(self, path: PathLike) -> Value | AbsentType:
        return self.tree.get(self._path(path))

    def versions(self, path: PathLike) -> tuple[Version, ...]:
        return tuple(map(plain_version, self.tree.versions(self._path(path))))

    def conflicts(self, path: PathLike) -> list[Version]:
        return list(map(plain_version, self.tree.conflicts(self._path(path))))

    def digest(self) -> str:
        """An order-independent digest of the tree and the context."""
        vv = hashlib.blake2b(repr(sorted(self.vv.items())).encode(), digest_size=4).hexdigest()
        return f"{self.tree.digest_total():016x}-{vv}"

    def _path(self, path: PathLike) -> Path:
        return as_path(
            path,
            depth_max=self.limits.path_depth_max,
            segment_chars_max=self.limits.segment_chars_max,
        )

    # ---------------------------------------------------------- local writes

    def put(
        self, path: PathLike, value: Value, wall_ms: int, changes: list[Change] | None = None
    ) -> Op:
        """Write ``value`` at ``path`` (a dict is a subtree write); return the op."""
        p = self._path(path)
        validate_value(value, self.limits.value)
        if type(value) is dict:
            check_tree_value(
                p,
                value,
                depth_max=self.limits.path_depth_max,
                segment_chars_max=self.limits.segment_chars_max,
            )
        elif not p:
            raise InvalidValue(
                f"the root holds a dict, not a {type(value).__name__}; write under a path like 'app.x'",
                type_name=type(value).__name__,
            )
        return self._write(p, PUT, value, wall_ms, changes)

    def put_many(
        self,
        items: Iterable[tuple[PathLike, Value]],
        wall_ms: int,
        changes: list[Change] | None = None,
    ) -> list[Op]:
        """Several puts, each exactly as :meth:`put` would do it, in one tight loop.

        Stops at the first invalid item (InvalidPath / InvalidValue); the
        items before it are written, and their ops are in ``self.last_ops``.
        """
        ops: list[Op] = []
        self.last_ops = ops
        origin = self.node_id
        vv = self.vv
        clock = self.clock
        write_local = self.tree.write_local
        append = self.log.append
        limits = self.limits
        value_limits = limits.value
        path_of = self._path
        seq = vv.get(origin, 0)
        for path, value in items:
            p = path_of(path)
            tv = type(value)
            if tv is str:
                if len(value) > value_limits.str_chars_max or len(value) > value_limits.value_bytes_max:  # type: ignore[arg-type]
                    validate_value(value, value_limits)
            elif tv is dict:
                validate_value(value, value_limits)
                check_tree_value(
                    p, value, depth_max=limits.path_depth_max, segment_chars_max=limits.segment_chars_max
                )
            else:
                validate_value(value, value_limits)
            if not p and tv is not dict:
                raise InvalidValue(
                    f"the root holds a dict, not a {tv.__name__}; write under a path like 'app.x'",
                    type_name=tv.__name__,
                )
            seq += 1
            hlc = clock.last = max(clock.last + 1, wall_ms << COUNTER_BITS)
            context = write_local(p, PUT, value, (hlc, origin, seq), changes)
            op = _new_op(Op, (origin, seq, hlc, p, PUT, value, context))
            vv[origin] = seq
            append(op)
            ops.append(op)
        return ops

    def remove(self, path: PathLike, wall_ms: int, changes: list[Change] | None = None) -> Op:
        """Remove ``path`` and everything beneath it; return the op."""
        return self._write(self._path(path), REMOVE, None, wall_ms, changes)

    def _write(
        self, path: Path, kind: int, value: Value, wall_ms: int, changes: list[Change] | None
    ) -> Op:
        origin = self.node_id
        seq = self.vv.get(origin, 0) + 1
        clock = self.clock
        hlc = clock.last = max(clock.last + 1, wall_ms << COUNTER_BITS)  # HybridClock.send, inlined
        context = self.tree.write_local(path, kind, value, (hlc, origin, seq), changes)
        op = _new_op(Op, (origin, seq, hlc, path, kind, value, context))
        self.vv[origin] = seq
        self.log.append(op)
        return op

    # --------------------------------------------------------- remote writes

    def receive(self, op: Op, changes: list[Change] | None = None) -> list[Op]:
        """Take an op from elsewhere; return the ops applied as a result.

        That is ``[op]`` plus any buffered ops it unblocked, or ``[]`` if the
        op was a duplicate or has to wait for ops it depends on.
        """
        if op.seq <= self.vv.get(op.origin, 0):
            return []
        block = self._blocker(op)
        if block is not None:
            self._buffer(op, block)
            return []
        self._apply(op, changes)
        applied = [op]
        if self._pending:
            self._wake(applied, changes)
        return applied

    def receive_many(self, ops: Iterable[Op], changes: list[Change] | None = None) -> list[Op]:
        """:meth:`receive` for each op, with the common case (new, in order,
        dependencies met) handled inline."""
        applied: list[Op] = []
        vv = self.vv
        apply = self.tree.apply
        clock = self.clock
        append = self.log.append
        for op in ops:
            origin = op.origin
            have = vv.get(origin, 0)
            if have != op.seq - 1 or self._pending:
                applied.extend(self.receive(op, changes))
                continue
            for node, n in op.context:
                if vv.get(node, 0) < n:
                    applied.extend(self.receive(op, changes))
                    break
            else:
                apply(op, changes)
                vv[origin] = op.seq
                clock.last = max(clock.last, op.hlc)
                append(op)
                applied.append(op)
        return applied

    def _blocker(self, op: Op) -> tuple[str, int] | None:
        """The first dependency of ``op`` not applied yet, as (node, seq needed)."""
        vv = self.vv
        if vv.get(op.origin, 0) < op.seq - 1:
            return (op.origin, op.seq - 1)
        for node, n in op.context:
            if vv.get(node, 0) < n:
                return (node, n)
        return None

    def _buffer(self, op: Op, block: tuple[str, int]) -> None:
        dot = (op.origin, op.seq)
        if dot in self._pending:
            return
        if len(self._pending) >= self.limits.pending_ops_max:
            self.pending_dropped += 1
            return
        self._pending[dot] = op
        heapq.heappush(self._waiting.setdefault(block[0], []), (block[1], op.origin, op.seq))

    def _wake(self, applied: list[Op], changes: list[Change] | None) -> None:
        i = 0
        while i < len(applied):
            origin = applied[i].origin
            i += 1
            heap = self._waiting.get(origin)
            if not heap:
                continue
            while heap and heap[0][0] <= self.vv.get(origin, 0):
                _, o, s = heapq.heappop(heap)
                op = self._pending.pop((o, s), None)
                if op is None or s <= self.vv.get(o, 0):
                    continue
                block = self._blocker(op)
                if block is not None:
                    self._pending[(o, s)] = op
                    heapq.heappush(self._waiting.setdefault(block[0], []), (block[1], o, s))
                    continue
                self._apply(op, changes)
                applied.append(op)
            if not heap:
                self._waiting.pop(origin, None)

    def _apply(self, op: Op, changes: list[Change] | None) -> None:
        self.tree.apply(op, changes)
        self.vv[op.origin] = op.seq
        clock = self.clock
        clock.last = max(clock.last, op.hlc)
        self.log.append(op)

    def drop_pending(self) -> int:
        """Empty the causal buffer (anti-entropy will bring those ops again)."""
        n = len(self._pending)
        self._pending.clear()
        self._waiting.clear()
        return n

    # -------------------------------------------------------------- snapshots

    def snapshot(self) -> Snapshot:
        """The whole state as plain data (registers are immutable and shared)."""
        entries = tuple(self.tree.iter_registers())
        if self.tree.typed_paths:  # typed values are live objects: a snapshot holds their frozen form
            entries = tuple(
                (p, tuple(map(freeze, vs))) if any(map(has_box, vs)) else (p, vs)
                for p, vs in entries
            )
        return Snapshot(dict(self.vv), self.clock.last, entries)

    def install_snapshot(self, snap: Snapshot, changes: list[Change] | None = None) -> None:
        """Join a snapshot from another replica into this one.

        A version survives the join if both sides hold it, or if one side holds
        it and the other has not seen its dot. Sound because both sides are
        causally closed: a side that saw a dot and lacks its version had an op
        that overwrote it. A typed value both sides hold is the snapshot's,
        with this replica's logged edits of it applied again (idempotent).
        """
        snap = _thawed(snap)
        if self.vv or self.tree.leaf_count or self._pending:
            self._join_registers(snap, changes)
        else:  # a new replica (a node joining): everything in the snapshot is new here
            self.tree.add_registers(snap.entries, changes)
        svv = snap.vv
        lvv = self.vv
        for origin, n in svv.items():
            if lvv.get(origin, 0) < n:
                lvv[origin] = n
                self.log.reset_origin(origin, n)
        self.clock.observe(snap.hlc)
        if self._pending:
            pending = list(self._pending.values())
            self.drop_pending()
            for op in sorted(pending, key=lambda o: o.hlc):
                self.receive(op, changes)

    def _join_registers(self, snap: Snapshot, changes: list[Change] | None) -> None:
        """The registers of the join of this tree and ``snap`` (see :meth:`install_snapshot`)."""
        svv = snap.vv
        lvv_get = self.vv.get
        local: dict[Path, tuple[Version, ...]] = dict(self.tree.iter_registers())
        updates: list[tuple[Path, tuple[Version, ...]]] = []
        fresh: list[tuple[Path, tuple[Version, ...]]] = []
        for path, theirs in snap.entries:
            versions = local.pop(path, None)
            if versions is None:  # a path only the snapshot holds
                if len(theirs) == 1:
                    v = theirs[0]
                    if lvv_get(v.origin, 0) < v.seq:
                        fresh.append((path, theirs))
                    continue
                added = [v for v in theirs if lvv_get(v.origin, 0) < v.seq]
                if added:
                    fresh.append((path, tuple(sorted(added, key=_vkey))))
                continue
            their_dots = {(v.origin, v.seq) for v in theirs}
            kept = [v for v in versions if (v.origin, v.seq) in their_dots or svv.get(v.origin, 0) < v.seq]
            if any(map(has_box, kept)):
                merged = self._merge_typed(path, kept, theirs)
                if merged is not None:
                    updates.append((path, merged))
                    continue
            mine = {(v.origin, v.seq) for v in versions}
            added = [v for v in theirs if (v.origin, v.seq) not in mine and lvv_get(v.origin, 0) < v.seq]
            if len(kept) != len(versions) or added:
                updates.append((path, tuple(sorted((*kept, *added), key=_vkey))))
        for path, versions in local.items():  # paths the snapshot lacks: keep what it has not seen
            kept = [v for v in versions if svv.get(v.origin, 0) < v.seq]
            if len(kept) != len(versions):
                updates.append((path, tuple(kept)))
        for path, versions in updates:
            self.tree.replace_register(path, versions, changes)
        self.tree.add_registers(fresh, changes)
        self._note_typed(fresh)
        self._note_typed(updates)

    def _merge_typed(
        self, path: Path, kept: list[Version], theirs: tuple[Version, ...]
    ) -> tuple[Version, ...] | None:
        """``kept`` with each typed value the snapshot also holds taken from it, plus the logged local edits."""
        by_dot = {(v.origin, v.seq): v for v in theirs}
        out: list[Version] = []
        changed = False
        for v in kept:
            other = by_dot.get((v.origin, v.seq))
            box = box_of(other.value) if other is not None and has_box(v) else None
            if other is not None and box is not None:
                for op in self.log:
                    if op.kind == TYPED and op.path == path and body_of(op).target == (v.origin, v.seq):
                        try:
                            box.obj.apply(body_of(op).op)  # type: ignore[arg-type]
                            box.frozen = None
                        except InvalidOperation:
                            continue
                out.append(other)
                changed = True
            else:
                out.append(v)
        mine = {(v.origin, v.seq) for v in kept}
        lvv_get = self.vv.get
        added = [v for v in theirs if (v.origin, v.seq) not in mine and lvv_get(v.origin, 0) < v.seq]
        if not changed and not added:
            return None
        return tuple(sorted((*out, *added), key=_vkey))

    def _note_typed(self, items: Iterable[tuple[Path, tuple[Version, ...]]]) -> None:
        typed = self.tree.typed_paths
        for path, versions in items:
            if any(map(has_box, versions)):
                typed.add(path)

    @classmethod
    def restore(
        cls,
        node_id: str,
        snapshot: Snapshot | None,
        ops: Iterable[Op],
        *,
        strategies: Strategies | None = None,
        max_drift_ms: int = 60_000,
        limits: ReplicaLimits = ReplicaLimits(),
        hlc: int = 0,
    ) -> Replica:
        """Rebuild a replica from what was made durable: a snapshot plus later ops."""
        replica = cls(node_id, strategies=strategies, max_drift_ms=max_drift_ms, limits=limits)
        if snapshot is not None:
            snapshot = _thawed(snapshot)
            for path, versions in snapshot.entries:
                replica.tree.set_register(path, versions)
            replica._note_typed(snapshot.entries)
            replica.vv.update({k: v for k, v in snapshot.vv.items() if v > 0})
            for origin, n in replica.vv.items():
                replica.log.reset_origin(origin, n)
            replica.clock.observe(snapshot.hlc)
        for op in ops:
            replica.receive(op)
        replica.clock.observe(hlc)
        return replica

    def stats(self) -> dict[str, int]:
        return {
            "leaves": self.tree.leaf_count,
            "log_ops": len(self.log),
            "pending_ops": len(self._pending),
            "pending_dropped": self.pending_dropped,
            "seq": self.seq,
        }


def _vkey(v: Version) -> tuple[int, str, int]:
    return (v.hlc, v.origin, v.seq)


def _thawed(snap: Snapshot) -> Snapshot:
    """``snap`` with its frozen typed values as live boxes (the same object when it has none)."""
    if not any(is_frozen(v.value) for _, vs in snap.entries for v in vs):
        return snap
    entries = tuple((p, tuple(map(thaw, vs))) for p, vs in snap.entries)
    return Snapshot(snap.vv, snap.hlc, entries)


__all__ = ["ABSENT", "Replica", "ReplicaLimits", "Snapshot"]
