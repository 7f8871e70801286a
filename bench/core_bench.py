"""Core benchmark: local puts/s, remote applies/s, memory per key, missing-ops query.

    python bench/core_bench.py            # full run (1M keys for memory and the query)
    python bench/core_bench.py --quick    # smaller sizes, for a smoke run

Prints figures; never passes or fails. Each memory figure is measured in a
fresh child process as resident-set growth, next to a plain dict of the same
data measured the same way.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

from statesync.core import CausalContext, Op, OpLog, Replica, ReplicaLimits
from statesync.core._replicator import op_size

WALL_MS = 1_700_000_000_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    return max(fn() for _ in range(runs))


def local_puts(n: int, text: bool) -> float:
    keys = [f"user.k{i}" for i in range(n)] if text else [("user", f"k{i}") for i in range(n)]
    r = Replica("node-a")
    put = r.put
    gc.collect()
    t = time.perf_counter()
    for k in keys:
        put(k, "v", WALL_MS)
    return n / (time.perf_counter() - t)


def remote_applies(n: int) -> float:
    src = Replica("node-a")
    for i in range(n):
        src.put(("user", f"k{i}"), "v", WALL_MS)
    ops = list(src.log)
    dst = Replica("node-b")
    receive = dst.receive
    gc.collect()
    t = time.perf_counter()
    for op in ops:
        receive(op)
    return n / (time.perf_counter() - t)


def batch_puts(n: int) -> float:
    """Replica.put_many in batches of 1000 text paths (the path a node's set_many takes)."""
    items = [(f"user.k{i}", "v") for i in range(n)]
    r = Replica("node-a")
    gc.collect()
    t = time.perf_counter()
    for i in range(0, n, 1000):
        r.put_many(items[i : i + 1000], WALL_MS)
    return n / (time.perf_counter() - t)


def batch_applies(n: int) -> float:
    """Replica.receive_many in batches of 1000 (the path a node takes for a received frame)."""
    src = Replica("node-a")
    for i in range(n):
        src.put(("user", f"k{i}"), "v", WALL_MS)
    ops = list(src.log)
    dst = Replica("node-b")
    gc.collect()
    t = time.perf_counter()
    for i in range(0, n, 1000):
        dst.receive_many(ops[i : i + 1000])
    return n / (time.perf_counter() - t)


def memory_child(kind: str, n: int) -> None:
    """Run in a fresh process: print RSS growth per key for one structure.

    The keys and values are created inside the measured region, as they would
    be by an application, so every figure includes its strings.
    """
    gc.collect()
    before = rss_bytes()
    holder: object
    if kind == "dict":
        holder = {f"k{i:07d}": f"v{i:07d}" for i in range(n)}
    else:
        # "tree": the log at a small bound, as in a cluster whose peers keep up;
        # "tree+log": every write still in the log (no peer acknowledged any).
        bound = 1_000 if kind == "tree" else n + 1
        r = Replica("node-a", limits=ReplicaLimits(log_ops_max=bound))
        put = r.put
        for i in range(n):
            put((f"k{i:07d}",), f"v{i:07d}", WALL_MS)
        holder = r
    gc.collect()
    after = rss_bytes()
    print(json.dumps({"bytes_per_key": (after - before) / n}))
    del holder


def memory_per_key(kind: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", kind, "--n", str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout)["bytes_per_key"])


def missing_query(n: int, k: int, origins: int) -> tuple[float, float]:
    """Median and p99 of OpLog.missing for k missing ops out of n, in ms."""

    log = OpLog(ops_max=n + 1)
    per_origin = n // origins
    for s in range(1, per_origin + 1):
        for o in range(origins):
            log.append(Op(f"node-{o}", s, s * origins + o, ("k", str(s)), 0, "v", ()))
    vv = {f"node-{o}": per_origin for o in range(origins)}
    vv["node-0"] -= k
    ctx = CausalContext(vv)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        ops, _ = log.missing(ctx, bytes_max=1 << 30, size=op_size)
        times.append((time.perf_counter() - t) * 1000)
        assert len(ops) == k
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-child")
    parser.add_argument("--n", type=int, default=0)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.n)
        return
    n_ops = 50_000 if args.quick else 300_000
    n_keys = 100_000 if args.quick else 1_000_000
    print(f"# statesync core benchmark, python {sys.version.split()[0]}, one core")
    print(f"local puts/s (tuple paths, {n_ops:,} new keys):   {best_of(3, lambda: local_puts(n_ops, False)):>12,.0f}")
    print(f"local puts/s (text paths 'user.kN'):          {best_of(3, lambda: local_puts(n_ops, True)):>12,.0f}")
    print(f"local puts/s (put_many, batches of 1000):     {best_of(3, lambda: batch_puts(n_ops)):>12,.0f}")
    print(f"remote applies/s ({n_ops:,} ops, one by one):  {best_of(3, lambda: remote_applies(n_ops)):>12,.0f}")
    print(f"remote applies/s (receive_many, batches):     {best_of(3, lambda: batch_applies(n_ops)):>12,.0f}")
    d = memory_per_key("dict", n_keys)
    tree = memory_per_key("tree", n_keys)
    full = memory_per_key("tree+log", n_keys)
    print(f"memory per key at {n_keys:,} keys, plain dict:     {d:>9.0f} B")
    print(f"memory per key, tree (log compacted):         {tree:>9.0f} B")
    print(f"memory per key, tree + op log of every write: {full:>9.0f} B")
    for origins in (1, 5):
        med, p99 = missing_query(n_keys, 100, origins)
        print(f"missing-ops query, k=100 of {n_keys:,} ({origins} origin(s)): median {med:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    main()
