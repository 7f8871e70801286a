"""The deterministic simulation, over many seeds: every invariant must hold.

Each seed draws its own fault mix (loss 0-30 %, duplication 0-50 %, log bound,
3 to 5 nodes, strategy); a failure prints the command that replays it.
"""

from __future__ import annotations

import attrs
import pytest

from statesync import sim
from statesync.core import Output
from statesync.node._effects import Checkpoints, Commit, EffectsApplier
from statesync.testing._sim import (
    SimConfig,
    Simulation,
    _Node,
    config_for_seed,
    describe,
    run,
    strategy_for,
)

SEEDS = range(200)
STEPS = 5000


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_holds_every_invariant(seed: int) -> None:
    config = config_for_seed(seed, steps=STEPS)
    result = run(config)
    assert result.ok, (
        f"simulation failed ({describe(config)}); replay with:\n  {result.replay_command(config)}\n"
        + "\n".join(result.violations[:10])
    )
    assert result.writes > 0 and result.converged_after_s is not None


def test_all_strategies_and_sizes_are_covered() -> None:
    configs = [config_for_seed(s) for s in SEEDS]
    assert {c.nodes for c in configs} == {3, 4, 5}
    assert {c.strategy if isinstance(c.strategy, str) else "custom" for c in configs} == {
        "vector-clock",
        "last-write-wins",
        "custom",
    }
    assert {c.log_ops_max for c in configs} == {20, 100, 400}
    assert max(c.loss for c in configs) > 0.25 and max(c.dup for c in configs) > 0.4


def test_run_is_deterministic() -> None:
    a = run(config_for_seed(7, steps=800, trace=True))
    b = run(config_for_seed(7, steps=800, trace=True))
    assert a.trace == b.trace and a.trace


def test_faults_are_injected() -> None:
    result = run(config_for_seed(11, steps=STEPS, nodes=4))
    assert result.crashes > 0 and result.partitions > 0
    assert result.acknowledged > 0


def test_checker_reports_a_node_that_never_reconnects() -> None:
    class Isolated(Simulation):
        def _connect(self, a: str, b: str) -> None:
            if "n0" not in (a, b):
                super()._connect(a, b)

    config = SimConfig(seed=1, nodes=3, steps=400, strategy=strategy_for("vector-clock"), heal_s=5.0)
    result = Isolated(config).run()
    assert not result.ok
    assert any("no convergence" in v for v in result.violations)


def test_the_simulator_runs_the_nodes_effects_applier_and_catches_a_broken_one() -> None:
    """A deliberately broken applier (its commit forgets the ops) loses acknowledged writes."""

    class Forgetful(EffectsApplier):
        def commit_for(self, out: Output) -> Commit | None:
            commit = super().commit_for(out)
            return None if commit is None else attrs.evolve(commit, ops=())

    class Broken(Simulation):
        def _start(self, node: _Node) -> None:
            super()._start(node)
            assert node.log is not None and node.replicator is not None and node.effects is not None
            node.effects = Forgetful(node.log, node.log, Checkpoints(node.replicator.replica, 1_000_000))

    config = config_for_seed(11, steps=3000, nodes=4)
    assert run(config).ok
    result = Broken(config).run()
    assert not result.ok
    assert any("acknowledged" in v or "nobody committed" in v for v in result.violations), result.violations[:5]


def test_replay_command_prints_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main(["--seed", "5", "--steps", "200", "--nodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "write" in out and "# all invariants hold" in out
    assert sim.main(["--seed", "5", "--steps", "200", "--quiet"]) == 0


def _coalescing_config(seed: int) -> SimConfig:
    config = config_for_seed(seed, steps=3000)
    config.burst_max = 8
    config.concerns = ("local",) * 7 + ("all", 1)
    config.loss = max(config.loss, 0.1)
    config.write_rate = 1.0
    config.step_ms = (1, 4)
    config.delay_ms = (0, 40)  # wider than a step: messages overtake each other
    config.replicator = attrs.evolve(config.replicator, ack_delay_s=0.1, ack_ops_max=32)
    return config


@pytest.mark.parametrize("seed", range(12))
def test_coalesced_writes_and_delayed_acks_hold_every_invariant(seed: int) -> None:
    """Bursts of writes share OPS messages, ACKs are delayed and cumulative; under loss,
    duplication and reordering every invariant holds and the cluster converges."""
    config = _coalescing_config(seed)
    result = run(config)
    assert result.ok, (
        f"simulation failed ({describe(config)}, burst_max=8, delayed acks)\n" + "\n".join(result.violations[:10])
    )
    assert result.converged_after_s is not None
    # Coalescing: a burst's writes went out together, so fewer OPS than writes times peers.
    assert result.sent.get("Ops", 0) < result.writes * (config.nodes - 1)
    # Delayed acks: one cumulative ACK covers several OPS frames.
    assert result.sent.get("Ack", 0) < result.sent.get("Ops", 0)


@pytest.mark.parametrize("seed", range(4))
def test_acks_are_delayed_not_one_per_frame(seed: int) -> None:
    """The same fault mix with ack_delay_s = 0 (an ACK per frame received) sends more ACKs per OPS."""
    eager = _coalescing_config(seed)
    eager.replicator = attrs.evolve(eager.replicator, ack_delay_s=0.0)
    delayed, every = run(_coalescing_config(seed)), run(eager)
    assert every.ok and delayed.ok
    assert delayed.sent["Ack"] / delayed.sent["Ops"] < 0.9 * every.sent["Ack"] / every.sent["Ops"]
