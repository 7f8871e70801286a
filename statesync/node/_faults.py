"""Fault injection in the node's transport, for tests.

A seeded switch on every outgoing frame: drop it, send it twice, hold it for
a random delay (which reorders frames), or cut all traffic with named peers.
With it the simulator's invariants can be checked against real processes.
It is off unless a ``[faults]`` table is configured.
"""

from __future__ import annotations

import random

from statesync.node._config import FaultConfig


class FaultInjector:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self.cut: set[str] = set(config.cut)
        self.dropped = 0
        self.duplicated = 0

    def plan(self, peer: str | None) -> list[float]:
        """Delays (seconds) at which to send copies of one outgoing frame; [] drops it."""
        if peer is not None and peer in self.cut:
            self.dropped += 1
            return []
        cfg = self.config
        rng = self._rng
        if cfg.drop and rng.random() < cfg.drop:
            self.dropped += 1
            return []
        copies = 1
        if cfg.dup and rng.random() < cfg.dup:
            copies = 2
            self.duplicated += 1
        lo, hi = cfg.delay_ms
        return [rng.uniform(lo, hi) / 1000 if hi else 0.0 for _ in range(copies)]

    def accepts_from(self, peer: str | None) -> bool:
        if peer is not None and peer in self.cut:
            self.dropped += 1
            return False
        return True
