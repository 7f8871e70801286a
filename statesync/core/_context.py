"""Dots, version vectors and causal contexts.

A *dot* ``(node_id, seq)`` names one write. A *version vector* ``{node_id: n}``
stands for the dots ``(node_id, 1..n)``. A *causal context* is a version vector
plus the few dots seen out of order (the "dot cloud"); adding a dot that
extends the vector contiguously folds it, and any cloud dots it unblocks, into
the vector.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias

Dot: TypeAlias = tuple[str, int]
VersionVector: TypeAlias = dict[str, int]
Context: TypeAlias = tuple[tuple[str, int], ...]
"""An op's compact context: sorted ``(node_id, n)`` pairs, a version vector in tuple form."""


class Ordering(enum.Enum):
    """How two causal histories relate."""

    BEFORE = "before"
    AFTER = "after"
    EQUAL = "equal"
    CONCURRENT = "concurrent"


def vv_covers(vv: Mapping[str, int], dot: Dot) -> bool:
    return vv.get(dot[0], 0) >= dot[1]


def vv_merge(into: VersionVector, other: Mapping[str, int]) -> None:
    """Pointwise maximum, in place."""
    for node, n in other.items():
        if into.get(node, 0) < n:
            into[node] = n


def vv_leq(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True when every dot of ``a`` is in ``b``."""
    return all(b.get(node, 0) >= n for node, n in a.items() if n > 0)


def vv_compare(a: Mapping[str, int], b: Mapping[str, int]) -> Ordering:
    return _ordering(vv_leq(a, b), vv_leq(b, a))


def _ordering(le: bool, ge: bool) -> Ordering:
    """How ``a`` relates to ``b`` given whether ``a <= b`` and whether ``b <= a``."""
    if le and ge:
        return Ordering.EQUAL
    if le:
        return Ordering.BEFORE
    if ge:
        return Ordering.AFTER
    return Ordering.CONCURRENT


def context_from_dots(dots: Iterable[Dot]) -> Context:
    """The compact context covering ``dots``: per node, the highest seq among them.

    This covers more than ``dots`` (every lower seq of the same node), which is
    sound for a replica whose applied dots are a per-node prefix: all of those
    were seen by the author.
    """
    best: dict[str, int] = {}
    for node, seq in dots:
        if best.get(node, 0) < seq:
            best[node] = seq
    return tuple(sorted(best.items()))


class CausalContext:
    """A version vector plus dots seen out of order, kept compact."""

    __slots__ = ("cloud", "vv")

    def __init__(
        self, vv: Mapping[str, int] | None = None, cloud: Iterable[Dot] = ()
    ) -> None:
        self.vv: VersionVector = {k: v for k, v in (vv or {}).items() if v > 0}
        self.cloud: set[Dot] = set()
        for dot in cloud:
            self.add(dot)

    def __repr__(self) -> str:
        return f"CausalContext({self.vv!r}, cloud={sorted(self.cloud)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalContext):
            return NotImplemented
        return self.vv == other.vv and self.cloud == other.cloud

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> CausalContext:
        new = CausalContext.__new__(CausalContext)
        new.vv = dict(self.vv)
        new.cloud = set(self.cloud)
        return new

    def covers(self, dot: Dot) -> bool:
        return self.vv.get(dot[0], 0) >= dot[1] or dot in self.cloud

    __contains__ = covers

    def add(self, dot: Dot) -> None:
        """Record one dot; fold it and what it unblocks into the vector."""
        node, seq = dot
        n = self.vv.get(node, 0)
        if seq <= n:
            return
        if seq == n + 1:
            n = seq
            cloud = self.cloud
            while (node, n + 1) in cloud:
                n += 1
                cloud.discard((node, n))
            self.vv[node] = n
        else:
            self.cloud.add(dot)

    def merge(self, other: CausalContext) -> None:
        """Union with ``other``, in place, then compact."""
        vv_merge(self.vv, other.vv)
        cloud = self.cloud | other.cloud
        self.cloud = set()
        self.compact_with(cloud)

    def compact_with(self, cloud: Iterable[Dot]) -> None:
        for dot in sorted(cloud):
            self.add(dot)

    def compact(self) -> None:
        """Drop cloud dots the vector covers and fold contiguous ones into it."""
        cloud = self.cloud
        self.cloud = set()
        self.compact_with(cloud)

    def dots(self) -> Iterator[Dot]:
        for node, n in self.vv.items():
            for seq in range(1, n + 1):
                yield (node, seq)
        yield from self.cloud

    def leq(self, other: CausalContext) -> bool:
        """True when every dot here is also in ``other``."""
        if not all(other.covers((node, seq)) for node, seq in self.cloud):
            return False
        for node, n in self.vv.items():
            m = other.vv.get(node, 0)
            if m >= n:
                continue
            if any((node, s) not in other.cloud for s in range(m + 1, n + 1)):
                return False
        return True

    def compare(self, other: CausalContext) -> Ordering:
        return _ordering(self.leq(other), other.leq(self))

    def to_plain(self) -> tuple[dict[str, int], list[list[object]]]:
        return dict(self.vv), [[node, seq] for node, seq in sorted(self.cloud)]

    @classmethod
    def from_plain(cls, vv: Mapping[str, int], cloud: Iterable[tuple[str, int] | list[object]]) -> CausalContext:
        return cls(vv, ((str(d[0]), int(d[1])) for d in cloud))  # type: ignore[call-overload]
