"""Payload encoding for ports: the wire's payload codec with a fast path for ``bytes``.

Replication links post protocol frames as ``bytes`` payloads at high rates.
For an exact ``bytes`` object the msgpack ``bin`` form is built and parsed here
directly (the same bytes ``encode_payload`` makes, checked by a property
test); everything else goes through ``statesync.wire``.
"""

from __future__ import annotations

from typing import Final

from statesync.core import Value
from statesync.wire import DEFAULT_LIMITS, DecodeLimits, decode_payload, encode_payload

_BIN_MAX: Final = DEFAULT_LIMITS.bin_bytes_max


def encode(data: object) -> bytes:
    """``encode_payload(data)``, faster for ``bytes``; raises DataCloneError."""
    if type(data) is bytes:
        n = len(data)
        if n < 0x100:
            return b"\xc4" + n.to_bytes(1, "big") + data
        if n < 0x10000:
            return b"\xc5" + n.to_bytes(2, "big") + data
        if n <= _BIN_MAX:
            return b"\xc6" + n.to_bytes(4, "big") + data
    return encode_payload(data)


def decode(payload: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Value:
    """``decode_payload(payload)``, faster for a ``bin``; raises DecodeError only."""
    size = len(payload)
    if size >= 2:
        head = payload[0]
        if head == 0xC4:
            if size == 2 + payload[1] and size - 2 <= limits.bin_bytes_max:
                return payload[2:]
        elif head == 0xC5:
            if (
                size >= 3
                and size == 3 + int.from_bytes(payload[1:3], "big")
                and size - 3 <= limits.bin_bytes_max
            ):
                return payload[3:]
        elif (
            head == 0xC6
            and size >= 5
            and size == 5 + int.from_bytes(payload[1:5], "big")
            and size - 5 <= limits.bin_bytes_max
            and size <= limits.frame_bytes_max
        ):
            return payload[5:]
    return decode_payload(payload, limits)
