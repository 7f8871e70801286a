"""The op log: every applied op, by origin, until it is no longer needed.

A replica applies each origin's ops in seq order (causal delivery), so the log
of one origin is always a contiguous run ``(low, high]`` of seqs. Each origin's
run is a list with a base offset: finding seq ``s`` is one index, and "the ops
a causal context lacks" costs time proportional to what is missing plus the
number of origins, never to the size of the log or of the tree. (An index
structure such as a sorted map would add a log factor and memory for nothing:
the run is dense.)

Ops leave the log from the front of a run: when every known peer has
acknowledged them (causal stability) or when the log exceeds its length bound
(then the oldest ops by hlc go first, and a peer that still lacked them gets a
snapshot instead).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping

from statesync.core._context import CausalContext
from statesync.core._op import Op


class _Run:
    """The ops of one origin with seqs ``low+1 .. low+len``."""

    __slots__ = ("high", "low", "ops", "start")

    def __init__(self, low: int) -> None:
        self.low = low  # seq of the last op no longer held (0: nothing dropped)
        self.high = low  # seq of the last op held
        self.ops: list[Op] = []
        self.start = 0  # index of op low+1 in ``ops`` (the front is trimmed lazily)

    def __len__(self) -> int:
        return self.high - self.low

    def drop_through(self, seq: int) -> int:
        """Forget ops up to and including ``seq``; return how many left."""
        n = min(seq, self.high) - self.low
        if n <= 0:
            return 0
        self.start += n
        self.low += n
        if self.start > 64 and self.start * 2 > len(self.ops):
            del self.ops[: self.start]
            self.start = 0
        return n

    def since(self, seq: int) -> list[Op]:
        """Ops with seq greater than ``seq`` (which must be >= low)."""
        return self.ops[self.start + (seq - self.low) :]


class OpLog:
    """Applied ops by origin, bounded in length."""

    __slots__ = ("_len", "_runs", "ops_max")

    def __init__(self, ops_max: int = 1_000_000) -> None:
        self.ops_max = ops_max
        self._runs: dict[str, _Run] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, op: Op) -> None:
        """Record an applied op; ops of one origin arrive in seq order."""
        run = self._runs.get(op.origin)
        seq = op.seq
        if run is None:
            run = self._runs[op.origin] = _Run(seq - 1)
        elif seq != run.high + 1:
            # A gap (the state jumped through a snapshot): restart the run here.
            self._len -= len(run)
            run = self._runs[op.origin] = _Run(seq - 1)
        run.ops.append(op)
        run.high = seq
        self._len += 1
        if self._len > self.ops_max:
            self.trim_to(self.ops_max)

    def low(self, origin: str) -> int:
        """The highest seq of ``origin`` that the log no longer holds (0 if none dropped)."""
        run = self._runs.get(origin)
        return run.low if run is not None else 0

    def high(self, origin: str) -> int:
        run = self._runs.get(origin)
        return run.high if run is not None else 0

    def lows(self) -> dict[str, int]:
        return {origin: run.low for origin, run in self._runs.items()}

    def get(self, origin: str, seq: int) -> Op | None:
        run = self._runs.get(origin)
        if run is None or not run.low < seq <= run.high:
            return None
        return run.ops[run.start + seq - run.low - 1]

    def reset_origin(self, origin: str, low: int) -> None:
        """Forget ``origin``'s run and start it after ``low`` (after a snapshot install)."""
        run = self._runs.get(origin)
        if run is not None:
            self._len -= len(run)
        self._runs[origin] = _Run(low)

    def lacking(self, ctx: CausalContext) -> list[str]:
        """Origins whose ops ``ctx`` lacks but the log no longer holds."""
        vv = ctx.vv
        return [o for o, run in self._runs.items() if vv.get(o, 0) < run.low]

    def missing(
        self,
        ctx: CausalContext,
        *,
        bytes_max: int,
        size: Callable[[Op], int],
        ops_max: int = 100_000,
    ) -> tuple[list[Op], bool]:
        """Ops that ``ctx`` lacks, in hlc order (a causal order), up to the bounds.

        Returns ``(ops, more)``. Call :meth:`lacking` first: for an origin
        whose run the log no longer holds from ``ctx``'s position, only the
        held part is returned. The cost is proportional to the number of ops
        returned plus the number of origins.
        """
        vv = ctx.vv
        cloud = ctx.cloud
        runs: list[list[Op]] = []
        for origin, run in self._runs.items():
            have = max(vv.get(origin, 0), run.low)
            if have < run.high:
                runs.append(run.since(have))
        if not runs:
            return [], False
        merged: Iterator[Op] = runs[0].__iter__() if len(runs) == 1 else heapq.merge(
            *runs, key=_hlc_key
        )
        out: list[Op] = []
        budget = bytes_max
        for op in merged:
            if cloud and (op.origin, op.seq) in cloud:
                continue
            cost = size(op)
            if out and (cost > budget or len(out) >= ops_max):
                return out, True
            out.append(op)
            budget -= cost
        return out, False

    def compact(self, stable: Mapping[str, int]) -> int:
        """Drop ops every known peer has (``stable``: per origin, the acked minimum)."""
        dropped = 0
        for origin, seq in stable.items():
            run = self._runs.get(origin)
            if run is not None:
                dropped += run.drop_through(seq)
        self._len -= dropped
        return dropped

    def trim_to(self, length: int) -> int:
        """Drop the oldest ops (by hlc) until at most ``length`` remain."""
        excess = self._len - length
        if excess <= 0:
            return 0
        # Drop a little more than needed so that appends do not trim one at a time.
        excess = min(self._len, excess + max(1, length // 64))
        heads = [(run.ops[run.start].hlc, origin) for origin, run in self._runs.items() if len(run)]
        heapq.heapify(heads)
        dropped = 0
        while dropped < excess and heads:
            _, origin = heapq.heappop(heads)
            run = self._runs[origin]
            run.drop_through(run.low + 1)
            dropped += 1
            if len(run):
                heapq.heappush(heads, (run.ops[run.start].hlc, origin))
        self._len -= dropped
        return dropped

    def __iter__(self) -> Iterator[Op]:
        for run in self._runs.values():
            yield from run.ops[run.start :]


def _hlc_key(op: Op) -> tuple[int, str, int]:
    return (op.hlc, op.origin, op.seq)
