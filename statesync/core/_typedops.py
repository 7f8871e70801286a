"""Typed values inside the tree: the op kind, the live box in a register, its frozen form.

A typed value (text, list, counter, add-wins set) at a path is **one version**
of the register there, named by the dot of the op that created it (its
*incarnation*). The version's value is a :class:`TypedBox`, the live object;
reads turn it into plain JSON. A typed :class:`~statesync.core._op.Op` has kind
:data:`TYPED` and a :class:`TypedBody` value:

- a *creating* op (``body.target == op.dot``) is a write like a put: its context
  covers what its author saw in scope, which it replaces by a new, empty typed
  value with the op applied;
- an *editing* op (``body.target`` an earlier dot) edits the incarnation named
  by ``target`` where the register still holds it and does nothing otherwise;
  its context is not an overwrite but the dots it depends on (``target`` and
  the elements it anchors to), so causal delivery brings them first.

A plain write or remove whose context covers the incarnation's dot removes the
typed value as it removes any version it has seen, edits made concurrently
with it included (see docs/types.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple, cast

from statesync.core._awset import SetAdd, SetRemove
from statesync.core._context import Context, Dot
from statesync.core._counter import CounterAdd
from statesync.core._list import ListDelete, ListInsert, ListMove
from statesync.core._op import Op, Version
from statesync.core._text import TextDelete, TextInsert
from statesync.core._typed import (
    Typed,
    TypedOp,
    new_typed,
    type_code,
    typed_from_snapshot,
    typed_op_from_plain,
    typed_op_to_plain,
)
from statesync.core._value import Value, validate_value
from statesync.errors import InvalidOperation

_RECORD_TYPES: Final = frozenset(
    {TextInsert, TextDelete, ListInsert, ListDelete, ListMove, CounterAdd, SetAdd, SetRemove}
)
TYPED: Final = 2
"""The op kind of a typed op (after PUT 0 and REMOVE 1)."""

TYPE_OF_CODE: Final = {1: "text", 2: "list", 3: "counter", 4: "awset"}
FROZEN_KEY: Final = "\x00typed"
"""The one key of the dict a snapshot holds in place of a typed value (a leaf is never a non-empty dict)."""


class TypedBody(NamedTuple):
    """The value of a typed op: which incarnation it edits and the type's own op record."""

    target: Dot
    op: TypedOp


class TypedBox:
    """The live typed value in a register: its type code and the object."""

    __slots__ = ("code", "frozen", "obj")

    def __init__(self, code: int, obj: Typed) -> None:
        self.code = code
        self.obj = obj
        self.frozen: dict[str, Value] | None = None
        """The snapshot form, kept until the next edit (whoever edits ``obj`` clears it)."""

    @property
    def type_name(self) -> str:
        return TYPE_OF_CODE[self.code]

    def plain(self) -> Value:
        return self.obj.value()  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"TypedBox({self.type_name}, {self.plain()!r:.60})"


def box_of(value: object) -> TypedBox | None:
    """``value`` when it is a typed box, else None."""
    return value if type(value) is TypedBox else None


def has_box(v: Version) -> bool:
    """True when the version holds a typed value."""
    value: object = v.value
    return type(value) is TypedBox


def shown(value: object) -> Value:
    """``value`` as a reader sees it: a typed box as its plain JSON, anything else as is."""
    if type(value) is TypedBox:
        return value.plain()
    return value  # type: ignore[return-value]


def plain_version(v: Version) -> Version:
    box = box_of(v.value)
    return v if box is None else v._replace(value=box.plain())


def body_of(op: Op) -> TypedBody:
    """The body of a TYPED op."""
    return cast(TypedBody, op.value)


def typed_deps(op: TypedOp) -> list[Dot]:
    """The dots a typed op record anchors to or observed."""
    t = type(op)
    if t is TextInsert or t is ListInsert:
        return [(c[0], c[1]) for c in (op.left, op.right) if c is not None]  # type: ignore[union-attr]
    if t is TextDelete:
        return [(x[0], x[1]) for x in op.targets]  # type: ignore[union-attr]
    if t is ListDelete:
        return [(x[0], x[1]) for x in op.items]  # type: ignore[union-attr]
    if t is ListMove:
        deps = [(c[0], c[1]) for c in (op.left, op.right) if c is not None]  # type: ignore[union-attr]
        deps.append((op.item[0], op.item[1]))  # type: ignore[union-attr]
        return deps
    if t is SetAdd or t is SetRemove:
        return list(op.observed)  # type: ignore[union-attr]
    return []


def is_typed_op(op: object) -> bool:
    """True for an Op of kind TYPED whose value is a TypedBody (what a codec may encode as typed)."""
    if type(op) is not Op or op.kind != TYPED:
        return False
    value: object = op.value
    return type(value) is TypedBody


