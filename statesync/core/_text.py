"""The collaborative text type: a string edited by insert and delete, merged by FugueMax.

Positions are Unicode code points. A local edit returns an op record (plain
data: strs, ints, tuples) named by the dot the caller gives it; every replica
applies it with :meth:`Text.apply`, which is idempotent, commutes for
concurrent ops, holds an op whose anchors have not arrived (bounded), and
returns the change as Yjs-style deltas with positions as on this replica.
Concurrent inserts at one position never interleave (see ``_seq``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeAlias

import attrs

from statesync.core._context import Dot
from statesync.core._seq import Sequence, Target, deletion_delta
from statesync.core._seqruns import Slicer, dump_runs, load_runs, rebuilt
from statesync.core._typebase import (
    PENDING_OPS_MAX,
    Buffered,
    Char,
    Delivery,
    Delta,
    DottedOp,
    bad,
    char_plain,
    check_dot,
    opt_char_from_plain,
)
from statesync.errors import InvalidOperation

TEXT_CHARS_MAX: Final = 1 << 26
"""Default bound on a text's length in code points (the tree's value bound, 64 Mi)."""


@attrs.frozen
class TextInsert(DottedOp):
    """Insert ``text`` between the elements ``left`` and ``right`` (None: the ends)."""

    left: Char | None
    right: Char | None
    text: str

    def to_plain(self) -> list[object]:
        return [0, self.origin, self.seq, char_plain(self.left), char_plain(self.right), self.text]


@attrs.frozen
class TextDelete(DottedOp):
    """Delete the elements ``targets`` names: runs ``(origin, seq, offset, count)``."""

    targets: tuple[Target, ...]

    def to_plain(self) -> list[object]:
        return [1, self.origin, self.seq, [list(t) for t in self.targets]]


TextOp: TypeAlias = TextInsert | TextDelete


def _bad(msg: str, where: str = "") -> InvalidOperation:
    return bad("text", msg, where)


def _char(x: object, what: str) -> Char | None:
    return opt_char_from_plain(x, what, "text")


def text_op_from_plain(data: object) -> TextOp:
    """An op record from its :meth:`to_plain` form; InvalidOperation when malformed."""
    if not isinstance(data, list | tuple) or not data:
        raise _bad(f"an op is a non-empty list, got {type(data).__name__}")
    kind = data[0]
    if kind == 0 and len(data) == 6:
        origin, seq = check_dot((data[1], data[2]), "text op")
        text = data[5]
        if type(text) is not str or not text:
            raise _bad("an insert carries a non-empty str", f"op {(origin, seq)}")
        return TextInsert(origin, seq, _char(data[3], "left"), _char(data[4], "right"), text)
    if kind == 1 and len(data) == 4:
        origin, seq = check_dot((data[1], data[2]), "text op")
        raw = data[3]
        if not isinstance(raw, list | tuple) or not raw:
            raise _bad("a delete names at least one run", f"op {(origin, seq)}")
        targets: list[Target] = []
        for t in raw:
            c = _char(t[:3] if isinstance(t, list | tuple) else t, "target")
            if c is None or len(t) != 4 or type(t[3]) is not int or t[3] < 1:
                raise _bad(f"a delete target is (origin, seq, offset, count >= 1), got {t!r}")
            targets.append((c[0], c[1], c[2], t[3]))
        return TextDelete(origin, seq, tuple(targets))
    raise _bad(f"unknown op form {data!r:.80}")


class Text(Buffered[TextOp]):
    """A replicated string. Not thread-safe; pure (no I/O, no clock)."""

    TYPE_NAME = "text"

    def __init__(
        self, *, chars_max: int = TEXT_CHARS_MAX, pending_ops_max: int = PENDING_OPS_MAX
    ) -> None:
        self._seq: Sequence[str] = Sequence("")
        self._d: Delivery[TextOp] = Delivery(pending_ops_max)
        self.chars_max = chars_max

    def __len__(self) -> int:
        return self._seq.length

    def value(self) -> str:
        return "".join(self._seq.live())

    # ---- local edits ----------------------------------------------------------

    def insert(self, dot: Dot, pos: int, s: str) -> TextInsert:
        """Insert ``s`` so that it starts at code point ``pos``; return the op to replicate."""
        n = self._seq.length
        if type(pos) is not int or not 0 <= pos <= n:
            raise _bad(f"insert position {pos!r} is outside 0..{n}", f"pos {pos}")
        if type(s) is not str or not s:
            raise _bad(f"insert needs a non-empty str, got {s!r:.40}", f"pos {pos}")
        if n + len(s) > self.chars_max:
            raise _bad(
                f"inserting {len(s)} chars would exceed the bound of {self.chars_max}", f"pos {pos}"
            )
        self._fresh(dot)
        origin, seq = dot
        left, right = self._seq.local_insert(origin, seq, pos, s)
        self._d.applied.add(dot)
        return TextInsert(origin, seq, left, right, s)

    def delete(self, dot: Dot, pos: int, n: int) -> TextDelete:
        """Delete ``n`` code points from ``pos``; return the op to replicate."""
        length = self._seq.length
        if type(n) is not int or n < 1:
            raise _bad(f"delete count {n!r} must be an int >= 1", f"pos {pos}")
        if type(pos) is not int or pos < 0 or pos + n > length:
            raise _bad(f"delete of {n} at {pos!r} runs past the end ({length})", f"pos {pos}")
        self._fresh(dot)
        targets = self._seq.local_delete(pos, n, dot)
        self._d.applied.add(dot)
        return TextDelete(dot[0], dot[1], tuple(targets))

    # ---- replication ------------------------------------------------------------

    def _deps(self, op: TextOp) -> list[Dot]:
        if type(op) is TextInsert:
            return [(c[0], c[1]) for c in (op.left, op.right) if c is not None]
        assert type(op) is TextDelete
        return [(t[0], t[1]) for t in op.targets]

    def apply(self, op: TextOp) -> list[Delta]:
        """Apply a replicated op: the deltas it (and ops it unblocked) made, in order.

        A duplicate, or an op held for a missing anchor, changes nothing: ``[]``.
        """
        if type(op) is not TextInsert and type(op) is not TextDelete:
            raise _bad(f"not a text op: {type(op).__name__}")
        return [d for d in self._d.deliver(op, self._deps, self._apply_now, "text") if d]

    def _apply_now(self, op: TextOp) -> Delta:
        seq = self._seq
        if type(op) is TextInsert:
            if type(op.text) is not str or not op.text:
                raise _bad(f"op {op.dot} inserts {op.text!r:.20}: a non-empty str is needed", f"op {op.dot}")
            for c in (op.left, op.right):
                if c is not None and not seq.has(c):
                    raise _bad(f"op {op.dot} anchors to {c}, which op {c[:2]} does not hold", f"op {op.dot}")
            if seq.length + len(op.text) > self.chars_max:
                raise _bad(f"op {op.dot} would exceed the bound of {self.chars_max} chars", f"op {op.dot}")
            pos = seq.integrate(op.origin, op.seq, op.left, op.right, op.text)
            delta: Delta = [{"retain": pos}] if pos else []
            delta.append({"insert": op.text})
            return delta
        assert type(op) is TextDelete
        for o, s, off, n in op.targets:
            if not (seq.has((o, s, off)) and seq.has((o, s, off + n - 1))):
                raise _bad(f"op {op.dot} deletes {(o, s, off, n)}, outside what op {(o, s)} inserted", f"op {op.dot}")
        return deletion_delta(seq.delete_targets(list(op.targets), op.dot))

    # ---- compaction and snapshots -------------------------------------------------

    def compact(self, stable: Mapping[str, int]) -> int:
        """Forget what no future op can need, below the causally stable vector ``stable``.

        Returns how many runs it compacted. See ``Sequence.compact`` for the contract.
        """
        touched = self._seq.compact(stable)
        if touched:
            self._seq = rebuilt(self._seq)
        return touched

    def to_snapshot(self) -> dict[str, object]:
        """Plain data (str, int, lists): live text once plus per-run metadata."""
        origins: dict[str, int] = {}
        cols = dump_runs(self._seq, origins)
        return {
            "type": "text",
            "v": 1,
            "origins": list(origins),
            "text": self.value(),
            **cols,
            **self._causal_plain(),
        }

    def _load(self, data: Mapping[str, object]) -> list[TextOp]:
        """Restore from :meth:`to_snapshot`'s form (see ``Buffered.from_snapshot``)."""
        origins = [str(o) for o in data["origins"]]  # type: ignore[attr-defined]
        text = data["text"]
        if type(text) is not str:
            raise ValueError("text is not a str")
        take = Slicer(text)
        load_runs(self._seq, data, origins, take)  # type: ignore[arg-type]
        take.check_done()
        return self._load_causal(data, text_op_from_plain)
