"""msgpack encoding of what the stores keep: ops, snapshot entries, vectors.

Ops and versions are NamedTuples, so msgpack packs them natively as arrays.
Decoding uses ``use_list=False`` so paths and contexts come back as tuples;
user values hold lists, never tuples, so tuples found inside a decoded value
are turned back into lists.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import msgpack

from statesync.core import TYPED, Op, SnapshotEntry, Value, Version
from statesync.core._typedops import typed_body_from_stored, typed_record_plain
from statesync.errors import StoredRecordError

_new = tuple.__new__  # builds a NamedTuple from a tuple without the constructor's overhead
_OP_FIELDS: Final = 7
_VERSION_FIELDS: Final = 4


DecodeError = StoredRecordError
"""A stored record does not decode to what was written (corruption); a StorageError."""


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while decoding millions of tuples.

    Decoding allocates only acyclic containers, and the collector would
    otherwise run a full pass every few hundred thousand of them (it tripled
    the time to load a 1M-path snapshot). Reference counting still frees
    everything; the collector is re-enabled afterwards if it was on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def make_packer() -> Callable[[object], bytes]:
    """A packer for one store (a Packer is not thread-safe; the store owns its own)."""
    packer = msgpack.Packer(use_bin_type=True, default=typed_record_plain)
    pack: Callable[[object], bytes] = packer.pack
    return pack


def _unpack(body: bytes) -> Any:
    return msgpack.unpackb(body, use_list=False, raw=False)


def _lists(value: Any) -> Value:
    """Turn the tuples msgpack decoded inside a value back into lists."""
    t = type(value)
    if t is tuple:
        return [_lists(v) for v in value]
    if t is dict:
        return {k: _lists(v) for k, v in value.items()}
    return value  # type: ignore[no-any-return]


def decode_op(body: bytes) -> Op:
    try:
        raw = _unpack(body)
        if type(raw) is not tuple or len(raw) != _OP_FIELDS:
            raise DecodeError(f"an op record has {type(raw).__name__} shape, not 7 fields")
        value = raw[5]
        if raw[4] == TYPED:
            raw = (*raw[:5], typed_body_from_stored(value), raw[6])
        elif type(value) is tuple or type(value) is dict:
            raw = (*raw[:5], _lists(value), raw[6])
        op: Op = _new(Op, raw)
        return op
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"an op record does not decode: {e}") from e


def _version(raw: Any) -> Version:
    if len(raw) != _VERSION_FIELDS:
        raise DecodeError(f"a version record has {len(raw)} fields, not 4")
    value = raw[0]
    if type(value) is tuple or type(value) is dict:
        raw = (_lists(value), *raw[1:])
    v: Version = _new(Version, raw)
    return v


def decode_entries(body: bytes) -> list[SnapshotEntry]:
    """Decode one snapshot chunk: a msgpack array of (path, versions) entries."""
    try:
        raw = _unpack(body)
        if type(raw) is not tuple:
            raise DecodeError("a snapshot chunk is not an array")
        out: list[SnapshotEntry] = []
        append = out.append
        for path, vs in raw:
            if len(vs) == 1:  # the common case, inlined: one version holding a scalar
                v = vs[0]
                t = type(v[0])
                if t is not tuple and t is not dict and len(v) == _VERSION_FIELDS:
                    append((path, (_new(Version, v),)))
                    continue
            append((path, tuple([_version(v) for v in vs])))
        return out
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"a snapshot chunk does not decode: {e}") from e


def encode_chunks(
    pack: Callable[[object], bytes], entries: Sequence[SnapshotEntry], target_bytes: int
) -> Iterator[tuple[int, bytes]]:
    """Split ``entries`` into msgpack arrays of about ``target_bytes`` each.

    Yields ``(entry count, body)``. A body stays under ``2 * target_bytes``
    unless one entry alone is larger (then it is a chunk by itself). Slices are
    packed whole (one C call per chunk); the slice length adapts to the entry
    sizes seen so far.
    """
    n = len(entries)
    i = 0
    per = 64
    while i < n:
        k = min(per, n - i)
        body = pack(entries[i : i + k])
        while len(body) > 2 * target_bytes and k > 1:
            k = (k + 1) // 2
            body = pack(entries[i : i + k])
        yield k, body
        i += k
        per = max(1, int(k * target_bytes / max(1, len(body))))


def decode_vv(body: bytes) -> dict[str, int]:
    vv: dict[str, int] = _decode_plain(body, dict, "a version vector does not decode", "a version vector is not a map")
    return vv


def decode_endpoints(body: bytes) -> tuple[str, ...]:
    endpoints: tuple[str, ...] = _decode_plain(
        body, tuple, "a peer's endpoints do not decode", "a peer's endpoints are not an array"
    )
    return endpoints


def _decode_plain(body: bytes, kind: type, undecodable: str, wrong_kind: str) -> Any:
    """Unpack a record that must be a ``kind``; raise DecodeError with the text given for each failure."""
    try:
        raw = _unpack(body)
    except Exception as e:
        raise DecodeError(f"{undecodable}: {e}") from e
    if type(raw) is not kind:
        raise DecodeError(wrong_kind)
    return raw
