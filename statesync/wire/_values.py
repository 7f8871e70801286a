"""User values on the wire: the structured-clone check on the way out, and the
walk that turns decoded msgpack data back into a ``Value`` on the way in.

A value is None, bool, int (64-bit), float, str, bytes, list, tuple (sent as a
list) or dict with str keys. Decoding runs msgpack with ``use_list=False``, so
arrays come back as tuples; only tuples and dicts are walked (to turn tuples
into lists and to check dict keys and nesting), scalars are taken as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from statesync.core import Value
from statesync.errors import DataCloneError, NestingTooDeep, WrongType
from statesync.wire._limits import DEFAULT_LIMITS, DecodeLimits

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1

SCALAR_TYPES: Final = frozenset({type(None), bool, int, float, str, bytes})
"""Types msgpack decodes to that need no walk (with ext types refused by the unpacker)."""
CONTAINER_TYPES: Final = frozenset({tuple, dict})
_ALLOWED_OUT: Final = frozenset({type(None), bool, float, str, bytes, int, list, tuple, dict})
_HINTS: Final[dict[type, str]] = {
    set: " (send a list)",
    frozenset: " (send a list)",
    bytearray: " (send bytes)",
    memoryview: " (send bytes)",
}


def where_of(trail: list[object]) -> str:
    """The position text of a trail of keys and indices: ``$['a'][2]``."""
    return "$" + "".join(f"[{k!r}]" for k in trail)


def clone_error_at(e: DataCloneError, prefix: str) -> DataCloneError:
    """Prefix ``e.where`` with the position of what encloses it (``[2]``, ``.ops``); return ``e``."""
    e.where = "$" + prefix + e.where[1:]
    return e


def check_payload(value: Any, limits: DecodeLimits = DEFAULT_LIMITS) -> int:
    """Raise DataCloneError unless ``value`` can be sent as a payload; return its item count.

    The bounds are the receiver's ``limits`` (str and bytes sizes, container
    lengths, nesting), so that what passes here is what a peer with the same
    limits accepts. Cycles are caught by the nesting bound.
    """
    t = type(value)
    if t is str:
        _check_str(value, [], limits)
        return 1
    if t is int:
        if not INT_MIN <= value <= INT_MAX:
            raise _int_range_error([])
        return 1
    if value is None or t is bool or t is float:
        return 1
    return _walk_out(value, [], 0, limits)


def _walk_out(value: Any, trail: list[object], depth: int, limits: DecodeLimits) -> int:
    t = type(value)
    if t is str:
        _check_str(value, trail, limits)
        return 1
    if t is int:
        if not INT_MIN <= value <= INT_MAX:
            raise _int_range_error(trail)
        return 1
    if value is None or t is bool or t is float:
        return 1
    if t is bytes:
        n = len(value)
        if n > limits.bin_bytes_max:
            raise DataCloneError(
                f"a bytes value of {n} bytes at {where_of(trail)} exceeds bin_bytes_max={limits.bin_bytes_max}; "
                "split it into smaller values",
                type_name="bytes",
                where=where_of(trail),
                limit="bin_bytes_max",
            )
        return 1
    if t is list or t is tuple or t is dict:
        if depth >= limits.depth_max:
            raise DataCloneError(
                f"the value nests deeper than depth_max={limits.depth_max} levels at {where_of(trail)} "
                "(or holds a reference cycle); flatten it",
                type_name=t.__name__,
                where=where_of(trail),
                limit="depth_max",
            )
        n = len(value)
        if n > limits.container_len_max:
            raise DataCloneError(
                f"a {t.__name__} of {n} items at {where_of(trail)} exceeds container_len_max="
                f"{limits.container_len_max}; split it",
                type_name=t.__name__,
                where=where_of(trail),
                limit="container_len_max",
            )
        count = 1
        if t is dict:
            mapping: dict[Any, Any] = value
            for key, item in mapping.items():
                if type(key) is not str:
                    raise DataCloneError(
                        f"dict key {key!r} at {where_of(trail)} is a {type(key).__name__}; "
                        "payload dict keys must be str",
                        type_name=type(key).__name__,
                        where=where_of(trail),
                    )
                trail.append(key)
                _check_str(key, trail, limits)
                count += _walk_out(item, trail, depth + 1, limits)
                trail.pop()
        else:
            seq: list[Any] = value
            for i, item in enumerate(seq):
                ti = type(item)
                if ti is str or ti is int or ti is list or ti is tuple or ti is dict or ti is bytes:
                    trail.append(i)
                    count += _walk_out(item, trail, depth + 1, limits)
                    trail.pop()
                elif item is None or ti is bool or ti is float:
                    count += 1
                else:
                    trail.append(i)
                    raise _type_error(item, trail)
        return count
    raise _type_error(value, trail)


def _check_str(s: str, trail: list[object], limits: DecodeLimits) -> None:
    n = len(s)
    if n * 4 > limits.str_bytes_max and (n > limits.str_bytes_max or len(s.encode("utf-8", "surrogatepass")) > limits.str_bytes_max):
        raise DataCloneError(
            f"a str of {n} characters at {where_of(trail)} exceeds str_bytes_max={limits.str_bytes_max} "
            "UTF-8 bytes; split it",
            type_name="str",
            where=where_of(trail),
            limit="str_bytes_max",
        )


def _int_range_error(trail: list[object]) -> DataCloneError:
    return DataCloneError(
        f"the int at {where_of(trail)} is outside the 64-bit range [{INT_MIN}, {INT_MAX}]; "
        "send it as a str",
        type_name="int",
        where=where_of(trail),
    )


def _type_error(value: Any, trail: list[object]) -> DataCloneError:
    t = type(value)
    if t in _ALLOWED_OUT:  # a subclass would have another type; exact types only
        hint = ""
    elif issubclass(t, (int, float, str, bytes, list, tuple, dict)):
        hint = f" (a subclass of {next(b for b in t.__mro__[1:] if b in _ALLOWED_OUT).__name__}; convert it)"
    else:
        hint = _HINTS.get(t, "")
    return DataCloneError(
        f"cannot send a {t.__qualname__} at {where_of(trail)}{hint}: payloads are None, bool, int, "
        "float, str, bytes, list, tuple and dict with str keys",
        type_name=t.__qualname__,
        where=where_of(trail),
    )


def find_unencodable_str(value: Any) -> str | None:
    """The position of the first str (value or dict key) that is not valid UTF-8, if any."""
    trail: list[object] = []

    def walk(v: Any) -> bool:
        t = type(v)
        if t is str:
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
            return False
        if t is list or t is tuple:
            for i, item in enumerate(v):
                trail.append(i)
                if walk(item):
                    return True
                trail.pop()
        elif t is dict:
            for key, item in v.items():
                trail.append(key)
                if walk(key) or walk(item):
                    return True
                trail.pop()
        return False

    return where_of(trail) if walk(value) else None


def fix_value(value: Any, limits: DecodeLimits) -> Value:
    """Turn a decoded msgpack object into a Value: tuples become lists, dict keys are checked.

    ``value`` comes from the unpacker, so it is None, bool, int, float, str,
    bytes, tuple or dict (ext types are refused there) and its sizes are
    already within the limits. Raises NestingTooDeep or WrongType.
    """
    t = type(value)
    if t is tuple or t is dict:
        fixed: Value = _fix(value, 0, limits.depth_max)
        return fixed
    scalar: Value = value
    return scalar


def _fix(value: Any, depth: int, depth_max: int) -> Any:
    if depth >= depth_max:
        raise NestingTooDeep(
            f"a value nests deeper than depth_max={depth_max} levels",
            limit="depth_max",
            bound=depth_max,
            value=depth + 1,
        )
    if type(value) is tuple:
        if CONTAINER_TYPES.isdisjoint(map(type, value)):
            return list(value)
        out = list(value)
        _fix_items(out, enumerate(value), depth, depth_max)
        return out
    keys = set(map(type, value))
    if keys and keys != {str}:
        bad = next(k for k in value if type(k) is not str)
        raise WrongType(
            f"a dict key is {type(bad).__name__} {bad!r}; value dict keys must be str",
            limit="type",
            bound="str",
            value=type(bad).__name__,
        )
    if CONTAINER_TYPES.isdisjoint(map(type, value.values())):
        return value
    out_d: dict[str, Any] = dict(value)
    _fix_items(out_d, value.items(), depth, depth_max)
    return out_d


def _fix_items(out: Any, items: Iterable[tuple[Any, Any]], depth: int, depth_max: int) -> None:
    """Replace each container among ``items`` (position, item) in ``out`` by its fixed form."""
    for key, item in items:
        ti = type(item)
        if ti is tuple or ti is dict:
            try:
                out[key] = _fix(item, depth + 1, depth_max)
            except (NestingTooDeep, WrongType) as e:
                raise e.at(f"[{key!r}]") from e
