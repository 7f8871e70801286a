"""statesync beside the tools people use today, in one invocation, with the same keys and values.

    python bench/peers/run.py            # full sizes
    python bench/peers/run.py --quick    # smaller sizes

Peers: pycrdt (the Yjs engine for Python) over pyzmq, at one and at 100
writes per transaction, and PySyncObj (Raft) with ``sync=False`` and, for
latency, ``sync=True`` with ``appendEntriesUseBatch=False``. They are optional:
``pip install -e '.[bench]'`` installs them; a peer that is not installed is
skipped, saying so. Every figure is writes/s counted at the receiving process
(or a latency), over tcp loopback on this machine; ratios compare figures
from this same run. Every child process ends by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pycrdt_zmq
import pysyncobj_kv
import statesync_side

ROLES = {
    "pycrdt-peer": pycrdt_zmq.peer,
    "pysyncobj-member": pysyncobj_kv.member,
    "statesync-node": statesync_side.node_member,
    "ports-echo": statesync_side.ports_echo,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        ROLES[args.role](json.loads(args.spec))
        return
    n1 = 20_000 if args.quick else 100_000
    nb = 100_000 if args.quick else 300_000
    lat_s = 3.0 if args.quick else 10.0
    print("# statesync vs peers, one invocation (2 cores, tcp loopback, in-memory unless said)")
    rows: list[tuple[str, float | None, str, float | None, str]] = []

    crdt_skip = pycrdt_zmq.available()
    sobj_skip = pysyncobj_kv.available()
    for skip in {crdt_skip, sobj_skip} - {None}:
        print(f"# skipped: {skip}")

    ours = statesync_side.writes_per_s(n1, 1)
    crdt = None if crdt_skip else pycrdt_zmq.writes_per_s(n1, 1)
    sobj = None if sobj_skip else pysyncobj_kv.writes_per_s(n1)
    rows.append(("one write per call, 1 peer", ours, "pycrdt over pyzmq, 1 write per transaction", crdt, "/s"))
    rows.append(("one write per call, 1 peer", ours, "PySyncObj sync=False, 2 processes", sobj, "/s"))

    ours100 = statesync_side.writes_per_s(nb, 100)
    crdt100 = None if crdt_skip else pycrdt_zmq.writes_per_s(nb, 100)
    rows.append(("set_many of 100, 1 peer", ours100, "pycrdt over pyzmq, 100 writes per transaction", crdt100, "/s"))

    with tempfile.TemporaryDirectory() as tmp:
        durable = statesync_side.writes_per_s(n1, 1, data_dir=tmp)
    rows.append(("durable (process), one write per call, 1 peer", durable, "PySyncObj sync=False, 2 processes (in memory)", sobj, "/s"))

    p50, p99 = statesync_side.ack_all_latency_ms(1000, lat_s)
    sp50, sp99 = (None, None) if sobj_skip else pysyncobj_kv.sync_latency_ms(1000, lat_s)
    rows.append(('ack="all" p50, 3 processes, 1k writes/s', p50, "PySyncObj sync=True, no batching, p50", sp50, "ms"))
    rows.append(('ack="all" p99, 3 processes, 1k writes/s', p99, "PySyncObj sync=True, no batching, p99", sp99, "ms"))

    cl = statesync_side.client_set_rtt_us(2_000 if args.quick else 10_000)
    rq = statesync_side.ports_request_rtt_us(2_000 if args.quick else 10_000)
    rows.append(("Client.set round trip p50, tcp", cl, "ports request() round trip p50, tcp", rq, "us"))

    print("| statesync | figure | peer | figure | ratio (statesync / peer; for times, peer / statesync) |")
    print("|---|---|---|---|---|")
    for what, mine, peer, theirs, unit in rows:
        if theirs is None:
            print(f"| {what} | {mine:,.2f} {unit} | {peer} | skipped | |")
            continue
        ratio = mine / theirs if unit == "/s" else theirs / mine
        print(f"| {what} | {mine:,.2f} {unit} | {peer} | {theirs:,.2f} {unit} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
