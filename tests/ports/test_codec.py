"""The ports payload codec's fast path for bytes agrees with the wire's payload codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.ports import _codec
from statesync.wire import (
    DEFAULT_LIMITS,
    DataCloneError,
    DecodeError,
    DecodeLimits,
    decode_payload,
    encode_payload,
)

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.binary(max_size=300),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=70_000))
def test_bytes_encode_like_the_wire(data: bytes) -> None:
    assert _codec.encode(data) == encode_payload(data)
    assert _codec.decode(_codec.encode(data)) == data


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65_535, 65_536, 70_000])
def test_bin_size_boundaries(size: int) -> None:
    data = b"z" * size
    assert _codec.encode(data) == encode_payload(data)
    assert _codec.decode(encode_payload(data)) == data


@given(values)
def test_other_values_go_through_the_wire(value: object) -> None:
    encoded = _codec.encode(value)
    assert encoded == encode_payload(value)
    assert _codec.decode(encoded) == decode_payload(encoded)


@given(st.binary(max_size=40))
def test_garbage_decodes_like_the_wire_or_fails_alike(data: bytes) -> None:
    try:
        expected: object = decode_payload(data)
    except DecodeError:
        expected = DecodeError
    try:
        got: object = _codec.decode(data)
    except DecodeError:
        got = DecodeError
    assert got == expected


def test_fast_path_respects_limits() -> None:
    small = DecodeLimits(bin_bytes_max=10)
    with pytest.raises(DecodeError):
        _codec.decode(_codec.encode(b"x" * 11), small)
    assert _codec.decode(_codec.encode(b"x" * 10), small) == b"x" * 10
    big = b"y" * (DEFAULT_LIMITS.bin_bytes_max + 1)
    with pytest.raises(DataCloneError):
        _codec.encode(big)
