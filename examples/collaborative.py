"""Collaborative state: two processes edit one shared to-do list, text and counter at the same time.

    python examples/collaborative.py
    python examples/collaborative.py --json

It starts two nodes and creates, on the first, the shared values (each is
created once, then edited from everywhere; see docs/types.md):

- ``todo``        a list with move: ``["milk", "eggs", "bread"]``;
- ``doc.title``   a text: ``"Shopping"``;
- ``likes``       a counter: 0;
- ``plain.todo``  the same list as a plain value, for comparison.

The link between the nodes is cut (fault injection) so that the edits are
truly concurrent; then two editor processes, one per node, each

- append an item to ``todo`` and move another one (Ada moves bread to the
  front, Bob moves milk to the end),
- type a few words at the end of ``doc.title`` (the same position),
- add 1 to ``likes``,
- and read-modify-write ``plain.todo`` with their item, as an application
  without the list type would.

The link is healed and the nodes exchange what they missed. Every typed edit
survives on both nodes: both appends, both moves (each item once), both runs
of typing (never interleaved character by character), the sum of the adds.
The plain list keeps only one of the appends (last-write-wins on ``plain``).

:func:`merge_lists` is the custom-resolver example of the README: a union of
concurrent plain lists (``--strategy carts=examples/collaborative.py:merge_lists``).
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

START = ["milk", "eggs", "bread"]
TITLE = "Shopping"
# editor: (item it appends, the move it makes (src, dst), what it types at the end of the title)
EDITS = {"Ada": ("tea", (2, 0), " for Ada"), "Bob": ("jam", (0, 2), " and Bob")}


def merge_lists(path: TreePath, versions: tuple[Version, ...]) -> Value:
    """A custom resolver: the union of the concurrent lists, in a deterministic order.

    statesync calls it with the concurrent versions in canonical order
    (ascending hybrid timestamp, node id, seq), so walking them in that order
    gives every node the same answer. A union cannot express a concurrent
    removal (an item removed on one side and kept on the other comes back):
    for lists that people edit, use the list type (``client.list(path)``).
    """
    merged: list[Value] = []
    for version in versions:
        value = version.value
        for item in value if isinstance(value, list) else [value]:
            if item not in merged:
                merged.append(item)
    return merged


def editor(endpoint: str, who: str) -> int:
    """One person's edits, through the typed API (what a UI would do)."""
    item, (src, dst), words = EDITS[who]
    with Client(endpoint) as client:
        todo = client.list("todo")
        todo.append(item)
        todo.move(src, dst)
        title = client.text("doc.title")
        title.insert(len(title.value()), words)
        client.counter("likes").add(1)
        current = client.get("plain.todo", [])
        client.set("plain.todo", [*current, item])  # a plain list: read, change, write back
    print(json.dumps({"who": who, "done": True}), flush=True)
    return 0


def run(as_json: bool) -> int:
    check_resolver(merge_lists)  # the conformance check every custom resolver should pass
    here = os.path.abspath(__file__)
    fast = {"sync_interval_s": 0.3, "heartbeat_interval_s": 0.25, "heartbeat_timeout_s": 2.0, "reconnect_max_s": 0.5}
    with LocalCluster(2, strategy=["vector-clock", "plain=last-write-wins"], options=fast) as cluster:
        one, two = cluster.client(0), cluster.client(1)
        a, b = cluster.names
        one.list("todo").append(*START)  # create each shared value once
        one.text("doc.title").insert(0, TITLE)
        one.counter("likes").add(0)
        one.set("plain.todo", START)
        wait_until(lambda: two.snapshot() == one.snapshot(), 20.0, "the shared values on both nodes")

        one.cut(b)
        two.cut(a)
        editors = [
            subprocess.Popen([sys.executable, here, "edit", cluster.client_endpoints[name], who], stdout=subprocess.PIPE, text=True)
            for name, who in zip((a, b), EDITS, strict=True)
        ]
        for p in editors:
            out, _ = p.communicate(timeout=60)
            if p.returncode != 0 or not json.loads(out)["done"]:
                raise SystemExit(f"an editor failed: {out}")
        while_cut = {a: one.snapshot(), b: two.snapshot()}
        one.heal()
        two.heal()
        one.sync()
        two.sync()
        wait_until(lambda: one.snapshot() == two.snapshot(), 20.0, "the nodes to converge")
        after = {a: one.snapshot(), b: two.snapshot()}
    report: dict[str, Any] = {"while_cut": while_cut, "after": after}
    if as_json:
        print(json.dumps(report))
        return 0
    print(f"Ada (on {a}) and Bob (on {b}) edited {START}, {TITLE!r} and a counter while the nodes were cut off")
    for name in (a, b):
        s = while_cut[name]
        print(f"  while cut, {name} reads: todo {s['todo']}, title {s['doc']['title']!r}, likes {s['likes']}")
    s = after[a]
    print("after sync, both nodes read:")
    print(f"  todo        {s['todo']}   (both appends and both moves, each item once)")
    print(f"  doc.title   {s['doc']['title']!r}   (both runs of typing, not interleaved)")
    print(f"  likes       {s['likes']}   (concurrent adds sum)")
    print(f"  plain.todo  {s['plain']['todo']}   (a plain list: one read-modify-write is lost)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    e = sub.add_parser("edit", help=argparse.SUPPRESS)
    e.add_argument("endpoint")
    e.add_argument("who", choices=sorted(EDITS))
    parser.add_argument("--json", action="store_true", help="print what happened as JSON")
    args = parser.parse_args(argv)
    if args.role == "edit":
        return editor(args.endpoint, args.who)
    return run(args.json)


if __name__ == "__main__":
    sys.exit(main())
