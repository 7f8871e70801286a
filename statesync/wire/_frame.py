"""Frames: what goes into one ZeroMQ message.

Layout::

    byte 0     version (1)
    byte 1     flags: 0x01 compressed, 0x02 batch, 0x04 priority; other bits
               are an error (UnknownFlags)
    [compressed only] 4 bytes, big-endian: the size of the decompressed body
    body       one message ``[TAG, ...]``, or with the batch flag an array of
               messages; zstd-compressed when the flag says so

A compressed body's stated size is checked against ``decompressed_bytes_max``
before anything is allocated, and decompression writes into a buffer of
exactly that size: a body that expands further fails (no bomb gets through,
whatever the zstd header claims), and one that expands to less is refused.
Bytes after the end of the zstd frame are ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Final

import attrs
import zstandard

from statesync.errors import (
    BatchTooLong,
    CompressionError,
    DataCloneError,
    DecodeError,
    DecompressedTooLarge,
    EncodeError,
    MalformedFrame,
    UnknownFlags,
    UnknownVersion,
    WireSettingError,
)
from statesync.wire._converter import (
    _decoder,
    encode_message,
    pack_checked,
    structure_message,
    unpack,
    unstructure_message,
)
from statesync.wire._limits import DEFAULT_LIMITS, DecodeLimits, exceeds, over
from statesync.wire._msgpack import frame_too_large, undecodable
from statesync.wire._values import clone_error_at

VERSION: Final = 1
FLAG_COMPRESSED: Final = 0x01
FLAG_BATCH: Final = 0x02
FLAG_PRIORITY: Final = 0x04
KNOWN_FLAGS: Final = FLAG_COMPRESSED | FLAG_BATCH | FLAG_PRIORITY
ZSTD_LEVEL_MIN: Final = -(1 << 17)
"""zstd's fastest level (ZSTD_minCLevel); the slowest is zstandard.MAX_COMPRESSION_LEVEL."""
HEADER_BYTES: Final = 2
_SEND_LESS: Final = "; send fewer or smaller messages"
SIZE_BYTES: Final = 4


@attrs.frozen
class Compression:
    """When and how to compress a frame body (zstd).

    A body of at least ``min_bytes`` is compressed at ``level``; the compressed
    form is kept only when it pays: when it, with its 4-byte size, is at most
    ``ratio_max`` times the plain body. Otherwise the frame goes plain.
    """

    min_bytes: int = 1024
    level: int = 1
    ratio_max: float = 0.9

    def __attrs_post_init__(self) -> None:
        if type(self.min_bytes) is not int or self.min_bytes < 0:
            raise WireSettingError(f"Compression.min_bytes must be an int >= 0, not {self.min_bytes!r}")
        if type(self.level) is not int or not ZSTD_LEVEL_MIN <= self.level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise WireSettingError(
                f"Compression.level must be an int from {ZSTD_LEVEL_MIN} to "
                f"{zstandard.MAX_COMPRESSION_LEVEL}, not {self.level!r}"
            )
        if not (isinstance(self.ratio_max, (int, float)) and self.ratio_max > 0):
            raise WireSettingError(f"Compression.ratio_max must be a number > 0, not {self.ratio_max!r}")


DEFAULT_COMPRESSION: Final = Compression()


@attrs.frozen
class Frame:
    """A decoded frame: its priority flag and its messages, in order."""

    priority: bool
    messages: tuple[object, ...]


class _Codecs(threading.local):
    """zstd contexts are not thread-safe: one set per thread."""

    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        c = self.compressors.get(level)
        if c is None:
            c = zstandard.ZstdCompressor(
                level=level, write_content_size=False, write_checksum=False, write_dict_id=False
            )
            self.compressors[level] = c
        return c


_codecs = _Codecs()


