"""Sequential ``set`` round trip of ``statesync.aio.Client`` next to the blocking ``Client``
and a ports ``request()``, to a node (or an echo) in another process over tcp loopback.

    .venv/bin/python bench/aio_bench.py [--quick] [--rounds R] [-n N]

The node child and the ports echo child are the peer benchmarks' own
(``bench/peers/statesync_side.py``). The two clients write to the same node
child, in alternating rounds (so a load change on the machine hits both);
each round's p50 is printed, then the median of the rounds' p50s. The ports
figure is the floor either client can reach (one request, no client protocol).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "peers"))

from _common import free_port, percentile, reap
from client_bench import WARMUP, arguments, print_rtts, set_p50_us
from statesync_side import _peer, ports_request_rtt_us

from statesync import Client, aio


def blocking_p50_us(endpoint: str, n: int) -> float:
    with Client(endpoint) as client:
        return set_p50_us(client, n)


def aio_p50_us(endpoint: str, n: int) -> float:
    async def main() -> float:
        async with aio.Client(endpoint) as client:
            latencies = []
            for i in range(WARMUP + n):
                t = time.perf_counter()
                await client.set(("m", f"k{i % 1000}"), "v")
                if i >= WARMUP:
                    latencies.append(time.perf_counter() - t)
        latencies.sort()
        return float(percentile(latencies, 0.5)) * 1e6

    return asyncio.run(main())


def main() -> None:
    n, rounds = arguments(__doc__ or "")
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    child, _ = _peer({"node_id": "a", "listen": ["tcp://127.0.0.1:*"], "client": endpoint})
    figures: dict[str, list[float]] = {"aio.Client.set": [], "Client.set (blocking)": []}
    try:
        for r in range(rounds):
            for name, fn in (("aio.Client.set", aio_p50_us), ("Client.set (blocking)", blocking_p50_us)):
                p50 = fn(endpoint, n)
                figures[name].append(p50)
                print(f"round {r + 1}: {name:<24} p50 {p50:7.1f} us", flush=True)
    finally:
        reap(child)
    figures["ports request()"] = [ports_request_rtt_us(n) for _ in range(rounds)]
    print_rtts(figures, n, rounds)


if __name__ == "__main__":
    main()
