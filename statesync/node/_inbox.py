"""What a watch and a broadcast channel share: a bounded buffer read with ``async for``.

The producer appends (in the trio thread) and calls :meth:`Inbox._wake`; the
reader's ``__anext__`` takes the next item (:meth:`Inbox._take`, which a
subclass may override to put something first), or waits; once closed, the
iteration ends after what is buffered. What is kept when the buffer is full is
the subclass's choice (drop the oldest, or start over with a lagged event).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Self, TypeVar

import trio

T = TypeVar("T")


class Inbox(Generic[T]):
    """A bounded buffer of ``T`` read with ``async for``; :meth:`close` ends the iteration."""

    def __init__(self, buffer_max: int) -> None:
        self._buffer: deque[T] = deque()
        self._buffer_max = buffer_max
        self._wakeup = trio.Event()
        self._closed = False

    def _wake(self) -> None:
        self._wakeup.set()

    def _forget(self) -> None:
        """Called once, on close: leave whatever registry delivers to this inbox."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._forget()
            self._wakeup.set()

    def pending(self) -> int:
        """Items buffered, not read yet."""
        return len(self._buffer)

    def _take(self) -> T | None:
        return self._buffer.popleft() if self._buffer else None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        while True:
            item = self._take()
            if item is not None:
                return item
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = trio.Event()
            await self._wakeup.wait()
