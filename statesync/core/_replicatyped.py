"""The typed writes of a replica: text, list, counter and add-wins set ops as ``Op``s.

Mixed into :class:`~statesync.core._replica.Replica`. Each method validates
everything first and raises InvalidOperation (one line, naming what and
where) with nothing applied; otherwise it applies the edit here and returns
the op to replicate (kind TYPED, see ``_typedops``), which every other replica
applies through ``receive``/``receive_many`` like any op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from statesync.core._awset import AWSet, Scalar
from statesync.core._counter import Counter
from statesync.core._hlc import COUNTER_BITS
from statesync.core._list import List
from statesync.core._op import ABSENT, PUT, Change, Op
from statesync.core._path import Path, PathLike, format_path
from statesync.core._text import Text
from statesync.core._typebase import Buffered
from statesync.core._typed import Typed, TypedOp, new_typed, type_code
from statesync.core._typedops import TYPED, TypedBody, TypedBox, box_of, editing_context
from statesync.core._value import Value, validate_value
from statesync.errors import InvalidOperation, InvalidValue

if TYPE_CHECKING:
    from statesync.core._hlc import HybridClock
    from statesync.core._oplog import OpLog
    from statesync.core._replica import ReplicaLimits
    from statesync.core._tree import StateTree


class _Host(Protocol):
    node_id: str
    vv: dict[str, int]
    clock: HybridClock
    tree: StateTree
    log: OpLog
    limits: ReplicaLimits

    def _path(self, path: PathLike) -> Path: ...


class TypedWrites:
    """Typed edits as ops (see the module doc). The set accessor is ``aw_add``/``aw_remove``."""

    # ------------------------------------------------------------------ text

    def text_insert(
        self: _Host, path: PathLike, pos: int, s: str, wall_ms: int, changes: list[Change] | None = None
    ) -> Op:
        """Insert ``s`` at code point ``pos`` of the text at ``path`` (created by the first typed op)."""
        bound = self.limits.value.str_chars_max

        def make(obj: Typed, dot: tuple[str, int]) -> TypedOp:
            assert isinstance(obj, Text)
            if isinstance(s, str) and len(obj) + len(s) > bound:
                raise InvalidOperation(
                    f"text: inserting {len(s)} chars into {len(obj)} exceeds the value bound of {bound} "
                    f"at {format_path(p)}; split the text or raise ValueLimits.str_chars_max",
                    type_name="text",
                    where=f"pos {pos}",
                )
            return obj.insert(dot, pos, s)

        p = self._path(path)
        return TypedWrites._typed(self, p, "text", make, wall_ms, changes)

    def text_delete(
        self: _Host, path: PathLike, pos: int, n: int, wall_ms: int, changes: list[Change] | None = None
    ) -> Op:
        """Delete ``n`` code points from ``pos`` of the text at ``path``."""
        return _delete(self, path, "text", pos, n, wall_ms, changes)

    # ------------------------------------------------------------------ list

    def list_insert(
        self: _Host,
        path: PathLike,
        pos: int,
        values: list[Value],
        wall_ms: int,
        changes: list[Change] | None = None,
    ) -> Op:
        """Insert ``values`` so that the first lands at index ``pos`` of the list at ``path``."""
        p = self._path(path)
        if isinstance(values, list | tuple):
            for i, v in enumerate(values):
                try:
                    validate_value(v, self.limits.value)
                except InvalidValue as exc:
                    raise InvalidOperation(
                        f"list: value {i} for {format_path(p)} cannot be stored: {exc}",
                        type_name="list",
                        where=f"pos {pos}",
                    ) from exc
        return TypedWrites._typed(
            self, p, "list", lambda obj, dot: obj.insert(dot, pos, values), wall_ms, changes  # type: ignore[union-attr, arg-type]
        )

    def list_delete(
        self: _Host, path: PathLike, pos: int, n: int, wall_ms: int, changes: list[Change] | None = None
    ) -> Op:
        """Delete ``n`` items from index ``pos`` of the list at ``path``."""
        return _delete(self, path, "list", pos, n, wall_ms, changes)

    def list_move(
        self: _Host, path: PathLike, src: int, dst: int, wall_ms: int, changes: list[Change] | None = None
    ) -> Op:
        """Move the item at index ``src`` so that it lands at index ``dst`` (as ``List.move``)."""
        p = self._path(path)
        return TypedWrites._typed(
            self, p, "list", lambda obj, dot: obj.move(dot, src, dst), wall_ms, changes, create=False  # type: ignore[union-attr]
        )

    # --------------------------------------------------------- counter, set

    def counter_add(
        self: _Host, path: PathLike, amount: int, wall_ms: int, changes: list[Change] | None = None
    ) -> Op:
        """Add ``amount`` (negative allowed) to the counter at ``path``; concurrent adds sum."""
        p = self._path(path)
        return TypedWrites._typed(
            self, p, "counter", lambda obj, dot: obj.add(dot, amount), wall_ms, changes  # type: ignore[union-attr]
        )

    def aw_add(
        self: _Host, path: PathLike, element: Scalar, wall_ms: int, changes: list[Change] | None = None
    ) -> Op:
        """Add the JSON scalar ``element`` to the add-wins set at ``path``."""
        p = self._path(path)
        return TypedWrites._typed(
            self, p, "awset", lambda obj, dot: obj.add(dot, element), wall_ms, changes  # type: ignore[union-attr, arg-type]
        )

    def aw_remove(
        self: _Host, path: PathLike, element: Scalar, wall_ms: int, changes: list[Change] | None = None
    ) -> Op:
        """Remove ``element`` (present here) from the add-wins set; a concurrent add keeps it."""
        p = self._path(path)
        return TypedWrites._typed(
            self, p, "awset", lambda obj, dot: obj.remove(dot, element), wall_ms, changes, create=False  # type: ignore[union-attr]
        )

    # -------------------------------------------------------------- shared

    def typed_value(self: _Host, path: PathLike) -> Text | List | Counter | AWSet | None:
        """The live typed object shown at ``path`` (None when it holds none): for reading only."""
        got = _shown_box(self.tree, self._path(path))
        return got[0].obj if got is not None else None

    def compact_typed(self: _Host, stable: Mapping[str, int]) -> int:
        """Let every typed value forget what no future op can need (deleted runs below ``stable``)."""
        done = 0
        tree = self.tree
        for path in list(tree.typed_paths):
            boxes = [b for b in (box_of(v.value) for v in tree.versions(path)) if b is not None]
            if not boxes:
                tree.typed_paths.discard(path)
            for box in boxes:
                box.frozen = None
                done += box.obj.compact(stable)
                if isinstance(box.obj, Buffered):
                    box.obj.settle(stable)
        return done

    def _typed(
        self: _Host,
        p: Path,
        type_name: str,
        make: Callable[[Typed, tuple[str, int]], TypedOp],
        wall_ms: int,
        changes: list[Change] | None,
        *,
        create: bool = True,
    ) -> Op:
        if not p:
            raise InvalidOperation(
                f"{type_name}: typed values live under a path like 'app.doc', not at the root",
                type_name=type_name,
                where=format_path(p),
            )
        origin = self.node_id
        seq = self.vv.get(origin, 0) + 1
        dot = (origin, seq)
        tree = self.tree
        got = _shown_box(tree, p)
        if got is not None and got[0].type_name != type_name:
            where = format_path(p)
            raise InvalidOperation(
                f"{type_name}: {where} holds a {got[0].type_name}; write or remove it first to make it a {type_name}",
                type_name=type_name,
                where=where,
            )
        if got is None:
            where = format_path(p)
            shown = tree.get(p)
            if type(shown) is dict and shown:
                raise InvalidOperation(
                    f"{type_name}: {where} holds a map; a typed value goes at a path of its own",
                    type_name=type_name,
                    where=where,
                )
            if not create:
                what = "nothing" if shown is ABSENT else "a plain value"
                raise InvalidOperation(
                    f"{type_name}: {where} holds {what}, so there is nothing to edit; insert or add first",
                    type_name=type_name,
                    where=where,
                )
            obj = new_typed(type_name)
            rec = make(obj, dot)  # raises before anything is applied
            clock = self.clock
            hlc = clock.last = max(clock.last + 1, wall_ms << COUNTER_BITS)
            box = TypedBox(type_code(rec), obj)
            context = tree.write_local(p, PUT, box, (hlc, origin, seq), changes)  # type: ignore[arg-type]
            tree.typed_paths.add(p)
            body = TypedBody(dot, rec)
        else:
            box, target = got
            before = tree.get(p) if changes is not None else ABSENT
            rec = make(box.obj, dot)  # the type validates first; applies only when valid
            box.frozen = None
            clock = self.clock
            hlc = clock.last = max(clock.last + 1, wall_ms << COUNTER_BITS)
            body = TypedBody(target, rec)
            context = editing_context(body)
            if changes is not None:
                changes.append(Change(p, before, tree.get(p), origin, seq))
        op = Op(origin, seq, hlc, p, TYPED, body, context)  # type: ignore[arg-type]
        self.vv[origin] = seq
        self.log.append(op)
        return op


def _delete(  # noqa: PLR0917 (the public methods' arguments, passed on)
    host: _Host, path: PathLike, type_name: str, pos: int, n: int, wall_ms: int, changes: list[Change] | None
) -> Op:
    return TypedWrites._typed(
        host, host._path(path), type_name, lambda obj, dot: obj.delete(dot, pos, n), wall_ms, changes, create=False  # type: ignore[union-attr]
    )


def _shown_box(tree: StateTree, p: Path) -> tuple[TypedBox, tuple[str, int]] | None:
    """The typed value a reader sees at ``p`` (the register's top version) and its dot."""
    versions = tree.versions(p)
    if not versions or tree.shadowed(p):
        return None
    top = versions[-1]
    box = box_of(top.value)
    if box is None or tree.hidden_by_below(p):
        return None
    return box, (top.origin, top.seq)


__all__ = ["TypedWrites"]
