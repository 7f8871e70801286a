"""msgpack at the edge: packing with a DataCloneError naming the culprit, and
unpacking within DecodeLimits with a DecodeError for whatever goes wrong.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgpack

from statesync.errors import (
    BytesTooLong,
    ContainerTooLong,
    DataCloneError,
    DecodeError,
    FrameTooLarge,
    MalformedFrame,
    NestingTooDeep,
    StringTooLong,
    WrongType,
)
from statesync.wire._limits import DecodeLimits, exceeds
from statesync.wire._values import find_unencodable_str


def packb(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


_LIMIT_RE: Final = re.compile(r"(\d+) exceeds max_(str|bin|array|map|ext)_len\((\d+)\)")


def unpack(data: bytes, limits: DecodeLimits) -> Any:
    """Unpack one msgpack object within ``limits``; raise DecodeError.

    A pre-pass (``Unpacker.skip``, which allocates nothing) first checks that
    the bytes hold exactly one complete object, so that no container is
    allocated at a length its bytes cannot back: msgpack pre-sizes arrays
    from their declared length.
    """
    size = len(data)
    try:
        skipper = msgpack.Unpacker(max_buffer_size=max(size, 1))
        skipper.feed(data)
        skipper.skip()
        if skipper.tell() != size:
            raise MalformedFrame(
                f"{size - skipper.tell()} extra bytes follow the message", limit="format", value=size
            )
        return msgpack.unpackb(
            data,
            use_list=False,
            raw=False,
            strict_map_key=True,
            max_str_len=limits.str_bytes_max,
            max_bin_len=limits.bin_bytes_max,
            max_array_len=limits.container_len_max,
            max_map_len=limits.container_len_max,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except msgpack.StackError as exc:
        raise NestingTooDeep(
            "the data nests deeper than the unpacker's stack (1024 levels)",
            limit="depth_max",
            bound=limits.depth_max,
            value=">1024",
        ) from exc
    except msgpack.OutOfData as exc:
        raise MalformedFrame("the message is truncated", limit="format", value=size) from exc
    except msgpack.ExtraData as exc:  # pragma: no cover - the pre-pass catches it
        raise MalformedFrame("extra bytes follow the message", limit="format", value=size) from exc
    except msgpack.FormatError as exc:
        raise MalformedFrame("the bytes are not msgpack (a reserved type byte)", limit="format") from exc
    except UnicodeDecodeError as exc:
        raise MalformedFrame("a str is not valid UTF-8", limit="format") from exc
    except ValueError as e:
        raise _limit_error(str(e), limits) from e
    except Exception as e:
        raise MalformedFrame(f"the bytes do not unpack: {type(e).__name__}: {e}", limit="unexpected") from e


def _limit_error(text: str, limits: DecodeLimits) -> DecodeError:
    m = _LIMIT_RE.search(text)
    if m is None:
        if "map key" in text:
            return WrongType(f"a map key is not a str ({text})", limit="type", bound="str")
        return MalformedFrame(f"the bytes do not unpack: {text}", limit="format")
    seen, kind, bound = int(m.group(1)), m.group(2), int(m.group(3))
    if kind == "str":
        return StringTooLong(
            f"a str of {seen} bytes exceeds str_bytes_max={bound}", limit="str_bytes_max", bound=bound, value=seen
        )
    if kind == "bin":
        return BytesTooLong(
            f"a bytes value of {seen} bytes exceeds bin_bytes_max={bound}", limit="bin_bytes_max", bound=bound, value=seen
        )
    if kind == "ext":
        return MalformedFrame("msgpack ext types are not used by this protocol", limit="format", value=seen)
    return ContainerTooLong(
        f"a{'n array' if kind == 'array' else ' map'} of {seen} items exceeds container_len_max={bound}",
        limit="container_len_max",
        bound=bound,
        value=seen,
    )


def pack_checked(obj: object, original: object) -> bytes:
    """packb, with a DataCloneError naming the culprit on failure."""
    try:
        return packb(obj)
    except UnicodeEncodeError as exc:
        where = find_unencodable_str(original) or "$"
        raise DataCloneError(
            f"the str at {where} is not valid UTF-8 (a lone surrogate?); fix or drop it",
            type_name="str",
            where=where,
        ) from exc
    except (TypeError, ValueError, OverflowError) as e:
        raise DataCloneError(
            f"cannot encode {type(original).__qualname__}: {e}", type_name=type(original).__qualname__
        ) from e


def frame_too_large(size: int, limits: DecodeLimits, what: str) -> FrameTooLarge:
    """The error for ``size`` bytes of ``what`` (a frame, a message...) beyond frame_bytes_max."""
    return exceeds(FrameTooLarge, limits, "frame_bytes_max", size, f"a {what} of {size} bytes")


def undecodable(e: Exception, what: str, limits: DecodeLimits) -> DecodeError:
    """The decoder's safety net: the DecodeError for a Python error met decoding ``what``."""
    if isinstance(e, RecursionError):
        return NestingTooDeep(f"the {what} nests too deep", limit="depth_max", bound=limits.depth_max)
    return MalformedFrame(f"the {what} does not decode: {type(e).__name__}: {e}", limit="unexpected")
