"""The msgpack codec: ops and snapshot entries come back exactly as written."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statesync.core import PUT, REMOVE, Op, Version, values_equal
from statesync.storage._codec import (
    DecodeError,
    decode_entries,
    decode_op,
    encode_chunks,
    make_packer,
)

pack = make_packer()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
segments = st.text(min_size=1, max_size=8)
paths = st.lists(segments, min_size=1, max_size=4).map(tuple)
contexts = st.dictionaries(st.text(min_size=1, max_size=4), st.integers(1, 2**40)).map(
    lambda d: tuple(sorted(d.items()))
)
ops = st.builds(
    Op,
    origin=st.text(min_size=1, max_size=8),
    seq=st.integers(1, 2**62),
    hlc=st.integers(0, 2**62),
    path=paths,
    kind=st.sampled_from([PUT, REMOVE]),
    value=values,
    context=contexts,
)
versions = st.builds(
    Version,
    value=values,
    hlc=st.integers(0, 2**62),
    origin=st.text(min_size=1, max_size=8),
    seq=st.integers(1, 2**62),
)


def same_types(a: object, b: object) -> bool:
    """Equal, and lists are lists and tuples are tuples all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_types(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_types(a[k], b[k]) for k in a)  # type: ignore[attr-defined,index]
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))  # type: ignore[arg-type]
    return a == b


@settings(max_examples=300, deadline=None)
@given(ops)
def test_op_round_trip(op: Op) -> None:
    back = decode_op(pack(op))
    assert type(back) is Op
    assert back == op
    assert same_types(back, op)
    assert values_equal(back.value, op.value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(paths, st.lists(versions, min_size=1, max_size=3).map(tuple)), max_size=30))
def test_entries_round_trip_in_chunks(entries: list[tuple[tuple[str, ...], tuple[Version, ...]]]) -> None:
    back = []
    for count, body in encode_chunks(pack, entries, 200):
        decoded = decode_entries(body)
        assert len(decoded) == count
        back.extend(decoded)
    assert back == entries
    assert same_types(back, entries)
    assert all(type(v) is Version for _, vs in back for v in vs)


def test_chunks_stay_bounded_and_adapt() -> None:
    small = [(("k", str(i)), (Version(i, i, "a", i),)) for i in range(5000)]
    big = [(("b", str(i)), (Version("x" * 3000, i, "a", i),)) for i in range(50)]
    mixed = small[:2000] + big + small[2000:]
    target = 4096
    chunks = list(encode_chunks(pack, mixed, target))
    assert sum(c for c, _ in chunks) == len(mixed)
    assert all(len(body) <= 2 * target for _, body in chunks)
    assert len(chunks) > 10
    huge = [(("h",), (Version("y" * 10_000, 1, "a", 1),))]
    assert [c for c, _ in encode_chunks(pack, huge, target)] == [1]  # alone in its chunk
    assert list(encode_chunks(pack, [], target)) == []


def test_nan_and_edge_scalars() -> None:
    op = Op("a", 1, 2, ("x",), PUT, [float("nan"), -(2**63), 2**64 - 1, b"", "", {}], ())
    back = decode_op(pack(op))
    assert same_types(back, op)


@pytest.mark.parametrize("body", [b"", b"\xc1", pack([1, 2, 3]), pack({"a": 1}), b"\x93\x01"])
def test_garbage_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_op(body)
    with pytest.raises(DecodeError):
        decode_entries(body)
