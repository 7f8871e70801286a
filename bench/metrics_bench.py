"""Metrics benchmark: what one scrape of a node's /metrics page costs.

    python bench/metrics_bench.py            # full run
    python bench/metrics_bench.py --quick    # smaller sizes

Prints:
- the time to render the page (``NodeMetrics.render``) from a status with N
  peers (N = 1, 8, 64 (``mesh_max``), 1000), next to ``json.dumps`` of the
  same status (what ``statesync status`` sends) in the same run;
- on a real durable node holding K keys (K = 1k, 100k, 1M with the full run):
  the time of ``Node.status()`` alone, of the render (status included), and
  of a whole HTTP scrape over loopback (connect, GET, read the page).

The write path's cost is in ``bench/node_bench.py --only metrics``.
Never passes or fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio

import statesync
from statesync.node import open_node
from statesync.node._metrics import NodeMetrics


def _median_us(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def synthetic_status(peers: int) -> dict[str, Any]:
    names = [f"node-{i:04d}" for i in range(peers)]
    return {
        "node_id": "a",
        "seq": 123_456,
        "leaves": 100_000,
        "log_ops": 50_000,
        "causal_buffer_ops": 3,
        "pending_writes": 1,
        "links": peers,
        "watches": 4,
        "counters": {"ops_sent": 10**6, "ops_received": 10**6, "ops_retransmitted": 10, "snapshots_installed": 1, "refused": 2},
        "transport": {"frames_in": 10**5, "frames_out": 10**5, "bad_frames": 0, "frames_dropped_full": 0, "frames_dropped_alarm": 0},
        "peers": {
            n: {"connected": True, "endpoints": [f"tcp://10.0.0.{i % 250}:7000"], "they_lack_ops": i, "we_lack_ops": 0}
            for i, n in enumerate(names)
        },
        "storage": {"log_ops": 50_000, "disk_bytes": 10**8},
        "watch": {"open": 4, "backlog_max": 10, "lagged_events": 0},
        "security": {"curve": False},
        "alarm": {"disk_full": False, "raised": 0, "writes_refused": 0, "probes": 0, "compactions": 0},
        "vv": {n: 1000 for n in names},
    }


def render_cost(peers: int, repeat: int) -> tuple[float, float, int]:
    status = synthetic_status(peers)
    metrics = NodeMetrics("a", lambda: status)
    page = metrics.render()
    return _median_us(metrics.render, repeat), _median_us(lambda: json.dumps(status), repeat), len(page)


async def _scrape(endpoint: str) -> bytes:
    host, port = endpoint.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    data = b""
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


def node_cost(keys: int, repeat: int) -> tuple[float, float, float]:
    async def main() -> tuple[float, float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            async with open_node(node_id="a", data_dir=tmp, metrics_listen="127.0.0.1:0", checkpoint_ops=10**7) as node:
                batch = 10_000
                for start in range(0, keys, batch):
                    await node.set_many([(("k", str(i)), i) for i in range(start, min(keys, start + batch))])
                status_us = _median_us(node.status, repeat)
                render_us = _median_us(node.metrics.render, repeat)
                endpoint = str(node.metrics_endpoint)
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    page = await _scrape(endpoint)
                    times.append(time.perf_counter() - t0)
                assert page.startswith(b"HTTP/1.0 200")
                return status_us, render_us, statistics.median(times) * 1e6

    return trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeat = 50 if args.quick else 200
    print(f"# statesync metrics benchmark (statesync {statesync.__version__})")
    print("render of the page from a status with N peers (median):")
    for peers in (1, 8, 64, 1000):
        render_us, json_us, size = render_cost(peers, repeat)
        print(f"  {peers:>5} peers: render {render_us:9.1f} us ({size:>7,} bytes), json.dumps of the status {json_us:8.1f} us ({render_us / json_us:.1f}x)")
    print("a durable node with K keys, one peer-less node (median):")
    for keys in (1_000, 100_000) if args.quick else (1_000, 100_000, 1_000_000):
        status_us, render_us, scrape_us = node_cost(keys, repeat)
        print(f"  {keys:>9,} keys: Node.status() {status_us:8.1f} us, render {render_us:8.1f} us, HTTP scrape {scrape_us:8.1f} us")


if __name__ == "__main__":
    main()
