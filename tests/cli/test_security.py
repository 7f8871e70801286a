"""A secured cluster as real processes: `statesync node` with keys, clients with and without them.

One scenario runs two keyed nodes (a, b) and walks through what the issue
asks: a known key is accepted and its write replicates; an unknown key gets
nothing and cannot write; a wrong server key fails fast and says so; a node
without keys cannot join; a read key cannot write and nothing changes
anywhere; a write key limited to app.* cannot write secrets.x; a key removed
from the file plus SIGHUP loses access (a client's and a peer's). Every
process's output is kept and searched for every secret key the test made.
"""

from __future__ import annotations

import io
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from statesync.cli import main
from statesync.client import AccessDenied, Client, NodeRefused
from statesync.core import StatesyncError
from statesync.security import write_keypair
from tests.cli.test_processes import CLI, Proc
from tests.client.nodes import short_socket
from tests.support import FAST_ARGS, wait_until

pytestmark = pytest.mark.process


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.p.poll() is None:
            proc.p.kill()
            proc.p.wait(10)


def node(args: list[str]) -> Proc:
    env = {**os.environ, "STATESYNC_PARENT_PID": str(os.getpid())}  # never outlives the test
    return Proc([*CLI, "node", *args, *FAST_ARGS], env=env)


def up_endpoint(proc: Proc, what: str = "peers") -> str:
    """The endpoint the node's "up" line reports (with its key when it has one)."""
    wait_until(lambda: proc.saw(": up;"), what="the node to start")
    line = next(line for line in proc.lines if ": up;" in line)
    found = re.search(rf"{what} on (\S+?)(;|$)", line)
    assert found, line
    return found.group(1)


def connected(client: Client) -> set[str]:
    return {p for p, v in client.status()["peers"].items() if v["connected"]}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_keygen_command(tmp_path: Path) -> None:
    code, out, err = run_cli(["keygen", str(tmp_path / "ops")])
    assert code == 0
    public = out.strip()
    assert len(public) == 40 and public in (tmp_path / "ops.key").read_text()
    assert (tmp_path / "ops.key_secret").stat().st_mode & 0o777 == 0o600
    assert "ops.key_secret" in err
    code, _, err = run_cli(["keygen", str(tmp_path / "ops")])
    assert code == 2 and "exists; keygen never replaces a key unless given --force" in err
    code, out, _ = run_cli(["keygen", str(tmp_path / "ops"), "--force"])
    assert code == 0 and out.strip() != public


