"""The hot types on the wire: blocks of ops, rows of versions, snapshot entries.

An ``Ops`` or ``SyncResponse`` message carries its ops as one *op block*, a
columnar msgpack array (column-wise so that repeated node ids cost an index,
increasing seqs and hlcs cost a small delta, and so that decoding checks each
column with a few passes that run in C instead of one Python call per op)::

    [n, table, origins, seqs, hlcs, paths, kinds, values, ctx_lens, ctx_nodes, ctx_ns]

- ``table``: the distinct node ids of the block (origins and context nodes).
- ``origins``, ``ctx_nodes`` (*str columns*): an int ``i`` (every entry is
  ``table[i]``), or bytes (one index per entry, a table of at most 256), or
  an array of ints (indices).
- ``seqs``, ``hlcs``, ``ctx_ns`` (*int columns*): an int (a single entry),
  or ``[first, deltas]`` where ``deltas`` (entry ``k+1`` minus entry ``k``)
  is bytes: an ``array`` typecode byte, then the little-endian items (an
  unsigned code says every delta is >= 0), or ``=`` then one 8-byte signed
  step when every delta is the same; or, when the deltas fit no typecode,
  an array of the entries themselves; ``nil`` for no entries.
- ``paths``: an array of paths (arrays of str); ``values``: an array of values.
- ``kinds``: an int (every op's kind) or bytes (one kind per op).
- ``ctx_lens``: an int (every context has that many pairs) or bytes or an
  array of ints; the contexts' pairs follow, flattened, in ``ctx_nodes`` and
  ``ctx_ns``.

Versions (``Version`` is a NamedTuple) travel as plain msgpack arrays
``[value, hlc, origin, seq]``, which msgpack packs natively. Snapshot entries
(a path and its versions) travel as one columnar *entry block*, for the same
reasons as ops (a chunk holds thousands; a million-key join decodes a million)::

    [n, table, counts, paths, values, hlcs, origins, seqs]

- ``counts``: versions per entry, an int (every entry has that many) or
  bytes or an array of ints; the versions follow, flattened, in the
  ``values``, ``hlcs`` (int column), ``origins`` (str column) and ``seqs``
  (int column) columns, which have the forms described above.
- ``paths``: an array of ``n`` paths.

Decoding validates every field: types, the ranges (seq >= 1, 0 <= hlc < 2**64,
kind 0 or 1), paths (non-empty str segments within the depth and length
bounds), node ids, values (the core value rules) and every DecodeLimits bound.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, chain, islice, repeat
from operator import itemgetter, sub
from typing import Any, Final

from statesync.core import PUT, InvalidValue, Op, Version, check_tree_value, validate_value
from statesync.wire._errors import (
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
from statesync.wire._limits import DEFAULT_LIMITS, DecodeLimits
from statesync.wire._values import SCALAR_TYPES, check_payload, fix_value

U64_MAX: Final = 2**64 - 1
_BLOCK_LEN: Final = 11
_ENTRY_BLOCK_LEN: Final = 8
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
_STR: Final = frozenset({str})
_INT: Final = frozenset({int})
_TUPLE: Final = frozenset({tuple})

_new_op: Final = tuple.__new__


# ---------------------------------------------------------------- encoding


def _enc_ints(xs: Sequence[int], low: int) -> object:
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
    if not _INT.issuperset(map(type, xs)) or min(xs) < low or max(xs) > U64_MAX:
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


def _enc_strs(xs: Sequence[str], index: dict[str, int]) -> object:
    n = len(xs)
    if n and xs.count(xs[0]) == n:
        return index[xs[0]]
    if len(index) <= 256:
        return bytes(map(index.__getitem__, xs))
    return list(map(index.__getitem__, xs))


def _enc_lens(lens: list[int]) -> object:
    if lens.count(lens[0]) == len(lens):
        return lens[0]
    if max(lens) <= 255:
        return bytes(lens)
    return lens


def encode_ops(ops: Sequence[Op]) -> list[object]:
    """The op block of ``ops`` (see the module docstring); raise DataCloneError.

    The columns are checked on the way (types, ranges, node ids, values) so
    that a bad op fails here, at the sender, rather than making a peer drop
    the whole frame; path segments are not re-checked (``Op`` paths come
    from the core, which validates them).
    """
    n = len(ops)
    if n == 0:
        return [0, (), None, None, None, (), 0, (), 0, None, None]
    if n == 1:
        return _encode_one(ops[0])
    try:
        origins, seqs, hlcs, paths, kinds, values, contexts = zip(*ops, strict=True)
        index: dict[str, int] = dict.fromkeys(origins, 0)
        lens = list(map(len, contexts))
        if sum(lens):
            names, ns = zip(*chain.from_iterable(contexts), strict=True)
            index.update(dict.fromkeys(names, 0))
        else:
            names = ns = ()
        table = list(index)
        for i, name in enumerate(table):
            if type(name) is not str or not name or len(name) > DEFAULT_LIMITS.node_id_chars_max:
                raise TypeError
            index[name] = i
        seq_col = _enc_ints(seqs, 1)
        hlc_col = _enc_ints(hlcs, 0)
        ns_col = _enc_ints(ns, 0)
        kind = kinds[0]
        if kinds.count(kind) == n:
            if type(kind) is not int or kind not in (0, 1):
                raise TypeError
            kind_col: object = kind
        else:
            kind_col = bytes(kinds)
            if kind_col.translate(None, b"\x00\x01"):
                raise TypeError
        if not _TUPLE.issuperset(map(type, paths)):
            raise TypeError
        if not SCALAR_TYPES.issuperset(map(type, values)):
            for value in values:
                if type(value) not in SCALAR_TYPES:
                    check_payload(value)
        return [
            n,
            table,
            _enc_strs(origins, index),
            seq_col,
            hlc_col,
            paths,
            kind_col,
            values,
            _enc_lens(lens),
            _enc_strs(names, index) if names else None,
            ns_col,
        ]
    except Exception:
        raise locate_bad_op(ops) from None


def _encode_one(op: Op) -> list[object]:
    """The op block of one op: the same block as encode_ops would make, built faster."""
    try:
        origin, seq, hlc, path, kind, value, context = op
        if (
            type(origin) is not str
            or not origin
            or len(origin) > DEFAULT_LIMITS.node_id_chars_max
            or type(seq) is not int
            or not 1 <= seq <= U64_MAX
            or type(hlc) is not int
            or not 0 <= hlc <= U64_MAX
            or type(path) is not tuple
            or type(kind) is not int
            or kind not in (0, 1)
        ):
            raise TypeError
        if type(value) not in SCALAR_TYPES:
            check_payload(value)
        index = {origin: 0}
        if context:
            names, ns = zip(*context, strict=True)
            for name in names:
                if name not in index:
                    if type(name) is not str or not name or len(name) > DEFAULT_LIMITS.node_id_chars_max:
                        raise TypeError
                    index[name] = len(index)
            names_col = _enc_strs(names, index)
            ns_col = _enc_ints(ns, 0)
        else:
            names_col = ns_col = None
        return [1, list(index), 0, seq, hlc, (path,), kind, (value,), len(context), names_col, ns_col]
    except Exception:
        raise locate_bad_op((op,)) from None


_OP_RULES: Final[tuple[tuple[str, Callable[[Any], bool], str], ...]] = (
    ("origin", lambda v: type(v) is str and v != "", "a non-empty str"),
    ("seq", lambda v: type(v) is int and 1 <= v <= U64_MAX, "an int from 1 to 2**64-1"),
    ("hlc", lambda v: type(v) is int and 0 <= v <= U64_MAX, "an int from 0 to 2**64-1"),
    (
        "path",
        lambda v: type(v) is tuple and all(type(s) is str and s for s in v),
        "a tuple of non-empty str",
    ),
    ("kind", lambda v: type(v) is int and v in (0, 1), "0 (put) or 1 (remove)"),
    ("value", lambda v: True, "a value"),
    (
        "context",
        lambda v: type(v) is tuple
        and all(
            type(p) is tuple and len(p) == 2 and type(p[0]) is str and p[0] and type(p[1]) is int and 0 <= p[1] <= U64_MAX
            for p in v
        ),
        "a tuple of (node id, counter) pairs",
    ),
)


def locate_bad_op(ops: Sequence[object]) -> DataCloneError:
    """The DataCloneError naming the first op field that cannot be encoded."""
    for i, op in enumerate(ops):
        if not isinstance(op, tuple) or len(op) != 7:
            return DataCloneError(
                f"ops[{i}] is a {type(op).__qualname__}, not an Op", type_name=type(op).__qualname__, where=f"$[{i}]"
            )
        for (name, ok, expected), field in zip(_OP_RULES, op, strict=True):
            if not ok(field):
                return DataCloneError(
                    f"ops[{i}].{name} is {field!r}; it must be {expected}",
                    type_name=type(field).__qualname__,
                    where=f"$[{i}].{name}",
                )
        try:
            check_payload(op[5])
        except DataCloneError as e:
            e.where = f"$[{i}].value{e.where[1:]}"
            return e
    return DataCloneError("the ops cannot be encoded", type_name="tuple", where="$")


def encode_versions(versions: Sequence[Version]) -> Sequence[Version]:
    """Versions go as they are (msgpack packs NamedTuples as arrays); this only checks them."""
    for i, v in enumerate(versions):
        if not (
            isinstance(v, tuple)
            and len(v) == 4
            and type(v[1]) is int
            and 0 <= v[1] <= U64_MAX
            and type(v[2]) is str
            and v[2]
            and type(v[3]) is int
            and 1 <= v[3] <= U64_MAX
        ):
            raise DataCloneError(
                f"versions[{i}] = {v!r} is not a Version(value, hlc, origin, seq)",
                type_name=type(v).__qualname__,
                where=f"$[{i}]",
            )
        if type(v[0]) not in SCALAR_TYPES:
            try:
                check_payload(v[0])
            except DataCloneError as e:
                e.where = f"$[{i}].value{e.where[1:]}"
                raise
    return versions


def encode_entries(entries: Sequence[tuple[tuple[str, ...], Sequence[Version]]]) -> list[object]:
    """The entry block of snapshot ``entries`` (see the module docstring); raise DataCloneError."""
    n = len(entries)
    if n == 0:
        return [0, (), 0, (), (), None, None, None]
    try:
        paths, groups = zip(*entries, strict=True)
        if not _TUPLE.issuperset(map(type, paths)):
            raise TypeError
        segments = tuple(chain.from_iterable(paths))
        if not _STR.issuperset(map(type, segments)) or "" in segments:
            raise TypeError
        lens = list(map(len, groups))
        flat = tuple(chain.from_iterable(groups))
        if flat:
            values, hlcs, origins, seqs = zip(*flat, strict=True)
        else:
            values = hlcs = origins = seqs = ()
        index: dict[str, int] = dict.fromkeys(origins, 0)
        table = list(index)
        for i, name in enumerate(table):
            if type(name) is not str or not name or len(name) > DEFAULT_LIMITS.node_id_chars_max:
                raise TypeError
            index[name] = i
        hlc_col = _enc_ints(hlcs, 0)
        seq_col = _enc_ints(seqs, 1)
        if not SCALAR_TYPES.issuperset(map(type, values)):
            for value in values:
                if type(value) not in SCALAR_TYPES:
                    check_payload(value)
        return [n, table, _enc_lens(lens), paths, values, hlc_col, _enc_strs(origins, index), seq_col]
    except Exception:
        raise _locate_bad_entry(entries) from None


def _locate_bad_entry(entries: Sequence[object]) -> DataCloneError:
    """The DataCloneError naming the first snapshot entry that cannot be encoded."""
    for i, entry in enumerate(entries):
        if not (isinstance(entry, tuple) and len(entry) == 2 and type(entry[0]) is tuple):
            return DataCloneError(
                f"entries[{i}] is not a (path, versions) pair", type_name=type(entry).__qualname__, where=f"$[{i}]"
            )
        if not all(type(s) is str and s for s in entry[0]):
            return DataCloneError(
                f"entries[{i}] has the path {entry[0]!r}; segments are non-empty str",
                type_name="tuple",
                where=f"$[{i}][0]",
            )
        if not isinstance(entry[1], Sequence):
            return DataCloneError(
                f"entries[{i}] has versions of type {type(entry[1]).__qualname__}, not a sequence",
                type_name=type(entry[1]).__qualname__,
                where=f"$[{i}][1]",
            )
        try:
            encode_versions(entry[1])
        except DataCloneError as e:
            e.where = f"$[{i}][1]{e.where[1:]}"
            return e
    return DataCloneError("the snapshot entries cannot be encoded", type_name="tuple", where="$")


# ---------------------------------------------------------------- decoding


def _malformed(what: str, where: str = "$") -> MalformedFrame:
    return MalformedFrame(f"malformed op block: {what}", where=where)


def _dec_ints(col: Any, count: int, name: str) -> tuple[tuple[int, ...], int, int]:
    """Decode an int column of ``count`` entries; return (values, lowest, highest)."""
    t = type(col)
    if t is int:
        if count != 1:
            raise _malformed(f"the {name} column holds 1 entry, not {count}")
        return (col,), col, col
    if col is None:
        if count != 0:
            raise _malformed(f"the {name} column is empty, not {count} entries")
        return (), 0, 0
    if t is not tuple:
        raise _malformed(f"the {name} column is a {t.__name__}")
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
            raise _malformed(f"the {name} deltas have no typecode")
        if rest[0] == _STEP:
            if len(rest) != 9:
                raise _malformed(f"the {name} step is {len(rest) - 1} bytes, not 8")
            step = int.from_bytes(rest[1:], "little", signed=True)
            last = first + step * (count - 1)
            if step:
                return tuple(range(first, last + (1 if step > 0 else -1), step)), min(first, last), max(first, last)
            return (first,) * count, first, first
        code = _CODES.get(rest[0])
        if code is None:
            raise _malformed(f"the {name} deltas have the unknown typecode {rest[0]}")
        deltas = array(code[0])
        if len(rest) - 1 != (count - 1) * deltas.itemsize:
            raise _malformed(f"the {name} column has {len(rest) - 1} bytes of deltas, not {count - 1} entries")
        deltas.frombytes(rest[1:])
        if not _LITTLE:
            deltas.byteswap()
        values = tuple(accumulate(deltas, initial=first))
        if code[1]:  # unsigned deltas: non-decreasing
            return values, first, values[-1]
        return values, min(values), max(values)
    if len(col) != count or count < 2:
        raise _malformed(f"the {name} column has {len(col)} entries, not {count}")
    if not _INT.issuperset(map(type, col)):
        bad = next(x for x in col if type(x) is not int)
        raise WrongType(
            f"a {name} is a {type(bad).__name__}, not an int", limit="type", bound="int", value=type(bad).__name__
        )
    return col, min(col), max(col)


def _dec_strs(col: Any, table: tuple[str, ...], count: int, name: str) -> tuple[str, ...]:
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
            raise _malformed(f"the {name} column is empty, not {count} entries")
        return ()
    if t is bytes or t is tuple:
        if len(col) != count:
            raise _malformed(f"the {name} column has {len(col)} entries, not {count}")
        if not count:
            return ()
        if t is tuple and not _INT.issuperset(map(type, col)):
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
    raise _malformed(f"the {name} column is a {t.__name__}")


def check_node_ids(ids: tuple[Any, ...], limits: DecodeLimits, what: str) -> None:
    """Every entry is a str of 1 to node_id_chars_max characters."""
    if not ids:
        return
    if not _STR.issuperset(map(type, ids)):
        bad = next(x for x in ids if type(x) is not str)
        raise WrongType(
            f"{what} is a {type(bad).__name__}, not a str node id", limit="type", bound="str", value=type(bad).__name__
        )
    longest = max(map(len, ids))
    if longest > limits.node_id_chars_max:
        raise StringTooLong(
            f"{what} has {longest} characters; node_id_chars_max is {limits.node_id_chars_max}",
            limit="node_id_chars_max",
            bound=limits.node_id_chars_max,
            value=longest,
        )
    if "" in ids:
        raise OutOfRange(f"{what} is empty; node ids are non-empty", limit="node_id", bound="non-empty", value="")


def check_paths(paths: Any, count: int, limits: DecodeLimits) -> None:
    """``paths`` is a tuple of ``count`` paths: tuples of non-empty str within the bounds."""
    if type(paths) is not tuple or len(paths) != count:
        raise _malformed(f"the paths column is not an array of {count} paths")
    if not count:
        return
    if not _TUPLE.issuperset(map(type, paths)):
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
        raise PathTooDeep(
            f"a path has {deepest} segments; path_depth_max is {limits.path_depth_max}",
            limit="path_depth_max",
            bound=limits.path_depth_max,
            value=deepest,
            where=f"$[{i}].path",
        )
    segments = tuple(chain.from_iterable(paths))
    if not segments:
        return
    try:
        joined = "\x00".join(segments)  # TypeError unless every segment is a str
    except TypeError:
        bad = next(s for s in segments if type(s) is not str)
        raise BadPath(
            f"a path segment is a {type(bad).__name__}, not a str",
            limit="path",
            bound="str",
            value=type(bad).__name__,
        ) from None
    if "" in segments:
        raise BadPath("a path has an empty segment; segments are non-empty", limit="path", bound="non-empty", value="")
    limit = limits.segment_chars_max
    if len(joined) - len(segments) + 1 <= limit:
        return  # all segments together fit one segment's bound
    longest = max(map(len, segments))
    if longest > limit:
        raise SegmentTooLong(
            f"a path segment has {longest} characters; segment_chars_max is {limit}",
            limit="segment_chars_max",
            bound=limit,
            value=longest,
        )


def fix_values(
    values: Any, count: int, limits: DecodeLimits, kinds: Sequence[int] | None, paths: Sequence[Any] | None
) -> tuple[Any, ...]:
    """Check a values column against the value rules; containers are rebuilt (tuples to lists)."""
    if type(values) is not tuple or len(values) != count:
        raise _malformed(f"the values column is not an array of {count} values")
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
            raise e.at(f"[{i}].value") from None
        except InvalidValue as e:
            raise ValueRejected(
                f"a value breaks the value rules: {e}", limit="value", bound="core value rules", value=e.type_name,
                where=f"$[{i}].value",
            ) from None
        fixed[i] = v
    return tuple(fixed)


def decode_ops(block: Any, limits: DecodeLimits) -> tuple[Op, ...]:
    """Decode and validate an op block; raise DecodeError."""
    if type(block) is tuple and len(block) == _BLOCK_LEN and type(block[0]) is int and block[0] == 1 and limits.ops_len_max >= 1:
        one = decode_one_fast(block, limits)
        if one is not None:
            return one
    return decode_block(block, limits)


def decode_one_fast(block: tuple[Any, ...], limits: DecodeLimits) -> tuple[Op] | None:
    """A block of one plain op (scalar value, at most one context pair), or None.

    Accepts exactly what :func:`decode_block` accepts for such a block and
    returns None for anything else, valid or not, so that the general path
    decides (and names the error).
    """
    _, table, ocol, seq, hlc, paths, kind, values, lcol, ncol, vcol = block
    if not (
        type(table) is tuple
        and type(ocol) is int
        and type(seq) is int
        and type(hlc) is int
        and type(kind) is int
        and type(lcol) is int
        and type(paths) is tuple
        and type(values) is tuple
        and len(paths) == 1
        and len(values) == 1
        and 0 <= ocol < len(table)
        and 1 <= seq <= U64_MAX
        and 0 <= hlc <= U64_MAX
        and kind in (0, 1)
        and type(values[0]) in SCALAR_TYPES
    ):
        return None
    id_max = limits.node_id_chars_max
    for node in table:
        if type(node) is not str or not node or len(node) > id_max:
            return None
    path = paths[0]
    if type(path) is not tuple or len(path) > limits.path_depth_max:
        return None
    seg_max = limits.segment_chars_max
    for segment in path:
        if type(segment) is not str or not segment or len(segment) > seg_max:
            return None
    if lcol == 0:
        if ncol is not None or vcol is not None:
            return None
        context: tuple[tuple[str, int], ...] = ()
    elif lcol == 1:
        if type(ncol) is not int or not 0 <= ncol < len(table) or type(vcol) is not int or not 0 <= vcol <= U64_MAX:
            return None
        if limits.container_len_max < 1:
            return None
        context = ((table[ncol], vcol),)
    else:
        return None
    return (_new_op(Op, (table[ocol], seq, hlc, path, kind, values[0], context)),)


def _dec_head(n: Any, table: Any, paths: Any, limits: DecodeLimits, *, count: str, holds: str, items: str) -> None:
    """The columns every block starts from: its length, its paths and its node id table."""
    if type(n) is not int or n < 0:
        raise _malformed(f"the {count} is {n!r}")
    if n > limits.ops_len_max:
        raise BatchTooLong(
            f"{holds} {n} {items}; ops_len_max is {limits.ops_len_max}",
            limit="ops_len_max",
            bound=limits.ops_len_max,
            value=n,
        )
    check_paths(paths, n, limits)  # bounds n by real data before anything is sized by it
    if n and type(table) is not tuple:
        raise _malformed("the node id table is not an array")
    if n:
        check_node_ids(table, limits, "a node id")


def _dec_lens(col: Any, n: int, noun: str) -> tuple[int, int, Any]:
    """A lengths column of ``n`` entries: (the length when all are equal else -1, their sum, the lengths)."""
    t = type(col)
    if t is int:
        if col < 0:
            raise _malformed(f"the {noun} is {col}")
        return col, col * n, None
    if t is bytes or t is tuple:
        if len(col) != n:
            raise _malformed(f"the {noun}s column has {len(col)} entries, not {n}")
        if t is tuple and (not _INT.issuperset(map(type, col)) or min(col) < 0):
            raise _malformed(f"the {noun}s column holds a negative or non-int {noun.rsplit(maxsplit=1)[-1]}")
        return -1, sum(col), col
    raise _malformed(f"the {noun}s column is a {t.__name__}")


def _dec_ranged(col: Any, count: int, name: str, low: int, *, what: str, plural: str, limit: str) -> tuple[int, ...]:
    """An int column whose entries must run from ``low`` to 2**64-1."""
    xs, lo, hi = _dec_ints(col, count, name)
    if count and (lo < low or hi > U64_MAX):
        bad = lo if lo < low else hi
        raise OutOfRange(
            f"{what} is {bad}; {plural} run from {low} to 2**64-1", limit=limit, bound=(low, U64_MAX), value=bad
        )
    return xs


def _groups(items: Iterator[Any], n: int, uniform: int, lens: Any) -> Iterable[tuple[Any, ...]]:
    """Cut ``items`` into ``n`` tuples: ``uniform`` long each, or as long as ``lens`` says (uniform -1)."""
    if uniform == 0:
        return ((),) * n
    if uniform == 1:
        return zip(items)
    if uniform > 1:
        return zip(*([items] * uniform), strict=False)  # one shared iterator, k at a time
    return map(tuple, map(islice, repeat(items), lens))


def decode_block(block: Any, limits: DecodeLimits) -> tuple[Op, ...]:
    """The general decoder of op blocks; every check, every column form."""
    if type(block) is not tuple or len(block) != _BLOCK_LEN:
        raise _malformed(f"expected an array of {_BLOCK_LEN} columns")
    n, table, ocol, scol, hcol, paths, kcol, values, lcol, ncol, vcol = block
    _dec_head(n, table, paths, limits, count="op count", holds="an op block holds", items="ops")
    if not n:
        return ()
    origins = _dec_strs(ocol, table, n, "origins")
    seqs = _dec_ranged(scol, n, "seq", 1, what="a seq", plural="seqs", limit="seq")
    hlcs = _dec_ranged(hcol, n, "hlc", 0, what="an hlc", plural="hlcs", limit="hlc")
    tk = type(kcol)
    if tk is int:
        if kcol not in (0, 1):
            raise OutOfRange(f"an op kind is {kcol}; kinds are 0 (put) or 1 (remove)", limit="kind", bound=(0, 1), value=kcol)
        kinds: Sequence[int] = (kcol,) * n
    elif tk is bytes:
        if len(kcol) != n:
            raise _malformed(f"the kinds column has {len(kcol)} entries, not {n}")
        if kcol.translate(None, b"\x00\x01"):
            raise OutOfRange("an op kind is not 0 (put) or 1 (remove)", limit="kind", bound=(0, 1), value=max(kcol))
        kinds = kcol
    else:
        raise _malformed(f"the kinds column is a {tk.__name__}")
    values = fix_values(values, n, limits, kinds, paths)
    # contexts
    uniform, m, lens = _dec_lens(lcol, n, "context length")
    if m > limits.container_len_max:
        raise ContainerTooLong(
            f"the contexts of an op block hold {m} pairs; container_len_max is {limits.container_len_max}",
            limit="container_len_max",
            bound=limits.container_len_max,
            value=m,
        )
    names = _dec_strs(ncol, table, m, "context node")
    ns = _dec_ranged(vcol, m, "context counter", 0, what="a context counter", plural="counters", limit="context")
    contexts = _groups(zip(names, ns, strict=True), n, uniform, lens)
    return tuple(map(_new_op, repeat(Op), zip(origins, seqs, hlcs, paths, kinds, values, contexts, strict=True)))


def decode_op(obj: Any, limits: DecodeLimits) -> Op:
    """A single Op travels as an op block of one."""
    ops = decode_ops(obj, limits)
    if len(ops) != 1:
        raise _malformed(f"expected one op, got {len(ops)}")
    return ops[0]


def decode_versions(rows: Any, limits: DecodeLimits, paths: Sequence[Any] | None = None) -> tuple[Version, ...]:
    """Decode and validate an array of version rows ``[value, hlc, origin, seq]``."""
    if type(rows) is not tuple:
        raise _malformed("the versions are not an array")
    if not rows:
        return ()
    if not _TUPLE.issuperset(map(type, rows)) or set(map(len, rows)) != {4}:
        raise _malformed("a version is not an array [value, hlc, origin, seq]")
    values, hlcs, origins, seqs = zip(*rows, strict=True)
    n = len(values)
    check_node_ids(origins, limits, "a version's origin")
    for name, col, low in (("hlc", hlcs, 0), ("seq", seqs, 1)):
        if not _INT.issuperset(map(type, col)):
            bad = next(x for x in col if type(x) is not int)
            raise WrongType(
                f"a version's {name} is a {type(bad).__name__}, not an int",
                limit="type",
                bound="int",
                value=type(bad).__name__,
            )
        lo = min(col)
        if lo < low:
            raise OutOfRange(f"a version's {name} is {lo}", limit=name, bound=(low, U64_MAX), value=lo)
    fixed = fix_values(values, n, limits, None, None)
    if fixed is values:
        return tuple(map(_new_op, repeat(Version), rows))
    return tuple(map(_new_op, repeat(Version), zip(fixed, hlcs, origins, seqs, strict=True)))


def decode_version(obj: Any, limits: DecodeLimits) -> Version:
    versions = decode_versions((obj,), limits)
    return versions[0]


def decode_entries(block: Any, limits: DecodeLimits) -> tuple[tuple[tuple[str, ...], tuple[Version, ...]], ...]:
    """Decode and validate an entry block (snapshot entries, see the module docstring)."""
    if type(block) is not tuple or len(block) != _ENTRY_BLOCK_LEN:
        raise _malformed(f"the snapshot entries are not an array of {_ENTRY_BLOCK_LEN} columns")
    n, table, ccol, paths, values, hcol, ocol, scol = block
    _dec_head(n, table, paths, limits, count="entry count", holds="a snapshot chunk holds", items="entries")
    if not n:
        return ()
    uniform, m, lens = _dec_lens(ccol, n, "version count")
    if m > limits.container_len_max:
        raise ContainerTooLong(
            f"a snapshot chunk holds {m} versions; container_len_max is {limits.container_len_max}",
            limit="container_len_max",
            bound=limits.container_len_max,
            value=m,
        )
    values = fix_values(values, m, limits, None, None)
    origins = _dec_strs(ocol, table, m, "version origins")
    hlcs = _dec_ranged(hcol, m, "hlc", 0, what="a version's hlc", plural="hlcs", limit="hlc")
    seqs = _dec_ranged(scol, m, "seq", 1, what="a version's seq", plural="seqs", limit="seq")
    versions = map(_new_op, repeat(Version), zip(values, hlcs, origins, seqs, strict=True))
    groups = _groups(versions, n, uniform, lens)
    return tuple(zip(paths, groups, strict=True))
