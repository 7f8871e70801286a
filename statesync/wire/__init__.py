"""The wire layer: message codec, frames, compression, adaptive batching, input limits.

- :func:`encode_message` / :func:`decode_message`: one protocol message (a
  registered attrs class, ``[TAG, field, ...]`` in msgpack) to bytes and back.
- :func:`encode_payload` / :func:`decode_payload`: a MessagePort payload;
  what cannot be cloned raises :class:`DataCloneError` at the call.
- :func:`encode_frame` / :func:`decode_frame`: a frame (version, flags, one
  message or a batch), zstd-compressed when it pays.
- :class:`Batcher`: which queued items go out together, and when.

Every decode function raises :class:`DecodeError` (a subclass naming the
violated limit) and nothing else, whatever the bytes.
"""

from __future__ import annotations

from statesync.errors import (
    BadPath,
    BatchTooLong,
    BytesTooLong,
    CompressionError,
    ContainerTooLong,
    DataCloneError,
    DecodeError,
    DecompressedTooLarge,
    EncodeError,
    FrameTooLarge,
    MalformedFrame,
    NestingTooDeep,
    OutOfRange,
    PathTooDeep,
    RegistrationError,
    SegmentTooLong,
    StringTooLong,
    UnknownFlags,
    UnknownMessageType,
    UnknownVersion,
    ValueRejected,
    WireSettingError,
    WrongType,
)
from statesync.wire._batcher import Batch, Batcher, BatcherError
from statesync.wire._converter import (
    TAG_MAX,
    TAG_MIN,
    decode_message,
    decode_payload,
    encode_message,
    encode_payload,
    register_message,
    registered_messages,
    unregister_message,
)
from statesync.wire._frame import (
    DEFAULT_COMPRESSION,
    FLAG_BATCH,
    FLAG_COMPRESSED,
    FLAG_PRIORITY,
    VERSION,
    Compression,
    Frame,
    decode_frame,
    encode_frame,
)
from statesync.wire._limits import DEFAULT_LIMITS, DecodeLimits

__all__ = [
    "DEFAULT_COMPRESSION",
    "DEFAULT_LIMITS",
    "FLAG_BATCH",
    "FLAG_COMPRESSED",
    "FLAG_PRIORITY",
    "TAG_MAX",
    "TAG_MIN",
    "VERSION",
    "BadPath",
    "Batch",
    "BatchTooLong",
    "Batcher",
    "BatcherError",
    "BytesTooLong",
    "Compression",
    "CompressionError",
    "ContainerTooLong",
    "DataCloneError",
    "DecodeError",
    "DecodeLimits",
    "DecompressedTooLarge",
    "EncodeError",
    "Frame",
    "FrameTooLarge",
    "MalformedFrame",
    "NestingTooDeep",
    "OutOfRange",
    "PathTooDeep",
    "RegistrationError",
    "SegmentTooLong",
    "StringTooLong",
    "UnknownFlags",
    "UnknownMessageType",
    "UnknownVersion",
    "ValueRejected",
    "WireSettingError",
    "WrongType",
    "decode_frame",
    "decode_message",
    "decode_payload",
    "encode_frame",
    "encode_message",
    "encode_payload",
    "register_message",
    "registered_messages",
    "unregister_message",
]
