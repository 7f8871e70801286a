"""An asyncio watch: ``async with client.watch(prefix) as w: async for event in w``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

from statesync import protocol
from statesync.aio._link import End, Link
from statesync.aio._session import backoff
from statesync.client._loop import stream_reader
from statesync.core import ABSENT, AbsentType, Path, Value, format_path
from statesync.errors import (
    ClientError,
    NodeUnavailable,
    PortsError,
    ProtocolMismatch,
    StatesyncError,
)
from statesync.node._watch import WatchEvent

if TYPE_CHECKING:
    from statesync.aio._session import Session

log = logging.getLogger("statesync.aio")

START_MARGIN_S = 5.0
"""``start`` waits for the subscription this long past ``connect_timeout_s``."""


class Watch:
    """Changes under one prefix, in order, as the blocking client's :class:`~statesync.client.Watch`.

    ``initial`` is the subtree when the watch started (``ABSENT``: nothing);
    the events are the node's :class:`~statesync.node.WatchEvent` s after
    that. At most ``buffer_max`` events wait; a consumer that falls that far
    behind loses them and next reads one ``lagged`` event with the whole
    current subtree. After a reconnect the watch re-subscribes by itself and
    delivers one ``lagged`` event too. ``error`` says what ended a watch that
    was not closed here (for example NodeRefused).
    """

    def __init__(self, session: Session, prefix: Path, buffer_max: int, timeout_s: float) -> None:
        self.prefix = prefix
        self.error: StatesyncError | None = None
        self.initial: Value | AbsentType = ABSENT
        self.lag_count = 0
        self.reconnects = 0
        self._session = session
        self._buffer_max = buffer_max
        self._timeout_s = timeout_s
        self._buffer: deque[WatchEvent] = deque()
        self._changed = asyncio.Event()
        self._resume = asyncio.Event()
        self._closed = False
        self._lagged = False
        self._task: asyncio.Task[None] | None = None
        self._current: tuple[Link, End] | None = None

    def __repr__(self) -> str:
        return f"<aio Watch {format_path(self.prefix)!r}{' closed' if self._closed else ''}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def is_closed(self) -> bool:
        """Whether the watch ended (a method, so a type checker re-reads it after a wait)."""
        return self._closed

    def pending(self) -> int:
        """Events buffered and not yet taken."""
        return len(self._buffer)

    # -- lifetime

    async def start(self) -> Watch:
        """Subscribe (returns once the node confirmed); NodeUnavailable when it does not in time."""
        if self._task is not None:
            return self
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._run(started))
        wait_s = self._timeout_s + START_MARGIN_S
        try:
            await asyncio.wait_for(asyncio.shield(started), wait_s)
        except TimeoutError:
            await self.aclose()
            raise NodeUnavailable(f"the node at {self._session.endpoint} did not start the watch within {wait_s:g} s") from None
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        """Stop watching; iteration ends after the events already buffered."""
        self._end()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> Watch:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _end(self, error: StatesyncError | None = None) -> None:
        if error is not None:
            self.error = error
        self._closed = True
        self._changed.set()
        current, self._current = self._current, None
        if current is not None:
            current[0].close_port(current[1])

    # -- the consumer's side

    async def get(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event, waiting up to ``timeout`` seconds (None: forever); None on timeout or once closed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                return None
            if self._lagged:
                self._resume.set()
            self._changed.clear()
            if deadline is None:
                await self._changed.wait()
                continue
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return None

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    # -- the subscription's side

    def _push(self, event: WatchEvent) -> bool:
        """Queue an event; False when the buffer overflowed (events dropped, resubscribe later)."""
        if self._closed:
            return False
        if len(self._buffer) >= self._buffer_max:
            self._buffer.clear()
            self._lagged = True
            self.lag_count += 1
            self._changed.set()
            return False
        self._buffer.append(event)
        self._changed.set()
        return True

    async def _run(self, started: asyncio.Future[None]) -> None:
        try:
            await self._loop(started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not started.done():
                started.set_exception(exc)
                return
            log.exception("the watch of %r failed; it is closed", format_path(self.prefix))
            self._end(exc if isinstance(exc, StatesyncError) else None)

    async def _loop(self, started: asyncio.Future[None]) -> None:
        session = self._session
        first = True
        wait = backoff()
        opening = protocol.encode_request(protocol.Watch(self.prefix, initial=True))
        while not self._closed:
            try:
                link, port, _ = await session.connect(session.now() + (self._timeout_s if first else session.connect_timeout_s))
            except NodeUnavailable:
                if first:
                    raise
                await asyncio.sleep(wait.next_s())
                continue
            except (ClientError, ProtocolMismatch) as exc:
                if first:
                    raise
                log.warning("the watch of %r ended: %s", format_path(self.prefix), exc)
                self._end(exc)
                return
            if self.is_closed():
                link.close_port(port)
                return
            self._current = (link, port)
            try:
                link.post(port, opening)
                ready = await self._pump(link, port, first, started)
            except PortsError:
                ready = False
            except StatesyncError:
                if first:
                    raise
                ready = False
            finally:
                link.close_port(port)
                self._current = None
            if ready:
                first = False
                wait.reset()
            if self.is_closed():
                return
            if self._lagged:
                # the consumer fell behind: wait until it asks for more, then resubscribe
                await self._resume.wait()
                self._resume.clear()
                self._lagged = False
            else:
                self.reconnects += 1
                await asyncio.sleep(wait.next_s())

    async def _pump(self, link: Link, port: End, first: bool, started: asyncio.Future[None]) -> bool:
        """Deliver one subscription's messages; True once it was ready."""
        reader = stream_reader(self._session.endpoint)
        ready = False
        prefix = self.prefix
        while (data := await link.next_message(port, None)) is not None:
            item = reader.feed(data)
            if isinstance(item, WatchEvent):
                if not self._push(item):
                    return ready
            elif isinstance(item, protocol.Subtree):
                if item.kind == "ready" and first:
                    ready = True
                    self.initial = item.value
                    started.set_result(None)
                    continue
                ready = ready or item.kind == "ready"
                if item.kind == "lagged":
                    self.lag_count += 1
                # a re-made subscription's ready, or a lagged: the whole current subtree
                if not self._push(WatchEvent("lagged", prefix, item.value, ABSENT, "", 0)):
                    return ready
            elif isinstance(item, protocol.Closed):
                return ready
        return ready
