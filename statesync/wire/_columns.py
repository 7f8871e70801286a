"""The columns blocks are made of (see :mod:`statesync.wire._opblock` for the layout):
int columns, node id (str) columns, lengths columns, and the checks every
block shares (its head, node ids, paths, values).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, chain, islice, repeat
from operator import itemgetter, sub
from typing import Any, Final

from statesync.core import PUT, InvalidValue, check_tree_value, validate_value
from statesync.errors import (
    BadPath,
    BatchTooLong,
    ContainerTooLong,
    DataCloneError,
    DecodeError,
    MalformedFrame,
    OutOfRange,
    PathTooDeep,
    SegmentTooLong,
    StringTooLong,
    ValueRejected,
    WrongType,
)
from statesync.wire._limits import DEFAULT_LIMITS, DecodeLimits, over
from statesync.wire._values import SCALAR_TYPES, check_payload, clone_error_at, fix_value

U64_MAX: Final = 2**64 - 1
BLOCK_LEN: Final = 11
ENTRY_BLOCK_LEN: Final = 8
_LITTLE: Final = sys.byteorder == "little"

# Typecodes in order of width: unsigned ones for non-decreasing columns, signed ones else.
_UNSIGNED_CODES: Final = "BHIQ"
_SIGNED: Final = tuple(
    (c, -(1 << (8 * array(c).itemsize - 1)), (1 << (8 * array(c).itemsize - 1)) - 1) for c in "bhiq"
)
_CODES: Final = {ord(c): (c, c.isupper()) for c in "BHIQbhiq"}
_STEP_CODE: Final = b"="
"""Deltas that are all the same: the typecode ``=`` then the step, 8 bytes little-endian signed."""
_STEP: Final = _STEP_CODE[0]
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
STR_ONLY: Final = frozenset({str})
INT_ONLY: Final = frozenset({int})
TUPLE_ONLY: Final = frozenset({tuple})

new_tuple: Final = tuple.__new__


# ---------------------------------------------------------------- encoding


def enc_ints(xs: Sequence[int], low: int) -> object:
    """An int column; raise TypeError unless every entry is an int from ``low`` to 2**64-1."""
    n = len(xs)
    if n == 0:
        return None
    first = xs[0]
    if type(first) is not int:
        raise TypeError
    if n == 1:
        if not low <= first <= U64_MAX:
            raise TypeError
        return first
    deltas = list(map(sub, islice(xs, 1, None), xs))
    step = deltas[0]
    if deltas.count(step) == n - 1 and type(step) is int and _I64_MIN <= step <= _I64_MAX:
        last = first + step * (n - 1)
        if min(first, last) < low or max(first, last) > U64_MAX:
            raise TypeError
        return [first, _STEP_CODE + step.to_bytes(8, "little", signed=True)]
    for code in _UNSIGNED_CODES:  # OverflowError unless every delta fits (so none is negative)
        try:
            packed = array(code, deltas)  # TypeError unless every delta is an int
        except OverflowError:
            continue
        if first < low or xs[-1] > U64_MAX:  # non-decreasing: the bounds are the ends
            raise TypeError
        if not _LITTLE:
            packed.byteswap()
        return [first, code.encode() + packed.tobytes()]
    if not INT_ONLY.issuperset(map(type, xs)) or min(xs) < low or max(xs) > U64_MAX:
        raise TypeError
    lo = min(deltas)
    hi = max(deltas)
    for code, bottom, top in _SIGNED:
        if bottom <= lo and hi <= top:
            packed = array(code, deltas)
            if not _LITTLE:
                packed.byteswap()
            return [first, code.encode() + packed.tobytes()]
    return list(xs)  # deltas too wide for any typecode: the values themselves


def enc_strs(xs: Sequence[str], index: dict[str, int]) -> object:
    n = len(xs)
    if n and xs.count(xs[0]) == n:
        return index[xs[0]]
    if len(index) <= 256:
        return bytes(map(index.__getitem__, xs))
    return list(map(index.__getitem__, xs))


def enc_lens(lens: list[int]) -> object:
    if lens.count(lens[0]) == len(lens):
        return lens[0]
    if max(lens) <= 255:
        return bytes(lens)
    return lens


def enc_table(index: dict[str, int]) -> list[str]:
    """The node id table of a block: number the ids of ``index`` in place; raise TypeError for a bad id."""
    table = list(index)
    for i, name in enumerate(table):
        if type(name) is not str or not name or len(name) > DEFAULT_LIMITS.node_id_chars_max:
            raise TypeError
        index[name] = i
    return table


def first_clone_error(items: Sequence[object], check: Callable[[int, object], None], what: str) -> DataCloneError:
    """What ``check(i, item)`` raises for the first item it refuses, its ``where`` prefixed with ``[i]``."""
    for i, item in enumerate(items):
        try:
            check(i, item)
        except DataCloneError as e:
            return clone_error_at(e, f"[{i}]")
    return DataCloneError(f"the {what} cannot be encoded", type_name="tuple", where="$")


def check_values(values: Sequence[object]) -> None:
    """Raise DataCloneError unless every value of a values column can be sent."""
    if not SCALAR_TYPES.issuperset(map(type, values)):
        for value in values:
            if type(value) not in SCALAR_TYPES:
                check_payload(value)


# ---------------------------------------------------------------- decoding


def malformed(what: str, where: str = "$") -> MalformedFrame:
    return MalformedFrame(f"malformed op block: {what}", where=where)


def dec_ints(col: Any, count: int, name: str) -> tuple[tuple[int, ...], int, int]:
    """Decode an int column of ``count`` entries; return (values, lowest, highest)."""
    t = type(col)
    if t is int:
        if count != 1:
            raise malformed(f"the {name} column holds 1 entry, not {count}")
        return (col,), col, col
    if col is None:
        if count != 0:
            raise malformed(f"the {name} column is empty, not {count} entries")
        return (), 0, 0
    if t is not tuple:
        raise malformed(f"the {name} column is a {t.__name__}")
    if len(col) == 2 and type(col[1]) is bytes:
        first, rest = col
        if type(first) is not int:
            raise WrongType(
                f"the first {name} is a {type(first).__name__}, not an int",
                limit="type",
                bound="int",
                value=type(first).__name__,
            )
        if not rest:
            raise malformed(f"the {name} deltas have no typecode")
        if rest[0] == _STEP:
            if len(rest) != 9:
                raise malformed(f"the {name} step is {len(rest) - 1} bytes, not 8")
            step = int.from_bytes(rest[1:], "little", signed=True)
            last = first + step * (count - 1)
            if step:
                return tuple(range(first, last + (1 if step > 0 else -1), step)), min(first, last), max(first, last)
            return (first,) * count, first, first
        code = _CODES.get(rest[0])
        if code is None:
            raise malformed(f"the {name} deltas have the unknown typecode {rest[0]}")
        deltas = array(code[0])
        if len(rest) - 1 != (count - 1) * deltas.itemsize:
            raise malformed(f"the {name} column has {len(rest) - 1} bytes of deltas, not {count - 1} entries")
        deltas.frombytes(rest[1:])
        if not _LITTLE:
            deltas.byteswap()
        values = tuple(accumulate(deltas, initial=first))
        if code[1]:  # unsigned deltas: non-decreasing
            return values, first, values[-1]
        return values, min(values), max(values)
    if len(col) != count or count < 2:
        raise malformed(f"the {name} column has {len(col)} entries, not {count}")
    if not INT_ONLY.issuperset(map(type, col)):
        raise first_wrong(col, int, f"a {name} is a {{}}, not an int")
    return col, min(col), max(col)


def dec_strs(col: Any, table: tuple[str, ...], count: int, name: str) -> tuple[str, ...]:
    t = type(col)
    size = len(table)
    if t is int:
        if not 0 <= col < size:
            raise OutOfRange(
                f"the {name} column refers to node id {col} of a table of {size}",
                limit="table",
                bound=size,
                value=col,
            )
        return (table[col],) * count
    if col is None:
        if count:
            raise malformed(f"the {name} column is empty, not {count} entries")
        return ()
    if t is bytes or t is tuple:
        if len(col) != count:
            raise malformed(f"the {name} column has {len(col)} entries, not {count}")
        if not count:
            return ()
        if t is tuple and not INT_ONLY.issuperset(map(type, col)):
            raise WrongType(f"the {name} column holds a non-int index", limit="type", bound="int")
        lo = min(col)
        hi = max(col)
        if lo < 0 or hi >= size:
            raise OutOfRange(
                f"the {name} column refers to node id {hi if hi >= size else lo} of a table of {size}",
                limit="table",
                bound=size,
                value=hi if hi >= size else lo,
            )
        if count == 1:
            return (table[col[0]],)
        picked: tuple[str, ...] = itemgetter(*col)(table)
        return picked
    raise malformed(f"the {name} column is a {t.__name__}")


def first_wrong(
    items: Iterable[Any], t: type, text: str, cls: type[DecodeError] = WrongType, limit: str = "type"
) -> DecodeError:
    """The error for the first of ``items`` that is not exactly a ``t`` (``{}`` in ``text``: its type)."""
    bad = type(next(x for x in items if type(x) is not t)).__name__
    return cls(text.format(bad), limit=limit, bound=t.__name__, value=bad)


def check_node_ids(ids: tuple[Any, ...], limits: DecodeLimits, what: str) -> None:
    """Every entry is a str of 1 to node_id_chars_max characters."""
    if not ids:
        return
    if not STR_ONLY.issuperset(map(type, ids)):
        raise first_wrong(ids, str, f"{what} is a {{}}, not a str node id")
    longest = max(map(len, ids))
    if longest > limits.node_id_chars_max:
        raise over(StringTooLong, limits, "node_id_chars_max", longest, f"{what} has {longest} characters")
    if "" in ids:
        raise OutOfRange(f"{what} is empty; node ids are non-empty", limit="node_id", bound="non-empty", value="")


def check_paths(paths: Any, count: int, limits: DecodeLimits) -> None:
    """``paths`` is a tuple of ``count`` paths: tuples of non-empty str within the bounds."""
    if type(paths) is not tuple or len(paths) != count:
        raise malformed(f"the paths column is not an array of {count} paths")
    if not count:
        return
    if not TUPLE_ONLY.issuperset(map(type, paths)):
        i, bad = next((i, p) for i, p in enumerate(paths) if type(p) is not tuple)
        raise BadPath(
            f"a path is a {type(bad).__name__}, not an array of segments",
            limit="path",
            bound="tuple",
            value=type(bad).__name__,
            where=f"$[{i}].path",
        )
    deepest = max(map(len, paths))
    if deepest > limits.path_depth_max:
        i = next(i for i, p in enumerate(paths) if len(p) == deepest)
        raise over(PathTooDeep, limits, "path_depth_max", deepest, f"a path has {deepest} segments").at(f"[{i}].path")
    segments = tuple(chain.from_iterable(paths))
    if not segments:
        return
    try:
        joined = "\x00".join(segments)  # TypeError unless every segment is a str
    except TypeError as exc:
        raise first_wrong(segments, str, "a path segment is a {}, not a str", BadPath, "path") from exc
    if "" in segments:
        raise BadPath("a path has an empty segment; segments are non-empty", limit="path", bound="non-empty", value="")
    limit = limits.segment_chars_max
    if len(joined) - len(segments) + 1 <= limit:
        return  # all segments together fit one segment's bound
    longest = max(map(len, segments))
    if longest > limit:
        raise over(SegmentTooLong, limits, "segment_chars_max", longest, f"a path segment has {longest} characters")


def fix_values(
    values: Any, count: int, limits: DecodeLimits, kinds: Sequence[int] | None, paths: Sequence[Any] | None
) -> tuple[Any, ...]:
    """Check a values column against the value rules; containers are rebuilt (tuples to lists)."""
    if type(values) is not tuple or len(values) != count:
        raise malformed(f"the values column is not an array of {count} values")
    if SCALAR_TYPES.issuperset(map(type, values)):
        return values
    fixed = list(values)
    for i, value in enumerate(fixed):
        if type(value) in SCALAR_TYPES:
            continue
        try:
            v = fix_value(value, limits)
            validate_value(v)
            if kinds is not None and paths is not None and kinds[i] == PUT and type(v) is dict:
                check_tree_value(
                    paths[i], v, depth_max=limits.path_depth_max, segment_chars_max=limits.segment_chars_max
                )
        except DecodeError as e:
            raise e.at(f"[{i}].value") from e
        except InvalidValue as e:
            raise ValueRejected(
                f"a value breaks the value rules: {e}", limit="value", bound="core value rules", value=e.type_name,
                where=f"$[{i}].value",
            ) from e
        fixed[i] = v
    return tuple(fixed)


def dec_head(n: Any, table: Any, paths: Any, limits: DecodeLimits, *, count: str, holds: str, items: str) -> None:
    """The columns every block starts from: its length, its paths and its node id table."""
    if type(n) is not int or n < 0:
        raise malformed(f"the {count} is {n!r}")
    if n > limits.ops_len_max:
        raise over(BatchTooLong, limits, "ops_len_max", n, f"{holds} {n} {items}")
    check_paths(paths, n, limits)  # bounds n by real data before anything is sized by it
    if n and type(table) is not tuple:
        raise malformed("the node id table is not an array")
    if n:
        check_node_ids(table, limits, "a node id")


def dec_lens(col: Any, n: int, noun: str, limits: DecodeLimits, holds: str) -> tuple[int, int, Any]:
    """A lengths column of ``n`` entries: (the length when all are equal else -1, their sum, the lengths).

    The sum is bounded by container_len_max; ``holds`` words an excess (``{}`` the sum).
    """
    t = type(col)
    if t is int:
        if col < 0:
            raise malformed(f"the {noun} is {col}")
        uniform, total, lens = col, col * n, None
    elif t is bytes or t is tuple:
        if len(col) != n:
            raise malformed(f"the {noun}s column has {len(col)} entries, not {n}")
        if t is tuple and (not INT_ONLY.issuperset(map(type, col)) or min(col) < 0):
            raise malformed(f"the {noun}s column holds a negative or non-int {noun.rsplit(maxsplit=1)[-1]}")
        uniform, total, lens = -1, sum(col), col
    else:
        raise malformed(f"the {noun}s column is a {t.__name__}")
    if total > limits.container_len_max:
        raise over(ContainerTooLong, limits, "container_len_max", total, holds.format(total))
    return uniform, total, lens


def dec_ranged(col: Any, count: int, name: str, low: int, *, what: str, plural: str, limit: str) -> tuple[int, ...]:
    """An int column whose entries must run from ``low`` to 2**64-1."""
    xs, lo, hi = dec_ints(col, count, name)
    if count and (lo < low or hi > U64_MAX):
        bad = lo if lo < low else hi
        raise OutOfRange(
            f"{what} is {bad}; {plural} run from {low} to 2**64-1", limit=limit, bound=(low, U64_MAX), value=bad
        )
    return xs


def split_groups(items: Iterator[Any], n: int, uniform: int, lens: Any) -> Iterable[tuple[Any, ...]]:
    """Cut ``items`` into ``n`` tuples: ``uniform`` long each, or as long as ``lens`` says (uniform -1)."""
    if uniform == 0:
        return ((),) * n
    if uniform == 1:
        return zip(items)
    if uniform > 1:
        return zip(*([items] * uniform), strict=False)  # one shared iterator, k at a time
    return map(tuple, map(islice, repeat(items), lens))
