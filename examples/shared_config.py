"""Shared configuration: worker processes read a live feature-flag tree; one process changes it.

    python examples/shared_config.py                 # 3 nodes, 4 workers, 20 changes
    python examples/shared_config.py --workers 8 --changes 50 --json

It starts a local three-node cluster (temporary folders, ephemeral ports),
then worker processes, each connected to one of the nodes through
``statesync.Client``. A worker keeps the ``flags`` subtree in a local dict,
kept current by a watch callback, and reads its flags from that dict (no
round trip per read). A separate changer process, connected to the first
node, changes ``flags.rate_limit`` every 50 ms. Every worker reports when it
saw each change; the coordinator prints how long each change took to reach
every worker (the changer's call to ``set`` to the worker's callback, through
the node it wrote on, replication to the other nodes, and each node's watch).

The point of the design: reads are local and free, a change reaches every
process within milliseconds, a worker that restarts or reconnects gets the
whole current tree first (``watch.initial``, or a ``lagged`` event).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from statesync.cli.cluster import LocalCluster, wait_until
from statesync.client import Client, WatchEvent

TARGET_MS = 100.0
INITIAL: dict[str, Any] = {"new_ui": False, "rate_limit": 100, "beta_users": ["ada"], "payments": {"provider": "acme", "retries": 3}}


class LiveFlags:
    """A local copy of the ``flags`` subtree, kept current by a watch; reads never leave the process."""

    def __init__(self, client: Client, prefix: str = "flags", on_change: Any = None) -> None:
        self._lock = threading.Lock()
        self._on_change = on_change
        self.prefix = prefix
        self._tree: dict[str, Any] = {}
        self._watch = client.watch(prefix, self._apply)
        initial = self._watch.initial
        self._tree = dict(initial) if isinstance(initial, dict) else {}

    def _apply(self, event: WatchEvent) -> None:
        with self._lock:
            if event.kind == "lagged":  # changes were skipped: this is the whole current subtree
                self._tree = dict(event.value) if isinstance(event.value, dict) else {}
            else:
                node = self._tree
                *parents, leaf = event.path[1:]  # below the prefix
                for seg in parents:
                    node = node.setdefault(seg, {})
                if event.kind == "delete":
                    node.pop(leaf, None)
                else:
                    node[leaf] = event.value
        if self._on_change is not None:
            self._on_change(event)

    def get(self, path: str, default: Any = None) -> Any:
        with self._lock:
            node: Any = self._tree
            for seg in path.split("."):
                if not isinstance(node, dict) or seg not in node:
                    return default
                node = node[seg]
            return node

    def close(self) -> None:
        self._watch.close()


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker(endpoint: str) -> int:
    """Report every rate_limit this worker sees, until stdin closes."""
    with Client(endpoint) as client:

        def on_change(event: WatchEvent) -> None:
            if event.key == "flags.rate_limit" and event.kind == "put":
                emit({"value": event.value, "t": time.monotonic()})

        flags = LiveFlags(client, on_change=on_change)
        emit({"ready": True, "rate_limit": flags.get("rate_limit"), "provider": flags.get("payments.provider")})
        sys.stdin.read()  # the coordinator closes stdin when done
        flags.close()
    return 0


def changer(endpoint: str, changes: int, interval_s: float, base: int) -> int:
    with Client(endpoint) as client:
        for i in range(1, changes + 1):
            start = time.monotonic()
            client.set("flags.rate_limit", base + i)
            emit({"value": base + i, "t": start, "took_ms": 1000 * (time.monotonic() - start)})
            time.sleep(interval_s)
    return 0


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def run(workers: int, changes: int, interval_s: float, as_json: bool) -> int:
    fast = {"heartbeat_interval_s": 0.25, "heartbeat_timeout_s": 2.0, "reconnect_max_s": 0.5}
    with LocalCluster(3, options=fast) as cluster:
        names = cluster.names
        cluster.client(0).set("flags", INITIAL)
        for i in range(3):  # every node has the initial tree before workers start
            client = cluster.client(i)

            def has_flags(client: Client = client) -> bool:
                return bool(client.get("flags") == INITIAL)

            wait_until(has_flags, 20.0, f"{names[i]} to have the flags")
        procs = [spawn("worker", cluster.client_endpoints[names[w % 3]]) for w in range(workers)]
        seen: list[dict[int, float]] = [{} for _ in procs]
        try:
            for p in procs:
                assert p.stdout is not None
                ready = json.loads(p.stdout.readline())
                assert ready["ready"] and ready["rate_limit"] == INITIAL["rate_limit"], ready
            readers = [threading.Thread(target=_collect, args=(p, seen[i], changes)) for i, p in enumerate(procs)]
            for r in readers:
                r.start()
            change = spawn("changer", cluster.client_endpoints[names[0]], str(changes), str(interval_s), str(INITIAL["rate_limit"]))
            out, _ = change.communicate(timeout=60)
            writes = {d["value"]: d["t"] for d in map(json.loads, out.splitlines())}
            for r in readers:
                r.join(30)
        finally:
            for p in procs:
                if p.stdin is not None:
                    p.stdin.close()
            for p in procs:
                p.wait(30)
    delays = []
    missing = 0
    for w in range(workers):
        for value, t in writes.items():
            if value in seen[w]:
                delays.append(1000 * (seen[w][value] - t))
            else:
                missing += 1
    delays.sort()
    summary = {
        "workers": workers,
        "changes": changes,
        "nodes": 3,
        "observations": len(delays),
        "missing": missing,
        "p50_ms": round(statistics.median(delays), 2) if delays else None,
        "p95_ms": round(delays[int(0.95 * (len(delays) - 1))], 2) if delays else None,
        "max_ms": round(delays[-1], 2) if delays else None,
        "within_target": bool(delays) and missing == 0 and delays[-1] <= TARGET_MS,
    }
    if as_json:
        print(json.dumps(summary))
    else:
        print(f"{workers} workers on 3 nodes, {changes} changes of flags.rate_limit written on {names[0]}")
        print(f"every worker saw every change: {'yes' if missing == 0 else f'no, {missing} missing'}")
        print(f"time from set() to each worker's callback: p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, max {summary['max_ms']} ms")
        print(f"target: every worker within {TARGET_MS:g} ms: {'met' if summary['within_target'] else 'NOT met'}")
    return 0 if missing == 0 else 1


def _collect(p: subprocess.Popen[str], into: dict[int, float], changes: int) -> None:
    assert p.stdout is not None
    while len(into) < changes:
        line = p.stdout.readline()
        if not line:
            return
        d = json.loads(line)
        into[d["value"]] = d["t"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    w = sub.add_parser("worker", help=argparse.SUPPRESS)
    w.add_argument("endpoint")
    c = sub.add_parser("changer", help=argparse.SUPPRESS)
    c.add_argument("endpoint")
    c.add_argument("changes", type=int)
    c.add_argument("interval", type=float)
    c.add_argument("base", type=int)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between changes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.role == "worker":
        return worker(args.endpoint)
    if args.role == "changer":
        return changer(args.endpoint, args.changes, args.interval, args.base)
    return run(args.workers, args.changes, args.interval, args.json)


if __name__ == "__main__":
    sys.exit(main())
