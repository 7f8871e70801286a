"""Two terminals edit one shared text and see each other's edits as they happen.

    python examples/editor.py                     # start two nodes; it prints the two editor commands
    python examples/editor.py --node ENDPOINT     # one editor (run two, one per node)
    python examples/editor.py --demo [--json]     # two scripted editors, what the test runs

An editor shows the text at ``--path`` (default ``doc.body``, a text value:
docs/types.md) and reads commands, one per line:

    a TEXT        append TEXT
    i POS TEXT    insert TEXT at code point POS
    d POS N       delete N code points from POS
    p             print the text
    q             quit (so does end of input)

It keeps its copy of the text up to date from a watch: every change of a text
comes with its delta (``{"retain": 5}, {"insert": " world"}``), which the
editor applies to its copy (``statesync.node.apply_delta``) without diffing,
and shows the edits made elsewhere as they arrive.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import subprocess
import sys
import threading
from typing import IO, Any

from statesync.cli.cluster import LocalCluster
from statesync.client import Client, WatchEvent
from statesync.errors import StatesyncError
from statesync.node import apply_delta

PATH = "doc.body"
WAIT_S = 20.0


def describe(delta: list[dict[str, Any]]) -> str:
    """A delta in words: ``insert ' world' at 5``."""
    pos, words = 0, []
    for op in delta:
        if "retain" in op:
            pos += op["retain"]
        elif "delete" in op:
            words.append(f"delete {op['delete']} at {pos}")
        else:
            words.append(f"insert {op['insert']!r} at {pos}")
            pos += len(op["insert"])
    return ", ".join(words) or "no change"


class Editor:
    """One person's view of the text, kept current by a watch, and their commands."""

    def __init__(self, client: Client, path: str, as_json: bool) -> None:
        self.client = client
        self.path = path
        self.as_json = as_json
        self.me = client.node_id
        self.lock = threading.Lock()
        self.watch = client.watch(path)
        initial = self.watch.initial
        self.text: str = initial if isinstance(initial, str) else ""
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def say(self, event: str, **fields: Any) -> None:
        if self.as_json:
            print(json.dumps({"event": event, **fields}), flush=True)
        elif event == "remote":
            print(f"  [{fields['origin']}] {describe(fields['delta'])}\n  | {fields['text']}", flush=True)
        elif event == "error":
            print(f"  error: {fields['error']}", flush=True)
        else:
            print(f"  | {fields['text']}", flush=True)

    def _follow(self) -> None:
        for event in self.watch:
            self._apply(event)

    def _apply(self, event: WatchEvent) -> None:
        with self.lock:
            if event.delta is not None:  # the edit, against the text as it was: this copy
                self.text = str(apply_delta(self.text, event.delta))
            else:  # a lagged event, or a plain write over the text: take the whole value
                self.text = event.value if isinstance(event.value, str) else ""
            text = self.text
        if event.origin and event.origin != self.me:
            self.say("remote", origin=event.origin, delta=event.delta or [], text=text)
        elif self.as_json:
            self.say("local", text=text)  # this editor's own edit, back from the watch

    def command(self, line: str) -> bool:
        """Carry out one command line; False to quit."""
        doc = self.client.text(self.path)
        op, _, rest = line.rstrip("\n").partition(" ")
        try:
            if op == "a":
                doc.append(rest)  # at the end as the node sees it
            elif op == "i":
                pos, _, s = rest.partition(" ")
                doc.insert(int(pos), s)
            elif op == "d":
                pos, n = rest.split()
                doc.delete(int(pos), int(n))
            elif op == "p":
                with self.lock:
                    self.say("text", text=self.text)
            elif op in ("q", ""):
                return op != "q"
            else:
                self.say("error", error=f"unknown command {op!r}: use a, i, d, p or q")
        except (StatesyncError, ValueError) as exc:
            self.say("error", error=str(exc))
        return True

    def close(self) -> str:
        self.watch.close()
        with self.lock:
            return self.text


