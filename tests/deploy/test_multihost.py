"""Three hosts for real: Linux network namespaces joined by veth pairs and a bridge.

Each namespace has its own address and runs one node configured by
deploy/compose/nodeN.toml, as the compose file runs them (listen on 0.0.0.0,
advertise and peers by host name; ``ip netns exec`` puts /etc/netns/<ns>/hosts
in place of /etc/hosts, so node1..node3 resolve to the namespaces' addresses).
Overridden: the data folder, the client socket, faster timers, and security:
the compose files run without keys (``allow_insecure``), while here every node
gets a key pair made by the test, an authorized-keys file listing the three,
and its peers written with their keys (``tcp://nodeN:7000?key=...``), so the
cluster runs CURVE across real network interfaces. The test: the three
converge; one namespace's link goes down and the other two keep working (and
the cut-off node keeps accepting writes); the link comes back and all three
converge. No secret key appears in any node's output.

Needs root and iproute2 (`apt-get install iproute2`); skips, saying why, where
namespaces cannot be made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from statesync.client import Client
from statesync.core import StatesyncError
from statesync.security import write_keypair
from tests.support import FAST_ARGS, wait_until

pytestmark = pytest.mark.process

DEPLOY = Path(__file__).parents[2] / "deploy"
NAMES = ["node1", "node2", "node3"]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


class Hosts:
    """Three namespaces on a bridge, with /etc/netns/<ns>/hosts naming node1..node3."""

    def __init__(self) -> None:
        tag = f"ss{os.getpid() % 100000}"
        self.bridge = f"{tag}br"
        self.ns = [f"{tag}n{i}" for i in (1, 2, 3)]
        self.host_side = [f"{tag}h{i}" for i in (1, 2, 3)]
        self.ns_side = [f"{tag}p{i}" for i in (1, 2, 3)]
        net = f"10.231.{os.getpid() % 250}"
        self.addresses = [f"{net}.{i}" for i in (1, 2, 3)]
        self.made: list[Callable[[], object]] = []

    def make(self) -> None:
        netns_etc = Path("/etc/netns")
        if not netns_etc.exists():
            netns_etc.mkdir(parents=True)
            self.made.append(lambda: netns_etc.rmdir() if not any(netns_etc.iterdir()) else None)
        ip("link", "add", self.bridge, "type", "bridge")
        self.made.append(lambda: ip("link", "del", self.bridge, check=False))
        ip("link", "set", self.bridge, "up")
        hosts = "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for a, n in zip(self.addresses, NAMES, strict=True))
        for ns, outer, inner, address in zip(self.ns, self.host_side, self.ns_side, self.addresses, strict=True):
            ip("netns", "add", ns)
            self.made.append(lambda ns=ns: ip("netns", "del", ns, check=False))
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            self.made.append(lambda etc=etc: shutil.rmtree(etc, ignore_errors=True))
            (etc / "hosts").write_text(hosts)
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self.made.append(lambda outer=outer: ip("link", "del", outer, check=False))
            ip("link", "set", inner, "netns", ns)
            ip("link", "set", outer, "master", self.bridge)
            ip("link", "set", outer, "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
            ip("-n", ns, "link", "set", inner, "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def link(self, index: int, up: bool) -> None:
        ip("link", "set", self.host_side[index], "up" if up else "down")

    def remove(self) -> None:
        for undo in reversed(self.made):
            with contextlib.suppress(Exception):
                undo()
        self.made.clear()


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if sys.platform != "linux":
        pytest.skip("network namespaces are a Linux feature")
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("the ip command is missing (Debian: apt-get install iproute2)")
    h = Hosts()
    try:
        h.make()
    except (RuntimeError, OSError) as exc:
        h.remove()
        pytest.skip(f"cannot make network namespaces here: {exc}")
    try:
        yield h
    finally:
        h.remove()


def connected(client: Client) -> set[str]:
    return {p for p, v in client.status()["peers"].items() if v["connected"]}


def test_three_hosts_converge_survive_a_cut_and_heal(hosts: Hosts, tmp_path: Path) -> None:
    sockets = Path(f"/tmp/ss-mh-{os.getpid()}")
    sockets.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[Client] = []
    keys = {name: write_keypair(tmp_path / name)[0] for name in NAMES}
    (tmp_path / "authorized_keys").write_text("".join(f"peer {keys[n].public}  # {n}\n" for n in NAMES))
    try:
        for i, (ns, name) in enumerate(zip(hosts.ns, NAMES, strict=True)):
            secured = ["--key", str(tmp_path / f"{name}.key_secret"), "--authorized-keys", str(tmp_path / "authorized_keys")]
            for other in NAMES:
                secured += ["--peer", f"tcp://{other}:7000?key={keys[other].public}"]
            argv = [
                "ip", "netns", "exec", ns, sys.executable, "-m", "statesync.cli", "node", str(DEPLOY / "compose" / f"{name}.toml"),
                "--data-dir", str(tmp_path / name), "--client", f"ipc://{sockets}/{name}.sock", *secured, *FAST_ARGS,
            ]
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "STATESYNC_PARENT_PID": str(os.getpid())}))
            log.close()
            # the node's own key pair works on its own client endpoint (server key: its public half)
            own = str(tmp_path / f"{name}.key_secret")
            clients.append(Client(f"ipc://{sockets}/{name}.sock", timeout_s=10, connect_timeout_s=30, secret_key_file=own))
            assert i == len(clients) - 1
        c1, c2, c3 = clients
        for c, name in zip(clients, NAMES, strict=True):
            assert c.ping()["node_id"] == name
            assert c.ping()["endpoints"] == [f"tcp://0.0.0.0:7000?key={keys[name].public}"]
            assert c.status()["security"]["curve"] is True
        wait_until(lambda: all(connected(c) == set(NAMES) - {n} for c, n in zip(clients, NAMES, strict=True)), timeout_s=30, what="the three hosts to link", retry_on=(StatesyncError,))

        for i, c in enumerate(clients):
            c.set(f"mh.from{i + 1}", {"host": hosts.addresses[i]})
        wait_until(lambda: all(len(c.get("mh", {})) == 3 for c in clients), timeout_s=20, what="the first writes everywhere", retry_on=(StatesyncError,))

        hosts.link(2, up=False)  # node3's cable is pulled
        wait_until(lambda: connected(c1) == {"node2"} and connected(c2) == {"node1"} and connected(c3) == set(), timeout_s=20, what="node3 to be cut off", retry_on=(StatesyncError,))
        r = c1.set("mh.during", "written while node3 was away", ack="all", timeout_s=10)
        assert r.acked_by == ("node2",)  # every connected peer: the two that still reach each other
        assert c2.get("mh.during") == "written while node3 was away"
        c3.set("mh.offline", "written on the cut-off node")  # a node alone still accepts writes
        assert c3.get("mh.during") is None
        assert c1.get("mh.offline") is None

        hosts.link(2, up=True)
        wait_until(lambda: all(connected(c) == set(NAMES) - {n} for c, n in zip(clients, NAMES, strict=True)), timeout_s=30, what="node3 to link again", retry_on=(StatesyncError,))
        wait_until(
            lambda: all(c.get("mh.during") and c.get("mh.offline") for c in clients)
            and c1.snapshot() == c2.snapshot() == c3.snapshot()
            and c1.status()["vv"] == c2.status()["vv"] == c3.status()["vv"],
            timeout_s=30,
            what="all three to converge",
            retry_on=(StatesyncError,),
        )
        assert len(c3.get("mh")) == 5
    finally:
        for c in clients:
            c.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        shutil.rmtree(sockets, ignore_errors=True)
    logs = "\n".join((tmp_path / f"{name}.log").read_text() for name in NAMES)
    assert "linked with" in logs and "WITHOUT keys" not in logs
    for k in keys.values():
        assert k.secret not in logs, "a secret key appeared in a node's log"
