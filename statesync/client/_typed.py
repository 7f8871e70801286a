"""Typed-value handles both clients share: ``client.text(path)``, ``list``, ``counter``, ``awset``.

The same operations as the node's handles (``statesync.node._typedapi``), as
client requests (``protocol.TextInsert`` and its kin, built by
``Calls.edit``). A client mixes in :class:`TypedAccess` and says how it runs
a call (``_typed_do``) and reads a path (``_typed_read``): the blocking
client returns the receipt and the value, the asyncio one awaitables of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from statesync import protocol
from statesync.core import Path, PathLike, Value, as_path, format_path
from statesync.node._results import Receipt

if TYPE_CHECKING:
    from statesync.client._common import Call, Calls

R = TypeVar("R")
V = TypeVar("V")


class TypedAccess(Generic[R, V]):
    """The typed-value accessors of a client; ``R`` is what a write returns, ``V`` what a read does."""

    _calls: Calls

    def _typed_do(self, call: Call[Receipt]) -> R:
        raise NotImplementedError

    def _typed_read(self, path: Path, empty: Value) -> V:
        raise NotImplementedError

    def text(self, path: PathLike) -> TextHandle[R, V]:
        """The shared text at ``path``: ``insert(pos, s)``, ``delete(pos, n)``, ``value()``."""
        return TextHandle(self, path)

    def list(self, path: PathLike) -> ListHandle[R, V]:
        """The list at ``path``: ``insert(pos, *values)``, ``append(*values)``, ``delete``, ``move``, ``value()``."""
        return ListHandle(self, path)

    def counter(self, path: PathLike) -> CounterHandle[R, V]:
        """The counter at ``path``: ``add(n)``, ``value()``."""
        return CounterHandle(self, path)

    def awset(self, path: PathLike) -> AWSetHandle[R, V]:
        """The add-wins set at ``path``: ``add(x)``, ``remove(x)``, ``value()``."""
        return AWSetHandle(self, path)


class _Handle(Generic[R, V]):
    empty: Value = None

    def __init__(self, access: TypedAccess[R, V], path: PathLike) -> None:
        self._access = access
        self.path = as_path(path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {format_path(self.path)!r}>"

    def _edit(self, cls: type[protocol.TypedEdit], fields: tuple[Any, ...], ack: protocol.Ack, timeout_s: float | None) -> R:
        access = self._access
        return access._typed_do(access._calls.edit(cls, self.path, fields, ack, timeout_s))

    def value(self) -> V:
        """The plain value (str, list, int, sorted list), or the empty one when the path holds nothing."""
        return self._access._typed_read(self.path, self.empty)


class TextHandle(_Handle[R, V]):
    """A shared text (positions are code points)."""

    empty = ""

    def insert(self, pos: int, s: str, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Insert ``s`` so that it starts at code point ``pos``."""
        return self._edit(protocol.TextInsert, (pos, s), ack, timeout_s)

    def append(self, s: str, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Insert ``s`` at the end of the text as the node sees it (not as a copy here may show it)."""
        return self._edit(protocol.TextInsert, (None, s), ack, timeout_s)

    def delete(self, pos: int, n: int, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Delete ``n`` code points from ``pos``."""
        return self._edit(protocol.TextDelete, (pos, n), ack, timeout_s)


class ListHandle(_Handle[R, V]):
    """A shared list of JSON values with move."""

    empty: Value = []  # noqa: RUF012 (never changed)

    def insert(self, pos: int, *values: Value, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Insert ``values`` so that the first lands at index ``pos``."""
        return self._edit(protocol.ListInsert, (pos, list(values)), ack, timeout_s)

    def append(self, *values: Value, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Insert ``values`` at the end of the list as the node sees it."""
        return self._edit(protocol.ListInsert, (None, list(values)), ack, timeout_s)

    def delete(self, pos: int, n: int = 1, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Delete ``n`` items from index ``pos``."""
        return self._edit(protocol.ListDelete, (pos, n), ack, timeout_s)

    def move(self, src: int, dst: int, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Move the item at index ``src`` so that it lands at index ``dst``."""
        return self._edit(protocol.ListMove, (src, dst), ack, timeout_s)


class CounterHandle(_Handle[R, V]):
    """A counter: concurrent adds sum."""

    empty = 0

    def add(self, amount: int = 1, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Add ``amount`` (negative allowed)."""
        return self._edit(protocol.CounterAdd, (amount,), ack, timeout_s)


class AWSetHandle(_Handle[R, V]):
    """An add-wins set of JSON scalars."""

    empty: Value = []  # noqa: RUF012 (never changed)

    def add(self, element: Value, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Add the JSON scalar ``element``."""
        return self._edit(protocol.AwAdd, (element,), ack, timeout_s)

    def remove(self, element: Value, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> R:
        """Remove ``element`` (a concurrent add keeps it)."""
        return self._edit(protocol.AwRemove, (element,), ack, timeout_s)


__all__ = ["AWSetHandle", "CounterHandle", "ListHandle", "TextHandle", "TypedAccess"]
