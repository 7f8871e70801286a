"""Lease expiry: how long after a SIGKILL of its holder the watchers on every node see the delete.

    .venv/bin/python bench/lease_bench.py [--tries 20] [--ttl 2.0]

One child process runs three linked nodes (default timing, each serving
clients on ipc); this process holds one watch per node (blocking Clients).
Each try starts a holder process (``tests/node/lease_holder.py``: a Client
that grants a lease of ``--ttl`` seconds and writes one key with it), waits
until all three watches saw the key, SIGKILLs the holder, and times until all
three watches saw its delete. Prints p50 and max over the tries, next to the
target (ttl + 1 s). The delay is the lease's remaining time at the kill (its
ttl minus the time since the last keepalive, which comes every ttl/3) plus the
owner's expiry tick and the delete's replication.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

from statesync import Client
from statesync.node import open_node

ROOT = Path(__file__).resolve().parents[1]
HOLDER = str(ROOT / "tests" / "node" / "lease_holder.py")


async def _run_nodes(folder: str) -> None:
    async with (
        open_node(node_id="a", client=f"ipc://{folder}/a.sock") as a,
        open_node(node_id="b", client=f"ipc://{folder}/b.sock", peers=list(a.endpoints)) as b,
        open_node(node_id="c", client=f"ipc://{folder}/c.sock", peers=list(a.endpoints)) as c,
    ):
        while not all(sum(p["connected"] for p in n.status()["peers"].values()) == 2 for n in (a, b, c)):
            await trio.sleep(0.01)
        print(json.dumps([n.client_endpoints[0] for n in (a, b, c)]), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--nodes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.nodes:
        trio.run(_run_nodes, args.nodes)
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    folder = tempfile.mkdtemp(prefix="lb-", dir="/tmp")
    nodes = subprocess.Popen(
        [sys.executable, __file__, "--nodes", folder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert nodes.stdout is not None
    endpoints = json.loads(nodes.stdout.readline())
    clients = [Client(e) for e in endpoints]
    seen: list[dict[str, tuple[str, float]]] = [{} for _ in clients]
    cond = threading.Condition()

    def on_event(i: int) -> object:
        def record(event: object) -> None:
            with cond:
                seen[i][event.key] = (event.kind, time.monotonic())  # type: ignore[attr-defined]
                cond.notify_all()

        return record

    watches = [c.watch("bench", callback=on_event(i)) for i, c in enumerate(clients)]  # type: ignore[arg-type]
    delays: list[float] = []
    try:
        for t in range(args.tries):
            key = f"bench.t{t}.k0.holder"  # the holder writes {"holder": i}: one leaf
            holder = subprocess.Popen(
                [sys.executable, HOLDER, endpoints[0], f"bench.t{t}", "1", str(args.ttl)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            assert holder.stdout is not None
            holder.stdout.readline()
            with cond:
                if not cond.wait_for(lambda key=key: all(s.get(key, ("",))[0] == "put" for s in seen), timeout=10):
                    raise SystemExit(f"try {t}: the key did not reach every node")
            # kill at a random point of the keepalive cycle, as a crash would
            time.sleep((t % 7) / 7 * args.ttl / 3)
            holder.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            holder.wait()
            with cond:
                if not cond.wait_for(lambda key=key: all(s.get(key, ("",))[0] == "delete" for s in seen), timeout=args.ttl + 10):
                    raise SystemExit(f"try {t}: the delete did not reach every node")
                last = max(s[key][1] for s in seen)
            delays.append(last - killed)
            print(f"try {t:2d}: delete seen on all 3 nodes {delays[-1]:.3f} s after SIGKILL", flush=True)
    finally:
        for w in watches:
            w.close()
        for c in clients:
            c.close()
        assert nodes.stdin is not None
        nodes.stdin.close()
        nodes.wait(timeout=20)
    delays.sort()
    p50, worst = statistics.median(delays), delays[-1]
    target = args.ttl + 1.0
    print(f"\nttl_s {args.ttl:g}, {len(delays)} tries: p50 {p50:.3f} s, max {worst:.3f} s; "
          f"target <= ttl_s + 1 s = {target:g} s (max/target {worst / target:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
