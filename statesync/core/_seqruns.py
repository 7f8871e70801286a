"""The sequence engine's snapshot form: plain columns of runs, and rebuilding from them.

A snapshot stores the live content once (the caller's) and, per run of
adjacent items, the author, the state and the id segments; causally stable
runs carry no origins. :func:`rebuilt` passes an engine through that form,
which is how compaction joins stable runs in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic

from statesync.core._context import Dot
from statesync.core._seq import GONE, C, Sequence
from statesync.core._typebase import Char


class Slicer(Generic[C]):
    """Hands out consecutive slices of ``whole``: the live runs' content when loading."""

    def __init__(self, whole: C) -> None:
        self.whole: C = whole
        self.at = 0

    def __call__(self, n: int) -> C:
        self.at += n
        return self.whole[self.at - n : self.at]

    def check_done(self) -> None:
        if self.at != len(self.whole):
            raise ValueError(f"content left over: {len(self.whole) - self.at} elements")


def rebuilt(seq: Sequence[C]) -> Sequence[C]:
    """A copy with adjacent stable items of one author joined into one (what a snapshot loads).

    After ``Sequence.compact`` at a vector covering every op, the replay of
    automerge-paper holds 11,774 items; rebuilt, 7,291. Ids, order and
    origins are unchanged.
    """
    origins: dict[str, int] = {}
    cols = dump_runs(seq, origins)
    parts = list(seq.live())
    whole: C = "".join(parts) if isinstance(seq.empty, str) else [x for part in parts for x in part]
    new: Sequence[C] = Sequence(seq.empty)
    load_runs(new, cols, list(origins), Slicer(whole))
    return new


def dump_runs(seq: Sequence[C], origins: dict[str, int]) -> dict[str, list[int]]:
    """The engine's items as plain columns (content left to the caller, live runs in order).

    ``origins`` maps author names to small ints; it is filled as names appear.
    Columns: ``runs`` (origin, flags, segment count) per run, flags bit 0 =
    deleted, bit 1 = origins follow; ``segs`` (seq delta, offset, count) per
    segment, or (seq delta, -1, r) for r one-element ops of consecutive
    seqs (a typing run); ``orig`` (left origin, seq, offset, right origin, seq, offset;
    origin -1 = none) per run with origins; ``dels`` (origin, seq) of the op
    that deleted each unstable deleted run.
    """

    def oi(name: str) -> int:
        i = origins.get(name)
        if i is None:
            i = origins[name] = len(origins)
        return i

    runs: list[int] = []
    segs: list[int] = []
    orig: list[int] = []
    dels: list[int] = []
    last_seq = 0
    for first, group in seq.runs():
        flat: list[list[int]] = []
        for it in group:
            for i, s in enumerate(it.seqs):
                off, n = it.offs[i], it.seg_len(i)
                if flat and flat[-1][0] == s and flat[-1][1] + flat[-1][2] == off:
                    flat[-1][2] += n
                else:
                    flat.append([s, off, n])
        stable = first.right is GONE
        deleted = first.deleted_by is not None
        at = len(segs)
        j = 0
        while j < len(flat):
            s, off, n = flat[j]
            r = 1
            if off == 0 and n == 1:  # a typing run: one-char ops with consecutive seqs
                while j + r < len(flat) and flat[j + r] == [s + r, 0, 1]:
                    r += 1
            if r > 1:
                segs += (s - last_seq, -1, r)
                last_seq = s + r - 1
            else:
                segs += (s - last_seq, off, n)
                last_seq = s
            j += r
        runs += (oi(first.origin), int(deleted) | (0 if stable else 2), (len(segs) - at) // 3)
        if not stable:
            for c in (first.left, first.right):
                if c is None:
                    orig += (-1, 0, 0)
                else:
                    orig += (oi(c[0]), c[1], c[2])
            if deleted:
                d = first.deleted_by
                assert d is not None
                dels += (oi(d[0]), d[1])
    return {"runs": runs, "segs": segs, "orig": orig, "dels": dels}


def load_runs(
    seq: Sequence[C], cols: Mapping[str, list[int]], origins: list[str], take: Callable[[int], C]
) -> None:
    """Rebuild ``seq`` (empty) from :func:`dump_runs` columns; ``take(n)`` gives the next live run's content.

    Raises ValueError or IndexError on malformed columns (the caller turns them into its error).
    """
    runs, segs, orig, dels = cols["runs"], cols["segs"], cols["orig"], cols["dels"]
    if len(runs) % 3 or len(segs) % 3 or len(orig) % 6 or len(dels) % 2:
        raise ValueError("column lengths are not whole records")
    si = oi = di = 0
    last_seq = 0
    for r in range(0, len(runs), 3):
        origin = origins[runs[r]]
        flags, nseg = runs[r + 1], runs[r + 2]
        if nseg < 1:
            raise ValueError("a run without segments")
        parts: list[tuple[int, int, int]] = []
        for _ in range(nseg):
            last_seq += segs[si]
            off, n = segs[si + 1], segs[si + 2]
            if last_seq < 1 or off < -1 or n < 1 or (parts and last_seq <= parts[-1][0]):
                raise ValueError(f"bad segment ({last_seq}, {off}, {n})")
            if off == -1:
                parts += ((last_seq + r, 0, 1) for r in range(n))
                last_seq += n - 1
            else:
                parts.append((last_seq, off, n))
            si += 3
        left: Char | None = GONE
        right: Char | None = GONE
        deleted_by: Dot | None = None
        if flags & 2:
            lo, ls, loff, ro, rs, roff = orig[oi : oi + 6]
            oi += 6
            left = None if lo < 0 else (origins[lo], ls, loff)
            right = None if ro < 0 else (origins[ro], rs, roff)
        if flags & 1:
            if flags & 2:
                deleted_by = (origins[dels[di]], dels[di + 1])
                di += 2
            else:
                deleted_by = GONE[:2]  # stable: who deleted it no longer matters
            content = seq.empty
        else:
            total = sum(n for _, _, n in parts)
            content = take(total)
            if len(content) != total:
                raise ValueError("a run's content does not match its length")
        seq.load_item(origin, parts, content, left, right, deleted_by)
    if si != len(segs) or oi != len(orig) or di != len(dels):
        raise ValueError("columns left over")
