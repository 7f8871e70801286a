"""Errors of the wire layer (defined in :mod:`statesync.errors`).

Decoding raises :class:`DecodeError` and nothing else, whatever the input
bytes: one subclass per violated limit or rule, each naming the limit (the
:class:`~statesync.wire.DecodeLimits` field or the rule), its bound, the value
seen and where in the message it sits. Encoding raises :class:`DataCloneError`
for what cannot be encoded (like the web's structured clone) and
:class:`EncodeError` for a frame a peer would refuse.
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
    WireError,
    WireSettingError,
    WrongType,
)

__all__ = [
    "BadPath",
    "BatchTooLong",
    "BytesTooLong",
    "CompressionError",
    "ContainerTooLong",
    "DataCloneError",
    "DecodeError",
    "DecompressedTooLarge",
    "EncodeError",
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
    "WireError",
    "WireSettingError",
    "WrongType",
]
