"""The collaborative list of JSON values: insert, delete and move.

Move follows Martin Kleppmann, "Moving Elements in List CRDTs" (PaPoC 2020):
the list is a sequence of *slots* (elements of the FugueMax engine in
``_seq``), and each *item* has a position that is a last-writer-wins register
over slots. Inserting makes items and their first slots (an item's id is the
id of its first slot); moving an item inserts one new slot where it goes and
sets the register to it; the slot that loses the register is hidden. Two
concurrent moves of one item leave it where the winner put it, once: the
register is ordered by a Lamport timestamp carried in the op, then by dot, so
a move always wins over what its author had seen and every replica picks the
same winner. A delete removes the item's register (a concurrent move of it
then only makes a hidden slot): an item is never duplicated or lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

import attrs

from statesync.core._context import Dot
from statesync.core._seq import Sequence, deletion_delta
from statesync.core._seqruns import Slicer, dump_runs, load_runs, rebuilt
from statesync.core._typebase import (
    PENDING_OPS_MAX,
    Buffered,
    Char,
    Delivery,
    Delta,
    DottedOp,
    bad,
    char_from_plain,
    char_plain,
    check_dot,
    opt_char_from_plain,
)
from statesync.core._value import Value, validate_value
from statesync.errors import InvalidOperation, InvalidValue

LIST_ITEMS_MAX = 1 << 20
"""Default bound on a list's length."""


@attrs.frozen
class ListInsert(DottedOp):
    """Insert ``values`` between slots ``left`` and ``right``; items ``(origin, seq, 0..n-1)``."""

    left: Char | None
    right: Char | None
    values: tuple[Value, ...]
    ts: int

    def to_plain(self) -> list[object]:
        return [0, self.origin, self.seq, _plain(self.left), _plain(self.right), list(self.values), self.ts]


@attrs.frozen
class ListDelete(DottedOp):
    """Delete the items ``items`` (ids, wherever they are now)."""

    items: tuple[Char, ...]

    def to_plain(self) -> list[object]:
        return [1, self.origin, self.seq, [list(i) for i in self.items]]


@attrs.frozen
class ListMove(DottedOp):
    """Move ``item`` to a new slot between ``left`` and ``right``; ``ts`` orders concurrent moves."""

    item: Char
    left: Char | None
    right: Char | None
    ts: int

    def to_plain(self) -> list[object]:
        return [2, self.origin, self.seq, list(self.item), _plain(self.left), _plain(self.right), self.ts]


ListOp: TypeAlias = ListInsert | ListDelete | ListMove


_plain = char_plain


def _bad(msg: str, where: str = "") -> InvalidOperation:
    return bad("list", msg, where)


def _char(x: object, what: str) -> Char:
    return char_from_plain(x, what, "list")


def _opt_char(x: object, what: str) -> Char | None:
    return opt_char_from_plain(x, what, "list")


def _values(values: object, where: str) -> tuple[Value, ...]:
    """``values`` as a non-empty tuple of storable values, or InvalidOperation naming ``where``."""
    if not isinstance(values, list | tuple) or not values:
        raise _bad(f"an insert needs a non-empty list of values ({where})", where)
    for v in values:
        try:
            validate_value(v)
        except InvalidValue as exc:
            raise _bad(f"bad value at {where}: {exc}", where) from exc
    return tuple(values)


def _ts(x: object) -> int:
    if type(x) is not int or not 1 <= x < 2**62:
        raise _bad(f"ts must be an int in 1..2**62-1, got {x!r:.20}", "ts")
    return x


def list_op_from_plain(data: object) -> ListOp:
    """An op record from its :meth:`to_plain` form; InvalidOperation when malformed."""
    if not isinstance(data, list | tuple) or len(data) < 4:
        raise _bad(f"an op is a list [kind, origin, seq, ...], got {data!r:.60}")
    kind = data[0]
    origin, seq = check_dot((data[1], data[2]), "list op")
    if kind == 0 and len(data) == 7:
        values = _values(data[5], f"op {(origin, seq)}")
        return ListInsert(origin, seq, _opt_char(data[3], "left"), _opt_char(data[4], "right"), values, _ts(data[6]))
    if kind == 1 and len(data) == 4:
        raw = data[3]
        if not isinstance(raw, list | tuple) or not raw:
            raise _bad("a delete names at least one item", f"op {(origin, seq)}")
        return ListDelete(origin, seq, tuple(_char(i, "item") for i in raw))
    if kind == 2 and len(data) == 7:
        return ListMove(origin, seq, _char(data[3], "item"), _opt_char(data[4], "left"), _opt_char(data[5], "right"), _ts(data[6]))
    raise _bad(f"unknown op form {data!r:.60}")


