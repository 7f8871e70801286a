"""The add-wins set of JSON scalars: add and remove, observed-remove by dots.

Each present element keeps the dots of the adds that put it there. An op
(add or remove) carries the dots its author had observed for the element and
drops them; an add also contributes its own dot. A remove therefore removes
only the adds it saw: an add concurrent with it survives (add wins). An op
waits until the adds it observed are applied, so a late add never resurrects
what a remove already dropped. Removed elements leave no tombstones: the
applied causal context covers their dots.

Elements are None, bool, int (64-bit), finite float and str. ``1``, ``1.0``
and ``True`` are three different elements; ``-0.0`` is stored as ``0.0``.
The value is a list sorted by this total order: None < False < True <
numbers (by numeric value, an int before an equal float) < strings (by code
point).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final, TypeAlias

import attrs

from statesync.core._context import Dot
from statesync.core._typebase import (
    PENDING_OPS_MAX,
    Buffered,
    Delivery,
    DottedOp,
    bad,
    check_dot,
)
from statesync.errors import InvalidOperation

Scalar: TypeAlias = bool | int | float | str | None
ScalarKey: TypeAlias = tuple[int, int | float | str, int]

SCALAR_STR_CHARS_MAX: Final = 1 << 16
SET_ELEMENTS_MAX: Final = 1 << 20
"""Default bound on a set's size."""
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _bad(msg: str, where: str = "") -> InvalidOperation:
    return bad("set", msg, where)


def scalar_key(x: object) -> ScalarKey:
    """The element's identity and sort key; InvalidOperation for a non-scalar."""
    t = type(x)
    if x is None:
        return (0, 0, 0)
    if t is bool:
        return (1, int(x), 1)  # type: ignore[call-overload]
    if t is int:
        if not _INT_MIN <= x <= _INT_MAX:  # type: ignore[operator]
            raise _bad(f"int {x} is outside the 64-bit range", "element")
        return (2, x, 2)  # type: ignore[return-value]
    if t is float:
        if not math.isfinite(x):  # type: ignore[arg-type]
            raise _bad(f"float {x} is not finite", "element")
        return (2, x + 0.0, 3)  # type: ignore[operator]
    if t is str:
        if len(x) > SCALAR_STR_CHARS_MAX:  # type: ignore[arg-type]
            raise _bad(f"a str element of {len(x)} chars exceeds {SCALAR_STR_CHARS_MAX}", "element")  # type: ignore[arg-type]
        return (3, x, 4)  # type: ignore[return-value]
    raise _bad(f"elements are JSON scalars (None, bool, int, float, str), not {t.__name__}", "element")


def _canonical(x: Scalar) -> Scalar:
    return 0.0 if type(x) is float and x == 0 else x


@attrs.frozen
class _SetOp(DottedOp):
    element: Scalar
    observed: tuple[Dot, ...]

    def to_plain(self) -> list[object]:
        kind = 0 if type(self) is SetAdd else 1
        return [kind, self.origin, self.seq, self.element, [list(d) for d in self.observed]]


@attrs.frozen
class SetAdd(_SetOp):
    """Add ``element``; the author had observed the adds ``observed`` of it (plain kind 0)."""


@attrs.frozen
class SetRemove(_SetOp):
    """Remove ``element``: drop the adds ``observed`` of it, concurrent adds survive (plain kind 1)."""


SetOp: TypeAlias = SetAdd | SetRemove


def set_op_from_plain(data: object) -> SetOp:
    if not isinstance(data, list | tuple) or len(data) != 5 or data[0] not in (0, 1):
        raise _bad(f"an op is [kind, origin, seq, element, observed], got {data!r:.60}")
    origin, seq = check_dot((data[1], data[2]), "set op")
    scalar_key(data[3])
    if not isinstance(data[4], list | tuple):
        raise _bad("observed is a list of dots", f"op {(origin, seq)}")
    observed = tuple(
        check_dot(tuple(d) if isinstance(d, list) else d, "observed") for d in data[4]
    )
    cls = SetAdd if data[0] == 0 else SetRemove
    return cls(origin, seq, _canonical(data[3]), observed)


