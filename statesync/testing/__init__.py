"""Tools for testing statesync and code built on it: the deterministic
replication simulator and the conformance check for custom resolvers."""

from __future__ import annotations

from statesync.testing._resolver_check import check_resolver
from statesync.testing._sim import SimConfig, SimResult, Simulation, run, strategy_for

__all__ = [
    "SimConfig",
    "SimResult",
    "Simulation",
    "check_resolver",
    "run",
    "strategy_for",
]
