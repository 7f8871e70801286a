"""pycrdt (the Yjs engine for Python) replicating a map over pyzmq, as a user would wire it.

The writer process makes one transaction per ``per_txn`` writes on a ``Map``;
each transaction's update goes out on a DEALER as it is made (the way y-py
providers send them); the peer process's ROUTER applies each update to its own
``Doc``. Writes/s are counted at the peer, from the first write to the peer
holding the last one (clocks: ``time.time()`` on one machine).
"""

from __future__ import annotations

import json
import time
from typing import Any

import zmq
from _common import free_port, read_json, reap, spawn

try:
    import pycrdt
except ImportError:  # an optional peer: the bench skips it
    pycrdt = None


def available() -> str | None:
    if pycrdt is None:
        return "pycrdt is not installed (pip install -e '.[bench]')"
    return None


def peer(spec: dict[str, Any]) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(f"tcp://127.0.0.1:{spec['port']}")
    print(json.dumps({"ready": True}), flush=True)
    doc = pycrdt.Doc()
    m = doc.get("m", type=pycrdt.Map)
    last = f"k{spec['n'] - 1}"
    while True:
        _, update = sock.recv_multipart()
        doc.apply_update(update)
        if last in m:
            break
    print(json.dumps({"done_at": time.time(), "keys": len(m)}), flush=True)
    sock.close(0)
    ctx.term()


def writes_per_s(n: int, per_txn: int) -> float:
    port = free_port()
    child = spawn("pycrdt-peer", {"port": port, "n": n})
    try:
        read_json(child)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.connect(f"tcp://127.0.0.1:{port}")
        doc = pycrdt.Doc()
        m = doc.get("m", type=pycrdt.Map)
        doc.observe(lambda event: sock.send(event.update))
        time.sleep(0.2)  # let the connection come up before timing
        t0 = time.time()
        for start in range(0, n, per_txn):
            with doc.transaction():
                for i in range(start, min(n, start + per_txn)):
                    m[f"k{i}"] = "v"
        done = read_json(child)
        assert done["keys"] == n, done
        sock.close(0)
        ctx.term()
        return n / (float(done["done_at"]) - t0)
    finally:
        reap(child)
