"""One entry point to the collaborative types: their op records and snapshots as plain data.

What a codec (the wire's op block, the SQLite log, a snapshot chunk) carries
for a typed op is ``[type code, op.to_plain()]``; :func:`typed_op_from_plain`
turns it back into an op record and raises only InvalidOperation for
anything malformed. Snapshots name their type (``"type"``), so
:func:`typed_from_snapshot` picks the class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, TypeAlias

from statesync.core._awset import AWSet, SetAdd, SetOp, SetRemove, set_op_from_plain
from statesync.core._counter import Counter, CounterAdd, counter_op_from_plain
from statesync.core._list import List, ListDelete, ListInsert, ListMove, ListOp, list_op_from_plain
from statesync.core._text import Text, TextDelete, TextInsert, TextOp, text_op_from_plain
from statesync.errors import InvalidOperation

TypedOp: TypeAlias = TextOp | ListOp | CounterAdd | SetOp
Typed: TypeAlias = Text | List | Counter | AWSet

TEXT: Final = 1
LIST: Final = 2
COUNTER: Final = 3
AWSET: Final = 4

_CODE_OF: dict[type, int] = {
    TextInsert: TEXT,
    TextDelete: TEXT,
    ListInsert: LIST,
    ListDelete: LIST,
    ListMove: LIST,
    CounterAdd: COUNTER,
    SetAdd: AWSET,
    SetRemove: AWSET,
}
_PARSE: dict[int, Callable[[object], TypedOp]] = {
    TEXT: text_op_from_plain,
    LIST: list_op_from_plain,
    COUNTER: counter_op_from_plain,
    AWSET: set_op_from_plain,
}
_CLASS_OF: dict[str, type[Typed]] = {"text": Text, "list": List, "counter": Counter, "awset": AWSet}
TYPE_NAMES: Final = tuple(_CLASS_OF)
"""The type names a path may hold: ``text``, ``list``, ``counter``, ``awset``."""


def type_code(op: TypedOp) -> int:
    """The code of the type ``op`` belongs to (TEXT, LIST, COUNTER, AWSET)."""
    return _CODE_OF[type(op)]


def typed_op_to_plain(op: TypedOp) -> list[object]:
    return [_CODE_OF[type(op)], op.to_plain()]


def typed_op_from_plain(data: object) -> TypedOp:
    """An op record from :func:`typed_op_to_plain`'s form; only InvalidOperation when malformed."""
    if not isinstance(data, list | tuple) or len(data) != 2 or type(data[0]) is not int:
        raise InvalidOperation(f"a typed op is [type code, op], got {data!r:.60}")
    parse = _PARSE.get(data[0])
    if parse is None:
        raise InvalidOperation(f"unknown typed-op code {data[0]} (known: {sorted(_PARSE)})")
    try:
        return parse(data[1])
    except InvalidOperation:
        raise
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
        raise InvalidOperation(f"malformed typed op ({type(exc).__name__}: {exc})"[:200]) from exc


def new_typed(type_name: str) -> Typed:
    """An empty instance of the type named ``type_name``."""
    cls = _CLASS_OF.get(type_name)
    if cls is None:
        raise InvalidOperation(f"unknown type {type_name!r}; one of {', '.join(TYPE_NAMES)}")
    return cls()


def typed_from_snapshot(data: Mapping[str, object]) -> Typed:
    """The type a snapshot names, loaded from it; only InvalidOperation when malformed."""
    if not isinstance(data, Mapping):
        raise InvalidOperation(f"a typed snapshot is a map, got {type(data).__name__}")
    name = data.get("type")
    cls = _CLASS_OF.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidOperation(f"snapshot of unknown type {name!r:.40}; one of {', '.join(TYPE_NAMES)}")
    try:
        return cls.from_snapshot(data)
    except InvalidOperation:
        raise
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
        raise InvalidOperation(f"malformed {name} snapshot ({type(exc).__name__}: {exc})"[:200]) from exc