def typed_size(body: TypedBody) -> int:
    """An upper-bound estimate of a typed op body's encoded size in bytes."""
    rec = body.op
    size = 64 + 24 * len(typed_deps(rec))
    if type(rec) is TextInsert:
        size += 4 * len(rec.text)
    elif type(rec) is ListInsert:
        size += validate_value(list(rec.values))
    elif type(rec) is SetAdd or type(rec) is SetRemove:
        size += validate_value(rec.element)
    return size


def editing_context(body: TypedBody) -> Context:
    """The causal context of an editing op: per origin, the highest dot it depends on."""
    target = body.target
    rec = body.op
    own, own_seq = rec.origin, rec.seq
    if type(rec) is TextInsert:  # the common case (typing): its anchors, without building the dep list
        deps: Iterable[Any] = (rec.left, rec.right)
    else:
        deps = typed_deps(rec)
    o0, s0 = target[0], target[1]
    best: dict[str, int] | None = None
    for c in deps:
        if c is None:
            continue
        o, s = c[0], c[1]
        if o == o0:
            if s > s0 and not (o == own and s == own_seq):
                s0 = s
        elif best is None:
            if not (o == own and s == own_seq):
                best = {o: s}
        elif best.get(o, 0) < s and not (o == own and s == own_seq):
            best[o] = s
    if best is None:
        return ((o0, s0),)
    best[o0] = s0
    return tuple(sorted(best.items()))


def new_box(body: TypedBody) -> TypedBox:
    code = type_code(body.op)
    return TypedBox(code, new_typed(TYPE_OF_CODE[code]))


def body_to_plain(body: TypedBody) -> list[object]:
    return [body.target[0], body.target[1], typed_op_to_plain(body.op)]


def body_from_plain(data: object) -> TypedBody:
    """A typed op's body from :func:`body_to_plain`'s form; only InvalidOperation when malformed."""
    if not isinstance(data, list | tuple) or len(data) != 3:
        raise InvalidOperation(f"a typed op body is [target origin, target seq, op], got {data!r:.60}")
    o, s, rec = data
    if type(o) is not str or not o or type(s) is not int or s < 1:
        raise InvalidOperation(f"a typed op's target is (origin, seq >= 1), got {(o, s)!r:.60}")
    return TypedBody((o, s), typed_op_from_plain(rec))


def typed_record_plain(obj: object) -> object:
    """A msgpack ``default`` hook: a typed op record as ``[type code, record]`` (TypeError for anything else)."""
    if type(obj) in _RECORD_TYPES:
        return typed_op_to_plain(obj)  # type: ignore[arg-type]
    raise TypeError(f"cannot pack {type(obj).__name__}")


def typed_body_from_stored(data: object) -> TypedBody:
    """A body as msgpack gives back a packed :class:`TypedBody`: ``[[origin, seq], [code, record]]``."""
    if not isinstance(data, list | tuple) or len(data) != 2 or not isinstance(data[0], list | tuple) or len(data[0]) != 2:
        raise InvalidOperation(f"a stored typed op body is [target, op], got {data!r:.60}")
    return body_from_plain([data[0][0], data[0][1], _listed(data[1])])


def _listed(x: object) -> object:
    if isinstance(x, tuple | list):
        return [_listed(v) for v in x]
    if isinstance(x, dict):
        return {k: _listed(v) for k, v in x.items()}
    return x


# ---------------------------------------------------------------- snapshots


def freeze(v: Version) -> Version:
    """A version as a snapshot holds it: a typed box as ``{FROZEN_KEY: [code, snapshot]}``."""
    box = box_of(v.value)
    if box is None:
        return v
    if box.frozen is None:
        box.frozen = {FROZEN_KEY: [box.code, box.obj.to_snapshot()]}  # type: ignore[list-item]
    return v._replace(value=box.frozen)


def is_frozen(value: object) -> bool:
    return type(value) is dict and len(value) == 1 and FROZEN_KEY in value


def thaw(v: Version) -> Version:
    """The inverse of :func:`freeze`: a frozen typed value back as a live box (InvalidOperation when malformed)."""
    value = v.value
    if not is_frozen(value):
        return v
    data: object = value[FROZEN_KEY]  # type: ignore[index, call-overload]
    if not isinstance(data, list | tuple) or len(data) != 2 or data[0] not in TYPE_OF_CODE:
        raise InvalidOperation(f"a frozen typed value is [code, snapshot], got {data!r:.60}")
    snap = data[1]
    if not isinstance(snap, Mapping):
        raise InvalidOperation(f"a typed snapshot is a map, got {type(snap).__name__}")
    obj = typed_from_snapshot(snap)
    return v._replace(value=TypedBox(int(data[0]), obj))  # type: ignore[arg-type]
