"""The blocking ``Client``: sequential ``set`` round trip next to a ports ``request()`` round trip
(the floor) in the same run, and pipelined writes (``submit``, ``set_many``) next to sequential ones.

    .venv/bin/python bench/client_bench.py [--quick] [--rounds R] [-n N]

Everything goes to another process over tcp loopback: the node child and the
ports echo child are the peer benchmarks' own (``bench/peers/statesync_side.py``).
RTT rounds alternate between ``Client.set`` and ``request()`` (a load change
on the machine hits both); each round's p50 is printed, then the median of the
rounds and the ratio. Throughput is writes/s acknowledged (``ack="local"``) by
an in-memory node, with the writes done when the last future/receipt is in.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "peers"))

from _common import free_port, percentile, reap
from statesync_side import _peer, ports_request_rtt_us

from statesync import Client

WARMUP = 200


def set_p50_us(client: Client, n: int) -> float:
    latencies = []
    for i in range(WARMUP + n):
        t = time.perf_counter()
        client.set(("m", f"k{i % 1000}"), "v")
        if i >= WARMUP:
            latencies.append(time.perf_counter() - t)
    latencies.sort()
    return float(percentile(latencies, 0.5)) * 1e6


def sequential_per_s(client: Client, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        client.set(("s", f"k{i % 1000}"), i)
    return n / (time.perf_counter() - t)


def submit_per_s(client: Client, n: int) -> float:
    t = time.perf_counter()
    futures = [client.submit(("p", f"k{i % 1000}"), i) for i in range(n)]
    for f in futures:
        f.result()
    return n / (time.perf_counter() - t)


def set_many_per_s(client: Client, n: int, batch: int) -> float:
    t = time.perf_counter()
    for start in range(0, n, batch):
        client.set_many([(("b", f"k{i % 1000}"), i) for i in range(start, min(n, start + batch))])
    return n / (time.perf_counter() - t)


def print_rtts(figures: dict[str, list[float]], n: int, rounds: int) -> None:
    """Each figure's median p50 over the rounds and its ratio to the ports request() one."""
    print(f"\nsequential round trip to another process over tcp loopback, {n} per round, {rounds} rounds:")
    floor = statistics.median(figures["ports request()"])
    for name, values in figures.items():
        mid = statistics.median(values)
        print(f"  {name:<24} p50 {mid:7.1f} us  (rounds {', '.join(f'{v:.0f}' for v in values)})  {mid / floor:4.2f}x ports request()")


def arguments(doc: str) -> tuple[int, int]:
    """``--quick``, ``--rounds R`` and ``-n N`` as (writes per round, rounds): this bench's and aio_bench's."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer writes per round (1,000), 2 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3)")
    parser.add_argument("-n", type=int, default=None, help="writes per round (default 5,000)")
    args = parser.parse_args()
    return args.n or (1_000 if args.quick else 5_000), args.rounds or (2 if args.quick else 3)


def main() -> None:
    n, rounds = arguments(__doc__ or "")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    child, _ = _peer({"node_id": "a", "listen": ["tcp://127.0.0.1:*"], "client": endpoint})
    rtt: dict[str, list[float]] = {"Client.set": [], "ports request()": []}
    rates: dict[str, list[float]] = {
        "Client.set, sequential": [],
        "Client.submit, inflight_max=64": [],
        "Client.submit, inflight_max=256": [],
        "Client.set_many of 100": [],
        "Client.set_many of 1,000": [],
    }
    try:
        with Client(endpoint, inflight_max=64) as c64, Client(endpoint, inflight_max=256) as c256:
            for r in range(rounds):
                rtt["Client.set"].append(set_p50_us(c256, n))
                rtt["ports request()"].append(ports_request_rtt_us(n))
                print(f"round {r + 1}: Client.set p50 {rtt['Client.set'][-1]:6.1f} us, ports request() p50 {rtt['ports request()'][-1]:6.1f} us", flush=True)
                rates["Client.set, sequential"].append(sequential_per_s(c256, n))
                rates["Client.submit, inflight_max=64"].append(submit_per_s(c64, 4 * n))
                rates["Client.submit, inflight_max=256"].append(submit_per_s(c256, 4 * n))
                rates["Client.set_many of 100"].append(set_many_per_s(c256, 20 * n, 100))
                rates["Client.set_many of 1,000"].append(set_many_per_s(c256, 20 * n, 1000))
    finally:
        reap(child)
    print_rtts(rtt, n, rounds)
    print("\nwrites/s acknowledged by the node (ack='local', in-memory):")
    base = statistics.median(rates["Client.set, sequential"])
    for name, values in rates.items():
        mid = statistics.median(values)
        print(f"  {name:<32} {mid:10,.0f}/s  (rounds {', '.join(f'{v:,.0f}' for v in values)})  {mid / base:5.1f}x sequential")


if __name__ == "__main__":
    main()
