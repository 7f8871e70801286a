"""The ports codec's fast paths (bytes payloads, small frames of plain messages) agree with the wire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.ports import _codec
from statesync.ports._envelope import Credit, Marker, Msg, Msgs, Ping
from statesync.wire import (
    DEFAULT_LIMITS,
    DataCloneError,
    DecodeError,
    DecodeLimits,
    decode_frame,
    decode_payload,
    encode_frame,
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


envelope_ids = st.one_of(st.integers(0, 300), st.integers(0, 2**64 - 1))
msgs = st.builds(
    Msgs,
    envelope_ids,
    envelope_ids,
    st.lists(st.binary(max_size=300), max_size=20).map(tuple),
)
plain_msg = st.builds(
    Msg,
    envelope_ids,
    envelope_ids,
    st.booleans(),
    st.integers(0, 3),
    envelope_ids,
    st.binary(max_size=300),
)
other_envelopes = st.one_of(
    st.builds(Credit, envelope_ids, envelope_ids),
    st.builds(Marker, envelope_ids, envelope_ids),
    st.builds(Ping),
)


@given(
    st.lists(st.one_of(msgs, msgs, plain_msg, other_envelopes), min_size=1, max_size=8),
    st.booleans(),
)
def test_envelope_frames_are_the_wires(envs: list[object], priority: bool) -> None:
    frame = _codec.encode_envelopes(envs, priority=priority)
    assert frame == encode_frame(envs, priority=priority)
    assert _codec.decode_envelopes(frame) == decode_frame(frame).messages


@given(st.binary(max_size=60), st.binary(max_size=8))
def test_garbage_frames_decode_like_the_wire(tail: bytes, head: bytes) -> None:
    for data in (
        tail,
        b"\x01\x00" + tail,
        b"\x01\x02" + tail,
        b"\x01\x00\x94\x26" + tail,
        b"\x01\x00\x98\x27" + tail,
        b"\x01\x02\x92\x98\x27" + tail,
        head + tail,
    ):
        try:
            expected: object = decode_frame(data).messages
        except DecodeError:
            expected = DecodeError
        try:
            got: object = _codec.decode_envelopes(data)
        except DecodeError:
            got = DecodeError
        assert got == expected


@given(st.one_of(msgs, plain_msg), st.integers(1, 40))
def test_truncated_fast_frames_are_refused_like_the_wire(m: Msgs | Msg, cut: int) -> None:
    frame = _codec.encode_envelopes([m])
    data = frame[: max(0, len(frame) - cut)]
    with pytest.raises(DecodeError):
        decode_frame(data)
    with pytest.raises(DecodeError):
        _codec.decode_envelopes(data)
