"""Collaborative state: two processes edit one shared list at the same time, under each strategy.

    python examples/collaborative.py
    python examples/collaborative.py --json

It starts two nodes whose strategy differs by subtree (one node configuration
can mix them):

- ``vc.*``      vector-clock: concurrent versions are kept as siblings; reads
                show one (the highest hybrid timestamp) and ``conflicts()``
                lists all; the application merges them and writes the result;
- ``lww.*``     last-write-wins: the later write wins, the other is dropped;
- ``custom.*``  a custom resolver, :func:`merge_lists` below: reads return the
                union of the concurrent lists (loaded by the nodes from this
                file: ``--strategy custom=examples/collaborative.py:merge_lists``).

Both nodes start with ``["milk"]`` in each list. The link between them is cut
(fault injection) so that the two edits are truly concurrent; then two editor
processes, one per node, each read the list and append their item, on every
list. The link is healed, the nodes exchange what they missed, and the
example shows what each strategy made of the race.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from statesync.cli.cluster import LocalCluster, wait_until
from statesync.client import Client
from statesync.core import Path as TreePath
from statesync.core import Value, Version
from statesync.testing import check_resolver

START = ["milk"]
ITEMS = ("eggs", "bread")
STRATEGIES = ("vc", "lww", "custom")


def merge_lists(path: TreePath, versions: tuple[Version, ...]) -> Value:
    """A custom resolver: the union of the concurrent lists, in a deterministic order.

    statesync calls it with the concurrent versions in canonical order
    (ascending hybrid timestamp, node id, seq), so walking them in that order
    gives every node the same answer. A union cannot express a concurrent
    removal (an item removed on one side and kept on the other comes back):
    good for a shopping list, not for everything.
    """
    merged: list[Value] = []
    for version in versions:
        value = version.value
        for item in value if isinstance(value, list) else [value]:
            if item not in merged:
                merged.append(item)
    return merged


def editor(endpoint: str, item: str) -> int:
    """Read each list, append ``item``, write it back (what a UI would do)."""
    with Client(endpoint) as client:
        for prefix in STRATEGIES:
            current = client.get(f"{prefix}.list", [])
            client.set(f"{prefix}.list", [*current, item])
    print(json.dumps({"item": item, "done": True}), flush=True)
    return 0


def run(as_json: bool) -> int:
    check_resolver(merge_lists)  # the conformance check every custom resolver should pass
    here = os.path.abspath(__file__)
    strategy = ["vector-clock", "vc=vector-clock", "lww=last-write-wins", f"custom={here}:merge_lists"]
    fast = {"sync_interval_s": 0.3, "heartbeat_interval_s": 0.25, "heartbeat_timeout_s": 2.0, "reconnect_max_s": 0.5}
    report: dict[str, Any] = {}
    with LocalCluster(2, strategy=strategy, options=fast) as cluster:
        one, two = cluster.client(0), cluster.client(1)
        a, b = cluster.names
        for prefix in STRATEGIES:
            one.set(f"{prefix}.list", START)
        wait_until(lambda: all(two.get(f"{p}.list") == START for p in STRATEGIES), 20.0, "the lists on both nodes")

        one.cut(b)
        two.cut(a)
        editors = [
            subprocess.Popen([sys.executable, here, "edit", cluster.client_endpoints[name], item], stdout=subprocess.PIPE, text=True)
            for name, item in zip((a, b), ITEMS, strict=True)
        ]
        for p in editors:
            out, _ = p.communicate(timeout=60)
            if p.returncode != 0 or not json.loads(out)["done"]:
                raise SystemExit(f"an editor failed: {out}")
        before = {p: (one.get(f"{p}.list"), two.get(f"{p}.list")) for p in STRATEGIES}
        one.heal()
        two.heal()
        one.sync()
        two.sync()
        wait_until(lambda: one.snapshot() == two.snapshot() and len(one.conflicts("vc.list")) == 2, 20.0, "the nodes to converge")

        for prefix in STRATEGIES:
            key = f"{prefix}.list"
            report[prefix] = {
                "while_cut": {a: before[prefix][0], b: before[prefix][1]},
                "after": {a: one.get(key), b: two.get(key)},
                "siblings": sorted((v.value for v in two.conflicts(key)), key=str),
            }
        # vector-clock: the application merges the siblings it is shown, and writes the merge.
        siblings = [v.value for v in two.conflicts("vc.list")]
        merged = _union(siblings)
        two.set("vc.list", merged)
        wait_until(lambda: one.get("vc.list") == merged and not one.conflicts("vc.list"), 20.0, "the merge to reach both nodes")
        report["vc"]["resolved"] = one.get("vc.list")

    if as_json:
        print(json.dumps(report))
        return 0
    print(f"two editors appended {ITEMS[0]!r} (on {a}) and {ITEMS[1]!r} (on {b}) to {START} while the nodes were cut off")
    for prefix, title in (("vc", "vector-clock"), ("lww", "last-write-wins"), ("custom", "custom (merge_lists)")):
        r = report[prefix]
        print(f"\n{title}: {prefix}.list")
        print(f"  while cut:   {a} reads {r['while_cut'][a]}, {b} reads {r['while_cut'][b]}")
        print(f"  after sync:  both read {r['after'][a]}")
        print(f"  conflicts(): {r['siblings'] or 'none'}")
        if prefix == "vc":
            print(f"  the application merged the siblings and wrote {r['resolved']}: one version left, on both nodes")
        elif prefix == "lww":
            print("  one edit is lost: the later write won, by hybrid timestamp")
        else:
            print("  reads return the union of both edits on every node; nothing is lost")
    return 0


def _union(lists: list[Any]) -> list[Any]:
    merged: list[Any] = []
    for value in sorted(lists, key=str):  # any deterministic order will do here
        for item in value if isinstance(value, list) else [value]:
            if item not in merged:
                merged.append(item)
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    e = sub.add_parser("edit", help=argparse.SUPPRESS)
    e.add_argument("endpoint")
    e.add_argument("item")
    parser.add_argument("--json", action="store_true", help="print what happened as JSON")
    args = parser.parse_args(argv)
    if args.role == "edit":
        return editor(args.endpoint, args.item)
    return run(args.json)


if __name__ == "__main__":
    sys.exit(main())
