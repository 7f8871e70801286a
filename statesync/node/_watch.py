"""Watches: ordered change records for a subtree, with bounded memory.

Each watch has a buffer of at most ``buffer_max`` records. A watcher that
falls that far behind loses its buffer; records are then not kept for it at
all until it reads again, and the next thing it reads is one ``lagged``
event carrying the whole current subtree (read at that moment), followed by
the changes made after it. So a slow watcher sees every change or a fresh
picture of the state, in order, and never costs unbounded memory.

Every event carries a resume token (``resume``); a watch opened with one
(``Node.watch(prefix, resume=)``, :meth:`Watch._resume_from`) first delivers the
changes after it (read from the node's journal, :mod:`statesync.node._resume`),
then the live ones.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import attrs

from statesync.core import ABSENT, AbsentType, Change, Path, Value, format_path
from statesync.node._delta import typed_delta
from statesync.node._inbox import Inbox

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
    resume: str = ""
    """Watch from here again with ``watch(prefix, resume=event.resume)`` (opaque)."""
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


class Watch(Inbox[WatchEvent]):
    """An async iterator of WatchEvents for one prefix (use ``async for``)."""

    def __init__(self, hub: WatchHub, prefix: Path, buffer_max: int) -> None:
        super().__init__(buffer_max)
        self._hub = hub
        self.prefix = prefix
        self._lagged = False
        self.lag_count = 0
        self._backlog: collections.deque[WatchEvent] = collections.deque()
        self.start_token = hub.position()
        """The resume token of the state when the watch began."""

    def _resume_from(self, backlog: list[WatchEvent] | None) -> None:
        """Deliver ``backlog`` (the changes after a resume token) first; None: a lagged event first."""
        if backlog is None:
            self._lagged = True
            self.lag_count += 1
        else:
            self._backlog.extend(backlog)
        self._wakeup.set()

    def _push(self, event: WatchEvent) -> None:
        if self._lagged or self._closed:
            return
        if len(self._buffer) >= self._buffer_max:
            self._buffer.clear()
            self._backlog.clear()
            self._lagged = True
            self.lag_count += 1
            self._hub.lagged_events += 1
        else:
            self._buffer.append(event)
        self._wakeup.set()

    def _forget(self) -> None:
        self._hub._unsubscribe(self)

    def _take(self) -> WatchEvent | None:
        if self._lagged:
            self._lagged = False
            value = self._hub.read(self.prefix)
            return WatchEvent("lagged", self.prefix, value, ABSENT, "", 0, self._hub.position())
        if self._backlog:
            return self._backlog.popleft()
        return super()._take()

    def pending(self) -> int:
        return len(self._buffer) + len(self._backlog)


class WatchHub:
    """Fans change records out to watches by prefix."""

    def __init__(
        self,
        read: Callable[[Path], Value | AbsentType],
        buffer_max: int,
        *,
        token: Callable[[str, int, int], str] | None = None,
        position: Callable[[], str] = str,
        typed: Callable[[Path], bool] | None = None,
    ) -> None:
        self.read = read
        self.typed = typed  # whether a path holds a typed value (its events carry a delta)
        self.buffer_max = buffer_max
        self.token = token
        """The resume token of the ``index``-th change of the op ``(origin, seq)`` (None: no tokens)."""
        self.position = position
        """The resume token of the current state."""
        self._by_prefix: dict[Path, list[Watch]] = {}
        self._depths: set[int] = set()
        self.lagged_events = 0
        """Times any watch (open or closed since) fell behind its buffer."""

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

    def stats(self) -> dict[str, int]:
        """Watches open, the largest backlog among them, and lagged events so far."""
        watches = [w for ws in self._by_prefix.values() for w in ws]
        return {
            "open": len(watches),
            "backlog_max": max((w.pending() for w in watches), default=0),
            "lagged_events": self.lagged_events,
        }

    def publish(self, changes: Iterable[Change], indexes: Sequence[int] = ()) -> None:
        """Changes to the watches under their paths; ``indexes``: each change's index within its op."""
        by_prefix = self._by_prefix
        if not by_prefix:
            return
        depths = self._depths
        token = self.token if indexes else None
        for i, change in enumerate(changes):
            path = change.path
            event: WatchEvent | None = None
            for depth in depths:
                if depth > len(path):
                    continue
                watches = by_prefix.get(path[:depth])
                if watches:
                    if event is None:
                        kind: EventKind = "delete" if change.new is ABSENT else "put"
                        resume = "" if token is None else token(change.origin, change.seq, indexes[i])
                        typed = self.typed
                        delta = typed_delta(change.old, change.new) if typed is not None and typed(path) else None
                        event = WatchEvent(kind, path, change.new, change.old, change.origin, change.seq, resume, delta)
                    for watch in watches:
                        watch._push(event)

    def close_all(self) -> None:
        for watches in list(self._by_prefix.values()):
            for watch in list(watches):
                watch.close()
