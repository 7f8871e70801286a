"""The blocking side of a client watch: a bounded buffer of WatchEvents a thread iterates."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import trio

from statesync import ports
from statesync.client._common import WatchBuffer
from statesync.core import Path, format_path
from statesync.errors import StatesyncError
from statesync.node._watch import WatchEvent

if TYPE_CHECKING:
    from statesync.client._client import Client

log = logging.getLogger("statesync.client")


class Watch(WatchBuffer):
    """Changes under one prefix, delivered in order: iterate it, or give a callback.

    ``initial`` holds the subtree as it was when the watch started (``ABSENT``
    if there was nothing); the events that follow are the changes after that
    moment, :class:`~statesync.node.WatchEvent` s as the node's own watches
    give. The buffer holds at most ``buffer_max`` events; a consumer that
    falls that far behind loses them and next reads one ``lagged`` event with
    the whole current subtree. ``close()`` (or leaving a ``with`` block) ends
    it. A watch the node stops admitting (its key was removed) ends too:
    iteration stops and ``error`` says why.
    """

    def __init__(self, client: Client, prefix: Path, buffer_max: int) -> None:
        super().__init__(prefix, buffer_max)
        self._client = client
        self._cond = threading.Condition()
        self._resume_asked = False
        self._resume: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._port: ports.MessagePort | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<Watch {format_path(self.prefix)!r}{' closed' if self._closed else ''}>"

    # -- the loop's side

    def _notify(self) -> None:
        self._cond.notify_all()

    def _push(self, event: WatchEvent) -> bool:
        with self._cond:
            return self._push_now(event)

    def _count_lag(self) -> None:
        with self._cond:
            self.lag_count += 1

    def _end(self, error: StatesyncError | None = None) -> None:
        """The loop's side of the end: no more events (``error`` says why, if not ``close()``)."""
        with self._cond:
            if error is not None:
                self.error = error
            self._closed = True
            self._cond.notify_all()

    # -- the consumer's side

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event, waiting up to ``timeout`` seconds (None: forever); None on timeout or once closed."""
        with self._cond:
            remaining = timeout
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if self._buffer:
                    return self._buffer.popleft()
                if self._closed:
                    return None
                if self._lagged and not self._resume_asked:
                    self._resume_asked = True
                    self._wake_loop()
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                self._cond.wait(remaining)

    def _wake_loop(self) -> None:
        resume, token = self._resume, self._token
        if resume is not None and token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(resume.set)

    def __iter__(self) -> Iterator[WatchEvent]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        """Stop watching; iteration ends after the events already buffered."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._client._close_watch(self)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_callback(watch: Watch, callback: Callable[[WatchEvent], object]) -> None:
    """A callback watch's thread: ``callback(event)`` for each event, in order, until closed."""
    for event in watch:
        try:
            callback(event)
        except Exception:
            log.exception("a watch callback for %r raised; the watch goes on", format_path(watch.prefix))
