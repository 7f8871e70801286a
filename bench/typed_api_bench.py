"""The node's typed API next to node.set, in one run: microseconds per awaited edit.

    .venv/bin/python bench/typed_api_bench.py [--edits N] [--rounds R]

An in-memory node, ack="local": each round times N ``node.set`` of a small
plain value, N ``node.text(path).insert`` (typing at the end, one character
each) and N ``node.counter(path).add(1)``, and prints each with its ratio to
``node.set`` measured in the same round.
"""

from __future__ import annotations

import argparse
import time

import trio

from statesync.node import open_node


async def main(edits: int, rounds: int) -> None:
    async with open_node(node_id="bench") as node:
        for rnd in range(rounds):
            t0 = time.perf_counter()
            for i in range(edits):
                await node.set(("k", str(i % 100)), "x")
            t1 = time.perf_counter()
            doc = node.text(f"doc{rnd}")
            for i in range(edits):
                await doc.insert(i, "x")
            t2 = time.perf_counter()
            counter = node.counter(f"c{rnd}")
            for _ in range(edits):
                await counter.add(1)
            t3 = time.perf_counter()
            s, t, c = ((b - a) / edits * 1e6 for a, b in ((t0, t1), (t1, t2), (t2, t3)))
            print(
                f"round {rnd}: node.set {s:.1f} us, text.insert {t:.1f} us ({t / s:.2f}x), "
                f"counter.add {c:.1f} us ({c / s:.2f}x)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.edits, args.rounds)
