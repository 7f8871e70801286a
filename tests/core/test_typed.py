from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.core._awset import AWSet
from statesync.core._counter import Counter
from statesync.core._errors import InvalidOperation
from statesync.core._list import List
from statesync.core._text import Text
from statesync.core._typed import (
    AWSET,
    COUNTER,
    LIST,
    TEXT,
    new_typed,
    type_code,
    typed_from_snapshot,
    typed_op_from_plain,
    typed_op_to_plain,
)


def _ops() -> list[Any]:
    t, lst, c, s = Text(), List(), Counter(), AWSet()
    return [
        t.insert(("a", 1), 0, "hi"),
        t.delete(("a", 2), 0, 1),
        lst.insert(("a", 3), 0, [1, "x", None]),
        lst.move(("a", 4), 0, 2),
        lst.delete(("a", 5), 0),
        c.add(("a", 6), -3),
        s.add(("a", 7), "tag"),
        s.remove(("a", 8), "tag"),
    ]


def test_every_op_kind_survives_its_plain_form() -> None:
    ops = _ops()
    assert [type_code(op) for op in ops] == [TEXT, TEXT, LIST, LIST, LIST, COUNTER, AWSET, AWSET]
    for op in ops:
        assert typed_op_from_plain(typed_op_to_plain(op)) == op


def test_snapshots_load_by_their_type_name() -> None:
    for name in ("text", "list", "counter", "awset"):
        t = new_typed(name)
        assert type(typed_from_snapshot(t.to_snapshot())) is type(t)
    with pytest.raises(InvalidOperation):
        new_typed("map")


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=20,
)


@given(st.integers(0, 5), plain)
def test_malformed_ops_raise_only_invalid_operation(code: int, body: Any) -> None:
    try:
        op = typed_op_from_plain([code, body])
    except InvalidOperation:
        return
    # what decodes applies or is refused with InvalidOperation, never anything else
    target: Any = new_typed(("text", "list", "counter", "awset")[type_code(op) - 1])
    with contextlib.suppress(InvalidOperation):
        target.apply(op)


@given(st.integers(0, 7), st.lists(st.integers(0, 8), min_size=1, max_size=3), plain)
def test_mutated_ops_raise_only_invalid_operation(which: int, route: list[int], leaf: Any) -> None:
    """A valid op's plain form with one part replaced: it decodes and applies, or InvalidOperation."""
    data = typed_op_to_plain(_ops()[which])
    node: Any = data
    for i in route[:-1]:
        if isinstance(node, list) and node:
            nxt = node[i % len(node)]
            if isinstance(nxt, list):
                node = nxt
    if isinstance(node, list) and node:
        node[route[-1] % len(node)] = leaf
    try:
        op = typed_op_from_plain(data)
    except InvalidOperation:
        return
    target: Any = new_typed(("text", "list", "counter", "awset")[type_code(op) - 1])
    with contextlib.suppress(InvalidOperation):
        target.apply(op)


@given(st.sampled_from(["text", "list", "counter", "awset"]), st.dictionaries(st.sampled_from(["type", "v", "origins", "text", "runs", "segs", "orig", "dels", "applied", "pending", "items", "values", "ts", "clock", "entries", "elements"]), plain, max_size=8))
def test_malformed_snapshots_raise_only_invalid_operation(name: str, data: dict[str, Any]) -> None:
    data = {**data, "type": name, "v": 1}
    with contextlib.suppress(InvalidOperation):
        typed_from_snapshot(data)


@given(st.integers(0, 3), st.text(max_size=6), plain)
def test_mutated_snapshots_raise_only_invalid_operation(which: int, key: str, leaf: Any) -> None:
    t, lst, c, s = Text(), List(), Counter(), AWSet()
    t.insert(("a", 1), 0, "hello")
    t.delete(("a", 2), 1, 2)
    lst.insert(("a", 1), 0, [1, 2])
    lst.move(("a", 2), 0, 1)
    c.add(("a", 1), 2)
    s.add(("a", 1), 5)
    snap = [t, lst, c, s][which].to_snapshot()
    keys = sorted(snap)
    snap[keys[len(key) % len(keys)]] = leaf
    with contextlib.suppress(InvalidOperation):
        typed_from_snapshot(snap)