def test_a_secured_cluster(tmp_path: Path, procs: list[Proc]) -> None:
    keys = {name: write_keypair(tmp_path / name)[0] for name in ("a", "b", "ops", "reader", "writer", "stranger")}
    secrets = [k.secret for k in keys.values()]
    auth = tmp_path / "authorized_keys"
    lines = {
        "a": f"peer {keys['a'].public}   # node a",
        "b": f"peer {keys['b'].public}   # node b",
        "ops": f"write {keys['ops'].public}   # operator",
        "reader": f"read {keys['reader'].public}   # dashboards",
        "writer": f"write {keys['writer'].public} app.*   # app deployer",
    }
    auth.write_text("# who may talk to the cluster\n" + "\n".join(lines.values()) + "\n")
    sockets = {name: short_socket(name) for name in ("a", "b", "p")}
    key_args = {name: ["--key", str(tmp_path / f"{name}.key_secret"), "--authorized-keys", str(auth)] for name in ("a", "b")}
    a = node(["--id", "a", "--listen", "tcp://127.0.0.1:0", "--client", sockets["a"], *key_args["a"]])
    procs.append(a)
    a_peer = up_endpoint(a)
    assert a_peer.endswith(f"?key={keys['a'].public}")
    b = node(["--id", "b", "--listen", "tcp://127.0.0.1:0", "--client", sockets["b"], "--peer", a_peer, *key_args["b"]])
    procs.append(b)
    ops_key = str(tmp_path / "ops.key_secret")
    admin_a = Client(sockets["a"], secret_key_file=ops_key, server_key=keys["a"].public, connect_timeout_s=20)
    admin_b = Client(sockets["b"], secret_key_file=ops_key, server_key=str(tmp_path / "b.key"), connect_timeout_s=20)
    clients = [admin_a, admin_b]
    p: Proc | None = None
    try:
        wait_until(lambda: connected(admin_a) == {"b"} and connected(admin_b) == {"a"}, what="a and b to link over CURVE", retry_on=(StatesyncError,))
        assert admin_a.status()["security"]["public_key"] == keys["a"].public

        # a known key is accepted, and its write replicates (encrypted) to b
        admin_a.set("app.config", {"threads": 4}, ack="all", timeout_s=10)
        assert admin_b.get("app.config") == {"threads": 4}
        before = [admin_a.status()["vv"], admin_b.status()["vv"], admin_a.snapshot(), admin_b.snapshot()]

        # an unknown key receives nothing and cannot write
        stranger = Client(sockets["a"], secret_key_file=str(tmp_path / "stranger.key_secret"), server_key=keys["a"].public)
        clients.append(stranger)
        with pytest.raises(NodeRefused, match=r"refused this key \(.{40}\): not on its authorized list"):
            stranger.get("app")
        with pytest.raises(NodeRefused, match="not on its authorized list"):
            stranger.set("app.config", "pwned")
        wait_until(lambda: a.saw(f"refused key {keys['stranger'].public}"), what="a to log the refusal")

        # a wrong server key fails fast, saying what to check
        confused = Client(sockets["a"], secret_key_file=ops_key, server_key=keys["b"].public, connect_timeout_s=20)
        clients.append(confused)
        start = time.monotonic()
        with pytest.raises(NodeRefused, match="check that the server key given for it"):
            confused.ping()
        assert time.monotonic() - start < 10

        # a read key reads, and its write is refused with nothing changed anywhere
        reader = Client(sockets["b"], secret_key_file=str(tmp_path / "reader.key_secret"), server_key=keys["b"].public)
        clients.append(reader)
        assert reader.get("app.config.threads") == 4
        with pytest.raises(AccessDenied, match="read-only on node b: it may read and watch, not write"):
            reader.set("app.config.threads", 64)
        with pytest.raises(AccessDenied, match="read-only"):
            reader.delete("app")

        # a write key limited to app.* writes there and nowhere else
        writer = Client(sockets["a"], secret_key_file=str(tmp_path / "writer.key_secret"), server_key=keys["a"].public)
        clients.append(writer)
        with pytest.raises(AccessDenied, match=r"may not write secrets\.x: it may write app\.\* only"):
            writer.set("secrets.x", "nope")
        with pytest.raises(AccessDenied, match="may not write"):
            writer.set_many([("app.ok", 1), ("secrets.y", 2)])  # all or nothing
        # nothing the stranger, the reader or the scoped writer tried changed anything anywhere
        assert [admin_a.status()["vv"], admin_b.status()["vv"], admin_a.snapshot(), admin_b.snapshot()] == before
        writer.set("app.release", "v2", ack="all", timeout_s=10)
        assert admin_b.get("app.release") == "v2" and admin_b.get("secrets") is None

        # a node without keys cannot join: its handshake fails on both sides, and it gets no data
        address = a_peer.split("?key=")[0]
        p = node(["--id", "p", "--listen", "tcp://127.0.0.1:0", "--client", sockets["p"], "--peer", address])
        procs.append(p)
        wait_until(lambda: p is not None and p.saw("requires CURVE keys and this side has none"), what="p to fail its handshake")
        wait_until(lambda: a.saw("no keys configured"), what="a to log the plaintext peer")
        with Client(sockets["p"], connect_timeout_s=20) as plain:
            assert plain.get("app") is None and connected(plain) == set()
        assert "p" not in admin_a.status()["peers"]

        # SIGHUP after removing the keys of the writer, the reader and node b: all lose access at once
        writer.ping()  # connected now
        watcher = Client(sockets["a"], secret_key_file=str(tmp_path / "reader.key_secret"), server_key=keys["a"].public)
        clients.append(watcher)
        watch = watcher.watch("app")
        auth.write_text("\n".join(v for k, v in lines.items() if k not in ("writer", "reader", "b")) + "\n")
        a.p.send_signal(signal.SIGHUP)
        wait_until(lambda: a.saw("reloaded"), what="a to reload its keys")
        wait_until(lambda: connected(admin_a) == set(), what="a to drop b", retry_on=(StatesyncError,))
        wait_until(lambda: watch.closed, what="the reader's watch to end")
        assert isinstance(watch.error, NodeRefused)
        with pytest.raises(NodeRefused, match="not on its authorized list"):
            writer.set("app.release", "v3")
        with pytest.raises(NodeRefused):
            writer.get("app")
        wait_until(lambda: b.saw("cannot link with a peer") and b.saw("refused this key"), what="b to be refused")
        admin_a.set("app.after", "b must not see this")
        assert connected(admin_a) == set() and admin_b.get("app.after") is None
        assert admin_a.get("app.release") == "v2"

        # a broken file is not loaded: the old list stays
        auth.write_text(auth.read_text() + "admin nonsense\n")
        a.p.send_signal(signal.SIGHUP)
        wait_until(lambda: a.saw("NOT reloaded"), what="a to refuse the broken file")
        assert f"{auth}:" in next(line for line in a.lines if "NOT reloaded" in line)
        assert admin_a.ping()["node_id"] == "a"
    finally:
        for c in clients:
            c.close()
        for proc in (a, b, p):
            if proc is not None:
                assert proc.stop() == 0, proc.output()
    logs = "\n".join(proc.output() for proc in procs)
    assert "Traceback" not in logs
    for secret in secrets:
        assert secret not in logs, "a secret key appeared in a log"


def test_loopback_default_and_insecure(tmp_path: Path, procs: list[Proc]) -> None:
    code, _, err = run_cli(["node", "--id", "x", "--listen", "tcp://0.0.0.0:0", "--client", "none"])
    assert code == 2
    assert "tcp://0.0.0.0:0 is reachable from other hosts and this node has no keys" in err
    assert "allow_insecure = true (statesync node --insecure)" in err
    code, _, err = run_cli(["node", "--id", "x", "--client", "tcp://10.1.2.3:7111"])
    assert code == 2 and "tcp://10.1.2.3:7111 is reachable from other hosts" in err
    code, _, err = run_cli(["node", "--id", "x", "--key", str(tmp_path / "none.key_secret"), "--authorized-keys", str(tmp_path / "auth")])
    assert code == 2 and "does not exist" in err
    socket = short_socket("x")
    x = node(["--id", "x", "--listen", "tcp://0.0.0.0:0", "--client", socket, "--insecure"])
    procs.append(x)
    up_endpoint(x)
    assert x.saw("listening on tcp://0.0.0.0:0 WITHOUT keys (allow_insecure)")
    with Client(socket, connect_timeout_s=20) as client:
        assert client.status()["security"] == {"curve": False, "insecure_endpoints": ["tcp://0.0.0.0:0"]}
    assert x.stop() == 0

