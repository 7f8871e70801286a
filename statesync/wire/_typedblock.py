"""Typed ops (text, list, counter, set; kind TYPED) in an op block.

A block that holds typed ops has a twelfth column, the *typed section*; the
first eleven columns are the block of its plain ops, as without typed ops::

    typed = [table, entries]
    entry = [at, origin, seq, hlc, path, target_origin, target_seq, ctx, op]
    run   = [at, origin, seq, hlc, path, target_origin, target_seq, nil, op, hlc_deltas]

- ``at``: the index of the entry's (first) op among all the block's ops; the
  plain ops fill the other places in order. ``origin``/``target_origin``
  index ``table``.
- ``ctx``: the context of a *creating* op (``target`` is the op's own dot),
  ``[[node index, n], ...]``; nil for an editing op, whose context follows from
  its body (see ``core._typedops.editing_context``).
- ``op``: the type's op record as plain data ``[type code, record]``.
- a *run* is what typing makes: consecutive single-character text inserts by
  one author (seqs ``seq, seq+1, ...``), each after the one before, all before
  the same right neighbour. It travels as one entry whose record inserts the
  whole run's text; ``hlc_deltas`` (uint32 little-endian) give each later op's
  hlc minus the one before. Decoding gives the ops back one by one.

Decoding checks every field; anything malformed (including a typed record the
type refuses) is a MalformedFrame or another DecodeError, never anything else.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, Final

from statesync.core import TYPED, Op, TypedBody
from statesync.core._text import TextInsert
from statesync.core._typed import typed_op_from_plain, typed_op_to_plain
from statesync.core._typedops import editing_context, is_typed_op
from statesync.errors import DecodeError, InvalidOperation, OutOfRange
from statesync.wire._columns import U64_MAX, malformed
from statesync.wire._limits import DecodeLimits
from statesync.wire._values import fix_value

TYPED_BLOCK_LEN: Final = 12
_U32_MAX: Final = 2**32 - 1
_LITTLE: Final = sys.byteorder == "little"


def _body(op: Op) -> TypedBody:
    return op.value  # type: ignore[return-value]


def _extends(run: list[Op], op: Op) -> bool:
    """True when ``op`` types the next character of the text-insert run ``run``."""
    last = run[-1]
    if op.kind != TYPED or op.origin != last.origin or op.seq != last.seq + 1 or op.path != last.path:
        return False
    body, first = _body(op), _body(run[0])
    rec, rec0 = body.op, first.op
    return (
        type(rec) is TextInsert
        and type(rec0) is TextInsert
        and len(rec0.text) == 1
        and body.target == first.target
        and body.target != run[0].dot
        and len(rec.text) == 1
        and rec.right == rec0.right
        and rec.left == (last.origin, last.seq, 0)
        and 0 <= op.hlc - last.hlc <= _U32_MAX
    )


def encode_typed(ops: Sequence[Op]) -> tuple[list[Op], list[object]]:
    """Split ``ops`` into the plain ones and the typed section (see the module doc)."""
    plain: list[Op] = []
    runs: list[tuple[int, list[Op]]] = []
    for i, op in enumerate(ops):
        if op.kind == TYPED and not is_typed_op(op):
            raise TypeError(f"ops[{i}] is typed but its value is a {type(op.value).__name__}, not a TypedBody")
        if op.kind != TYPED:
            plain.append(op)
        elif runs and runs[-1][0] + len(runs[-1][1]) == i and _extends(runs[-1][1], op):
            runs[-1][1].append(op)
        else:
            runs.append((i, [op]))
    index: dict[str, int] = {}

    def ix(name: str) -> int:
        return index.setdefault(name, len(index))

    entries: list[object] = []
    for at, run in runs:
        op = run[0]
        body = _body(op)
        target = body.target
        ctx = [[ix(o), n] for o, n in op.context] if target == op.dot else None
        head = [at, ix(op.origin), op.seq, op.hlc, op.path, ix(target[0]), target[1], ctx]
        if len(run) == 1:
            entries.append([*head, typed_op_to_plain(body.op)])
            continue
        rec0: TextInsert = body.op  # type: ignore[assignment]
        text = "".join(_body(o).op.text for o in run)  # type: ignore[union-attr]
        merged = TextInsert(rec0.origin, rec0.seq, rec0.left, rec0.right, text)
        deltas = array("I", (b.hlc - a.hlc for a, b in pairwise(run)))
        if not _LITTLE:
            deltas.byteswap()
        entries.append([*head, typed_op_to_plain(merged), deltas.tobytes()])
    return plain, [list(index), entries]


def _int(x: Any, low: int, what: str) -> int:
    if type(x) is not int:
        raise malformed(f"a typed op's {what} is a {type(x).__name__}, not an int")
    if not low <= x <= U64_MAX:
        raise OutOfRange(f"a typed op's {what} is {x}; it runs from {low} to 2**64-1", limit=what, bound=(low, U64_MAX), value=x)
    return x


def _name(table: tuple[str, ...], i: Any, what: str) -> str:
    if type(i) is not int or not 0 <= i < len(table):
        raise malformed(f"a typed op's {what} index is {i!r:.20}, outside the table of {len(table)}")
    return table[i]


def _path(x: Any, limits: DecodeLimits) -> tuple[str, ...]:
    if type(x) is not tuple or not x or len(x) > limits.path_depth_max:
        raise malformed(f"a typed op's path is not 1 to {limits.path_depth_max} segments")
    for seg in x:
        if type(seg) is not str or not seg or len(seg) > limits.segment_chars_max:
            raise malformed("a typed op's path segment is not a non-empty str within the bound")
    return x


def decode_typed(section: Any, limits: DecodeLimits, plain_count: int) -> list[tuple[int, list[Op]]]:
    """The typed section's ops, grouped by where they go: ``[(at, ops), ...]``, ``at`` increasing."""
    if type(section) is not tuple or len(section) != 2:
        raise malformed("the typed section is not [table, entries]")
    table, entries = section
    if type(table) is not tuple or not all(type(t) is str and t and len(t) <= limits.node_id_chars_max for t in table):
        raise malformed("the typed section's node table is not an array of node ids")
    if type(entries) is not tuple or not entries:
        raise malformed("the typed section's entries are not a non-empty array")
    out: list[tuple[int, list[Op]]] = []
    total = plain_count
    for entry in entries:
        if type(entry) is not tuple or len(entry) not in (9, 10):
            raise malformed("a typed op entry is not an array of 9 or 10 fields")
        at = entry[0]
        if type(at) is not int or at < (out[-1][0] + len(out[-1][1]) if out else 0):
            raise malformed("a typed op entry's place is not an int past the entry before")
        ops = _decode_entry(entry, table, limits)
        total += len(ops)
        if total > limits.ops_len_max:
            raise malformed(f"an op block holds more than {limits.ops_len_max} ops")
        out.append((at, ops))
    return out


