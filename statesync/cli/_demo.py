"""``statesync demo``: the nodes/ cluster, start to finish, narrated.

It launches every node of the folder (default ``nodes/``; where there is none,
as in a folder outside a checkout, the built-in three-node cluster that
``statesync init`` writes, in a temporary folder) with the launcher's
supervisor, on the ports their TOML files give but with a fresh temporary data
folder; writes on the first node and shows the writes arriving on the others;
makes two nodes write the same key while isolated from each other and shows
the conflict and its resolution; kills the third node with SIGKILL, writes
meanwhile, restarts it and shows it catch up; prints the converged status;
stops every node and removes the data. Exit code 0 when all of that happened.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from statesync.cli import _init
from statesync.cli._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from statesync.cli._launch import NodeSpec, Supervisor, load_folder, node_command
from statesync.cli._output import paint, render_status, to_json
from statesync.client import Client, Watch
from statesync.core import StatesyncError
from statesync.node._service import client_endpoint

ITEMS = 500
"""Writes made while one node is down."""


class DemoError(StatesyncError):
    """The demo cannot run, or a step did not turn out as it should."""


@attrs.frozen
class DemoNode:
    name: str
    file: Path
    listen: tuple[str, ...]
    client: str


def _tcp_port(endpoint: str) -> tuple[str, int] | None:
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return None
    return (host.strip("[]") or "127.0.0.1", int(port))


def plan(specs: list[NodeSpec], data_root: Path) -> list[DemoNode]:
    if len(specs) < 3:
        raise UsageError(f"the demo needs three nodes; {specs[0].config.parent if specs and specs[0].config else 'the folder'} defines {len(specs)}")
    nodes = []
    for spec in specs:
        listen = spec.data.get("listen", [])
        listen = (listen,) if isinstance(listen, str) else tuple(listen)
        client = client_endpoint(spec.name, str(data_root / spec.name), str(spec.data.get("client", "auto")))
        if client is None:
            raise UsageError(f"{spec.config} sets client = 'none'; the demo talks to every node through its client endpoint")
        assert spec.config is not None
        nodes.append(DemoNode(spec.name, spec.config, listen, client))
    return nodes


def check_ports(nodes: list[DemoNode]) -> None:
    """Refuse clearly when a fixed port of the cluster is taken."""
    for node in nodes:
        for what, endpoint in [*(("listen", e) for e in node.listen), ("client", node.client)]:
            hp = _tcp_port(endpoint)
            if hp is None:
                continue
            host, port = hp
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ does
                try:
                    s.bind((host, port))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise DemoError(f"cannot use {endpoint} ({what} endpoint of node {node.name}, {node.file}): {exc.strerror}") from exc
                    raise DemoError(
                        f"port {port} ({what} endpoint of node {node.name}, {node.file}) is in use: is a `statesync launch` "
                        f"or another demo running? Stop it, or change the ports in {node.file.parent}/*.toml"
                    ) from exc


DEFAULT_FOLDER = Path("nodes")


def run(folder: Path | None, *, verbose: bool = False, color: bool = False) -> int:
    """Run the demo on ``folder``; None means ``nodes/`` if it exists, else the built-in cluster."""
    data_root = Path(tempfile.mkdtemp(prefix="statesync-demo-"))
    try:
        if folder is None and not DEFAULT_FOLDER.is_dir():
            folder = data_root / "nodes"
            listen, client, documented = _init.demo_ports()
            _init.write_cluster(folder, listen, client)
            where = "its documented ports" if documented else "free ports (the documented 7101-7103/7111-7113 are taken)"
            print(f"no nodes/ folder here: running the built-in three-node cluster on {where}", flush=True)
        specs = load_folder(folder or DEFAULT_FOLDER)
        nodes = plan(specs, data_root)
        check_ports(nodes)
        for spec in specs:
            assert spec.config is not None
            spec.argv = node_command(spec.config.resolve(), ["--data-dir", str(data_root / spec.name)])
        return trio.run(_main, specs, nodes, data_root, verbose, color)
    finally:
        shutil.rmtree(data_root, ignore_errors=True)


async def _main(specs: list[NodeSpec], nodes: list[DemoNode], data_root: Path, verbose: bool, color: bool) -> int:
    sup = Supervisor(specs, echo=verbose, color=color, log_dir=data_root / "logs")
    story = Story(nodes, _Control(sup), color)
    result = EXIT_FAILED
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            script = trio.CancelScope()
            interrupted = False

            async def on_signal() -> None:
                nonlocal interrupted
                async for _ in signals:
                    interrupted = True
                    script.cancel()
                    return

            nursery.start_soon(on_signal)
            try:
                with script:
                    result = await trio.to_thread.run_sync(story.run, abandon_on_cancel=True)
            finally:
                with trio.CancelScope(shield=True):
                    story.close_clients_soon()
                    await sup.stop()
                nursery.cancel_scope.cancel()
    if interrupted:
        story.say("interrupted: every node was stopped")
        return EXIT_INTERRUPTED
    if result == EXIT_OK:
        story.say("all nodes stopped (each flushed its log and said BYE to its peers); the demo's data is removed")
        story.say(paint("demo finished", "1;32", color))
    else:
        for node in nodes:
            path = sup.log_path(node.name)
            if path is not None and path.exists():
                tail = path.read_text(errors="replace").splitlines()[-15:]
                sys.stderr.write(f"--- last lines of {node.name}'s log ---\n" + "\n".join(tail) + "\n")
    return result


class _Control:
    """The supervisor, driven from the story's thread."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def kill(self, name: str) -> None:
        trio.from_thread.run(self.sup.kill, name, signal.SIGKILL)

    def restart(self, name: str) -> None:
        trio.from_thread.run(self.sup.release, name)


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``cond`` until true; the seconds it took. DemoError after ``timeout_s``."""
    start = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - start
        except StatesyncError:
            pass
        if time.monotonic() - start > timeout_s:
            raise DemoError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


class Story:
    """The demo's steps, run in a worker thread with blocking clients."""

    def __init__(self, nodes: list[DemoNode], control: _Control, color: bool) -> None:
        self.nodes = nodes
        self.names = [n.name for n in nodes]
        self.control = control
        self.color = color
        self.clients: dict[str, Client] = {}

    # -- output

    def say(self, text: str) -> None:
        print(text, flush=True)

    def step(self, number: int, title: str) -> None:
        print(flush=True)
        self.say(paint(f"[{number}/6] {title}", "1", self.color))

    def show(self, value: Any) -> str:
        return paint(to_json(value), "36", self.color)

    def close_clients_soon(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                client.close()

    # -- the story

    def run(self) -> int:
        try:
            self._run()
        except (DemoError, StatesyncError) as exc:
            self.say(paint(f"demo failed: {exc}", "1;31", self.color))
            return EXIT_FAILED
        finally:
            for client in self.clients.values():
                client.close()
        return EXIT_OK

    def _run(self) -> None:
        nodes, names = self.nodes, self.names
        a, b, c = names[:3]
        others = names[1:]
        self.clients = {node.name: Client(node.client, timeout_s=15.0, connect_timeout_s=20.0) for node in nodes}
        cl = self.clients
        self.say(f"statesync demo: {len(nodes)} nodes from {nodes[0].file.parent}/")
        for node in nodes:
            self.say(f"  {node.name}: peers on {', '.join(node.listen)}, clients on {node.client}")

        self.step(1, "starting the cluster")
        took = wait_for(self._all_linked, 30.0, "every node to link with every other")
        self.say(f"every node is up and linked with the {len(nodes) - 1} others ({took:.1f} s)")

        self.step(2, f"writes on {a} arrive on {', '.join(others)}")
        watches = {n: cl[n].watch("demo") for n in others}
        try:
            writes: list[tuple[str, Any]] = [("demo.greeting", f"hello from {a}"), ("demo.settings", {"theme": "dark", "retries": 3})]
            for path, value in writes:
                start = time.monotonic()
                cl[a].set(path, value)
                self.say(f"{a}: set {path} = {self.show(value)}")
                leaves = len(value) if isinstance(value, dict) else 1
                for n, watch in watches.items():
                    seen = _collect(watch, leaves, 10.0)
                    self.say(f"  {n} saw it after {1000 * (seen - start):.1f} ms")
        finally:
            for watch in watches.values():
                watch.close()
        self.say(f"{b}: get demo -> {self.show(cl[b].get('demo'))}")

        self.step(3, f"a concurrent conflict: {a} and {b} write demo.color while cut off from each other")
        lww = self._lww_prefix()
        cl[a].cut(b)
        cl[b].cut(a)
        for n in others[1:]:
            cl[a].cut(n)
            cl[b].cut(n)
        self.say(f"fault injection: {a} and {b} drop each other's traffic (and the others'), so neither sees the other's write")
        ra = cl[a].set("demo.color", "red")
        rb = cl[b].set("demo.color", "blue")
        self.say(f"{a}: set demo.color = {self.show('red')}   {b}: set demo.color = {self.show('blue')}")
        if lww:
            cl[a].set(f"{lww}.color", "red")
            cl[b].set(f"{lww}.color", "blue")
            self.say(f"the same race at {lww}.color, where nodes/*.toml chose last-write-wins")
        for n in names:
            cl[n].heal()
        self.say("links healed; anti-entropy exchanges what each side missed")
        wait_for(lambda: all(len(cl[n].conflicts("demo.color")) == 2 for n in names), 20.0, "every node to hold both versions")
        versions = cl[c].conflicts("demo.color")
        shown = ", ".join(f"{self.show(v.value)} (write {v.origin}#{v.seq})" for v in versions)
        self.say(f"{c}: conflicts demo.color -> {shown}")
        reads = {n: cl[n].get("demo.color") for n in names}
        if len(set(map(str, reads.values()))) != 1:
            raise DemoError(f"the nodes read different values at demo.color: {reads}")
        self.say(
            f"vector-clock keeps both as siblings; every node reads the same one, {self.show(reads[a])} "
            "(the higher hybrid timestamp), and conflicts lists both: nothing is lost"
        )
        assert {ra.origin, rb.origin} == {a, b}
        if lww:
            wait_for(lambda: len({str(cl[n].get(f"{lww}.color")) for n in names}) == 1 and cl[c].get(f"{lww}.color") is not None, 20.0, "last-write-wins to settle")
            value = cl[c].get(f"{lww}.color")
            self.say(f"at {lww}.color (last-write-wins) every node reads {self.show(value)} and keeps no sibling: {cl[c].conflicts(f'{lww}.color')}")
        cl[c].set("demo.color", "purple")
        self.say(f"{c}: set demo.color = {self.show('purple')} (a write made after seeing both versions)")
        wait_for(
            lambda: all(cl[n].get("demo.color") == "purple" and not cl[n].conflicts("demo.color") for n in names),
            20.0,
            "the resolution to reach every node",
        )
        self.say(f"on every node: demo.color = {self.show('purple')}, no conflict left")

        self.step(4, f"{c} crashes (SIGKILL) and catches up")
        self.control.kill(c)
        self.say(f"{c} killed with SIGKILL; the launcher keeps it down for now")
        for start in range(0, ITEMS, 100):
            cl[a].set_many([(f"demo.items.i{i:03d}", i) for i in range(start, min(ITEMS, start + 100))])
        self.say(f"{a}: {ITEMS} writes (demo.items.*) while {c} is down")
        wait_for(lambda: not cl[a].status()["peers"].get(c, {}).get("connected", False), 15.0, f"{a} to notice that {c} is gone")
        peer = cl[a].status()["peers"][c]
        self.say(f"{a} sees {c}: link down, {peer['they_lack_ops']:,} ops it lacks")
        target = cl[a].status()["vv"]
        start = time.monotonic()
        self.control.restart(c)
        self.say(f"{c} restarted (same data folder)")
        wait_for(lambda: _covers(cl[c].status()["vv"], target), 30.0, f"{c} to catch up")
        took = time.monotonic() - start
        got = cl[c].get("demo.items", {})
        if len(got) != ITEMS:
            raise DemoError(f"{c} holds {len(got)} of the {ITEMS} items after catching up")
        self.say(f"{c} recovered its log from disk and caught up the {ITEMS} writes from its peers, {took:.1f} s after its restart")

        self.step(5, "converged")
        wait_for(self._all_linked, 20.0, "every node to link with every other again")
        for n in names:
            cl[n].sync(timeout_s=5.0)
        wait_for(self._converged, 20.0, "every node to hold the same tree")
        tree = cl[a].snapshot()
        vv = cl[a].status()["vv"]
        self.say(
            f"all {len(names)} nodes hold the same tree ({_leaves(tree)} leaves) and the same version vector "
            f"{' '.join(f'{k}:{v}' for k, v in sorted(vv.items()))}"
        )
        self.say(f"statesync status --node {nodes[0].client}:")
        self.say(render_status(cl[a].status(), color=self.color))

        self.step(6, "stopping the cluster")

    # -- checks

    def _all_linked(self) -> bool:
        count = len(self.names) - 1
        for client in self.clients.values():
            peers = client.status()["peers"]
            if sum(1 for p in peers.values() if p["connected"]) < count:
                return False
        return True

    def _lww_prefix(self) -> str | None:
        strategy = self.clients[self.names[0]].status().get("config", {}).get("strategy", {})
        for prefix, name in strategy.items():
            if prefix and name == "last-write-wins":
                return str(prefix)
        return None

    def _converged(self) -> bool:
        statuses = [self.clients[n].status() for n in self.names]
        if any(s["vv"] != statuses[0]["vv"] or s["causal_buffer_ops"] for s in statuses):
            return False
        trees = [to_json(self.clients[n].snapshot()) for n in self.names]
        return len(set(trees)) == 1


def _collect(watch: Watch, count: int, timeout_s: float) -> float:
    """Wait for ``count`` put events; the monotonic time the last one arrived."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while seen < count:
        event = watch.get(timeout=max(0.0, deadline - time.monotonic()))
        if event is None:
            raise DemoError(f"a write did not arrive on a watching node within {timeout_s:g} s")
        if event.kind == "put":
            seen += 1
    return time.monotonic()


def _covers(vv: dict[str, int], target: dict[str, int]) -> bool:
    return all(vv.get(k, 0) >= v for k, v in target.items())


def _leaves(tree: Any) -> int:
    if isinstance(tree, dict) and tree:
        return sum(_leaves(v) for v in tree.values())
    return 1
