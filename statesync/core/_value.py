"""Values: what a leaf of the tree, or a MessagePort payload, may hold.

Allowed: None, bool, int (64-bit), float, str, bytes, list, and dict with str
keys. A dict written at a path is a *subtree write*: its leaves become paths
beneath it (an empty dict is itself a leaf). Lists are opaque leaf values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeAlias

import attrs

from statesync.core._path import PATH_DEPTH_MAX, SEGMENT_CHARS_MAX, Path
from statesync.errors import InvalidValue

Value: TypeAlias = bool | int | float | str | bytes | list["Value"] | dict[str, "Value"] | None

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


@attrs.frozen
class ValueLimits:
    """Bounds on one value. Sizes are estimates of the encoded size."""

    value_bytes_max: int = 1 << 20
    depth_max: int = 32
    str_chars_max: int = 1 << 20
    container_items_max: int = 100_000


DEFAULT_VALUE_LIMITS = ValueLimits()

_SCALAR_SIZE = 9


def _where(trail: list[object]) -> str:
    return "$" + "".join(f"[{k!r}]" for k in trail)


def validate_value(value: object, limits: ValueLimits = DEFAULT_VALUE_LIMITS) -> int:
    """Check that ``value`` is storable; return its estimated encoded size in bytes.

    Raises InvalidValue naming the offending type and where in the value it is.
    """
    t = type(value)
    if t is str:
        n = len(value)  # type: ignore[arg-type]
        if n > limits.str_chars_max or n > limits.value_bytes_max:
            raise InvalidValue(
                f"a str of {n} characters exceeds the limit of {min(limits.str_chars_max, limits.value_bytes_max)}",
                type_name="str",
            )
        return n + 1
    if t is int:
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            raise InvalidValue(
                f"int {value} is outside the 64-bit range [{INT_MIN}, {INT_MAX}]", type_name="int"
            )
        return _SCALAR_SIZE
    if value is None or t is bool or t is float:
        return _SCALAR_SIZE
    trail: list[object] = []
    size = _walk(value, trail, 0, limits)
    if size > limits.value_bytes_max:
        raise InvalidValue(
            f"the value is about {size} bytes; the limit is {limits.value_bytes_max}",
            type_name=type(value).__name__,
        )
    return size


def _too_large(t: type, size: str, trail: list[object], limit: int) -> InvalidValue:
    """The error for a value at ``trail`` whose ``size`` (in words) exceeds ``limit``."""
    return InvalidValue(
        f"a {t.__name__} of {size} at {_where(trail)} exceeds the limit of {limit}",
        type_name=t.__name__,
        where=_where(trail),
    )


def _walk(value: object, trail: list[object], depth: int, limits: ValueLimits) -> int:
    t = type(value)
    if value is None or t is bool or t is float:
        return _SCALAR_SIZE
    if t is int:
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            raise InvalidValue(
                f"int {value} at {_where(trail)} is outside the 64-bit range",
                type_name="int",
                where=_where(trail),
            )
        return _SCALAR_SIZE
    if t is str or t is bytes:
        n = len(value)  # type: ignore[arg-type]
        if n > limits.str_chars_max:
            raise _too_large(t, f"length {n}", trail, limits.str_chars_max)
        return n + 5
    if depth >= limits.depth_max:
        raise InvalidValue(
            f"the value nests deeper than {limits.depth_max} levels at {_where(trail)}",
            type_name=t.__name__,
            where=_where(trail),
        )
    if t is list or t is dict:
        n = len(value)  # type: ignore[arg-type]
        if n > limits.container_items_max:
            raise _too_large(t, f"{n} items", trail, limits.container_items_max)
    if t is list:
        items: list[object] = value  # type: ignore[assignment]
        size = 5
        for i, item in enumerate(items):
            trail.append(i)
            size += _walk(item, trail, depth + 1, limits)
            trail.pop()
            if size > limits.value_bytes_max:
                break
        return size
    if t is dict:
        mapping: dict[object, object] = value  # type: ignore[assignment]
        size = 5
        for key, item in mapping.items():
            if type(key) is not str:
                raise InvalidValue(
                    f"dict key {key!r} at {_where(trail)} is a {type(key).__name__}; keys must be str",
                    type_name=type(key).__name__,
                    where=_where(trail),
                )
            trail.append(key)
            size += len(key) + 1 + _walk(item, trail, depth + 1, limits)
            trail.pop()
            if size > limits.value_bytes_max:
                break
        return size
    hint = " (use a list)" if t is tuple else " (use bytes)" if t is bytearray else ""
    raise InvalidValue(
        f"cannot store a {t.__name__} at {_where(trail)}{hint}; values are None, bool, int, "
        "float, str, bytes, list and dict with str keys",
        type_name=t.__name__,
        where=_where(trail),
    )


def iter_leaves(value: Value, base: Path = ()) -> Iterator[tuple[Path, Value]]:
    """The leaves a write of ``value`` at ``base`` makes: (path, leaf value) pairs.

    A non-empty dict is a subtree and contributes its leaves; anything else,
    an empty dict included, is a leaf.
    """
    if type(value) is dict and value:
        for key, item in value.items():
            yield from iter_leaves(item, (*base, key))
    else:
        yield base, value


def check_tree_value(
    path: Path,
    value: Value,
    *,
    depth_max: int = PATH_DEPTH_MAX,
    segment_chars_max: int = SEGMENT_CHARS_MAX,
) -> None:
    """Check that the dict keys of a subtree write make valid path segments."""
    if type(value) is not dict or not value:
        return
    stack: list[tuple[Path, dict[str, Value]]] = [(path, value)]
    while stack:
        base, mapping = stack.pop()
        if len(base) + 1 > depth_max:
            raise InvalidValue(
                f"writing this dict at {'.'.join(path) or '<root>'} makes paths deeper than {depth_max} segments",
                type_name="dict",
                where="$",
            )
        for key, item in mapping.items():
            if not key or len(key) > segment_chars_max:
                raise InvalidValue(
                    f"dict key {key!r} cannot be a path segment (segments are 1 to {segment_chars_max} characters)",
                    type_name="str",
                    where="$",
                )
            if type(item) is dict and item:
                stack.append(((*base, key), item))


def values_equal(a: Value, b: Value) -> bool:
    """Equality that tells 1 from True and 1 from 1.0, recursively."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return a == b