class List(Buffered[ListOp]):
    """A replicated list of JSON values with move. Pure: no I/O, no clock."""

    TYPE_NAME = "list"

    def __init__(self, *, items_max: int = LIST_ITEMS_MAX, pending_ops_max: int = PENDING_OPS_MAX) -> None:
        self._seq: Sequence[list[Char]] = Sequence([])
        self._d: Delivery[ListOp] = Delivery(pending_ops_max)
        self._values: dict[Char, Value] = {}
        self._reg: dict[Char, tuple[int, str, int, Char]] = {}  # item -> (ts, origin, seq, slot)
        self._clock = 0
        self.items_max = items_max

    def __len__(self) -> int:
        return self._seq.length

    def value(self) -> list[Value]:
        values = self._values
        return [values[i] for run in self._seq.live() for i in run]

    # ---- local edits ----------------------------------------------------------

    def _check_pos(self, pos: object, top: int, what: str) -> int:
        if type(pos) is not int or not 0 <= pos <= top:
            raise _bad(f"{what} {pos!r} is outside 0..{top}", f"pos {pos}")
        return pos

    def insert(self, dot: Dot, pos: int, values: list[Value]) -> ListInsert:
        """Insert ``values`` so that the first lands at index ``pos``; return the op."""
        self._check_pos(pos, len(self), "insert position")
        checked = _values(values, f"pos {pos}")
        self._fresh(dot)
        left, right = self._seq.origins_at(pos)
        op = ListInsert(dot[0], dot[1], left, right, checked, self._clock + 1)
        self.apply(op)
        return op

    def append(self, dot: Dot, value: Value) -> ListInsert:
        return self.insert(dot, len(self), [value])

    def delete(self, dot: Dot, pos: int, n: int = 1) -> ListDelete:
        """Delete ``n`` items from index ``pos``; return the op."""
        if type(n) is not int or n < 1:
            raise _bad(f"delete count {n!r} must be an int >= 1", f"pos {pos}")
        if type(pos) is not int or pos < 0 or pos + n > len(self):
            raise _bad(f"delete of {n} at {pos!r} runs past the end ({len(self)})", f"pos {pos}")
        self._fresh(dot)
        items = tuple(self._seq.element_at(pos + i)[1][0] for i in range(n))
        op = ListDelete(dot[0], dot[1], items)
        self.apply(op)
        return op

    def move(self, dot: Dot, src: int, dst: int) -> ListMove:
        """Move the item at index ``src`` so that it ends at index ``dst``; return the op."""
        n = len(self)
        if type(src) is not int or not 0 <= src < n:
            raise _bad(f"move of a missing item: index {src!r} is outside 0..{n - 1}", f"pos {src}")
        self._check_pos(dst, n - 1, "move destination")
        self._fresh(dot)
        item = self._seq.element_at(src)[1][0]
        left, right = self._seq.origins_at(dst if dst < src else dst + 1)
        op = ListMove(dot[0], dot[1], item, left, right, self._clock + 1)
        self.apply(op)
        return op

    def move_item(self, dot: Dot, item: Char, dst: int) -> ListMove:
        """Move the item with id ``item`` (wherever it is) to index ``dst``."""
        reg = self._reg.get(item)
        if reg is None:
            raise _bad(f"move of a missing item {item}", f"item {item}")
        pos = self._seq.position(reg[3])
        assert pos is not None
        return self.move(dot, pos, dst)

    def item_ids(self) -> list[Char]:
        """The items' ids, in list order (stable names for move_item)."""
        return [i for run in self._seq.live() for i in run]

    # ---- replication ------------------------------------------------------------

    def _deps(self, op: ListOp) -> list[Dot]:
        if isinstance(op, ListDelete):
            return [(i[0], i[1]) for i in op.items]
        anchors = [(c[0], c[1]) for c in (op.left, op.right) if c is not None]
        if isinstance(op, ListMove):
            anchors.append((op.item[0], op.item[1]))
        return anchors

    def apply(self, op: ListOp) -> list[Delta]:
        """Apply a replicated op: the deltas it (and ops it unblocked) made, in order."""
        if type(op) not in (ListInsert, ListDelete, ListMove):
            raise _bad(f"not a list op: {type(op).__name__}")
        return [d for d in self._d.deliver(op, self._deps, self._apply_now, "list") if d]

    def _check_known(self, op: ListOp, chars: list[Char | None]) -> None:
        for c in chars:
            if c is not None and not self._seq.has(c):
                raise _bad(f"op {op.dot} names {c}, which op {c[:2]} does not hold", f"op {op.dot}")

    def _apply_now(self, op: ListOp) -> Delta:
        seq = self._seq
        if type(op) is ListInsert:
            self._check_known(op, [op.left, op.right])
            if len(self) + len(op.values) > self.items_max:
                raise _bad(f"op {op.dot} would exceed the bound of {self.items_max} items", f"op {op.dot}")
            self._clock = max(self._clock, op.ts)
            ids = [(op.origin, op.seq, k) for k in range(len(op.values))]
            pos = seq.integrate(op.origin, op.seq, op.left, op.right, ids)
            for i, v in zip(ids, op.values, strict=True):
                self._values[i] = v
                self._reg[i] = (op.ts, op.origin, op.seq, i)
            delta: Delta = [{"retain": pos}] if pos else []
            delta.append({"insert": list(op.values)})
            return delta
        if type(op) is ListDelete:
            self._check_known(op, list(op.items))
            slots: list[tuple[int, Char]] = []
            for item in dict.fromkeys(op.items):
                reg = self._reg.pop(item, None)
                if reg is None:
                    continue  # already removed
                del self._values[item]
                p = seq.position(reg[3])
                assert p is not None
                slots.append((p, reg[3]))
            for _, slot in slots:  # hidden after measuring: positions as before the op
                seq.hide(slot, op.dot)
            return deletion_delta(sorted((p, 1) for p, _ in slots))
        assert type(op) is ListMove
        self._check_known(op, [op.item, op.left, op.right])
        self._clock = max(self._clock, op.ts)
        slot = (op.origin, op.seq, 0)
        reg = self._reg.get(op.item)
        old = None if reg is None else seq.position(reg[3])
        q = seq.integrate(op.origin, op.seq, op.left, op.right, [op.item])
        if reg is None or (op.ts, op.origin, op.seq) < reg[:3]:
            seq.hide(slot, op.dot)  # removed, or a later move already won
            return []
        self._reg[op.item] = (op.ts, op.origin, op.seq, slot)
        seq.hide(reg[3], op.dot)
        assert old is not None
        new = q - 1 if old < q else q
        v = self._values[op.item]
        if new == old:
            return []
        if new < old:
            steps: Delta = [{"retain": new}, {"insert": [v]}, {"retain": old - new}, {"delete": 1}]
        else:
            steps = [{"retain": old}, {"delete": 1}, {"retain": new - old}, {"insert": [v]}]
        return [s for s in steps if s.get("retain", 1) != 0]

    # ---- compaction and snapshots -------------------------------------------------

    def compact(self, stable: Mapping[str, int]) -> int:
        """Forget what no future op can need below the causally stable ``stable`` (see ``Sequence.compact``)."""
        touched = self._seq.compact(stable)
        if touched:
            self._seq = rebuilt(self._seq)
        return touched

    def _live_slots(self) -> list[tuple[Char, Char]]:
        """(slot id, item id) of every visible slot, in list order."""
        out: list[tuple[Char, Char]] = []
        for it in self._seq.items():
            if it.vis:
                out.extend((it.char(k), item) for k, item in enumerate(it.content))
        return out

    def to_snapshot(self) -> dict[str, object]:
        """Plain data: engine columns, each live slot's item, value and register timestamp."""
        origins: dict[str, int] = {}
        cols = dump_runs(self._seq, origins)
        items: list[int] = []
        ts: list[int] = []
        values: list[Value] = []
        for _, item in self._live_slots():
            o = origins.setdefault(item[0], len(origins))
            items += (o, item[1], item[2])
            ts.append(self._reg[item][0])
            values.append(self._values[item])
        return {
            "type": "list",
            "v": 1,
            "origins": list(origins),
            **cols,
            "items": items,
            "values": values,
            "ts": ts,
            "clock": self._clock,
            **self._causal_plain(),
        }

    def _load(self, data: Mapping[str, object]) -> list[ListOp]:
        """Restore from :meth:`to_snapshot`'s form (see ``Buffered.from_snapshot``)."""
        origins = [str(o) for o in data["origins"]]  # type: ignore[attr-defined]
        flat: list[int] = list(data["items"])  # type: ignore[call-overload]
        if len(flat) % 3:
            raise ValueError("items are not whole triples")
        ids = [(origins[flat[i]], int(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)]
        take = Slicer(ids)
        load_runs(self._seq, data, origins, take)  # type: ignore[arg-type]
        take.check_done()
        values: list[Value] = list(data["values"])  # type: ignore[call-overload]
        ts: list[int] = [int(t) for t in data["ts"]]  # type: ignore[attr-defined]
        if len(values) != len(ids) or len(ts) != len(ids):
            raise ValueError("items, values and timestamps differ in count")
        for (slot, item), v, t in zip(self._live_slots(), values, ts, strict=True):
            validate_value(v)
            self._values[item] = v
            self._reg[item] = (t, slot[0], slot[1], slot)
        self._clock = int(data["clock"])  # type: ignore[call-overload]
        return self._load_causal(data, list_op_from_plain)
