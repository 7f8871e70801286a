"""What every collaborative type shares: applied dots, causal waiting, deltas.

A typed op names its own dot and the dots it depends on (the elements it is
anchored to, the adds a remove observed). :class:`Delivery` keeps the dots
applied so far (a :class:`CausalContext`, so duplicates are no-ops) and holds,
in a bounded buffer, the ops whose dependencies have not arrived yet; an op is
applied once everything it names is, so ops may arrive in any order, twice,
or through a third replica.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeAlias, TypeVar

from statesync.core._context import CausalContext, Dot
from statesync.core._errors import InvalidOperation

DeltaStep: TypeAlias = dict[str, object]
"""One step of a Yjs-style delta: ``{"retain": n}``, ``{"insert": s}`` or ``{"delete": n}``."""
Delta: TypeAlias = list[DeltaStep]
"""A sequence change as a pass over the old value, positions as on this replica."""

PENDING_OPS_MAX = 100_000
"""Default bound on ops held while waiting for the dots they depend on."""

T = TypeVar("T")


def check_dot(dot: object, what: str) -> Dot:
    """``dot`` as a ``(origin, seq)`` pair, or InvalidOperation naming ``what``."""
    if (
        not isinstance(dot, tuple)
        or len(dot) != 2
        or type(dot[0]) is not str
        or not dot[0]
        or type(dot[1]) is not int
        or dot[1] < 1
    ):
        raise InvalidOperation(
            f"{what}: a dot is (origin: non-empty str, seq: int >= 1), got {dot!r}", where=what
        )
    return dot


class Delivery(Generic[T]):
    """Applied dots plus a bounded buffer of ops waiting for missing dots."""

    __slots__ = ("_held", "_waiting", "applied", "pending_ops_max")

    def __init__(self, pending_ops_max: int = PENDING_OPS_MAX) -> None:
        self.applied = CausalContext()
        self._waiting: dict[Dot, list[tuple[Dot, T]]] = {}
        self._held: set[Dot] = set()
        self.pending_ops_max = pending_ops_max

    def seen(self, dot: Dot) -> bool:
        """True when the op named ``dot`` is applied or already held."""
        return dot in self.applied or dot in self._held

    def first_missing(self, deps: Iterable[Dot]) -> Dot | None:
        applied = self.applied
        for d in deps:
            if d not in applied:
                return d
        return None

    def hold(self, dot: Dot, op: T, missing: Dot, type_name: str) -> None:
        """Keep ``op`` until ``missing`` is applied; bounded by ``pending_ops_max``."""
        if dot in self._held:
            return
        if len(self._held) >= self.pending_ops_max:
            raise InvalidOperation(
                f"{type_name}: {len(self._held)} ops already wait for missing dots "
                f"(bound {self.pending_ops_max}); op {dot} waits for {missing}: deliver the gap first",
                type_name=type_name,
                where=f"op {dot}",
            )
        self._held.add(dot)
        self._waiting.setdefault(missing, []).append((dot, op))

    def release(self, dot: Dot) -> list[tuple[Dot, T]]:
        """The ops that waited for ``dot`` (no longer held: re-check them)."""
        got = self._waiting.pop(dot, None)
        if not got:
            return []
        for d, _ in got:
            self._held.discard(d)
        return got

    def pending(self) -> list[T]:
        """Every held op, in a deterministic order (by dot)."""
        items = [p for ws in self._waiting.values() for p in ws]
        items.sort(key=lambda p: p[0])
        return [op for _, op in items]

    @property
    def pending_count(self) -> int:
        return len(self._held)


def stable_covers(stable: Mapping[str, int], dot: Dot) -> bool:
    return stable.get(dot[0], 0) >= dot[1]


def context_to_plain(ctx: CausalContext) -> list[object]:
    vv, cloud = ctx.to_plain()
    return [sorted([k, v] for k, v in vv.items()), cloud]


def context_from_plain(data: object, type_name: str) -> CausalContext:
    try:
        if not isinstance(data, list | tuple) or len(data) != 2:
            raise TypeError("not a [vv, cloud] pair")
        vv_items: list[list[object]] = list(data[0])
        cloud: list[list[object]] = list(data[1])
        vv = {str(k): int(v) for k, v in vv_items}  # type: ignore[call-overload]
        dots = [(str(o), int(s)) for o, s in cloud]  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise InvalidOperation(
            f"{type_name} snapshot: malformed applied context ({exc})", type_name=type_name
        ) from None
    return CausalContext(vv, dots)
