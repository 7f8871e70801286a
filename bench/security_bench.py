"""Security benchmark: CURVE on against CURVE off, measured in the same run.

    python bench/security_bench.py            # full run
    python bench/security_bench.py --quick    # smaller sizes, fewer runs

Prints, for each mode (the runs alternate off, on, off, on... so that the
machine's noise hits both alike), and the on/off ratio of the medians:

- replicated writes/s applied at the peer: 2 processes on tcp loopback,
  in-memory storage, small values written in 1000-op ``set_many`` batches
  (the same measure as bench/node_bench.py);
- handshake time, node level: a fresh node opened with one peer endpoint,
  from ``open_node`` until both sides report the link up (TCP connect, CURVE
  handshake with the ZAP check, the ports Hello/Welcome, the replicator's
  Hello/Welcome); median and p90;
- handshake time, ports level: ``runtime.connect()`` to a listener until the
  first request on the new port is answered; median and p90;
- request round trip on an open port (``port.request``, a small payload):
  median and p99, where the per-message cost of encryption shows most.

Never passes or fails; every child process ends by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import trio

import statesync
from statesync import ports
from statesync.node import NodeConfig, open_node
from statesync.ports import AuthRequest, CurveKeys
from statesync.security import write_keypair

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_bench


def keyed(config: dict[str, Any], keys_dir: str | None, name: str) -> dict[str, Any]:
    """``config`` with the key files of node ``name`` (unchanged when keys_dir is None)."""
    if keys_dir is None:
        return config
    return {
        **config,
        "secret_key_file": os.path.join(keys_dir, f"{name}.key_secret"),
        "authorized_keys_file": os.path.join(keys_dir, "authorized_keys"),
    }


def make_keys(folder: str) -> None:
    names = ("a", "b", "fresh")
    pairs = {n: write_keypair(os.path.join(folder, n))[0] for n in names}
    with open(os.path.join(folder, "authorized_keys"), "w") as f:
        f.writelines(f"peer {pairs[n].public}  # {n}\n" for n in names)


def replicated_writes(n: int, keys_dir: str | None, batch: int = 1000) -> float:
    """Writes/s applied at the peer, from the first write to the peer holding all."""
    peer_cfg = keyed({"node_id": "b", "listen": ["tcp://127.0.0.1:*"]}, keys_dir, "b")
    child, endpoints = node_bench.spawn_node(peer_cfg, until=["a", n])
    try:

        async def main() -> float:
            cfg = keyed({"node_id": "a", "peers": endpoints, "tune_gc": True}, keys_dir, "a")
            async with open_node(NodeConfig.from_mapping(cfg)) as node:
                await node.set("warmup", 1, ack="all", timeout_s=10)
                t0 = time.time()
                for start in range(1, n, batch):
                    await node.set_many([(("bench", f"k{i}"), "v") for i in range(start, min(n, start + batch))])
                assert child.stdout is not None
                line = await trio.to_thread.run_sync(child.stdout.readline)
                return (n - 1) / (json.loads(line)["done_at"] - t0)

        return trio.run(main)
    finally:
        node_bench._reap(child)


def linked(node: Any, peer: str) -> bool:
    state = node._rep.peers.get(peer)  # cheaper than status(), which would load the loop
    return state is not None and state.link is not None


def node_handshakes(count: int, keys_dir: str | None) -> list[float]:
    """Seconds from open_node(peers=[b]) to both sides linked, ``count`` times."""

    async def main() -> list[float]:
        out: list[float] = []
        b_cfg = keyed({"node_id": "b", "sync_interval_s": 60}, keys_dir, "b")
        async with open_node(NodeConfig.from_mapping(b_cfg)) as b:
            for i in range(count):
                cfg = keyed({"node_id": f"fresh{i}", "peers": list(b.endpoints), "sync_interval_s": 60}, keys_dir, "fresh")
                t0 = time.perf_counter()
                async with open_node(NodeConfig.from_mapping(cfg)) as a:
                    while not (linked(a, "b") and linked(b, f"fresh{i}")):
                        await trio.sleep(0.0005)
                    out.append(time.perf_counter() - t0)
        return out

    return trio.run(main)


def ports_handshakes(count: int, curve: bool, trips: int = 200) -> tuple[list[float], list[float]]:
    """Seconds from runtime.connect() to the first answered request, ``count`` times; and
    the round trips of ``trips`` requests on each of those connections."""
    server, client = CurveKeys.generate(), CurveKeys.generate()

    def admit(request: AuthRequest) -> str | None:
        return None if request.public_key == client.public else "unknown"

    async def main() -> tuple[list[float], list[float]]:
        out: list[float] = []
        rtts: list[float] = []
        listen_opts = ports.PortOptions(curve=server if curve else None, zap_domain="bench")
        async with ports.open_runtime(listen_opts, authorizer=admit) as b:
            listener = b.listen("tcp://127.0.0.1:*")

            async def serve() -> None:
                async for port in listener:
                    port.set_request_handler(lambda data: data)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                for _ in range(count):
                    async with ports.open_runtime(ports.PortOptions(curve=client if curve else None)) as a:
                        t0 = time.perf_counter()
                        port = await a.connect(listener.endpoints[0])
                        await port.request("ping", timeout_s=10)
                        out.append(time.perf_counter() - t0)
                        for _ in range(trips):
                            t1 = time.perf_counter()
                            await port.request({"k": "v" * 40}, timeout_s=10)
                            rtts.append(time.perf_counter() - t1)
                nursery.cancel_scope.cancel()
        return out, rtts

    return trio.run(main)


def p90(xs: list[float]) -> float:
    return sorted(xs)[int(len(xs) * 0.9)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 50_000 if args.quick else 200_000
    runs = 2 if args.quick else 4
    shakes = 10 if args.quick else 30
    print(f"# statesync security benchmark (statesync {statesync.__version__}, {os.cpu_count()} cores, tcp loopback)")
    writes: dict[bool, list[float]] = {False: [], True: []}
    node_hs: dict[bool, list[float]] = {False: [], True: []}
    ports_hs: dict[bool, list[float]] = {False: [], True: []}
    rtt: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as keys_dir:
        make_keys(keys_dir)
        for run in range(runs):
            for curve in (False, True):
                folder = keys_dir if curve else None
                w = replicated_writes(n, folder)
                writes[curve].append(w)
                node_hs[curve] += node_handshakes(shakes, folder)
                shakes_s, trips_s = ports_handshakes(shakes, curve)
                ports_hs[curve] += shakes_s
                rtt[curve] += trips_s
                label = "CURVE on " if curve else "CURVE off"
                print(f"run {run + 1} {label}: {w:>9,.0f} replicated writes/s", flush=True)
    print()
    print("| measure | CURVE off | CURVE on | on / off |")
    print("|---|---|---|---|")
    off, on = statistics.median(writes[False]), statistics.median(writes[True])
    spread = lambda xs: f"{min(xs):,.0f}-{max(xs):,.0f}"  # noqa: E731
    print(
        f"| replicated writes/s, median of {runs} runs of {n:,} | {off:,.0f} ({spread(writes[False])}) "
        f"| {on:,.0f} ({spread(writes[True])}) | {on / off:.2f}x |"
    )
    for name, data in (("node handshake (open_node to linked)", node_hs), ("ports handshake (connect to first answer)", ports_hs)):
        off_m, on_m = statistics.median(data[False]) * 1000, statistics.median(data[True]) * 1000
        print(
            f"| {name}, median / p90 of {len(data[False])} | {off_m:.2f} / {p90(data[False]) * 1000:.2f} ms "
            f"| {on_m:.2f} / {p90(data[True]) * 1000:.2f} ms | {on_m / off_m:.2f}x |"
        )
    off_m, on_m = statistics.median(rtt[False]) * 1e6, statistics.median(rtt[True]) * 1e6
    p99 = lambda xs: sorted(xs)[int(len(xs) * 0.99)] * 1e6  # noqa: E731
    print(
        f"| request round trip on an open port, median / p99 of {len(rtt[False]):,} | {off_m:.0f} / {p99(rtt[False]):.0f} µs "
        f"| {on_m:.0f} / {p99(rtt[True]):.0f} µs | {on_m / off_m:.2f}x |"
    )


if __name__ == "__main__":
    main()
