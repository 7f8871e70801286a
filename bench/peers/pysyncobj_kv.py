"""PySyncObj (Raft) replicating a dict: one ``@replicated`` call per write.

``sync=False`` returns at once (the write is queued for the leader); counted
at a follower, from the first call to the follower holding all ``n`` writes.
``sync=True`` with ``appendEntriesUseBatch=False`` is its low-latency mode: a
call returns when the write is committed by a majority; measured on three
processes at a fixed rate, like statesync's ``ack="all"`` figure.
"""

from __future__ import annotations

import json
import time
from typing import Any

from _common import free_port, percentile, read_json, reap, spawn, wait_stdin_closed

try:
    import pysyncobj
except ImportError:  # an optional peer: the bench skips it
    pysyncobj = None


def available() -> str | None:
    if pysyncobj is None:
        return "pysyncobj is not installed (pip install -e '.[bench]')"
    return None


def _make(self_addr: str, partners: list[str], low_latency: bool) -> Any:
    replicated = pysyncobj.replicated

    class KV(pysyncobj.SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            conf = pysyncobj.SyncObjConf(appendEntriesUseBatch=not low_latency, dynamicMembershipChange=False)
            super().__init__(self_addr, partners, conf)
            self.data: dict[str, str] = {}

        @replicated  # type: ignore[misc]
        def put(self, key: str, value: str) -> None:
            self.data[key] = value

    return KV()


def _wait_ready(kv: Any, timeout_s: float = 30.0) -> None:
    deadline = time.time() + timeout_s
    while kv._getLeader() is None:
        if time.time() > deadline:
            raise RuntimeError("PySyncObj elected no leader")
        time.sleep(0.01)
    kv.put("warmup", "v", sync=True, timeout=timeout_s)


def member(spec: dict[str, Any]) -> None:
    """A cluster member; with ``n`` it reports when it holds n bench keys (plus the warm-up)."""
    kv = _make(spec["self"], spec["partners"], spec["low_latency"])
    print(json.dumps({"ready": True}), flush=True)
    n = spec.get("n")
    if n:
        while len(kv.data) < n + 1:
            time.sleep(0.0005)
        print(json.dumps({"done_at": time.time()}), flush=True)
    wait_stdin_closed()
    kv.destroy()


def _cluster(size: int, low_latency: bool, n: int | None) -> tuple[str, list[str], list[Any]]:
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(size)]
    children = []
    for i, addr in enumerate(addrs[1:], start=1):
        spec = {"self": addr, "partners": [a for a in addrs if a != addr], "low_latency": low_latency, "n": n if i == 1 else None}
        children.append(spawn("pysyncobj-member", spec))
    for c in children:
        read_json(c)
    return addrs[0], [a for a in addrs if a != addrs[0]], children


def writes_per_s(n: int) -> float:
    """sync=False, two processes, counted at the follower."""
    me, partners, children = _cluster(2, False, n)
    try:
        kv = _make(me, partners, False)
        _wait_ready(kv)
        t0 = time.time()
        for i in range(n):
            kv.put(f"k{i}", "v")
        done = read_json(children[0])
        kv.destroy()
        return n / (float(done["done_at"]) - t0)
    finally:
        for c in children:
            reap(c)


def sync_latency_ms(rate: int, seconds: float) -> tuple[float, float]:
    """sync=True, appendEntriesUseBatch=False, three processes, one call at a time at ``rate``/s: p50, p99."""
    me, partners, children = _cluster(3, True, None)
    try:
        kv = _make(me, partners, True)
        _wait_ready(kv)
        latencies = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t = time.perf_counter()
            kv.put(f"lat{i % 1000}", "v", sync=True, timeout=10)
            latencies.append(time.perf_counter() - t)
        kv.destroy()
        latencies.sort()
        return percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    finally:
        for c in children:
            reap(c)
