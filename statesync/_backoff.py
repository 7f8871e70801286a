"""Exponential backoff, the one policy every retry loop in statesync uses.

Pure: randomness comes in as a ``random.Random``-like object (anything with a
``random()`` method), so a seeded test can replay the delays.
"""

from __future__ import annotations

from typing import Protocol

import attrs


class _Uniform(Protocol):
    def random(self) -> float: ...


@attrs.define
class Backoff:
    """Delays that double from ``min_s`` up to ``max_s``, optionally jittered.

    ``next_s()`` returns the delay to wait now and doubles the next one;
    ``reset()`` goes back to ``min_s`` (call it after a success). With ``jitter``
    (an ``rng``), each delay is drawn uniformly from [0.5, 1.5) times the
    nominal one, so that many retrying processes do not move in step.
    """

    min_s: float
    max_s: float
    rng: _Uniform | None = None
    _current_s: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {self.min_s} and {self.max_s}")
        self._current_s = self.min_s

    def next_s(self) -> float:
        delay = self._current_s
        self._current_s = min(self._current_s * 2, self.max_s)
        if self.rng is not None:
            delay *= 0.5 + self.rng.random()
        return delay

    def reset(self) -> None:
        self._current_s = self.min_s
