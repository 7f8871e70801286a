"""The node's typed API: handles on a text, a list, a counter and an add-wins set at a path.

``node.text(path)``, ``node.list(path)``, ``node.counter(path)`` and
``node.awset(path)`` return a handle; its edits are the core's typed ops
(``Replica.text_insert`` and its kin, see ``docs/types.md``) written through
the replicator like ``node.set``: every edit takes ``ack=`` and
``timeout_s=`` and returns the same :class:`~statesync.node.Receipt` once its
concern is met. A bad edit raises InvalidOperation (one line, naming what and
where) and applies nothing; the node keeps serving.

``value()`` reads the plain value (text -> str, list -> list, counter -> int,
set -> sorted list), or the empty one when the path holds nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from statesync.core import (
    ABSENT,
    AckSpec,
    Change,
    InvalidOperation,
    Op,
    Path,
    PathLike,
    Replica,
    Value,
    as_path,
    format_path,
)

if TYPE_CHECKING:
    from statesync.node._node import Node
    from statesync.node._results import Receipt

Edit = Callable[[int, "list[Change] | None"], Op]
"""``edit(wall_ms, changes)``: one typed op of the replica it was made for, for ``Replicator.write_typed``."""


def _int(x: object, what: str, type_name: str, path: Path) -> int:
    if type(x) is not int:
        raise InvalidOperation(
            f"{type_name}: {what} must be an integer, not {type(x).__name__}, at {format_path(path)}",
            type_name=type_name,
            where=what,
        )
    return x


def edit_of(replica: Replica, path: Path, type_name: str, action: str, args: tuple[Any, ...]) -> Edit:
    """The edit ``action`` of the type ``type_name`` with ``args`` (checked), for ``Replicator.write_typed``.

    The one table of typed edits the node's handles and its client service
    share. Its InvalidOperation names the path (the core's may name only the position).
    """
    edit = _edit_of(replica, path, type_name, action, args)
    where = format_path(path)

    def named(wall_ms: int, changes: list[Change] | None) -> Op:
        try:
            return edit(wall_ms, changes)
        except InvalidOperation as exc:
            if where in str(exc):
                raise
            raise InvalidOperation(f"{exc} at {where}", type_name=exc.type_name, where=exc.where) from exc

    return named


def _edit_of(replica: Replica, path: Path, type_name: str, action: str, args: tuple[Any, ...]) -> Edit:
    t = type_name
    if (t, action) == ("text", "insert"):
        s = args[1]
        pos = _text_length(replica, path) if args[0] is None else _int(args[0], "pos", t, path)
        if not isinstance(s, str):
            raise InvalidOperation(f"text: insert takes a string, not {type(s).__name__}, at {format_path(path)}", type_name=t)
        return lambda ms, ch: replica.text_insert(path, pos, s, ms, ch)
    if (t, action) == ("text", "delete"):
        pos, n = _int(args[0], "pos", t, path), _int(args[1], "n", t, path)
        return lambda ms, ch: replica.text_delete(path, pos, n, ms, ch)
    if (t, action) in (("list", "insert"), ("list", "append")):
        values = list(args[1])
        pos = list_length(replica, path) if action == "append" else _int(args[0], "pos", t, path)
        if not values:
            raise InvalidOperation(f"list: {action} needs at least one value, at {format_path(path)}", type_name=t)
        return lambda ms, ch: replica.list_insert(path, pos, values, ms, ch)
    if (t, action) == ("list", "delete"):
        pos, n = _int(args[0], "pos", t, path), _int(args[1], "n", t, path)
        return lambda ms, ch: replica.list_delete(path, pos, n, ms, ch)
    if (t, action) == ("list", "move"):
        src, dst = _int(args[0], "src", t, path), _int(args[1], "dst", t, path)
        return lambda ms, ch: replica.list_move(path, src, dst, ms, ch)
    if (t, action) == ("counter", "add"):
        amount = _int(args[0], "amount", t, path)
        return lambda ms, ch: replica.counter_add(path, amount, ms, ch)
    if (t, action) == ("awset", "add"):
        return lambda ms, ch: replica.aw_add(path, args[0], ms, ch)
    if (t, action) == ("awset", "remove"):
        return lambda ms, ch: replica.aw_remove(path, args[0], ms, ch)
    raise InvalidOperation(f"{t}: there is no {action!r} edit (at {format_path(path)})", type_name=t)


def list_length(replica: Replica, path: Path) -> int:
    """The length of the typed list at ``path`` (0 when it holds no typed list): where append goes."""
    obj = replica.typed_value(path)
    if obj is None or type(obj).__name__ != "List":
        return 0
    return len(obj)  # type: ignore[arg-type]


def _text_length(replica: Replica, path: Path) -> int:
    """The length of the text at ``path`` as this node sees it (0 when it holds none): where an append goes."""
    value = replica.get(path)
    return len(value) if isinstance(value, str) and replica.typed_value(path) is not None else 0


class _Handle:
    type_name = ""
    empty: Value = None

    def __init__(self, node: Node, path: PathLike) -> None:
        self._node = node
        self.path = as_path(path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {format_path(self.path)!r} of node {self._node.node_id}>"

    def _edit(self, action: str, args: tuple[Any, ...], ack: AckSpec, timeout_s: float | None) -> Awaitable[Receipt]:
        return self._node._typed(self.path, self.type_name, action, args, ack, timeout_s)

    def _value(self) -> Any:
        value = self._node.get(self.path, ABSENT)
        return self.empty if value is ABSENT else value


class TextHandle(_Handle):
    """A shared text at a path (created by its first insert); positions are code points."""

    type_name = "text"
    empty = ""

    async def insert(self, pos: int, s: str, *, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Insert ``s`` so that it starts at code point ``pos`` (0 to the length)."""
        return await self._edit("insert", (pos, s), ack, timeout_s)

    async def delete(self, pos: int, n: int, *, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Delete ``n`` (1 or more) code points from ``pos``."""
        return await self._edit("delete", (pos, n), ack, timeout_s)

    async def append(self, s: str, *, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Insert ``s`` at the end of the text as this node sees it."""
        return await self._edit("insert", (None, s), ack, timeout_s)

    def value(self) -> str:
        """The text ('' when the path holds nothing)."""
        return self._value()  # type: ignore[no-any-return]


class ListHandle(_Handle):
    """A shared list of JSON values with move, at a path (created by its first insert)."""

    type_name = "list"
    empty: Value = []  # noqa: RUF012 (never changed: value() copies nothing out of it)

    async def insert(self, pos: int, *values: Value, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Insert ``values`` so that the first lands at index ``pos``."""
        return await self._edit("insert", (pos, values), ack, timeout_s)

    async def append(self, *values: Value, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Insert ``values`` at the end of the list as this node sees it."""
        return await self._edit("append", (None, values), ack, timeout_s)

    async def delete(self, pos: int, n: int = 1, *, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Delete ``n`` items from index ``pos``."""
        return await self._edit("delete", (pos, n), ack, timeout_s)

    async def move(self, src: int, dst: int, *, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Move the item at index ``src`` so that it lands at index ``dst``."""
        return await self._edit("move", (src, dst), ack, timeout_s)

    def value(self) -> list[Value]:
        """The items ([] when the path holds nothing)."""
        return list(self._value())


class CounterHandle(_Handle):
    """A counter at a path: concurrent adds sum."""

    type_name = "counter"
    empty = 0

    async def add(self, amount: int = 1, *, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Add ``amount`` (negative allowed)."""
        return await self._edit("add", (amount,), ack, timeout_s)

    def value(self) -> int:
        """The total (0 when the path holds nothing)."""
        return self._value()  # type: ignore[no-any-return]


class AWSetHandle(_Handle):
    """An add-wins set of JSON scalars at a path: a concurrent add and remove keep the element."""

    type_name = "awset"
    empty: Value = []  # noqa: RUF012

    async def add(self, element: Value, *, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Add the JSON scalar ``element``."""
        return await self._edit("add", (element,), ack, timeout_s)

    async def remove(self, element: Value, *, ack: AckSpec = "local", timeout_s: float | None = None) -> Receipt:
        """Remove ``element`` (it must be in the set here)."""
        return await self._edit("remove", (element,), ack, timeout_s)

    def value(self) -> list[Value]:
        """The elements, sorted ([] when the path holds nothing)."""
        return list(self._value())


__all__ = ["AWSetHandle", "CounterHandle", "Edit", "ListHandle", "TextHandle", "edit_of", "list_length"]
