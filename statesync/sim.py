"""Replay one simulation run exactly: ``python -m statesync.sim --seed N``.

The fault mix (loss, duplication, log bound, node count, strategy) is drawn
from the seed the same way the test suite draws it; flags override parts of
it. Prints the trace and the invariants that failed, if any; exits 1 then.
"""

from __future__ import annotations

import argparse
import sys

from statesync.testing._sim import config_for_seed, describe, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m statesync.sim",
        description="Rerun one deterministic replication simulation and print its trace.",
        epilog="example: python -m statesync.sim --seed 17 --nodes 4 --steps 5000 --strategy custom",
    )
    parser.add_argument("--seed", type=int, required=True, help="the seed to replay")
    parser.add_argument("--nodes", type=int, default=None, help="number of nodes (default: from the seed, 3 to 5)")
    parser.add_argument("--steps", type=int, default=5000, help="fault-phase steps (default 5000)")
    parser.add_argument(
        "--strategy",
        choices=["vector-clock", "last-write-wins", "custom"],
        default=None,
        help="conflict strategy (default: from the seed)",
    )
    parser.add_argument("--quiet", action="store_true", help="print the summary only, not the trace")
    args = parser.parse_args(argv)
    if args.nodes is not None and not 2 <= args.nodes <= 64:
        parser.error("--nodes must be between 2 and 64")
    config = config_for_seed(
        args.seed, nodes=args.nodes, steps=args.steps, strategy=args.strategy, trace=not args.quiet
    )
    result = run(config)
    if not args.quiet:
        for line in result.trace:
            print(line)
    print(f"# {describe(config)}")
    print(
        f"# writes={result.writes} acknowledged={result.acknowledged} messages={result.messages} "
        f"crashes={result.crashes} partitions={result.partitions} sim_time={result.sim_time_s:.1f}s "
        f"converged_after={result.converged_after_s}s"
    )
    if result.ok:
        print("# all invariants hold")
        return 0
    for violation in result.violations:
        print(f"VIOLATION: {violation}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
