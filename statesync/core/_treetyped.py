"""The typed part of the state tree: finding a typed value's incarnation, applying typed ops.

Mixed into :class:`~statesync.core._tree.StateTree` (see ``_typedops`` for the model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from statesync.core._op import ABSENT, AbsentType, Change, Op, Version
from statesync.core._path import Path
from statesync.core._typedops import TypedBox, body_of, box_of, new_box
from statesync.errors import InvalidOperation

if TYPE_CHECKING:
    from statesync.core._value import Value


class _Tree(Protocol):
    typed_paths: set[Path]

    def _shadowed(self, path: Path) -> bool: ...
    def _strip(self, path: Path, covered: dict[str, int], touched: dict[Path, Value | AbsentType] | None) -> None: ...
    def _insert(self, path: Path, version: Version, touched: dict[Path, Value | AbsentType] | None) -> None: ...
    def _read_leaf(self, path: Path) -> Value | AbsentType: ...
    def versions(self, path: Path) -> tuple[Version, ...]: ...
    def typed_at(self, path: Path, dot: tuple[str, int]) -> TypedBox | None: ...


class TypedTree:
    """Typed values in registers (see ``_typedops``)."""

    __slots__ = ()

    def shadowed(self: _Tree, path: Path) -> bool:
        """True when a leaf at a strict ancestor of ``path`` hides it."""
        return bool(path) and self._shadowed(path)

    def typed_at(self: _Tree, path: Path, dot: tuple[str, int]) -> TypedBox | None:
        """The typed value of incarnation ``dot`` at ``path``, if the register holds it."""
        for v in self.versions(path):
            if v.seq == dot[1] and v.origin == dot[0]:
                return box_of(v.value)
        return None

    def _apply_typed(self: _Tree, op: Op, changes: list[Change] | None) -> None:
        """A typed op: a creating op writes a new typed value, an editing op edits its incarnation.

        An op the type refuses (malformed: anchors that do not exist) is
        absorbed, as it is on every replica: nothing changes.
        """
        body = body_of(op)
        path = op.path
        if body.target == (op.origin, op.seq):
            box = new_box(body)
            try:
                box.obj.apply(body.op)  # type: ignore[arg-type]
            except InvalidOperation:
                return
            touched: dict[Path, Value | AbsentType] | None = {} if changes is not None else None
            if op.context:
                self._strip(path, dict(op.context), touched)
            self._insert(path, Version(box, op.hlc, op.origin, op.seq), touched)  # type: ignore[arg-type]
            self.typed_paths.add(path)
            if changes is not None and touched:
                for p, old in touched.items():
                    changes.append(Change(p, old, self._read_leaf(p), op.origin, op.seq))
            return
        target = self.typed_at(path, body.target)
        if target is None:
            return
        before = self._read_leaf(path) if changes is not None else ABSENT
        try:
            target.frozen = None
            target.obj.apply(body.op)  # type: ignore[arg-type]
        except InvalidOperation:
            return
        if changes is not None:
            changes.append(Change(path, before, self._read_leaf(path), op.origin, op.seq))

