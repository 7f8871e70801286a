"""Fuzzing the decoders: whatever the bytes, only DecodeError comes out.

Randomness comes from hypothesis (which prints the failing example) or from a
seeded ``random.Random`` whose seed is part of every assertion message.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statesync.core import Hello, Op, Ops, SnapshotChunk, Version
from statesync.wire import (
    DEFAULT_LIMITS,
    Compression,
    DecodeError,
    DecodeLimits,
    Frame,
    NestingTooDeep,
    decode_frame,
    decode_message,
    decode_payload,
    encode_frame,
    encode_message,
    encode_payload,
    registered_messages,
)

SEED = int(os.environ.get("WIRE_FUZZ_SEED", random.randrange(2**32)))
HLC = int(1.8e12) << 16

Decoder = Callable[[bytes], object]
DECODERS: dict[str, Decoder] = {
    "frame": decode_frame,
    "message": decode_message,
    "payload": decode_payload,
}


def _only_decode_errors(decode: Decoder, data: bytes, context: str = "") -> object:
    try:
        return decode(data)
    except DecodeError as e:
        # The decoders' safety net turns stray Python errors into "unexpected"
        # DecodeErrors; every input should meet an explicit check instead.
        assert e.limit != "unexpected", f"{decode.__name__}: {e} for {data[:80]!r}... {context}"
        return None
    except BaseException as e:  # pragma: no cover - what the test exists to catch
        raise AssertionError(
            f"{decode.__name__} raised {type(e).__name__}: {e} for {data[:80]!r}... "
            f"({len(data)} bytes) {context}"
        ) from e


def _ops(count: int, origin: str = "node-a") -> tuple[Op, ...]:
    return tuple(
        Op(origin, s, HLC + s * 3, ("user", f"k{s}"), s % 2, None if s % 2 else {"a": [s, "x"]}, ((origin, s - 1), ("b", 2)))
        for s in range(1, count + 1)
    )


def _corpus() -> list[bytes]:
    mixed = tuple(
        Op(f"n{i % 300}", i + 1, (1 << 40) - i * 977, ("p", str(i), "q")[: 1 + i % 3], 0, [i, b"b", 1.5, None], ())
        for i in range(320)
    )
    msgs: list[object] = [
        Ops(_ops(1)),
        Ops(_ops(40)),
        Ops(mixed),
        Hello("node-a", 1, {"a": 1, "b": 2}, 123, ("x",), ("tcp://127.0.0.1:1",)),
        SnapshotChunk("t", 0, 2, {"a": 3}, ((("a", "b"), (Version([1, {"k": 2}], 5, "n", 1),)), (("c",), ()))),
    ]
    frames = [encode_frame([m], compression=None) for m in msgs]
    frames.append(encode_frame(msgs, priority=True, compression=None))
    frames.append(encode_frame([Ops(_ops(200))]))  # compressed
    frames.append(encode_frame(msgs, compression=Compression(min_bytes=0, ratio_max=1e9)))
    return frames


CORPUS = _corpus()


def test_corpus_decodes() -> None:
    for frame in CORPUS:
        assert isinstance(decode_frame(frame), Frame)


@pytest.mark.parametrize("index", range(len(CORPUS)))
def test_truncated_at_every_position(index: int) -> None:
    frame = CORPUS[index]
    step = max(1, len(frame) // 3000)
    for cut in range(0, len(frame), step):
        _only_decode_errors(decode_frame, frame[:cut], f"(cut at {cut})")
        _only_decode_errors(decode_message, frame[2:cut], f"(message cut at {cut})")


@pytest.mark.parametrize("index", range(len(CORPUS)))
def test_random_byte_flips(index: int) -> None:
    rng = random.Random(SEED + index)
    frame = CORPUS[index]
    for trial in range(400):
        data = bytearray(frame)
        for _ in range(rng.choice((1, 1, 2, 4, 16))):
            pos = rng.randrange(2 if rng.random() < 0.9 else 0, len(data))
            data[pos] = rng.randrange(256)
        _only_decode_errors(decode_frame, bytes(data), f"(seed {SEED + index}, trial {trial}; WIRE_FUZZ_SEED={SEED})")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8))
def test_flips_found_by_hypothesis(frame: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(frame)
    for pos, byte in flips:
        data[pos % len(data)] = byte
    _only_decode_errors(decode_frame, bytes(data))


@settings(max_examples=600, deadline=None)
@given(st.sampled_from([b"", b"\x01\x00", b"\x01\x02", b"\x01\x04", b"\x01\x01", b"\x01\x03\x00\x00\x10\x00"]), st.binary(max_size=300))
def test_random_bytes(prefix: bytes, tail: bytes) -> None:
    for name, decode in DECODERS.items():
        data = prefix + tail if name == "frame" else tail
        _only_decode_errors(decode, data)


# Structure-aware: well-formed msgpack of the wrong shape under every tag.
_msgpack_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=6),
    st.binary(max_size=6),
)
_msgpack_values = st.recursive(
    _msgpack_leaves,
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), c, max_size=3),
    max_leaves=25,
)


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(sorted(registered_messages())), st.lists(_msgpack_values, max_size=12))
def test_wrong_shapes_under_every_tag(tag: int, fields: list[object]) -> None:
    data = msgpack.packb([tag, *fields], use_bin_type=True, strict_types=False)
    _only_decode_errors(decode_message, data)


_GOOD_BLOCKS = [msgpack.unpackb(encode_message(Ops(ops)), use_list=True)[1] for ops in (_ops(1), _ops(5))]


@st.composite
def _block_like(draw: st.DrawFn) -> list[object]:
    """Valid op blocks with a few columns replaced by junk: exercises every column check."""
    block = list(draw(st.sampled_from(_GOOD_BLOCKS)))
    for _ in range(draw(st.integers(1, 3))):
        block[draw(st.integers(0, len(block) - 1))] = draw(_msgpack_values)
    if draw(st.booleans()):
        del block[draw(st.integers(0, len(block) - 1)) :]
    return block


@settings(max_examples=1500, deadline=None)
@given(_block_like())
def test_op_blocks_with_junk_columns(block: list[object]) -> None:
    data = msgpack.packb([Ops.TAG, block], use_bin_type=True)
    _only_decode_errors(decode_message, data)


# ---------------------------------------------------------------- oversized and deep


@pytest.mark.parametrize("depth", [31, 32, 33, 100, 1023, 1024, 1025, 5000, 200_000])
def test_deep_nesting(depth: int) -> None:
    for opener in (b"\x91", b"\x81\xa1k"):
        body = opener * depth + b"\xc0"
        payload = _only_decode_errors(decode_payload, body)
        if depth > DEFAULT_LIMITS.depth_max:
            assert payload is None
        value_in_op = msgpack.packb([Ops.TAG, [1, ["a"], 0, 1, 1, [["k"]], 0]])[:-1]
        _only_decode_errors(decode_message, value_in_op + b"\x91" + body + b"\x00\xc0\xc0")
        hello = msgpack.packb([1, "n", 1, {}, 1])[:-1] + b"\x92" + body
        _only_decode_errors(decode_message, hello)
        _only_decode_errors(decode_frame, b"\x01\x00" + body)


def test_depth_limit_is_exact() -> None:
    value: object = 1
    for _ in range(DEFAULT_LIMITS.depth_max):
        value = [value]
    assert decode_payload(encode_payload(value)) == value
    data = msgpack.packb([value])
    with pytest.raises(NestingTooDeep) as info:
        decode_payload(data)
    assert info.value.limit == "depth_max" and info.value.bound == DEFAULT_LIMITS.depth_max


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (msgpack.packb("x" * 2000), DecodeLimits(str_bytes_max=1000)),
        (msgpack.packb(b"x" * 2000, use_bin_type=True), DecodeLimits(bin_bytes_max=1000)),
        (msgpack.packb(list(range(2000))), DecodeLimits(container_len_max=1000)),
        (msgpack.packb({str(i): i for i in range(2000)}), DecodeLimits(container_len_max=1000)),
        (b"\xdb" + (2**32 - 1).to_bytes(4, "big") + b"x", DEFAULT_LIMITS),  # str claiming 4 GiB
        (b"\xc6" + (2**32 - 1).to_bytes(4, "big") + b"x", DEFAULT_LIMITS),  # bin claiming 4 GiB
        (b"\xdf" + (2**32 - 1).to_bytes(4, "big") + b"\xa1a\x01", DEFAULT_LIMITS),  # map claiming 4G items
        (b"\x00" * (DEFAULT_LIMITS.frame_bytes_max + 1), DEFAULT_LIMITS),
    ],
)
def test_oversized_inputs(data: bytes, limits: DecodeLimits) -> None:
    for decode in (decode_payload, decode_message):
        with pytest.raises(DecodeError):
            decode(data, limits)
    with pytest.raises(DecodeError):
        decode_frame(b"\x01\x00" + data, limits)


def test_errors_name_their_limit() -> None:
    cases = {
        "str_bytes_max": (msgpack.packb("x" * 20), DecodeLimits(str_bytes_max=10)),
        "bin_bytes_max": (msgpack.packb(b"x" * 20, use_bin_type=True), DecodeLimits(bin_bytes_max=10)),
        "container_len_max": (msgpack.packb([1] * 20), DecodeLimits(container_len_max=10)),
        "frame_bytes_max": (msgpack.packb("x" * 20), DecodeLimits(frame_bytes_max=10)),
    }
    for limit, (data, limits) in cases.items():
        with pytest.raises(DecodeError) as info:
            decode_payload(data, limits)
        assert info.value.limit == limit
        assert info.value.value == 20 or limit == "frame_bytes_max"
        assert limit in str(info.value)
