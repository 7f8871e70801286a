"""Watches: ordered change records for a subtree, with bounded memory.

Each watch has a buffer of at most ``buffer_max`` records. A watcher that
falls that far behind loses its buffer; records are then not kept for it at
all until it reads again, and the next thing it reads is one ``lagged``
event carrying the whole current subtree (read at that moment), followed by
the changes made after it. So a slow watcher sees every change or a fresh
picture of the state, in order, and never costs unbounded memory.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal

import attrs
import trio

from statesync.core import ABSENT, AbsentType, Change, Path, Value, format_path
from statesync.node._delta import typed_delta

EventKind = Literal["put", "delete", "lagged"]


@attrs.frozen
class WatchEvent:
    """One change under a watched prefix.

    ``path`` is the leaf path (a tuple; ``key`` is its text form). ``value``
    and ``old`` are the visible values after and before (``ABSENT`` where
    there is none). ``origin`` names the node whose write caused it. For a
    ``lagged`` event, ``path`` is the watched prefix and ``value`` the whole
    current subtree.

    ``delta`` (None for plain values): for a typed path, the change as
    Yjs-style ops (``{"retain": n}``, ``{"delete": n}``, ``{"insert": ...}``;
    a counter's ``{"add": n}``) that turn ``old`` into ``value``; see
    ``statesync.node.apply_delta``.
    """

    kind: EventKind
    path: Path
    value: Value | AbsentType
    old: Value | AbsentType
    origin: str
    seq: int
    delta: list[dict[str, Any]] | None = None

    @property
    def key(self) -> str:
        return format_path(self.path)

    @property
    def deleted(self) -> bool:
        return self.kind == "delete"

    def to_plain(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.key,
            "value": None if self.value is ABSENT else self.value,
            "old": None if self.old is ABSENT else self.old,
            "origin": self.origin,
            "seq": self.seq,
            **({} if self.delta is None else {"delta": self.delta}),
        }


class Watch:
    """An async iterator of WatchEvents for one prefix (use ``async for``)."""

    def __init__(self, hub: WatchHub, prefix: Path, buffer_max: int) -> None:
        self._hub = hub
        self.prefix = prefix
        self._buffer: collections.deque[WatchEvent] = collections.deque()
        self._buffer_max = buffer_max
        self._lagged = False
        self._closed = False
        self._wakeup = trio.Event()
        self.lag_count = 0

    def _push(self, event: WatchEvent) -> None:
        if self._lagged or self._closed:
            return
        if len(self._buffer) >= self._buffer_max:
            self._buffer.clear()
            self._lagged = True
            self.lag_count += 1
        else:
            self._buffer.append(event)
        self._wakeup.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._unsubscribe(self)
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            if self._lagged:
                self._lagged = False
                value = self._hub.read(self.prefix)
                return WatchEvent("lagged", self.prefix, value, ABSENT, "", 0)
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = trio.Event()
            await self._wakeup.wait()

    def pending(self) -> int:
        return len(self._buffer)


class WatchHub:
    """Fans change records out to watches by prefix."""

    def __init__(
        self, read: Callable[[Path], Value | AbsentType], buffer_max: int, typed: Callable[[Path], bool] | None = None
    ) -> None:
        self.read = read
        self.typed = typed  # whether a path holds a typed value (its events carry a delta)
        self.buffer_max = buffer_max
        self._by_prefix: dict[Path, list[Watch]] = {}
        self._depths: set[int] = set()

    def subscribe(self, prefix: Path) -> Watch:
        watch = Watch(self, prefix, self.buffer_max)
        self._by_prefix.setdefault(prefix, []).append(watch)
        self._depths.add(len(prefix))
        return watch

    def _unsubscribe(self, watch: Watch) -> None:
        watches = self._by_prefix.get(watch.prefix)
        if watches is not None and watch in watches:
            watches.remove(watch)
            if not watches:
                del self._by_prefix[watch.prefix]
                self._depths = {len(p) for p in self._by_prefix}

    def __len__(self) -> int:
        return sum(len(w) for w in self._by_prefix.values())

    def publish(self, changes: Iterable[Change]) -> None:
        by_prefix = self._by_prefix
        if not by_prefix:
            return
        depths = self._depths
        for change in changes:
            path = change.path
            event: WatchEvent | None = None
            for depth in depths:
                if depth > len(path):
                    continue
                watches = by_prefix.get(path[:depth])
                if watches:
                    if event is None:
                        kind: EventKind = "delete" if change.new is ABSENT else "put"
                        typed = self.typed
                        delta = typed_delta(change.old, change.new) if typed is not None and typed(path) else None
                        event = WatchEvent(kind, path, change.new, change.old, change.origin, change.seq, delta)
                    for watch in watches:
                        watch._push(event)

    def close_all(self) -> None:
        for watches in list(self._by_prefix.values()):
            for watch in list(watches):
                watch.close()
