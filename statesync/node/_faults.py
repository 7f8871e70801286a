"""Fault injection in the node's peer transport, for tests and the demo.

A seeded switch on every outgoing frame: drop it, send it twice, hold it for
a random delay (which reorders frames), or cut all traffic with named peers.
With it the simulator's invariants can be checked against real processes.
It is off unless a ``[faults]`` table is configured or a test turns it on.

It is not part of the public ``Node`` API: a test (or the client service's
``cut``/``heal`` ops, which the demo uses) reaches it through the node's
:class:`NodeFaults` handle, ``statesync.testing.faults(node)``.
"""

from __future__ import annotations

import random
from typing import Any

from statesync.node._config import FaultConfig


class FaultInjector:
    """The seeded decisions for one configuration."""

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


class NodeFaults:
    """One node's fault injection: what a test holds to cut, heal and reconfigure its links.

    ``injector`` is None while no fault is configured; the links then pay one
    attribute check per frame.
    """

    def __init__(self, config: FaultConfig | None) -> None:
        self.injector: FaultInjector | None = FaultInjector(config) if config is not None else None

    def cut(self, peer: str) -> None:
        """Drop all traffic with ``peer`` (both ways) until :meth:`heal`."""
        if self.injector is None:
            self.injector = FaultInjector(FaultConfig())
        self.injector.cut.add(peer)

    def heal(self, peer: str | None = None) -> None:
        """Undo :meth:`cut` for ``peer`` (None: for every peer)."""
        if self.injector is not None:
            if peer is None:
                self.injector.cut.clear()
            else:
                self.injector.cut.discard(peer)

    def configure(self, config: FaultConfig | None) -> None:
        """Replace the drop/dup/delay settings at run time, keeping the cuts (None: all faults off)."""
        cut = self.injector.cut if self.injector is not None else set()
        self.injector = FaultInjector(config) if config is not None else None
        if self.injector is not None:
            self.injector.cut |= cut

    def status(self) -> dict[str, Any] | None:
        """What ``Node.status()`` reports under ``faults`` (None while off)."""
        f = self.injector
        if f is None:
            return None
        return {"dropped": f.dropped, "duplicated": f.duplicated, "cut": sorted(f.cut)}
