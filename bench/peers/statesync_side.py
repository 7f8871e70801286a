"""statesync doing what the peers do, with the same keys and values, through its public API.

Writer in this process, peers in child processes (tcp loopback); writes/s
counted at a peer, from the first write to the peer holding the last one.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import trio
from _common import free_port, percentile, read_json, reap, spawn

from statesync import Client, ports
from statesync.node import NodeConfig, open_node


def node_member(spec: dict[str, Any]) -> None:
    """A node; with ``until`` = [origin, n] it reports when it holds n writes of origin."""
    async def main() -> None:
        async with open_node(NodeConfig.from_mapping({"tune_gc": True, **spec["config"]})) as node:
            print(json.dumps({"endpoints": list(node.endpoints)}), flush=True)
            until = spec.get("until")
            if until:
                origin, n = until
                while node.replica.vv.get(origin, 0) < n:
                    await trio.sleep(0.0005)
                print(json.dumps({"done_at": time.time()}), flush=True)
            stdin = trio.lowlevel.FdStream(os.dup(0))
            await stdin.receive_some(1)

    trio.run(main)


def ports_echo(spec: dict[str, Any]) -> None:
    async def main() -> None:
        port = await ports.connect(spec["endpoint"])
        port.set_request_handler(lambda d: d)
        print(json.dumps({"ready": True}), flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(0))
        await stdin.receive_some(1)
        port.close()

    trio.run(main)


def _peer(config: dict[str, Any], until: list[Any] | None = None) -> tuple[Any, list[str]]:
    child = spawn("statesync-node", {"config": config, "until": until})
    return child, list(read_json(child)["endpoints"])


async def _linked(node: Any, count: int) -> None:
    while sum(1 for p in node.status()["peers"].values() if p["connected"]) < count:
        await trio.sleep(0.01)


def writes_per_s(n: int, per_call: int, data_dir: str | None = None) -> float:
    """``per_call`` = 1: ``await node.set`` per write; else ``set_many`` of that many."""
    peer_cfg: dict[str, Any] = {"node_id": "b", "listen": ["tcp://127.0.0.1:*"]}
    writer_cfg: dict[str, Any] = {"node_id": "a", "tune_gc": True}
    if data_dir:
        peer_cfg.update(data_dir=os.path.join(data_dir, "b"), durability="process")
        writer_cfg.update(data_dir=os.path.join(data_dir, "a"), durability="process")
    # the warm-up write is seq 1; the bench's writes are seq 2 .. n + 1
    child, endpoints = _peer(peer_cfg, until=["a", n + 1])
    try:

        async def main() -> float:
            async with open_node(NodeConfig.from_mapping({**writer_cfg, "peers": endpoints})) as node:
                await _linked(node, 1)
                await node.set("warmup", 1, ack="all", timeout_s=10)
                t0 = time.time()
                if per_call == 1:
                    for i in range(n):
                        await node.set(("m", f"k{i}"), "v")
                else:
                    for start in range(0, n, per_call):
                        await node.set_many([(("m", f"k{i}"), "v") for i in range(start, min(n, start + per_call))])
                done = await trio.to_thread.run_sync(read_json, child)
                return n / (float(done["done_at"]) - t0)

        return trio.run(main)
    finally:
        reap(child)


def ack_all_latency_ms(rate: int, seconds: float) -> tuple[float, float]:
    """``ack="all"``, three processes, one write at a time at ``rate``/s (as PySyncObj's sync=True): p50, p99."""
    children = [_peer({"node_id": name, "listen": ["tcp://127.0.0.1:*"]}) for name in ("b", "c")]
    try:

        async def main() -> tuple[float, float]:
            peers = [ep for _, eps in children for ep in eps]
            async with open_node(NodeConfig.from_mapping({"node_id": "a", "peers": peers, "tune_gc": True})) as node:
                await _linked(node, 2)
                await node.set("warmup", 1, ack="all", timeout_s=10)
                latencies = []
                start = time.perf_counter()
                for i in range(int(rate * seconds)):
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        await trio.sleep(delay)
                    t = time.perf_counter()
                    await node.set(("m", f"lat{i % 1000}"), "v", ack="all", timeout_s=10)
                    latencies.append(time.perf_counter() - t)
                latencies.sort()
                return percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000

        return trio.run(main)
    finally:
        for child, _ in children:
            reap(child)


def client_set_rtt_us(n: int) -> float:
    """p50 of a sequential blocking ``Client.set`` to a node in another process (tcp)."""
    port = free_port()
    child, _ = _peer({"node_id": "a", "listen": ["tcp://127.0.0.1:*"], "client": f"tcp://127.0.0.1:{port}"})
    try:
        with Client(f"tcp://127.0.0.1:{port}") as client:
            client.set("warmup", 1)
            latencies = []
            for i in range(n):
                t = time.perf_counter()
                client.set(("m", f"k{i % 1000}"), "v")
                latencies.append(time.perf_counter() - t)
        latencies.sort()
        return percentile(latencies, 0.5) * 1e6
    finally:
        reap(child)


def ports_request_rtt_us(n: int) -> float:
    """p50 of a sequential ports ``request()`` round trip to another process (tcp), the floor for Client.set."""
    async def main() -> float:
        listener = ports.listen("tcp://127.0.0.1:*")
        child = spawn("ports-echo", {"endpoint": listener.endpoints[0]})
        try:
            port = await listener.accept()
            await trio.to_thread.run_sync(read_json, child)
            payload = {"op": "set", "path": "m.k1", "value": "v", "ack": "local"}
            latencies = []
            for i in range(200 + n):
                t = time.perf_counter()
                await port.request(payload)
                if i >= 200:
                    latencies.append(time.perf_counter() - t)
            latencies.sort()
            return percentile(latencies, 0.5) * 1e6
        finally:
            listener.close()
            reap(child)

    return trio.run(main)
