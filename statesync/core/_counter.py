"""The collaborative counter: add (negative allowed), concurrent adds sum.

State: per origin, the highest seq applied and that origin's running total
(a PN-counter whose entries travel as deltas). An op carries its origin's
total after it, so applying keeps the entry with the higher seq: duplicates
and stale ops change nothing, ops commute, and a lost op is covered by any
later one of the same origin. The value is the sum of the totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from statesync.core._context import Dot
from statesync.core._typebase import DottedOp, bad, check_dot, check_header
from statesync.errors import InvalidOperation

COUNTER_MIN: Final = -(2**63)
COUNTER_MAX: Final = 2**63 - 1


def _bad(msg: str, where: str = "") -> InvalidOperation:
    return bad("counter", msg, where)


def _check_int(x: object, what: str, where: str) -> int:
    if type(x) is not int or not COUNTER_MIN <= x <= COUNTER_MAX:
        raise _bad(f"{what} must be a 64-bit int, got {x!r:.40}", where)
    return x


@attrs.frozen
class CounterAdd(DottedOp):
    """``amount`` added by ``(origin, seq)``; ``total`` is the origin's running total after it."""

    amount: int
    total: int

    def to_plain(self) -> list[object]:
        return [self.origin, self.seq, self.amount, self.total]


def counter_op_from_plain(data: object) -> CounterAdd:
    if not isinstance(data, list | tuple) or len(data) != 4:
        raise _bad(f"an op is [origin, seq, amount, total], got {data!r:.60}")
    origin, seq = check_dot((data[0], data[1]), "counter op")
    where = f"op {(origin, seq)}"
    return CounterAdd(origin, seq, _check_int(data[2], "amount", where), _check_int(data[3], "total", where))


class Counter:
    """A replicated integer. Pure: no I/O, no clock."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, int]] = {}  # origin -> (seq, total)
        self._value = 0

    def value(self) -> int:
        return self._value

    def add(self, dot: Dot, amount: int) -> CounterAdd:
        """Add ``amount`` (may be negative) as op ``dot``; return the op to replicate."""
        origin, seq = check_dot(dot, "counter add")
        where = f"op {dot}"
        _check_int(amount, "amount", where)
        last_seq, total = self._entries.get(origin, (0, 0))
        if seq <= last_seq:
            raise _bad(f"dot {dot} is not newer than {origin}'s last op {last_seq}", where)
        total += amount
        if not COUNTER_MIN <= total <= COUNTER_MAX or not COUNTER_MIN <= self._value + amount <= COUNTER_MAX:
            raise _bad(f"adding {amount} leaves the 64-bit range", where)
        op = CounterAdd(origin, seq, amount, total)
        self.apply(op)
        return op

    def apply(self, op: CounterAdd) -> int:
        """Apply a replicated add; return how much the value changed (0 for a duplicate)."""
        if type(op) is not CounterAdd:
            raise _bad(f"not a counter op: {type(op).__name__}")
        last_seq, total = self._entries.get(op.origin, (0, 0))
        if op.seq <= last_seq:
            return 0
        self._entries[op.origin] = (op.seq, op.total)
        change = op.total - total
        self._value += change
        return change

    @property
    def applied(self) -> Mapping[str, int]:
        """Per origin, the highest seq whose total is folded in."""
        return {o: s for o, (s, _) in self._entries.items()}

    def compact(self, stable: Mapping[str, int]) -> int:
        """Nothing to drop: one entry per origin is the whole state. Returns 0."""
        del stable
        return 0

    def to_snapshot(self) -> dict[str, object]:
        return {
            "type": "counter",
            "v": 1,
            "entries": [[o, s, t] for o, (s, t) in sorted(self._entries.items())],
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, object]) -> Counter:
        c = cls()
        try:
            check_header(data, "counter")
            for o, s, t in data["entries"]:  # type: ignore[attr-defined]
                c.apply(counter_op_from_plain([o, s, 0, t]))
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(f"malformed snapshot ({exc})") from exc
        return c
