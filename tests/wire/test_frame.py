from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator

import msgpack
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.core import Ack, Bye, Op, Ops
from statesync.wire import (
    DEFAULT_LIMITS,
    FLAG_BATCH,
    FLAG_COMPRESSED,
    FLAG_PRIORITY,
    VERSION,
    BatchTooLong,
    Compression,
    CompressionError,
    DataCloneError,
    DecodeError,
    DecodeLimits,
    DecompressedTooLarge,
    EncodeError,
    Frame,
    FrameTooLarge,
    MalformedFrame,
    UnknownFlags,
    UnknownVersion,
    WireSettingError,
    decode_frame,
    encode_frame,
    encode_message,
)
from tests.wire import strategies as sst

HLC = int(1.8e12) << 16


def puts(count: int) -> Ops:
    return Ops(
        tuple(Op("node-a", s, HLC + s, ("user", f"k{s}"), 0, "v", (("node-a", s - 1),)) for s in range(1, count + 1))
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(sst.messages, min_size=1, max_size=6),
    st.booleans(),
    st.sampled_from([None, Compression(), Compression(min_bytes=0, ratio_max=1e9)]),
)
def test_frames_round_trip(messages: list[object], priority: bool, compression: Compression | None) -> None:
    frame = encode_frame(messages, priority=priority, compression=compression)
    assert decode_frame(frame) == Frame(priority, tuple(messages))


def test_header_layout() -> None:
    single = encode_frame([Bye("x")], compression=None)
    assert single[0] == VERSION and single[1] == 0
    assert single[2:] == encode_message(Bye("x"))
    batch = encode_frame([Bye(), Ack({})], priority=True, compression=None)
    assert batch[1] == FLAG_BATCH | FLAG_PRIORITY
    assert msgpack.unpackb(batch[2:]) == [[Bye.TAG, ""], [Ack.TAG, {}]]


def test_compression_only_when_it_pays() -> None:
    big = puts(200)
    plain = encode_frame([big], compression=None)
    packed = encode_frame([big])
    assert packed[1] & FLAG_COMPRESSED and len(packed) < len(plain) / 2
    assert int.from_bytes(packed[2:6], "big") == len(plain) - 2
    assert decode_frame(packed).messages == (big,)
    # below the threshold: plain
    small = encode_frame([puts(1)])
    assert not small[1] & FLAG_COMPRESSED
    # incompressible above the threshold: the plain body is kept
    noise = Ops((Op("n", 1, 1, ("k",), 0, os.urandom(4096), ()),))
    assert not encode_frame([noise])[1] & FLAG_COMPRESSED
    # a margin that cannot be met keeps it plain too
    assert not encode_frame([big], compression=Compression(ratio_max=0.01))[1] & FLAG_COMPRESSED


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", MalformedFrame),
        (b"\x01", MalformedFrame),
        (b"\x01\x00", MalformedFrame),
        (b"\x00\x00\x91\x0a", UnknownVersion),
        (b"\x02\x00\x91\x0a", UnknownVersion),
        (b"\x01\x08\x91\x0a", UnknownFlags),
        (b"\x01\x80\x91\x0a", UnknownFlags),
        (b"\x01\x00\xc1", MalformedFrame),
        (b"\x01\x00\x92\x0a", MalformedFrame),  # truncated
        (b"\x01\x00\x91\x0a\x00", MalformedFrame),  # extra byte
        (b"\x01\x02\x90", MalformedFrame),  # empty batch
        (b"\x01\x02\x0a", MalformedFrame),  # batch that is not an array
        (b"\x01\x01\x00\x00", MalformedFrame),  # compressed, too short
        (b"\x01\x01\x00\x00\x00\x00zz", MalformedFrame),  # claims 0 bytes
        (b"\x01\x01\x00\x00\x00\x05garbage", CompressionError),
    ],
)
def test_bad_frames(data: bytes, error: type[DecodeError]) -> None:
    with pytest.raises(error):
        decode_frame(data)


def test_unknown_version_and_flags_say_so() -> None:
    with pytest.raises(UnknownVersion) as v:
        decode_frame(b"\x07\x00\x91\x0a")
    assert v.value.value == 7 and v.value.bound == VERSION and "version 7" in str(v.value)
    with pytest.raises(UnknownFlags) as f:
        decode_frame(b"\x01\x18\x91\x0a")
    assert f.value.value == 0x18 and "0x18" in str(f.value)


def test_batch_length_limit() -> None:
    frame = encode_frame([Bye()] * 5)
    assert len(decode_frame(frame).messages) == 5
    with pytest.raises(BatchTooLong) as info:
        decode_frame(frame, DecodeLimits(batch_len_max=4))
    assert (info.value.limit, info.value.bound, info.value.value) == ("batch_len_max", 4, 5)
    with pytest.raises(EncodeError):
        encode_frame([Bye()] * 5, limits=DecodeLimits(batch_len_max=4))
    with pytest.raises(EncodeError):
        encode_frame([])


def test_frame_size_limits_on_both_sides() -> None:
    frame = encode_frame([puts(300)], compression=None)
    with pytest.raises(FrameTooLarge) as info:
        decode_frame(frame, DecodeLimits(frame_bytes_max=len(frame) - 1))
    assert info.value.value == len(frame)
    assert decode_frame(frame, DecodeLimits(frame_bytes_max=len(frame))).messages == (puts(300),)
    with pytest.raises(EncodeError) as enc:
        encode_frame([puts(300)], compression=None, limits=DecodeLimits(frame_bytes_max=1000))
    assert enc.value.limit == "frame_bytes_max"
    with pytest.raises(EncodeError) as enc:
        encode_frame([puts(300)], limits=DecodeLimits(decompressed_bytes_max=1000))
    assert enc.value.limit == "decompressed_bytes_max"


