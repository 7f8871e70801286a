"""The field types a message may have, and the table of registered message classes.

See :mod:`statesync.wire._converter` for the supported types; the encoding
and decoding hooks (``_encode``, ``_decode``) dispatch on the same tests.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from typing import Any, Final, Union

import attrs

from statesync.core import Op, Value, Version
from statesync.errors import RegistrationError

UnstructureHook = Callable[[Any], Any]
StructureHook = Callable[[Any, Any], Any]

NONE: Final = type(None)
PRIMITIVES: Final = (str, int, float, bool, bytes, NONE)
VALUE_MEMBERS: Final = frozenset({bool, int, float, str, bytes, list, dict, NONE})
SNAPSHOT_ENTRY: Final = tuple[tuple[str, ...], tuple[Version, ...]]


BY_TAG: dict[int, type] = {}
"""The tagged union: tag -> message class (written by the converter's registry only)."""
BY_CLASS: dict[type, int] = {}


def is_union(t: object) -> bool:
    return typing.get_origin(t) in (Union, types.UnionType)


def is_value_type(t: object) -> bool:
    """``Value`` itself, or what annotation resolution makes of it (and of ``Value | None``)."""
    if t is Value:
        return True
    if not is_union(t):
        return False
    return {typing.get_origin(a) or a for a in typing.get_args(t)} == VALUE_MEMBERS


def is_registered(t: object) -> bool:
    return isinstance(t, type) and t in BY_CLASS


class Kind(enum.Enum):
    """The forms of field annotation the hooks handle (see :func:`shape_of`)."""

    PRIMITIVE = "primitive"  # str, int, float, bool, bytes, NoneType
    NONE = "none"  # the annotation None
    VALUE = "value"
    OP = "op"
    VERSION = "version"
    MESSAGE = "message"  # a registered message class
    OPTIONAL = "optional"  # one member (types[0]), maybe nullable
    UNION = "union"  # several members (types), maybe nullable
    OPS = "ops"  # tuple[Op, ...]
    VERSIONS = "versions"  # tuple[Version, ...]
    ENTRIES = "entries"  # tuple[snapshot entry, ...]
    SEQUENCE = "sequence"  # tuple[X, ...]: types[0] is X
    LIST = "list"  # list[X]
    FIXED = "fixed"  # tuple[X, Y, ...]: types are the items'
    DICT = "dict"  # dict[K, V]: types are (K, V)


@attrs.frozen
class Shape:
    """A field annotation taken apart: its kind and the types it is made of."""

    kind: Kind
    types: tuple[Any, ...] = ()
    nullable: bool = False
    expected: str = ""
    """For a union: its members in words, for error messages."""


def shape_of(t: object) -> Shape | None:
    """What the hooks make of the annotation ``t``; None when they cannot handle it.

    The one place that reads annotations: registration checks with it, and the
    encoding and decoding hooks are chosen by it.
    """
    if t in PRIMITIVES:
        return Shape(Kind.PRIMITIVE, (t,))
    if t is None:
        return Shape(Kind.NONE)
    if is_value_type(t):
        return Shape(Kind.VALUE)
    if t is Op:
        return Shape(Kind.OP)
    if t is Version:
        return Shape(Kind.VERSION)
    if is_registered(t):
        return Shape(Kind.MESSAGE, (t,))
    args = typing.get_args(t)
    if is_union(t):
        members = tuple(a for a in args if a is not NONE)
        nullable = len(members) < len(args)
        if len(members) == 1:
            return Shape(Kind.OPTIONAL, members, nullable)
        expected = " or ".join(getattr(m, "__name__", str(m)) for m in args)
        return Shape(Kind.UNION, members, nullable, expected)
    origin = typing.get_origin(t)
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            elem = args[0]
            if elem is Op:
                return Shape(Kind.OPS)
            if elem is Version:
                return Shape(Kind.VERSIONS)
            if elem == SNAPSHOT_ENTRY:
                return Shape(Kind.ENTRIES)
            return Shape(Kind.SEQUENCE, (elem,))
        return Shape(Kind.FIXED, args)
    if origin is list and len(args) == 1:
        return Shape(Kind.LIST, args)
    if origin is dict and len(args) == 2:
        return Shape(Kind.DICT, args)
    return None


def check_supported(t: object, where: str) -> None:
    """Raise RegistrationError unless the hooks can handle ``t``."""
    shape = shape_of(t)
    if shape is None:
        if attrs.has(t) if isinstance(t, type) else False:
            raise RegistrationError(f"{where}: the attrs class {t!r} is not registered; register_message() it first")
        raise RegistrationError(
            f"{where}: the field type {t!r} is not supported; use str, int, float, bool, bytes, None, "
            "Value, Op, Version, tuple, list, dict[str, X], registered messages or Optional of these"
        )
    kind = shape.kind
    if kind is Kind.UNION:
        for m in shape.types:
            if not (m in PRIMITIVES or is_registered(m)):
                raise RegistrationError(
                    f"{where}: the union {t!r} mixes {m!r} in; unions may hold only str, int, float, "
                    "bool, bytes, None and registered messages (or use Optional[X])"
                )
    elif kind is Kind.DICT:
        if shape.types[0] is not str:
            raise RegistrationError(f"{where}: dict keys must be str, not {shape.types[0]!r}")
        check_supported(shape.types[1], where)
    elif kind in (Kind.OPTIONAL, Kind.SEQUENCE, Kind.LIST, Kind.FIXED):
        for a in shape.types:
            check_supported(a, where)