def encode_frame(
    messages: Sequence[object],
    *,
    priority: bool = False,
    compression: Compression | None = DEFAULT_COMPRESSION,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> bytes:
    """One frame holding ``messages`` (one, or a batch), compressed when it pays.

    ``limits`` are the receiver's: a frame it would refuse (too many messages,
    too many bytes) raises EncodeError here instead. A message that cannot be
    encoded raises DataCloneError, its ``where`` starting with the message's
    index in a batch (``$[2].ops[0].value``).
    """
    count = len(messages)
    if count == 0:
        raise EncodeError("a frame needs at least one message", limit="batch_len_max", bound=1, value=0)
    if count > limits.batch_len_max:
        raise exceeds(EncodeError, limits, "batch_len_max", count, f"a frame of {count} messages", advice="; split the batch")
    if count == 1:
        body = encode_message(messages[0])
        flags = 0
    else:
        parts: list[object] = []
        for i, msg in enumerate(messages):
            try:
                parts.append(unstructure_message(msg))
            except DataCloneError as e:
                clone_error_at(e, f"[{i}]")
                raise
        body = pack_checked(parts, list(messages))
        flags = FLAG_BATCH
    if priority:
        flags |= FLAG_PRIORITY
    size = len(body)
    if size > limits.decompressed_bytes_max:
        raise exceeds(EncodeError, limits, "decompressed_bytes_max", size, f"a frame body of {size} bytes", advice=_SEND_LESS)
    if compression is not None and size >= compression.min_bytes:
        packed = _codecs.compressor(compression.level).compress(body)
        if len(packed) + SIZE_BYTES <= size * compression.ratio_max:
            frame = b"".join(
                (bytes((VERSION, flags | FLAG_COMPRESSED)), size.to_bytes(SIZE_BYTES, "big"), packed)
            )
            return _check_size(frame, limits)
    return _check_size(bytes((VERSION, flags)) + body, limits)


def _check_size(frame: bytes, limits: DecodeLimits) -> bytes:
    if len(frame) > limits.frame_bytes_max:
        raise exceeds(EncodeError, limits, "frame_bytes_max", len(frame), f"a frame of {len(frame)} bytes", advice=_SEND_LESS)
    return frame


def decode_frame(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Frame:
    """Decode and validate one frame; raise DecodeError (and nothing else), whatever the bytes.

    ``data`` may be any buffer (bytes, bytearray, memoryview, a zmq frame).
    """
    try:
        return _decode_frame(data, limits)
    except DecodeError:
        raise
    except Exception as e:
        raise undecodable(e, "frame", limits) from e


def _decode_frame(data: bytes, limits: DecodeLimits) -> Frame:
    view = memoryview(data).cast("B")  # any buffer: bytes, bytearray, a zmq frame
    size = len(view)
    if size > limits.frame_bytes_max:
        raise frame_too_large(size, limits, "frame")
    if size <= HEADER_BYTES:
        raise MalformedFrame(f"a frame of {size} bytes is too short to hold anything", limit="format", value=size)
    version = view[0]
    if version != VERSION:
        raise UnknownVersion(
            f"frame version {version} is not spoken here (this build speaks {VERSION}); upgrade the older side",
            limit="version",
            bound=VERSION,
            value=version,
        )
    flags = view[1]
    if flags & ~KNOWN_FLAGS:
        raise UnknownFlags(
            f"frame flags 0x{flags:02x} have unknown bits 0x{flags & ~KNOWN_FLAGS:02x}; upgrade this side",
            limit="flags",
            bound=KNOWN_FLAGS,
            value=flags,
        )
    if flags & FLAG_COMPRESSED:
        body: bytes | memoryview = _decompress(view, limits)
    else:
        body = view[HEADER_BYTES:]
    obj = unpack(body, limits)  # type: ignore[arg-type]
    if flags & FLAG_BATCH:
        if type(obj) is not tuple or not obj:
            raise MalformedFrame("a batch frame's body is not a non-empty array of messages", limit="format")
        if len(obj) > limits.batch_len_max:
            raise exceeds(BatchTooLong, limits, "batch_len_max", len(obj), f"a frame of {len(obj)} messages")
        decoder = _decoder(limits)
        messages = []
        for i, item in enumerate(obj):
            try:
                messages.append(decoder.message(item))
            except DecodeError as e:
                raise e.at(f"[{i}]") from e
        return Frame(bool(flags & FLAG_PRIORITY), tuple(messages))
    return Frame(bool(flags & FLAG_PRIORITY), (structure_message(obj, limits),))


def _decompress(view: memoryview, limits: DecodeLimits) -> bytes:
    if len(view) <= HEADER_BYTES + SIZE_BYTES:
        raise MalformedFrame("a compressed frame is too short to hold a body", limit="format", value=len(view))
    claimed = int.from_bytes(view[HEADER_BYTES : HEADER_BYTES + SIZE_BYTES], "big")
    if claimed > limits.decompressed_bytes_max:
        raise over(DecompressedTooLarge, limits, "decompressed_bytes_max", claimed, f"a compressed frame claims {claimed} bytes")
    if claimed == 0:
        raise MalformedFrame("a compressed frame claims an empty body", limit="format", value=0)
    packed = view[HEADER_BYTES + SIZE_BYTES :]
    try:
        stated = zstandard.frame_content_size(packed)
    except zstandard.ZstdError as e:
        raise CompressionError(f"the compressed body is corrupt: {e}", limit="zstd") from e
    if stated >= 0 and stated != claimed:
        # zstd would size its output from its own header, ignoring max_output_size.
        raise CompressionError(
            f"the zstd header states {stated} bytes but the frame claims {claimed}",
            limit="decompressed_bytes_max",
            bound=claimed,
            value=stated,
        )
    try:
        body: bytes = _codecs.decompressor.decompress(packed, max_output_size=claimed)
    except zstandard.ZstdError as e:
        raise CompressionError(
            f"the compressed body does not expand to the {claimed} bytes it claims: {e}",
            limit="decompressed_bytes_max",
            bound=claimed,
        ) from e
    if len(body) != claimed:
        raise CompressionError(
            f"the compressed body expands to {len(body)} bytes, not the {claimed} it claims",
            limit="decompressed_bytes_max",
            bound=claimed,
            value=len(body),
        )
    return body