def test_a_bad_message_in_a_batch_is_named_by_index() -> None:
    with pytest.raises(DataCloneError) as info:
        encode_frame([Bye(), Ack({"a": "x"})])  # type: ignore[dict-item]
    assert info.value.where == "$[1].vv['a']"
    frame = bytes((VERSION, FLAG_BATCH)) + msgpack.packb([[Bye.TAG], [Ack.TAG, {"a": "x"}]])
    with pytest.raises(DecodeError) as dec:
        decode_frame(frame)
    assert dec.value.where == "$[1].vv['a']"


# ---------------------------------------------------------------- compression bombs


def _compressed_frame(chunks: Iterator[bytes], claimed: int, *, content_size: int | None = None) -> bytes:
    """A compressed frame of the concatenated chunks, claiming ``claimed`` bytes (never materialised)."""
    if content_size is None:
        cctx = zstandard.ZstdCompressor(level=1, write_content_size=False)
        obj = cctx.compressobj()
    else:
        cctx = zstandard.ZstdCompressor(level=1, write_content_size=True)
        obj = cctx.compressobj(size=content_size)
    parts = [obj.compress(chunk) for chunk in chunks]
    parts.append(obj.flush())
    return bytes((VERSION, FLAG_COMPRESSED)) + claimed.to_bytes(4, "big") + b"".join(parts)


def _zeros(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    block = b"\x00" * chunk
    for _ in range(total // chunk):
        yield block


def _peak_bytes(fn: Callable[[], object]) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            fn()
            err = None
        except BaseException as e:
            err = e
        return tracemalloc.get_traced_memory()[1], err
    finally:
        tracemalloc.stop()


BOMB = 512 << 20  # 512 MiB of zeros, about 16 KiB compressed


@pytest.fixture(scope="module")
def bomb_frames() -> dict[str, bytes]:
    honest_body = _compressed_frame(_zeros(BOMB), BOMB)
    lying = _compressed_frame(_zeros(BOMB), 1000)
    lying_header = _compressed_frame(_zeros(BOMB), 1000, content_size=BOMB)
    max_claim = _compressed_frame(_zeros(BOMB), DEFAULT_LIMITS.decompressed_bytes_max)
    return {"honest": honest_body, "lying": lying, "lying_header": lying_header, "max_claim": max_claim}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("honest", DecompressedTooLarge),
        ("lying", CompressionError),
        ("lying_header", CompressionError),
        ("max_claim", CompressionError),
    ],
)
def test_compression_bombs_are_refused_within_bounded_memory(
    bomb_frames: dict[str, bytes], name: str, error: type[DecodeError]
) -> None:
    frame = bomb_frames[name]
    assert len(frame) < 64 << 10
    peak, err = _peak_bytes(lambda: decode_frame(frame))
    assert isinstance(err, error), err
    # never more than the claimed (bounded) size plus a little
    assert peak < DEFAULT_LIMITS.decompressed_bytes_max + (1 << 20), peak
    if name != "max_claim":
        assert peak < 1 << 20, peak


def test_a_claim_above_the_limit_is_refused_before_decompressing() -> None:
    frame = bytes((VERSION, FLAG_COMPRESSED)) + (2**32 - 1).to_bytes(4, "big") + b"\x28\xb5\x2f\xfd"
    with pytest.raises(DecompressedTooLarge) as info:
        decode_frame(frame)
    assert info.value.value == 2**32 - 1 and info.value.bound == DEFAULT_LIMITS.decompressed_bytes_max


def test_a_body_shorter_than_its_claim_is_refused() -> None:
    body = encode_message(puts(50))
    packed = zstandard.ZstdCompressor(write_content_size=False).compress(body)
    frame = bytes((VERSION, FLAG_COMPRESSED)) + (len(body) + 10).to_bytes(4, "big") + packed
    with pytest.raises(CompressionError):
        decode_frame(frame)
    ok = bytes((VERSION, FLAG_COMPRESSED)) + len(body).to_bytes(4, "big") + packed
    assert decode_frame(ok).messages == (puts(50),)


def test_msgpack_length_bomb_allocates_nothing() -> None:
    """Arrays claiming 100,000 items each, nested: msgpack would pre-size every one."""
    body = (b"\xdd" + (100_000).to_bytes(4, "big")) * 1000
    frame = bytes((VERSION, 0)) + body
    peak, err = _peak_bytes(lambda: decode_frame(frame))
    assert isinstance(err, MalformedFrame), err
    assert peak < 1 << 20, peak


def test_memory_stays_proportional_to_the_frame() -> None:
    """The worst case per input byte: one empty dict per byte, within the limits."""
    count = 60_000
    body = b"\xdc" + count.to_bytes(2, "big") + b"\x80" * count  # an array of 60,000 empty maps
    frame = bytes((VERSION, 0)) + body
    peak, err = _peak_bytes(lambda: decode_frame(frame))
    assert isinstance(err, DecodeError), err
    assert peak < 200 * len(frame), peak


def test_any_buffer_decodes() -> None:
    frame = encode_frame([puts(3), Bye()])
    expected = decode_frame(frame)
    for buf in (bytearray(frame), memoryview(frame), memoryview(b"xx" + frame)[2:]):
        assert decode_frame(buf) == expected  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode_frame(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Compression(level=100),
        lambda: Compression(level=1.5),
        lambda: Compression(min_bytes=-1),
        lambda: Compression(ratio_max=0),
        lambda: DecodeLimits(frame_bytes_max=0),
        lambda: DecodeLimits(depth_max=-3),
        lambda: DecodeLimits(str_bytes_max=1.5),
    ],
)
def test_bad_settings_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(WireSettingError):
        make()
