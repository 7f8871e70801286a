"""Tools for testing statesync and code built on it: the deterministic
replication simulator, the conformance check for custom resolvers, and the
fault-injection handle of a running node (``faults(node).cut("b")``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from statesync.testing._resolver_check import check_resolver
from statesync.testing._sim import SimConfig, SimResult, Simulation, run, strategy_for

if TYPE_CHECKING:
    from statesync.node import Node
    from statesync.node._faults import NodeFaults


def faults(node: Node) -> NodeFaults:
    """The fault injection of a running node: ``cut(peer)``, ``heal(peer=None)``, ``configure(FaultConfig | None)``, ``status()``.

    Cutting a peer drops every frame to and from it (the link itself stays
    up, as in a one-way network partition both ways); ``configure`` adds
    seeded drops, duplicates and delays. Meant for tests and demos: it is not
    part of the ``Node`` API.
    """
    return node._faults


__all__ = [
    "SimConfig",
    "SimResult",
    "Simulation",
    "check_resolver",
    "faults",
    "run",
    "strategy_for",
]
