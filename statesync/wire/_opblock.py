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

from collections.abc import Callable, Sequence
from itertools import chain, repeat
from typing import Any, Final

from statesync.core import TYPED, Op
from statesync.core._typedops import is_typed_op
from statesync.errors import DataCloneError, OutOfRange
from statesync.wire._columns import (
    BLOCK_LEN,
    TUPLE_ONLY,
    U64_MAX,
    check_values,
    dec_head,
    dec_lens,
    dec_ranged,
    dec_strs,
    enc_ints,
    enc_lens,
    enc_strs,
    enc_table,
    first_clone_error,
    fix_values,
    malformed,
    new_tuple,
    split_groups,
)
from statesync.wire._limits import DEFAULT_LIMITS, DecodeLimits
from statesync.wire._typedblock import TYPED_BLOCK_LEN, decode_typed, encode_typed, merge
from statesync.wire._values import SCALAR_TYPES, check_payload, clone_error_at


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
        table = enc_table(index)
        seq_col = enc_ints(seqs, 1)
        hlc_col = enc_ints(hlcs, 0)
        ns_col = enc_ints(ns, 0)
        kind = kinds[0]
        if kinds.count(kind) == n:
            if type(kind) is not int or kind not in (0, 1):
                raise TypeError
            kind_col: object = kind
        else:
            kind_col = bytes(kinds)
            if kind_col.translate(None, b"\x00\x01"):
                raise TypeError
        if not TUPLE_ONLY.issuperset(map(type, paths)):
            raise TypeError
        check_values(values)
        return [
            n,
            table,
            enc_strs(origins, index),
            seq_col,
            hlc_col,
            paths,
            kind_col,
            values,
            enc_lens(lens),
            enc_strs(names, index) if names else None,
            ns_col,
        ]
    except Exception as exc:
        if any(map(is_typed_op, ops)):
            return _encode_with_typed(ops)
        raise locate_bad_op(ops) from exc


def _encode_with_typed(ops: Sequence[Op]) -> list[object]:
    """A block with a typed section (see ``_typedblock``)."""
    try:
        plain, section = encode_typed(ops)
    except Exception as exc:
        raise locate_bad_op(ops) from exc
    return [*encode_ops(plain), section]


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
            names_col = enc_strs(names, index)
            ns_col = enc_ints(ns, 0)
        else:
            names_col = ns_col = None
        return [1, list(index), 0, seq, hlc, (path,), kind, (value,), len(context), names_col, ns_col]
    except Exception as exc:
        if is_typed_op(op):
            return _encode_with_typed((op,))
        raise locate_bad_op((op,)) from exc


_OP_RULES: Final[tuple[tuple[str, Callable[[Any], bool], str], ...]] = (
    ("origin", lambda v: type(v) is str and v != "", "a non-empty str"),
    ("seq", lambda v: type(v) is int and 1 <= v <= U64_MAX, "an int from 1 to 2**64-1"),
    ("hlc", lambda v: type(v) is int and 0 <= v <= U64_MAX, "an int from 0 to 2**64-1"),
    (
        "path",
        lambda v: type(v) is tuple and all(type(s) is str and s for s in v),
        "a tuple of non-empty str",
    ),
    ("kind", lambda v: type(v) is int and v in (0, 1, TYPED), "0 (put), 1 (remove) or 2 (typed, with a TypedBody value)"),
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
    return first_clone_error(ops, _check_op, "ops")


def _check_op(i: int, op: object) -> None:
    """Raise DataCloneError (``where`` relative to the op) unless ``op``, ``ops[i]``, can be encoded."""
    if not isinstance(op, tuple) or len(op) != 7:
        raise DataCloneError(f"ops[{i}] is a {type(op).__qualname__}, not an Op", type_name=type(op).__qualname__)
    for (name, ok, expected), field in zip(_OP_RULES, op, strict=True):
        if not ok(field):
            raise DataCloneError(
                f"ops[{i}].{name} is {field!r}; it must be {expected}",
                type_name=type(field).__qualname__,
                where=f"$.{name}",
            )
    if op[4] == TYPED:
        if not is_typed_op(op):
            raise DataCloneError(
                f"ops[{i}].kind is 2 (typed) but its value is a {type(op[5]).__qualname__}, not a TypedBody",
                type_name=type(op[5]).__qualname__,
                where="$.kind",
            )
        return
    try:
        check_payload(op[5])
    except DataCloneError as e:
        clone_error_at(e, ".value")
        raise


def decode_ops(block: Any, limits: DecodeLimits) -> tuple[Op, ...]:
    """Decode and validate an op block; raise DecodeError."""
    if type(block) is tuple and len(block) == BLOCK_LEN and type(block[0]) is int and block[0] == 1 and limits.ops_len_max >= 1:
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
    return (new_tuple(Op, (table[ocol], seq, hlc, path, kind, values[0], context)),)


def decode_block(block: Any, limits: DecodeLimits) -> tuple[Op, ...]:
    """The general decoder of op blocks; every check, every column form."""
    if type(block) is tuple and len(block) == TYPED_BLOCK_LEN:
        plain = decode_block(block[:BLOCK_LEN], limits)
        return merge(plain, decode_typed(block[BLOCK_LEN], limits, len(plain)))
    if type(block) is not tuple or len(block) != BLOCK_LEN:
        raise malformed(f"expected an array of {BLOCK_LEN} columns")
    n, table, ocol, scol, hcol, paths, kcol, values, lcol, ncol, vcol = block
    dec_head(n, table, paths, limits, count="op count", holds="an op block holds", items="ops")
    if not n:
        return ()
    origins = dec_strs(ocol, table, n, "origins")
    seqs = dec_ranged(scol, n, "seq", 1, what="a seq", plural="seqs", limit="seq")
    hlcs = dec_ranged(hcol, n, "hlc", 0, what="an hlc", plural="hlcs", limit="hlc")
    tk = type(kcol)
    if tk is int:
        if kcol not in (0, 1):
            raise OutOfRange(f"an op kind is {kcol}; kinds are 0 (put) or 1 (remove)", limit="kind", bound=(0, 1), value=kcol)
        kinds: Sequence[int] = (kcol,) * n
    elif tk is bytes:
        if len(kcol) != n:
            raise malformed(f"the kinds column has {len(kcol)} entries, not {n}")
        if kcol.translate(None, b"\x00\x01"):
            raise OutOfRange("an op kind is not 0 (put) or 1 (remove)", limit="kind", bound=(0, 1), value=max(kcol))
        kinds = kcol
    else:
        raise malformed(f"the kinds column is a {tk.__name__}")
    values = fix_values(values, n, limits, kinds, paths)
    # contexts
    uniform, m, lens = dec_lens(lcol, n, "context length", limits, "the contexts of an op block hold {} pairs")
    names = dec_strs(ncol, table, m, "context node")
    ns = dec_ranged(vcol, m, "context counter", 0, what="a context counter", plural="counters", limit="context")
    contexts = split_groups(zip(names, ns, strict=True), n, uniform, lens)
    return tuple(map(new_tuple, repeat(Op), zip(origins, seqs, hlcs, paths, kinds, values, contexts, strict=True)))


def decode_op(obj: Any, limits: DecodeLimits) -> Op:
    """A single Op travels as an op block of one."""
    ops = decode_ops(obj, limits)
    if len(ops) != 1:
        raise malformed(f"expected one op, got {len(ops)}")
    return ops[0]
