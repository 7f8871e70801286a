"""The simulator's random workload with typed edits: every invariant holds with them too.

The default workload already mixes typed edits (``SimConfig.typed_rate``) into
the plain writes on the same paths; here they are most of the writes, on
seeds of their own, and the run must show typed values surviving to the end.
"""

from __future__ import annotations

import attrs
import pytest

from statesync.testing._sim import config_for_seed, describe, run

SEEDS = range(1000, 1012)


@pytest.mark.parametrize("seed", SEEDS)
def test_typed_heavy_seed_holds_every_invariant(seed: int) -> None:
    config = attrs.evolve(config_for_seed(seed, steps=3000), typed_rate=0.8)
    result = run(config)
    assert result.ok, f"{describe(config)}: {result.violations[:3]}"
    assert result.typed_writes > 300, result.typed_writes


def test_typed_values_survive_to_the_end_of_some_runs() -> None:
    results = [run(attrs.evolve(config_for_seed(s, steps=2000), typed_rate=0.8)) for s in SEEDS[:4]]
    assert all(r.ok for r in results)
    assert sum(r.typed_paths for r in results) > 0


def test_the_default_workload_makes_typed_edits() -> None:
    result = run(config_for_seed(3, steps=1500))
    assert result.ok and result.typed_writes > 0
    assert result.typed_writes < result.writes
