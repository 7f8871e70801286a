"""What the tests share: one bounded wait on a condition, and one fast-timing configuration.

- :func:`wait_until` (blocking, for tests that drive processes or threads)
  and :func:`wait_until_async` (trio) re-check a condition until it holds,
  and fail with ``what`` after ``timeout_s``. They are the only way a test
  waits for something to happen elsewhere; no test sleeps to wait.
- :data:`FAST` is the node timing the tests use (short sync rounds,
  heartbeats and reconnect delays, so that links come and go in well under a
  second); :data:`FAST_ARGS` is the same as ``statesync node`` options.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import trio

FAST: Mapping[str, float] = {
    "sync_interval_s": 0.3,
    "retransmit_timeout_s": 0.2,
    "heartbeat_interval_s": 0.2,
    "heartbeat_timeout_s": 1.5,
    "reconnect_max_s": 0.3,
    "handshake_timeout_s": 2.0,
}
"""Node options for tests: fast, yet tolerant of a loaded machine (heartbeats)."""

FAST_ARGS: list[str] = [arg for name, value in FAST.items() for arg in ("-o", f"{name}={value}")]
""":data:`FAST` as ``statesync node -o name=value`` arguments."""

POLL_S = 0.01
"""How often a wait re-checks its condition."""


def wait_until(
    cond: Callable[[], bool],
    *,
    timeout_s: float = 20.0,
    what: str = "the condition",
    retry_on: tuple[type[BaseException], ...] = (),
) -> float:
    """Block until ``cond()`` holds; the seconds it took. AssertionError after ``timeout_s``.

    An exception of a type in ``retry_on`` (a node not up yet, a process gone)
    counts as "not yet"; the last one is chained to the timeout's error.
    """
    start = time.monotonic()
    tick = threading.Event()
    last: BaseException | None = None
    while True:
        try:
            if cond():
                return time.monotonic() - start
        except retry_on as exc:
            last = exc
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}") from last
        tick.wait(POLL_S)


async def wait_until_async(cond: Callable[[], bool], *, timeout_s: float = 10.0, what: str = "the condition") -> None:
    """The trio twin of :func:`wait_until`: re-checks ``cond`` while other tasks run."""
    with trio.move_on_after(timeout_s) as scope:
        while not cond():
            await trio.sleep(POLL_S / 2)
    if scope.cancelled_caught:
        raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
