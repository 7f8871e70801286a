"""A log that stays bounded under a flood: at most ``burst`` lines per ``window_s``.

Used for refusals (a refused key, a failed CURVE handshake): each one is worth a
line, but a peer that retries in a tight loop, or an attacker, must not be able
to fill the disk. Lines past the bound are counted and summarized in one line
when the next window opens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """``log(msg, *args)`` like ``logger.log``, at most ``burst`` lines per ``window_s``."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        *,
        burst: int = 10,
        window_s: float = 10.0,
        what: str = "messages",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.level, self.what = logger, level, what
        self.burst, self.window_s = burst, window_s
        self._clock = clock
        self._window_start = -float("inf")
        self._count = 0
        self.suppressed = 0
        """Lines not written in the current window."""
        self.total = 0
        """Every call, written or not."""

    def log(self, msg: str, *args: object) -> bool:
        """Log one line unless the window's budget is spent; True when it was written."""
        self.total += 1
        now = self._clock()
        if now - self._window_start >= self.window_s:
            if self.suppressed:
                self.logger.log(
                    self.level,
                    "%d more %s in the last %.0f s were not logged (rate limit)",
                    self.suppressed,
                    self.what,
                    now - self._window_start,
                )
            self._window_start = now
            self._count = 0
            self.suppressed = 0
        if self._count >= self.burst:
            self.suppressed += 1
            return False
        self._count += 1
        self.logger.log(self.level, msg, *args)
        return True
