"""Replay one simulation run exactly: ``python -m statesync.sim --seed N``.

The fault mix (loss, duplication, log bound, node count, strategy) is drawn
from the seed the same way the test suite draws it; flags override parts of
it. Prints the trace and the invariants that failed, if any; exits 1 then.

``python -m statesync.sim ports --seed N`` replays one run of the ports
protocol simulation (:mod:`statesync.testing._portsim`) the same way.
"""

from __future__ import annotations

import argparse
import sys

from statesync.testing import _portsim
from statesync.testing._sim import config_for_seed, describe, run


def _parser(command: str, what: str, example: str, sizes: list[tuple[str, int | None, str]]) -> argparse.ArgumentParser:
    """The flags both simulations take: --seed, their size flags (name, default, help), --quiet."""
    parser = argparse.ArgumentParser(
        prog=f"python -m statesync.sim{command}",
        description=f"Rerun one deterministic {what} simulation and print its trace.",
        epilog=f"example: python -m statesync.sim{command} --seed 17 {example}",
    )
    parser.add_argument("--seed", type=int, required=True, help="the seed to replay")
    for flag, default, help in sizes:
        parser.add_argument(flag, type=int, default=default, help=help)
    parser.add_argument("--quiet", action="store_true", help="print the summary only, not the trace")
    return parser


def ports_main(argv: list[str]) -> int:
    parser = _parser(" ports", "ports-protocol", "--runtimes 4 --steps 800", [
        ("--runtimes", None, "runtimes (default: from the seed, 3 or 4)"),
        ("--steps", None, "fault-phase steps (default 400)"),
    ])
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {"trace": not args.quiet}
    if args.runtimes is not None:
        if not 2 <= args.runtimes <= 16:
            parser.error("--runtimes must be between 2 and 16")
        overrides["runtimes"] = args.runtimes
    if args.steps is not None:
        overrides["steps"] = args.steps
    config = _portsim.config_for_seed(args.seed, **overrides)
    result = _portsim.run(config)
    summary = (
        f"messages={result.messages} transfers={result.transfers} closes={result.closes} "
        f"drops={result.drops} exits={result.exits} crashes={result.crashes} "
        f"stale_relays={result.stale_relays} sim_time={result.sim_time_s:.1f}s"
    )
    return _report(
        [] if args.quiet else result.trace, _portsim.describe(config), summary, result.violations
    )


def _report(trace: list[str], description: str, summary: str, violations: list[str]) -> int:
    """Print a run's trace, description, summary and violations; the exit status."""
    for line in trace:
        print(line)
    print(f"# {description}")
    print(f"# {summary}")
    if not violations:
        print("# all invariants hold")
        return 0
    for violation in violations:
        print(f"VIOLATION: {violation}")
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ports"]:
        return ports_main(argv[1:])
    parser = _parser("", "replication", "--nodes 4 --steps 5000 --strategy custom", [
        ("--nodes", None, "number of nodes (default: from the seed, 3 to 5)"),
        ("--steps", 5000, "fault-phase steps (default 5000)"),
    ])
    parser.add_argument(
        "--strategy",
        choices=["vector-clock", "last-write-wins", "custom"],
        default=None,
        help="conflict strategy (default: from the seed)",
    )
    args = parser.parse_args(argv)
    if args.nodes is not None and not 2 <= args.nodes <= 64:
        parser.error("--nodes must be between 2 and 64")
    config = config_for_seed(
        args.seed, nodes=args.nodes, steps=args.steps, strategy=args.strategy, trace=not args.quiet
    )
    result = run(config)
    summary = (
        f"writes={result.writes} acknowledged={result.acknowledged} messages={result.messages} "
        f"crashes={result.crashes} partitions={result.partitions} sim_time={result.sim_time_s:.1f}s "
        f"converged_after={result.converged_after_s}s"
    )
    return _report([] if args.quiet else result.trace, describe(config), summary, result.violations)


if __name__ == "__main__":
    sys.exit(main())
