"""Hypothesis strategies for wire tests: values, ops, versions and every core message."""

from __future__ import annotations

import types
import typing
from typing import Any

import attrs
from hypothesis import strategies as st

from statesync.core import (
    MESSAGE_TYPES,
    Op,
    Version,
)

U64 = 2**64 - 1
I64_MIN = -(2**63)

node_ids = st.one_of(
    st.sampled_from(["node-a", "node-b", "n"]),
    st.text(min_size=1, max_size=12),
)
ints64 = st.integers(I64_MIN, U64)
seqs = st.one_of(st.integers(1, 5000), st.integers(1, U64))
hlcs = st.one_of(st.integers(0, 1 << 20), st.integers(0, U64), st.just(int(1.8e12) << 16))
segments = st.text(min_size=1, max_size=10)
paths = st.lists(segments, max_size=5).map(tuple)
kinds = st.sampled_from([0, 1])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints64,
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)


_KEYS = st.text(max_size=8)


def values(keys: st.SearchStrategy[str] = _KEYS) -> st.SearchStrategy[Any]:
    """Values as the core stores them: lists, never tuples."""
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
        max_leaves=12,
    )


op_values = values(keys=segments)  # dict keys become path segments in a subtree write
contexts = st.lists(st.tuples(node_ids, st.integers(0, U64)), max_size=4).map(tuple)


@st.composite
def ops(draw: st.DrawFn) -> Op:
    kind = draw(kinds)
    return Op(
        draw(node_ids),
        draw(seqs),
        draw(hlcs),
        draw(paths),
        kind,
        None if kind == 1 else draw(op_values),
        draw(contexts),
    )


@st.composite
def runs_of_ops(draw: st.DrawFn) -> tuple[Op, ...]:
    """Ops as a node pushes them: one origin, increasing seq and hlc, varied paths."""
    origin = draw(node_ids)
    count = draw(st.integers(1, 40))
    seq = draw(st.integers(1, 10**6))
    hlc = draw(st.integers(0, 1 << 60))
    out = []
    for _ in range(count):
        seq += draw(st.integers(0, 3))
        hlc += draw(st.sampled_from([1, 2, 1 << 16, 5 << 16]))
        out.append(
            Op(origin, seq, hlc, draw(paths), draw(kinds), draw(st.sampled_from(["v", 1, None, b"x"])),
               ((origin, seq - 1),) if seq > 1 else ())
        )
    return tuple(out)


op_tuples = st.one_of(st.lists(ops(), max_size=12).map(tuple), runs_of_ops())
versions = st.builds(Version, values(), st.integers(0, U64), node_ids, st.integers(1, U64))
texts = st.text(max_size=30)
SNAPSHOT_ENTRY = tuple[tuple[str, ...], tuple[Version, ...]]


def for_type(t: Any) -> st.SearchStrategy[Any]:
    """A strategy for a message field annotation (the types the wire supports)."""
    if t is str:
        return texts
    if t is int:
        return ints64
    if t is float:
        return st.floats(allow_nan=False)
    if t is bool:
        return st.booleans()
    if t is bytes:
        return st.binary(max_size=20)
    if t is None or t is type(None):
        return st.none()
    if t is Op:
        return ops()
    if t is Version:
        return versions
    if t == SNAPSHOT_ENTRY:
        return st.tuples(paths, st.lists(versions, max_size=3).map(tuple))
    args = typing.get_args(t)
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        if {typing.get_origin(a) or a for a in args} >= {list, dict, str, bytes}:
            return values()
        return st.one_of([for_type(a) for a in args])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            if args[0] is Op:
                return op_tuples
            return st.lists(for_type(args[0]), max_size=4).map(tuple)
        return st.tuples(*[for_type(a) for a in args])
    if origin is list:
        return st.lists(for_type(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(node_ids, for_type(args[1]), max_size=5)
    if attrs.has(t):
        return message_of(t)
    raise TypeError(f"no strategy for {t!r}")


def message_of(cls: type) -> st.SearchStrategy[Any]:
    attrs.resolve_types(cls)
    return st.builds(cls, **{f.name: for_type(f.type) for f in attrs.fields(cls)})


messages = st.one_of([message_of(cls) for cls in MESSAGE_TYPES])
"""Every core message type, built from its annotations (new core messages join by themselves)."""
