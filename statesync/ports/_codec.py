"""Payload and frame encoding for ports: the wire's codecs with fast paths for the hot cases.

Replication links post protocol frames as ``bytes`` payloads at high rates.
For an exact ``bytes`` object the msgpack ``bin`` form is built and parsed here
directly (the same bytes ``encode_payload`` makes, checked by a property
test); everything else goes through ``statesync.wire``.
"""

from __future__ import annotations

from typing import Final

import msgpack

from statesync.core import Value
from statesync.ports._envelope import Msg, Msgs
from statesync.wire import (
    DEFAULT_COMPRESSION,
    DEFAULT_LIMITS,
    FLAG_BATCH,
    FLAG_PRIORITY,
    VERSION,
    DecodeLimits,
    decode_frame,
    decode_payload,
    encode_frame,
    encode_payload,
)

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


# -- frames of plain messages (the latency path) ----------------------------------
#
# A frame that holds only ``Msgs`` envelopes and ``Msg`` envelopes without ports
# (requests, responses, priority messages) and is small (no compression would
# apply) is built and parsed here with msgpack directly: the same bytes
# ``encode_frame`` makes (checked by a property test), and a parser that
# accepts only that exact shape and hands everything else, including every
# malformed frame, to ``decode_frame``. Together they save about 10 us a frame.

_MSGS_TAG: Final = Msgs.TAG
_MSG_TAG: Final = Msg.TAG
_FAST_BODY_MAX: Final = DEFAULT_COMPRESSION.min_bytes  # at or above it, wire may compress
_FAST_FRAME_MAX: Final = 64 << 10
_HEADER_PLAIN: Final = bytes((VERSION, 0))
_HEADER_PRIO: Final = bytes((VERSION, FLAG_PRIORITY))
_HEADER_BATCH: Final = bytes((VERSION, FLAG_BATCH))
_HEADER_BATCH_PRIO: Final = bytes((VERSION, FLAG_BATCH | FLAG_PRIORITY))
_U64: Final = (1 << 64) - 1


class _NotFast(Exception):
    pass


def _fast_form(m: object) -> tuple[object, ...] | None:
    """The msgpack form of a ``Msgs``, or of a ``Msg`` without ports; None for others."""
    if type(m) is Msgs:
        return (_MSGS_TAG, m.dst, m.seq, m.payloads)
    if type(m) is Msg and not m.ports:
        return (_MSG_TAG, m.dst, m.seq, m.prio, m.kind, m.req_id, m.payload, ())
    return None


def encode_envelopes(envs: list[object], *, priority: bool = False) -> bytes:
    """``encode_frame(envs, priority=priority)``, faster for a few small plain messages."""
    if len(envs) == 1:
        form = _fast_form(envs[0])
        if form is not None:
            body = _packb(form)
            if len(body) < _FAST_BODY_MAX:
                return (_HEADER_PRIO if priority else _HEADER_PLAIN) + body
    elif len(envs) <= 15:
        forms = [_fast_form(m) for m in envs]
        if None not in forms:
            body = _packb(forms)
            if len(body) < _FAST_BODY_MAX:
                return (_HEADER_BATCH_PRIO if priority else _HEADER_BATCH) + body
    return encode_frame(envs, priority=priority, compression=DEFAULT_COMPRESSION)


def _packb(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _uint(b: bytes, i: int) -> tuple[int, int]:
    c = b[i]
    if c <= 0x7F:
        return c, i + 1
    if c == 0xCC:
        return b[i + 1], i + 2
    if c == 0xCD:
        return int.from_bytes(b[i + 1 : i + 3], "big"), i + 3
    if c == 0xCE:
        return int.from_bytes(b[i + 1 : i + 5], "big"), i + 5
    if c == 0xCF:
        return int.from_bytes(b[i + 1 : i + 9], "big"), i + 9
    raise _NotFast


_BIN_WIDTH: Final = {0xC5: 2, 0xC6: 4}
"""Bytes of the size of a msgpack bin 16 / bin 32, by its first byte."""


def _bin(b: bytes, i: int, end: int, bin_max: int) -> tuple[bytes, int]:
    c = b[i]
    if c == 0xC4:  # bin 8, the usual case
        size = b[i + 1]
        i += 2
    else:
        width = _BIN_WIDTH.get(c)  # bin 16, bin 32
        if width is None:
            raise _NotFast
        size = int.from_bytes(b[i + 1 : i + 1 + width], "big")
        i += 1 + width
    if size > bin_max or i + size > end:
        raise _NotFast
    return b[i : i + size], i + size


def _message_at(b: bytes, i: int, end: int, bin_max: int) -> tuple[Msgs | Msg, int]:
    if b[i] == 0x98 and b[i + 1] == _MSG_TAG:  # a Msg without ports
        dst, i = _uint(b, i + 2)
        seq, i = _uint(b, i)
        c = b[i]
        if c not in (0xC2, 0xC3):
            raise _NotFast
        kind, i = _uint(b, i + 1)
        req_id, i = _uint(b, i)
        payload, i = _bin(b, i, end, bin_max)
        if b[i] != 0x90 or dst > _U64 or seq > _U64 or req_id > _U64:
            raise _NotFast
        return Msg(dst, seq, c == 0xC3, kind, req_id, payload, ()), i + 1
    return _msgs_at(b, i, end, bin_max)


def _msgs_at(b: bytes, i: int, end: int, bin_max: int) -> tuple[Msgs, int]:
    if b[i] != 0x94 or b[i + 1] != _MSGS_TAG:
        raise _NotFast
    dst, i = _uint(b, i + 2)
    seq, i = _uint(b, i)
    c = b[i]
    if 0x90 <= c <= 0x9F:
        count = c & 0x0F
        i += 1
    elif c == 0xDC:
        count = int.from_bytes(b[i + 1 : i + 3], "big")
        i += 3
    else:
        raise _NotFast
    payloads = []
    for _ in range(count):
        payload, i = _bin(b, i, end, bin_max)
        payloads.append(payload)
    if dst > _U64 or seq > _U64:
        raise _NotFast
    return Msgs(dst, seq, tuple(payloads)), i


def decode_envelopes(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[object, ...]:
    """``decode_frame(data, limits).messages``, faster for a few plain ``Msgs``.

    Raises DecodeError (from ``decode_frame``) for anything malformed.
    """
    end = len(data)
    if 4 <= end <= _FAST_FRAME_MAX and end <= limits.frame_bytes_max and data[0] == VERSION:
        flags = data[1] & ~FLAG_PRIORITY
        try:
            if flags == 0:
                msg, i = _message_at(data, 2, end, limits.bin_bytes_max)
                if i == end:
                    return (msg,)
            elif flags == FLAG_BATCH:
                c = data[2]
                if 0x92 <= c <= 0x9F:  # 2 to 15 messages
                    i = 3
                    out = []
                    for _ in range(c & 0x0F):
                        msg, i = _message_at(data, i, end, limits.bin_bytes_max)
                        out.append(msg)
                    if i == end:
                        return tuple(out)
        except (_NotFast, IndexError):
            pass
    return decode_frame(data, limits).messages