def _decode_entry(entry: tuple[Any, ...], table: tuple[str, ...], limits: DecodeLimits) -> list[Op]:
    _, oi, seq, hlc, path, ti, tseq, ctx, rec = entry[:9]
    origin = _name(table, oi, "origin")
    seq = _int(seq, 1, "seq")
    hlc = _int(hlc, 0, "hlc")
    path = _path(path, limits)
    target = (_name(table, ti, "target"), _int(tseq, 1, "target seq"))
    try:
        op = typed_op_from_plain(fix_value(rec, limits))
    except InvalidOperation as exc:
        raise malformed(f"a typed op record is refused: {exc}"[:200]) from exc
    except DecodeError:
        raise
    if (op.origin, op.seq) != (origin, seq):
        raise malformed("a typed op record's dot differs from its entry's")
    creating = target == (origin, seq)
    context: tuple[tuple[str, int], ...] = ()
    if creating:
        if type(ctx) is not tuple or len(ctx) > limits.container_len_max:
            raise malformed("a creating typed op's context is not an array of pairs")
        pairs = []
        for pair in ctx:
            if type(pair) is not tuple or len(pair) != 2:
                raise malformed("a context pair is not [node index, n]")
            pairs.append((_name(table, pair[0], "context node"), _int(pair[1], 0, "context counter")))
        context = tuple(pairs)
    elif ctx is not None:
        raise malformed("an editing typed op carries a context")
    if len(entry) == 9:
        body = TypedBody(target, op)
        return [Op(origin, seq, hlc, path, TYPED, body, context if creating else editing_context(body))]  # type: ignore[arg-type]
    deltas = entry[9]
    if creating or type(op) is not TextInsert or type(deltas) is not bytes or len(op.text) < 2:
        raise malformed("a typed run is an editing text insert of 2 or more chars with hlc deltas")
    steps = array("I")
    if len(deltas) != steps.itemsize * (len(op.text) - 1):
        raise malformed(f"a typed run of {len(op.text)} chars needs {len(op.text) - 1} hlc deltas")
    steps.frombytes(deltas)
    if not _LITTLE:
        steps.byteswap()
    if seq + len(op.text) - 1 > U64_MAX or hlc + sum(steps) > U64_MAX:
        raise malformed("a typed run runs past 2**64-1")
    out: list[Op] = []
    left = op.left
    for k, ch in enumerate(op.text):
        s = seq + k
        if k:
            hlc += steps[k - 1]
        body = TypedBody(target, TextInsert(origin, s, left, op.right, ch))
        out.append(Op(origin, s, hlc, path, TYPED, body, editing_context(body)))  # type: ignore[arg-type]
        left = (origin, s, 0)
    return out


def merge(plain: Sequence[Op], typed: list[tuple[int, list[Op]]]) -> tuple[Op, ...]:
    """Plain and typed ops back in the block's order."""
    out: list[Op] = []
    it = iter(plain)
    for at, ops in typed:
        while len(out) < at:
            nxt = next(it, None)
            if nxt is None:
                raise malformed("a typed op entry's place is past the plain ops")
            out.append(nxt)
        out.extend(ops)
    out.extend(it)
    return tuple(out)
