"""What every collaborative type shares: applied dots, causal waiting, deltas.

A typed op names its own dot and the dots it depends on (the elements it is
anchored to, the adds a remove observed). :class:`Delivery` keeps the dots
applied so far (a :class:`CausalContext`, so duplicates are no-ops) and holds,
in a bounded buffer, the ops whose dependencies have not arrived yet; an op is
applied once everything it names is, so ops may arrive in any order, twice,
or through a third replica.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Generic, Self, TypeAlias, TypeVar

import attrs

from statesync.core._context import CausalContext, Dot
from statesync.errors import InvalidOperation, InvalidValue

DeltaStep: TypeAlias = dict[str, object]
"""One step of a Yjs-style delta: ``{"retain": n}``, ``{"insert": s}`` or ``{"delete": n}``."""
Delta: TypeAlias = list[DeltaStep]
"""A sequence change as a pass over the old value, positions as on this replica."""

PENDING_OPS_MAX = 100_000
"""Default bound on ops held while waiting for the dots they depend on."""

Char: TypeAlias = tuple[str, int, int]
"""One sequence element's id: ``(origin, seq, offset)`` within the op that inserted it."""


@attrs.frozen
class DottedOp:
    """What every typed op record starts with: the dot ``(origin, seq)`` its caller gave it."""

    origin: str
    seq: int

    @property
    def dot(self) -> Dot:
        return (self.origin, self.seq)


T = TypeVar("T", bound=DottedOp)
R = TypeVar("R")


def bad(type_name: str, msg: str, where: str = "") -> InvalidOperation:
    """The one-line error of a typed op: ``"<type>: <msg>"``."""
    return InvalidOperation(f"{type_name}: {msg}", type_name=type_name, where=where)


def char_from_plain(x: object, what: str, type_name: str) -> Char:
    """``x`` as an element id ``(origin, seq >= 1, offset >= 0)``, or InvalidOperation."""
    if (
        isinstance(x, list | tuple)
        and len(x) == 3
        and type(x[0]) is str
        and x[0]
        and type(x[1]) is int
        and x[1] >= 1
        and type(x[2]) is int
        and x[2] >= 0
    ):
        return (x[0], x[1], x[2])
    raise bad(type_name, f"{what} must be (origin, seq >= 1, offset >= 0), got {x!r:.60}", what)


def opt_char_from_plain(x: object, what: str, type_name: str) -> Char | None:
    return None if x is None else char_from_plain(x, what, type_name)


def char_plain(c: Char | None) -> list[object] | None:
    return None if c is None else [c[0], c[1], c[2]]


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

    def deliver(
        self,
        op: T,
        deps: Callable[[T], list[Dot]],
        apply_now: Callable[[T], R],
        type_name: str,
    ) -> list[R]:
        """Apply ``op`` once its deps are applied, then whatever it unblocks; hold it otherwise.

        Returns ``apply_now``'s results in the order applied: ``[]`` for a
        duplicate or a held op.
        """
        if self.seen(op.dot):
            return []
        out: list[R] = []
        stack = [op]
        while stack:
            o = stack.pop()
            if o.dot in self.applied:
                continue
            need = deps(o)
            if o.dot in need:
                raise bad(type_name, f"op {o.dot} depends on itself", f"op {o.dot}")
            miss = self.first_missing(need)
            if miss is not None:
                self.hold(o.dot, o, miss, type_name)
                continue
            out.append(apply_now(o))
            self.applied.add(o.dot)
            stack.extend(p for _, p in self.release(o.dot))
        return out

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
        raise bad(type_name, f"snapshot: malformed applied context ({exc})") from exc
    return CausalContext(vv, dots)


class Buffered(Generic[T]):
    """Base of the types whose ops wait for their dependencies: applied dots, held ops, snapshots of both."""

    TYPE_NAME: str = ""
    _d: Delivery[T]

    @property
    def applied(self) -> Mapping[str, int]:
        """The version vector of ops applied here (dots seen out of order aside)."""
        return self._d.applied.vv

    @property
    def pending_count(self) -> int:
        """How many ops wait for a dot they depend on."""
        return self._d.pending_count

    def compact(self, stable: Mapping[str, int]) -> int:
        """Forget what no op can need below ``stable``; returns how much. Here: nothing (no tombstones)."""
        del stable
        return 0

    def settle(self, stable: Mapping[str, int]) -> None:
        """Count every dot below ``stable`` as applied (the replica has applied them all, here or on other paths).

        Keeps the applied context a plain vector when the origins' other ops
        went to other paths, instead of a cloud of the dots this type did get.
        """
        self._d.applied.merge(CausalContext({o: n for o, n in stable.items() if n > 0}))

    def _fresh(self, dot: Dot) -> None:
        check_dot(dot, f"{self.TYPE_NAME} op")
        if dot in self._d.applied:
            raise bad(self.TYPE_NAME, f"dot {dot} is already used here; give each op a new dot", f"op {dot}")

    def _causal_plain(self) -> dict[str, object]:
        return {
            "applied": context_to_plain(self._d.applied),
            "pending": [op.to_plain() for op in self._d.pending()],  # type: ignore[attr-defined]
        }

    def _load(self, data: Mapping[str, object]) -> list[T]:
        """Restore this (new, empty) object from its snapshot; return the held ops to apply."""
        raise NotImplementedError

    @classmethod
    def from_snapshot(cls, data: Mapping[str, object], **bounds: int) -> Self:
        """An object from its ``to_snapshot`` form (``bounds``: the constructor's); InvalidOperation when malformed."""
        obj = cls(**bounds)
        name = cls.TYPE_NAME
        try:
            check_header(data, name)
            pending = obj._load(data)
        except (KeyError, TypeError, ValueError, IndexError, InvalidValue) as exc:
            raise bad("set" if name == "awset" else name, f"malformed snapshot ({exc})") from exc
        for op in pending:
            obj.apply(op)  # type: ignore[attr-defined]
        return obj

    def _load_causal(self, data: Mapping[str, object], parse: Callable[[object], T]) -> list[T]:
        """Restore the applied context; return the held ops for the caller to apply (KeyError etc. when malformed)."""
        self._d.applied = context_from_plain(data["applied"], self.TYPE_NAME)
        return [parse(p) for p in data["pending"]]  # type: ignore[attr-defined]


def check_header(data: Mapping[str, object], type_name: str) -> None:
    if data.get("type") != type_name or data.get("v") != 1:
        raise ValueError(f"not a v1 {type_name} snapshot: {data.get('type')!r} v{data.get('v')!r}")
