"""The field types a message may have, and the table of registered message classes.

See :mod:`statesync.wire._converter` for the supported types; the encoding
and decoding hooks (``_encode``, ``_decode``) dispatch on the same tests.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, Final, Union

import attrs

from statesync.core import Op, Value, Version
from statesync.wire._errors import RegistrationError

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


def check_supported(t: object, where: str) -> None:
    """Raise RegistrationError unless the hooks below can handle ``t``."""
    if t in PRIMITIVES or t is None or t is Op or t is Version or is_value_type(t) or is_registered(t):
        return
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if is_union(t):
        members = [a for a in args if a is not NONE]
        if len(members) == 1:
            check_supported(members[0], where)
            return
        for m in members:
            if not (m in PRIMITIVES or is_registered(m)):
                raise RegistrationError(
                    f"{where}: the union {t!r} mixes {m!r} in; unions may hold only str, int, float, "
                    "bool, bytes, None and registered messages (or use Optional[X])"
                )
        return
    if origin is tuple and args:
        for a in args[:1] if len(args) == 2 and args[1] is Ellipsis else args:
            check_supported(a, where)
        return
    if origin is list and len(args) == 1:
        check_supported(args[0], where)
        return
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise RegistrationError(f"{where}: dict keys must be str, not {args[0]!r}")
        check_supported(args[1], where)
        return
    if attrs.has(t) if isinstance(t, type) else False:
        raise RegistrationError(f"{where}: the attrs class {t!r} is not registered; register_message() it first")
    raise RegistrationError(
        f"{where}: the field type {t!r} is not supported; use str, int, float, bool, bytes, None, "
        "Value, Op, Version, tuple, list, dict[str, X], registered messages or Optional of these"
    )
