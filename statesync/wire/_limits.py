"""Input limits: the bounds every decoded frame is checked against."""

from __future__ import annotations

from typing import TypeVar

import attrs

from statesync.core import DEFAULT_VALUE_LIMITS, PATH_DEPTH_MAX, SEGMENT_CHARS_MAX
from statesync.errors import DecodeError, EncodeError, WireSettingError


@attrs.frozen(cache_hash=True)
class DecodeLimits:
    """Bounds on what a decoder accepts; a violation raises the matching DecodeError.

    The defaults accept every value the core accepts (1 MiB strings, 100,000
    items per container, 32 levels) and every frame the default batcher and
    snapshot chunking produce. Memory used to decode one frame stays within a
    small multiple of ``decompressed_bytes_max`` (Python objects cost up to
    about 64 bytes per input byte in the worst case, an empty dict per byte).
    """

    frame_bytes_max: int = 8 << 20
    """Bytes of a frame as received (compressed or not), and of a payload."""
    decompressed_bytes_max: int = 16 << 20
    """Bytes a compressed body may expand to; checked before allocating."""
    depth_max: int = DEFAULT_VALUE_LIMITS.depth_max
    """Levels of nested containers in a value (the value itself is level 0)."""
    str_bytes_max: int = DEFAULT_VALUE_LIMITS.str_chars_max
    """UTF-8 bytes of any one str."""
    bin_bytes_max: int = DEFAULT_VALUE_LIMITS.value_bytes_max
    """Bytes of any one bytes value."""
    container_len_max: int = DEFAULT_VALUE_LIMITS.container_items_max
    """Items of any one list, tuple or dict (and context pairs of one ops block)."""
    batch_len_max: int = 4096
    """Messages in one frame."""
    ops_len_max: int = 65536
    """Ops in one message (``Ops``, ``SyncResponse``), entries in one ``SnapshotChunk``."""
    path_depth_max: int = PATH_DEPTH_MAX
    """Segments of a path."""
    segment_chars_max: int = SEGMENT_CHARS_MAX
    """Characters of a path segment."""
    node_id_chars_max: int = 256
    """Characters of a node id (an op's origin, a context entry)."""

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(DecodeLimits):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise WireSettingError(f"DecodeLimits.{field.name} must be an int >= 1, not {value!r}")


DEFAULT_LIMITS = DecodeLimits()


_E = TypeVar("_E", bound=DecodeError | EncodeError)


def over(cls: type[_E], limits: DecodeLimits, name: str, value: int, what: str) -> _E:
    """``cls`` for ``value`` beyond the bound ``name`` of ``limits``: "``what``; ``name`` is N"."""
    bound = getattr(limits, name)
    return cls(f"{what}; {name} is {bound}", limit=name, bound=bound, value=value)


def exceeds(cls: type[_E], limits: DecodeLimits, name: str, value: int, what: str, *, advice: str = "") -> _E:
    """``cls`` for ``value`` beyond the bound ``name`` of ``limits``: "``what`` exceeds ``name``=N``advice``"."""
    bound = getattr(limits, name)
    return cls(f"{what} exceeds {name}={bound}{advice}", limit=name, bound=bound, value=value)
