"""The CLI as real processes: `statesync node` stops cleanly on signals, `statesync watch`
streams and stops on Ctrl-C, `statesync launch` supervises (restart, clean stop, no orphan)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from statesync.client import Client
from tests.client.nodes import NodeThread, short_socket
from tests.support import FAST_ARGS, wait_until

pytestmark = pytest.mark.process

CLI = [sys.executable, "-m", "statesync.cli"]


class Proc:
    """A CLI process whose output lines are collected by a thread."""

    def __init__(self, argv: list[str], **kw: object) -> None:
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, **kw)  # type: ignore[call-overload]
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            code = self.p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(10)
            raise AssertionError(f"the process did not stop on {signal.Signals(sig).name}:\n{self.output()}") from None
        self._thread.join(5)
        return code


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.p.poll() is None:
            proc.p.kill()
            proc.p.wait(10)


def children_of(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_node_stops_cleanly_on_a_signal_and_keeps_its_data(sig: int, tmp_path: Path, procs: list[Proc]) -> None:
    endpoint = short_socket("p")
    argv = [*CLI, "node", "--id", "p", "--listen", "tcp://127.0.0.1:0", "--data-dir", str(tmp_path / "p"), "--client", endpoint, *FAST_ARGS]
    node = Proc(argv)
    procs.append(node)
    with Client(endpoint, connect_timeout_s=20) as client:
        client.set("kept", {"x": 1})
    wait_until(lambda: node.saw("p: up;"), what="the up line")
    assert node.stop(sig) == 0
    out = node.output()
    assert f"p: {signal.Signals(sig).name}: stopping" in out and "p: stopped" in out
    assert "Traceback" not in out
    again = Proc(argv)
    procs.append(again)
    with Client(endpoint, connect_timeout_s=20) as client:
        assert client.get("kept") == {"x": 1}
    assert again.stop() == 0


def test_a_port_in_use_is_one_line_and_exit_1(procs: list[Proc]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        node = Proc([*CLI, "node", "--id", "x", "--listen", f"tcp://127.0.0.1:{port}", "--client", "none"])
        procs.append(node)
        assert node.p.wait(30) == 1
    node._thread.join(5)
    assert len(node.lines) == 1, node.lines
    assert node.lines[0].startswith(f"statesync: error: cannot listen on tcp://127.0.0.1:{port}: Address already in use")


def test_watch_streams_until_ctrl_c(procs: list[Proc]) -> None:
    nodes = NodeThread([{"node_id": "w"}])
    try:
        watch = Proc([*CLI, "watch", "flags", "--json", "--node", nodes.endpoints[0]])
        procs.append(watch)
        wait_until(lambda: watch.saw("watching flags on"), what="the watch to start")
        with Client(nodes.endpoints[0]) as client:
            client.set("flags.beta", True)
            client.delete("flags.beta")
        wait_until(lambda: sum(line.startswith("{") for line in watch.lines) == 2, what="two events")
        assert watch.stop(signal.SIGINT) == 0
        events = [line for line in watch.lines if line.startswith("{")]
        assert '"kind": "put", "path": "flags.beta", "value": true' in events[0]
        assert '"kind": "delete", "path": "flags.beta"' in events[1]
    finally:
        nodes.stop()


def write_cluster(folder: Path, names: list[str], extra: str = "") -> dict[str, str]:
    """Node files using ipc endpoints under a short folder: no ports to collide."""
    peer = {n: short_socket(f"{n}-peer") for n in names}
    clients = {n: short_socket(n) for n in names}
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        peers = ", ".join(f'"{peer[m]}"' for m in names if m != n)
        (folder / f"{n}.toml").write_text(
            f'node_id = "{n}"\nlisten = "{peer[n]}"\npeers = [{peers}]\nclient = "{clients[n]}"\ndata_dir = "data/{n}"\n'
            "heartbeat_interval_s = 0.2\nheartbeat_timeout_s = 1.5\nreconnect_max_s = 0.3\n" + extra
        )
    return clients


def test_launch_restarts_a_crashed_node_and_stops_all_on_ctrl_c(tmp_path: Path, procs: list[Proc]) -> None:
    clients = write_cluster(tmp_path / "nodes", ["a", "b"])
    launcher = Proc([*CLI, "launch", str(tmp_path / "nodes"), "--color", "never"])
    procs.append(launcher)
    for endpoint in clients.values():
        with Client(endpoint, connect_timeout_s=30) as client:
            client.ping()
    wait_until(lambda: len(children_of(launcher.p.pid)) == 2, what="two children")
    kids = children_of(launcher.p.pid)
    with Client(clients["b"], connect_timeout_s=30) as client:
        victim = next(pid for pid in kids if "b.toml" in Path(f"/proc/{pid}/cmdline").read_text())
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: launcher.saw("b exited with signal SIGKILL"), what="the crash to be noticed")
        assert client.ping()["node_id"] == "b"  # restarted (the client reconnects on its own)
    new_kids = children_of(launcher.p.pid)
    assert len(new_kids) == 2 and victim not in new_kids
    assert any(line.startswith("a | ") and "a: up;" in line for line in launcher.lines)  # prefixed lines
    assert launcher.stop(signal.SIGINT) == 0
    assert launcher.saw("SIGINT: stopping a, b") and launcher.saw("all nodes stopped")
    assert launcher.saw("a | ") and launcher.saw("a: stopped") and launcher.saw("b: stopped")
    assert not any(alive(pid) for pid in new_kids)


def test_no_node_outlives_a_killed_launcher(tmp_path: Path, procs: list[Proc]) -> None:
    clients = write_cluster(tmp_path / "nodes", ["a", "b"])
    launcher = Proc([*CLI, "launch", str(tmp_path / "nodes")])
    procs.append(launcher)
    for endpoint in clients.values():
        with Client(endpoint, connect_timeout_s=30) as client:
            client.ping()
    kids = children_of(launcher.p.pid)
    assert len(kids) == 2
    launcher.stop(signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in kids), timeout_s=20, what="the children to die with the launcher")


def test_launch_gives_up_on_a_misconfigured_node(tmp_path: Path, procs: list[Proc]) -> None:
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "bad.toml").write_text('node_id = "bad"\nsync_interval_s = -1\nclient = "none"\n')
    launcher = Proc([*CLI, "launch", str(tmp_path / "nodes"), "--color", "never"])
    procs.append(launcher)
    assert launcher.p.wait(30) == 1
    launcher._thread.join(5)
    assert launcher.saw("bad | statesync: error:") and launcher.saw("sync_interval_s = -1 must be a positive number")
    assert launcher.saw("not restarting it")