def edit(endpoint: str, path: str, as_json: bool, lines: IO[str]) -> int:
    with Client(endpoint, timeout_s=10) as client:
        editor = Editor(client, path, as_json)
        if as_json:
            editor.say("ready", text=editor.text)  # watching: every later edit will show
        else:
            print(f"editing {path} on node {editor.me}: a TEXT, i POS TEXT, d POS N, p, q", flush=True)
            editor.say("text", text=editor.text)
        for line in lines:
            if not editor.command(line):
                break
        editor.say("bye", text=editor.close())
    return 0


class Process:
    """A scripted editor process: its stdin, and its stdout's JSON lines as they come."""

    def __init__(self, endpoint: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--node", endpoint, "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen: list[dict[str, Any]] = []

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, text: str | None = None) -> dict[str, Any]:
        """The next message ``event`` (with ``text``, when given), waiting at most WAIT_S.

        ``"shows"``: any message whose text is ``text`` (after a remote or its own edit).
        """
        while True:
            try:
                msg = self.lines.get(timeout=WAIT_S)
            except queue.Empty:
                raise SystemExit(f"no {event} {text!r} from an editor within {WAIT_S:g} s; it said {self.seen[-3:]}") from None
            if msg is None:
                raise SystemExit(f"an editor ended while waiting for {event} {text!r}")
            self.seen.append(msg)
            if (msg["event"] == event or event == "shows") and (text is None or msg["text"] == text):
                return msg


def demo(as_json: bool) -> int:
    """Two scripted editors on two nodes: each sees the other's edits, and they end on one text."""
    fast = {"sync_interval_s": 0.3, "heartbeat_interval_s": 0.25, "heartbeat_timeout_s": 2.0, "reconnect_max_s": 0.5}
    with LocalCluster(2, options=fast) as cluster:
        one = cluster.client(0)
        one.text(PATH).insert(0, "Hello", ack="all")  # create the text once, on both nodes
        ada, bob = (Process(cluster.client_endpoints[name]) for name in cluster.names)
        for p in (ada, bob):
            p.expect("ready", "Hello")
        ada.type("a ,")
        bob.expect("remote", "Hello,")
        bob.type("a  world")
        ada.expect("remote", "Hello, world")
        ada.type("i 0 >> ")  # concurrently: both type at once
        bob.type("a !")
        final = ">> Hello, world!"
        ada.expect("shows", final)  # the other's edit may come before or after its own
        bob.expect("shows", final)
        bob.type("d 0 3")
        bob.expect("shows", "Hello, world!")
        ada.expect("remote", "Hello, world!")
        for p in (ada, bob):
            p.type("q")
        ends = [p.expect("bye")["text"] for p in (ada, bob)]
        for p in (ada, bob):
            p.proc.wait(timeout=WAIT_S)
        report = {
            "ada": ends[0],
            "bob": ends[1],
            "node": one.get(PATH),
            "ada_saw": [m["delta"] for m in ada.seen if m["event"] == "remote"],
            "bob_saw": [m["delta"] for m in bob.seen if m["event"] == "remote"],
        }
    lines = [
        json.dumps(report)
        if as_json
        else f"Ada saw Bob's edits as deltas: {report['ada_saw']}\nBob saw Ada's edits as deltas: {report['bob_saw']}\n"
        f"both end with {report['ada']!r}"
    ]
    print(*lines)
    return 0


def launch() -> int:
    with LocalCluster(2) as cluster:
        cluster.client(0).text(PATH).insert(0, "Hello", ack="all")
        print("two nodes are running; in two other terminals run:")
        for name in cluster.names:
            print(f"  {sys.executable} {__file__} --node {cluster.client_endpoints[name]}")
        print("Ctrl-C stops the nodes")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", metavar="ENDPOINT", help="edit through this node (its client endpoint)")
    parser.add_argument("--path", default=PATH, help=f"the text's path (default {PATH})")
    parser.add_argument("--demo", action="store_true", help="run two scripted editors on two nodes")
    parser.add_argument("--json", action="store_true", help="print JSON lines (an editor) or the report (--demo)")
    args = parser.parse_args(argv)
    if args.demo:
        return demo(args.json)
    if args.node:
        return edit(args.node, args.path, args.json, sys.stdin)
    return launch()


if __name__ == "__main__":
    sys.exit(main())
