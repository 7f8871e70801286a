"""An asyncio watch: ``async with client.watch(prefix) as w: async for event in w``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from statesync.aio._link import End, Link
from statesync.client._common import START_MARGIN_S, Resubscribing, WatchBuffer, run_watch
from statesync.core import Path, format_path
from statesync.errors import NodeUnavailable, StatesyncError
from statesync.node._watch import WatchEvent

if TYPE_CHECKING:
    from statesync.aio._session import Session

log = logging.getLogger("statesync.aio")


class Watch(WatchBuffer):
    """Changes under one prefix, in order, as the blocking client's :class:`~statesync.client.Watch`.

    ``initial`` is the subtree when the watch started (``ABSENT``: nothing);
    the events are the node's :class:`~statesync.node.WatchEvent` s after
    that. At most ``buffer_max`` events wait; a consumer that falls that far
    behind loses them and next reads one ``lagged`` event with the whole
    current subtree. After a reconnect the watch re-subscribes by itself from
    the last event's ``resume`` token, losing no change (one ``lagged`` event
    only when the node no longer holds them). ``error`` says what ended a watch that
    was not closed here (for example NodeRefused).
    """

    def __init__(self, session: Session, prefix: Path, buffer_max: int, timeout_s: float, resume: str | None = None) -> None:
        super().__init__(prefix, buffer_max, resume)
        self._session = session
        self._timeout_s = timeout_s
        self._changed = asyncio.Event()
        self._resume = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: tuple[Link, End] | None = None

    def __repr__(self) -> str:
        return f"<aio Watch {format_path(self.prefix)!r}{' closed' if self._closed else ''}>"

    def _notify(self) -> None:
        self._changed.set()

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
        except TimeoutError as exc:
            await self.aclose()
            raise NodeUnavailable(f"the node at {self._session.endpoint} did not start the watch within {wait_s:g} s") from exc
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
        subs = Resubscribing(self._session.connect_timeout_s, self._timeout_s)
        await run_watch(self, _WatchIO(self), subs, lambda: started.set_result(None), self._session.endpoint)


class _WatchIO:
    """An asyncio watch's subscriptions on the session's connection (statesync.client._common.WatchIO)."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.session = watch._session

    async def connect(self, within_s: float) -> tuple[Link, End]:
        link, port, _ = await self.session.connect(self.session.now() + within_s)
        return link, port

    def open(self, conn: tuple[Link, End], msg: dict[str, Any]) -> None:
        self.watch._current = conn
        conn[0].post(conn[1], msg)

    async def next_message(self, conn: tuple[Link, End]) -> object | None:
        return await conn[0].next_message(conn[1], None)

    def close(self, conn: tuple[Link, End]) -> None:
        conn[0].close_port(conn[1])
        self.watch._current = None

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(seconds)

    async def resumed(self) -> None:
        watch = self.watch
        await watch._resume.wait()
        watch._resume.clear()
        watch._lagged = False
