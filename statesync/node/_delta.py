"""The delta a watch event of a typed path carries: what changed, Yjs-style, from old to new.

For a text (str) and a list or set (list): a list of ops ``{"retain": n}``,
``{"delete": n}``, ``{"insert": str | [values]}``, applied from position 0
with positions as on the replica that sent the event (the trailing retain is
left out, as Yjs does); for a counter ``[{"add": n}]``. A value that is
created starts from the empty one ("", [], 0).

First version: the delta is computed at the node from the visible values
before and after (common prefix and suffix, linear in the length), because
the core's change records carry values, not positions. It is exact for one
edit, as every local edit and every op a peer sends is: applying it to
``old`` always gives ``new``; for an edit inside a run of equal elements
(inserting "a" into "aa") it may name another, equivalent position. A list
move shows as one delete and one insert of the moved item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from statesync.core import ABSENT, AbsentType, Value, values_equal

Delta = list[dict[str, Any]]


def typed_delta(old: Value | AbsentType, new: Value | AbsentType) -> Delta | None:
    """The delta from ``old`` to ``new`` (see the module doc), or None when there is none to give."""
    if new is ABSENT:
        return None
    if isinstance(new, str):
        return _sequence("" if old is ABSENT else old, new)
    if isinstance(new, list):
        return _sequence([] if old is ABSENT else old, new)
    if type(new) is int:
        before = 0 if old is ABSENT else old
        return [{"add": new - before}] if type(before) is int else None
    return None


def _sequence(old: object, new: str | list[Value]) -> Delta | None:
    if type(old) is not type(new):
        return None
    a: Sequence[Any] = old
    b: Sequence[Any] = new
    same = (lambda x, y: x == y) if isinstance(new, str) else values_equal
    n = min(len(a), len(b))
    start = 0
    while start < n and same(a[start], b[start]):
        start += 1
    end = 0
    while end < n - start and same(a[len(a) - 1 - end], b[len(b) - 1 - end]):
        end += 1
    ops: Delta = []
    if start:
        ops.append({"retain": start})
    moved = _move(a[start : len(a) - end], b[start : len(b) - end], same)
    if moved is not None:
        return ops + moved
    removed = len(a) - start - end
    if removed:
        ops.append({"delete": removed})
    inserted = b[start : len(b) - end]
    if inserted:
        ops.append({"insert": inserted})
    return ops


def _move(a: Sequence[Any], b: Sequence[Any], same: Any) -> Delta | None:
    """One item moved across the rest (the middle after prefix and suffix): delete + insert, or None."""
    k = len(a)
    if isinstance(a, str) or k < 2 or len(b) != k:  # a move needs two items
        return None
    if same(a[0], b[-1]) and all(same(x, y) for x, y in zip(a[1:], b[:-1], strict=True)):  # forward
        return [{"delete": 1}, {"retain": k - 1}, {"insert": [a[0]]}]
    if same(a[-1], b[0]) and all(same(x, y) for x, y in zip(a[:-1], b[1:], strict=True)):  # backward
        return [{"insert": [a[-1]]}, {"retain": k - 1}, {"delete": 1}]
    return None


def apply_delta(value: str | list[Value] | int, delta: Delta) -> str | list[Value] | int:
    """``value`` with ``delta`` applied (what an editor does with a remote edit)."""
    if type(value) is int:
        return value + sum(int(op["add"]) for op in delta)
    pos = 0
    out = value[:0]  # type: ignore[index]
    for op in delta:
        if "retain" in op:
            out += value[pos : pos + op["retain"]]  # type: ignore[index, operator]
            pos += op["retain"]
        elif "delete" in op:
            pos += op["delete"]
        else:
            out += op["insert"]
    return out + value[pos:]  # type: ignore[index, operator]


__all__ = ["Delta", "apply_delta", "typed_delta"]
