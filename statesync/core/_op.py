"""Operations, versions and change records: the immutable facts of the tree.

All three are NamedTuples: immutable, cheap to create, and packed by msgpack
as plain arrays, which keeps the wire format small and the hot paths fast.
"""

from __future__ import annotations

import enum
from typing import Final, Literal, NamedTuple, TypeAlias

from statesync.core._context import Context, Dot
from statesync.core._path import Path
from statesync.core._value import Value

PUT: Final = 0
"""An op that writes ``value`` at ``path`` (a dict value is a subtree write)."""
REMOVE: Final = 1
"""An op that removes ``path`` and everything beneath it."""


class _Absent(enum.Enum):
    ABSENT = "absent"

    def __repr__(self) -> str:
        return "<absent>"

    def __bool__(self) -> bool:
        return False


ABSENT: Final = _Absent.ABSENT
"""Marks a path that holds nothing (distinct from a stored ``None``)."""
AbsentType: TypeAlias = Literal[_Absent.ABSENT]


class Op(NamedTuple):
    """One write: put or remove at ``path``, named by its dot ``(origin, seq)``.

    ``context`` is the compact causal context of what the write overwrites:
    sorted ``(node_id, n)`` pairs covering the dots its author had seen in the
    write's scope (the path, everything beneath it, and its ancestors).
    Applying the op removes the versions in scope that the context covers and
    adds the op's own leaves.
    """

    origin: str
    seq: int
    hlc: int
    path: Path
    kind: int
    value: Value
    context: Context

    @property
    def dot(self) -> Dot:
        return (self.origin, self.seq)


class Version(NamedTuple):
    """One version of a leaf: its value and the write that made it."""

    value: Value
    hlc: int
    origin: str
    seq: int


def version_key(v: Version) -> tuple[int, str, int]:
    """The canonical order of versions: (hlc, node_id, seq); the last one wins ties."""
    return (v.hlc, v.origin, v.seq)


class Change(NamedTuple):
    """What applying an op did to one leaf: its visible value before and after.

    ``old`` or ``new`` is ``ABSENT`` where the leaf did not, or no longer does,
    exist. ``origin``/``seq`` name the op that caused the change.
    """

    path: Path
    old: Value | AbsentType
    new: Value | AbsentType
    origin: str
    seq: int

    @property
    def dot(self) -> Dot:
        return (self.origin, self.seq)
