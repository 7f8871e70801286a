"""Real node processes on loopback: crashes, outages, write concerns, fault injection.

Each node runs ``tests/node/harness.py`` (a node driven by JSON lines on
stdin). Every process ends by itself when its stdin closes, and is killed in
teardown if it did not.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import FAST, wait_until

pytestmark = pytest.mark.process

HARNESS = str(Path(__file__).with_name("harness.py"))


class Proc:
    """One node process and a line-oriented JSON conversation with it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        self.p = subprocess.Popen(
            [sys.executable, HARNESS, json.dumps({"config": config, "lifetime_s": 240})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self.replies: dict[str, queue.Queue[dict[str, Any]]] = {}
        self.acked: list[tuple[str, int]] = []
        self._ready: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            ready = self._ready.get(timeout=30)
        except queue.Empty:
            self.kill()
            raise RuntimeError(f"node {config['node_id']} did not start") from None
        self.endpoints: list[str] = ready["endpoints"]

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            msg = json.loads(line)
            if msg.get("ready"):
                self._ready.put(msg)
            elif "acked" in msg:
                with self._lock:
                    self.acked.append(tuple(msg["acked"]))  # type: ignore[arg-type]
            else:
                self._queue(msg.get("tag")).put(msg)

    def _queue(self, tag: str | None) -> queue.Queue[dict[str, Any]]:
        with self._lock:
            return self.replies.setdefault(str(tag), queue.Queue())

    def send(self, cmd: dict[str, Any]) -> str:
        tag = uuid.uuid4().hex
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps({**cmd, "tag": tag}) + "\n")
        self.p.stdin.flush()
        return tag

    def wait(self, tag: str, timeout: float = 30) -> dict[str, Any]:
        return self._queue(tag).get(timeout=timeout)

    def call(self, timeout: float = 30, **cmd: Any) -> dict[str, Any]:
        return self.wait(self.send(cmd), timeout)

    def state(self) -> dict[str, Any]:
        return self.call(cmd="state")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            if sig == signal.SIGKILL:
                self.p.wait(timeout=10)

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                assert self.p.stdin is not None
                self.p.stdin.close()
                self.p.wait(timeout=15)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.p.kill()
                self.p.wait(timeout=10)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.close()


def start(procs: list[Proc], node_id: str, peers: list[str], **extra: Any) -> Proc:
    p = Proc({"node_id": node_id, "peers": peers, **FAST, **extra})
    procs.append(p)
    return p


def trio_of(procs: list[Proc], tmp: Path | None = None, **extra: Any) -> tuple[Proc, Proc, Proc]:
    dirs = {n: (str(tmp / n) if tmp else None) for n in "abc"}
    a = start(procs, "a", [], data_dir=dirs["a"], **extra)
    b = start(procs, "b", a.endpoints, data_dir=dirs["b"], **extra)
    c = start(procs, "c", a.endpoints + b.endpoints, data_dir=dirs["c"], **extra)
    for p in (a, b, c):
        wait_until(lambda p=p: len(p.state()["connected"]) == 2, what=f"{p.config['node_id']} linked to both")
    return a, b, c


def converged(nodes: list[Proc]) -> bool:
    states = [n.state() for n in nodes]
    return len({s["digest"] for s in states}) == 1 and all(s["pending"] == 0 for s in states)


@pytest.mark.parametrize("strategy", ["vector-clock", "last-write-wins", "custom"])
def test_three_processes_converge_after_concurrent_writes(procs: list[Proc], strategy: str) -> None:
    nodes = trio_of(procs, strategy=strategy)
    tags = []
    for i in range(40):
        for n in nodes:
            tags.append((n, n.send({"cmd": "set", "path": f"shared.k{i % 8}", "value": f"{n.config['node_id']}{i}"})))
    for n in nodes:
        tags.append((n, n.send({"cmd": "set_many", "items": [[f"own.{n.config['node_id']}.{i}", i] for i in range(50)]})))
    for n, tag in tags:
        assert n.wait(tag)["ok"]
    wait_until(lambda: converged(list(nodes)), what="convergence")
    views = [n.state()["view"] for n in nodes]
    assert views[0] == views[1] == views[2]
    assert set(views[0]["own"]) == {"a", "b", "c"}


def test_sigkilled_node_loses_no_acknowledged_write_and_catches_up(procs: list[Proc], tmp_path: Path) -> None:
    a, b, c = trio_of(procs, tmp_path)
    a.send({"cmd": "stream", "n": 100_000, "prefix": "s"})
    wait_until(lambda: len(a.acked) >= 300, what="a stream of acknowledged writes")
    a.kill(signal.SIGKILL)
    acknowledged = list(a.acked)
    assert len(acknowledged) >= 300
    b.call(cmd="set", path="while.a.was.down", value=1)
    procs.remove(a)
    a2 = start(procs, "a", b.endpoints + c.endpoints, data_dir=str(tmp_path / "a"))
    nodes = [a2, b, c]
    wait_until(lambda: converged(nodes), what="convergence after the restart")
    last = max(seq for _, seq in acknowledged)
    for n in nodes:
        st = n.state()
        assert st["vv"]["a"] >= last, f"{n.config['node_id']} lacks acknowledged writes of a"
        view = st["view"]
        missing = [i for (_, seq), i in zip(acknowledged, range(len(acknowledged)), strict=True) if str(i) not in view["s"]]
        assert not missing, f"{n.config['node_id']} lost acknowledged writes {missing[:5]}"
    assert a2.call(cmd="get", path="while.a.was.down")["value"] == 1
    # a restarted node never reuses a seq
    r = a2.call(cmd="set", path="after", value=1)
    assert r["seq"] > last


def test_node_down_during_10k_writes_catches_up_by_anti_entropy(procs: list[Proc], tmp_path: Path) -> None:
    a, b, c = trio_of(procs, tmp_path)
    c.close()
    procs.remove(c)
    for start_i in range(0, 10_000, 1000):
        assert a.call(cmd="set_many", items=[[f"bulk.k{i}", i] for i in range(start_i, start_i + 1000)])["ok"]
    c2 = start(procs, "c", a.endpoints, data_dir=str(tmp_path / "c"))
    wait_until(lambda: converged([a, b, c2]), timeout_s=60, what="c catching up")
    view = c2.state()["view"]
    assert len(view["bulk"]) == 10_000


def test_ack_all_with_a_stopped_peer_fails_naming_it_and_the_write_stays(procs: list[Proc]) -> None:
    a, b, c = trio_of(procs)
    c.kill(signal.SIGSTOP)  # still linked until its heartbeats are missed
    try:
        r = a.call(cmd="set", path="k", value=1, ack="all", timeout_s=0.5)
        assert not r["ok"] and r["type"] == "WriteConcernError"
        assert r["missing"] == ["c"] and "c" in r["error"]
        assert a.call(cmd="get", path="k")["value"] == 1
        wait_until(lambda: b.call(cmd="get", path="k")["value"] == 1, what="b has the write")
    finally:
        c.kill(signal.SIGCONT)
    wait_until(lambda: c.call(cmd="get", path="k")["value"] == 1, what="the write reaching c later")


def test_simulator_invariants_hold_on_real_processes_under_faults(procs: list[Proc]) -> None:
    faults = {"seed": 7, "drop": 0.2, "dup": 0.2, "delay_ms": [0, 20]}
    nodes = list(trio_of(procs))
    for i, n in enumerate(nodes):
        n.call(cmd="faults", faults={**faults, "seed": i})
    acknowledged: list[tuple[str, int]] = []
    vv_seen: dict[str, dict[str, int]] = {}

    def check_vectors() -> None:
        for n in nodes:
            vv = n.state()["vv"]
            before = vv_seen.get(n.config["node_id"], {})
            assert all(vv.get(k, 0) >= v for k, v in before.items()), "a version vector went backwards"
            vv_seen[n.config["node_id"]] = vv

    for round_ in range(6):
        tags = []
        for n in nodes:
            for i in range(15):
                ack = ["local", "all", 1][i % 3]
                tags.append((n, n.send({"cmd": "set", "path": f"r.k{i % 5}", "value": round_ * 100 + i, "ack": ack, "timeout_s": 2})))
            tags.append((n, n.send({"cmd": "delete", "path": f"r.k{round_ % 5}"})))
        for n, tag in tags:
            reply = n.wait(tag)
            if reply["ok"]:
                acknowledged.append((n.config["node_id"], reply["seq"]))
        check_vectors()
    for n in nodes:
        n.call(cmd="faults", faults=None)
    wait_until(lambda: converged(nodes), timeout_s=60, what="convergence after healing")
    check_vectors()
    states = [n.state() for n in nodes]
    for st in states:
        for origin, seq in acknowledged:
            assert st["vv"].get(origin, 0) >= seq, f"acknowledged write {origin}:{seq} lost"
    assert states[0]["view"] == states[1]["view"] == states[2]["view"]