class AWSet(Buffered[SetOp]):
    """A replicated add-wins set of JSON scalars. Pure: no I/O, no clock."""

    TYPE_NAME = "awset"

    def __init__(self, *, elements_max: int = SET_ELEMENTS_MAX, pending_ops_max: int = PENDING_OPS_MAX) -> None:
        self._elems: dict[ScalarKey, tuple[Scalar, set[Dot]]] = {}
        self._d: Delivery[SetOp] = Delivery(pending_ops_max)
        self.elements_max = elements_max

    def value(self) -> list[Scalar]:
        return [self._elems[k][0] for k in sorted(self._elems)]

    def __contains__(self, x: object) -> bool:
        return scalar_key(x) in self._elems

    def __len__(self) -> int:
        return len(self._elems)

    def _local(self, dot: Dot, element: Scalar, cls: type[SetAdd] | type[SetRemove]) -> SetOp:
        self._fresh(dot)
        key = scalar_key(element)
        got = self._elems.get(key)
        if cls is SetRemove and got is None:
            raise _bad(f"remove of {element!r:.40}: not in the set", f"element {element!r:.40}")
        observed = tuple(sorted(got[1])) if got else ()
        op = cls(dot[0], dot[1], _canonical(element), observed)
        self.apply(op)
        return op

    def add(self, dot: Dot, element: Scalar) -> SetOp:
        """Add ``element`` as op ``dot``; return the op to replicate."""
        return self._local(dot, element, SetAdd)

    def remove(self, dot: Dot, element: Scalar) -> SetOp:
        """Remove ``element`` (it must be present here) as op ``dot``; return the op."""
        return self._local(dot, element, SetRemove)

    def apply(self, op: SetOp) -> dict[str, list[Scalar]]:
        """Apply a replicated op: ``{"add": [...], "remove": [...]}`` of what changed (keys only when non-empty)."""
        if type(op) is not SetAdd and type(op) is not SetRemove:
            raise _bad(f"not a set op: {type(op).__name__}")
        before: dict[ScalarKey, bool] = {}

        def apply_now(o: SetOp) -> None:
            key = scalar_key(o.element)
            before.setdefault(key, key in self._elems)
            self._apply_now(key, o)

        self._d.deliver(op, lambda o: list(o.observed), apply_now, "set")
        return self._changes(before)

    def _apply_now(self, key: ScalarKey, op: SetOp) -> None:
        got = self._elems.get(key)
        dots = set(got[1]) if got else set()
        dots.difference_update(op.observed)
        if type(op) is SetAdd:
            dots.add(op.dot)
            if got is None and len(self._elems) >= self.elements_max:
                raise _bad(f"op {op.dot} would exceed the bound of {self.elements_max} elements", f"op {op.dot}")
        if dots:
            self._elems[key] = (got[0] if got else op.element, dots)
        elif got:
            del self._elems[key]

    def _changes(self, before: Mapping[ScalarKey, bool]) -> dict[str, list[Scalar]]:
        out: dict[str, list[Scalar]] = {}
        added = [k for k, was in before.items() if not was and k in self._elems]
        removed = [k for k, was in before.items() if was and k not in self._elems]
        if added:
            out["add"] = [self._elems[k][0] for k in sorted(added)]
        if removed:
            out["remove"] = [_element(k) for k in sorted(removed)]
        return out

    def to_snapshot(self) -> dict[str, object]:
        return {
            "type": "awset",
            "v": 1,
            "elements": [
                [self._elems[k][0], [list(d) for d in sorted(self._elems[k][1])]]
                for k in sorted(self._elems)
            ],
            **self._causal_plain(),
        }

    def _load(self, data: Mapping[str, object]) -> list[SetOp]:
        """Restore from :meth:`to_snapshot`'s form (see ``Buffered.from_snapshot``)."""
        elements: Iterable[list[object]] = data["elements"]  # type: ignore[assignment]
        for x, dots in elements:
            key = scalar_key(x)
            got = {check_dot((str(o), int(q)), "element dot") for o, q in dots}  # type: ignore[attr-defined]
            if not got:
                raise ValueError(f"element {x!r:.40} without dots")
            self._elems[key] = (_canonical(x), got)  # type: ignore[arg-type]
        if len(self._elems) > self.elements_max:
            raise ValueError(f"more than {self.elements_max} elements")
        return self._load_causal(data, set_op_from_plain)


def _element(key: ScalarKey) -> Scalar:
    group, v, kind = key
    if group == 0:
        return None
    if group == 1:
        return bool(v)
    if kind == 3:
        return float(v)
    return v
