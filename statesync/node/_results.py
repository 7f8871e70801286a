"""What node and client calls return: the one write receipt and the one conflict type.

The node's ``set``/``delete`` and :class:`statesync.client.Client`'s return a
:class:`Receipt`; ``conflicts(path)`` on either lists :class:`Conflict` s.
"""

from __future__ import annotations

from typing import NamedTuple

import attrs

from statesync.core import Value, Version, format_path

__all__ = ["Conflict", "Receipt"]


class Receipt(NamedTuple):
    """What a write returns once its concern is met.

    ``origin`` and ``seq`` name the write (its dot), ``hlc`` is its hybrid
    timestamp, ``acked_by`` the peers whose acknowledgement met the concern.
    ``segments`` is the written path as a tuple, ``path`` its text form.
    """

    segments: tuple[str, ...]
    origin: str
    seq: int
    hlc: int
    acked_by: tuple[str, ...]

    @property
    def path(self) -> str:
        return format_path(self.segments)

    @property
    def dot(self) -> tuple[str, int]:
        return (self.origin, self.seq)


@attrs.frozen
class Conflict:
    """One concurrent version of a leaf, as ``conflicts(path)`` lists them.

    Over the client protocol a version too large to show has ``value`` None
    and ``omitted`` True.
    """

    value: Value
    origin: str
    seq: int
    hlc: int
    omitted: bool = False

    @classmethod
    def of(cls, v: Version) -> Conflict:
        return cls(v.value, v.origin, v.seq, v.hlc)
