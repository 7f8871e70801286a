"""``LocalCluster``: node processes on loopback, started from ordinary (blocking) Python.

Examples and tests use it to get a real cluster without fixed ports::

    from statesync.cli.cluster import LocalCluster

    with LocalCluster(3) as cluster:          # n1, n2, n3, linked with each other
        with cluster.client(0) as client:     # a statesync.Client of n1
            client.set("flags.beta", True)

Each node runs ``python -m statesync.cli node`` with a data folder under
``root`` (a temporary folder by default), an ephemeral tcp port for its peers
(kept across :meth:`restart`) and an ``ipc://`` client endpoint. Nodes start
one after the other, each given the peer endpoints of those before it; the
rest of the mesh is learned. Every process is ended by :meth:`stop` (SIGTERM,
then SIGKILL after a grace period), and dies with this process in any case
(the kernel's parent-death signal, as under the launcher). Start the cluster
from a thread that lives as long as it (the main thread, normally): that
signal follows the thread that forked the child.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from statesync.cli._launch import node_command
from statesync.cli._nodecmd import ENV_PARENT
from statesync.client import Client
from statesync.errors import ConfigError, StatesyncError


class ClusterError(StatesyncError):
    """A node of a LocalCluster did not start or did not link in time."""


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise ConfigError(f"cannot pass {type(value).__name__} as a node option; use str, int, float, bool or a list of them")


class LocalCluster:
    """``size`` node processes named ``{prefix}1``... (see the module doc)."""

    def __init__(
        self,
        size: int = 3,
        *,
        root: str | os.PathLike[str] | None = None,
        prefix: str = "n",
        strategy: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        if size < 1:
            raise ConfigError(f"a cluster has at least one node, not {size}; pass size=1 or more")
        self.names = [f"{prefix}{i + 1}" for i in range(size)]
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="statesync-cluster-"))
        # Unix socket paths are short: keep the client sockets in a short folder.
        self._sockets = Path(tempfile.mkdtemp(prefix="ss-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.strategy = list(strategy)
        self.options = dict(options or {})
        self.python = python or sys.executable
        self.env = {**os.environ, **(env or {})}
        self.start_timeout_s = start_timeout_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.peer_endpoints: dict[str, str] = {}
        self.client_endpoints = {name: f"ipc://{self._sockets / name}.sock" for name in self.names}
        self._clients: dict[str, Client] = {}
        self._logs: dict[str, IO[bytes]] = {}

    # -- starting

    def argv(self, name: str, peers: Sequence[str]) -> list[str]:
        listen = self.peer_endpoints.get(name, "tcp://127.0.0.1:0")
        args = ["--id", name, "--listen", listen, "--data-dir", str(self.root / name), "--client", self.client_endpoints[name]]
        for peer in peers:
            args += ["--peer", peer]
        for spec in self.strategy:
            args += ["--strategy", spec]
        for key, value in self.options.items():
            args += ["-o", f"{key}={_toml(value)}"]
        return node_command(None, args)

    def log_path(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _spawn(self, name: str, peers: Sequence[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = self._logs.get(name)
        if log is None:
            log = self._logs[name] = open(self.log_path(name), "ab")  # noqa: SIM115 - closed in stop()
        self.procs[name] = subprocess.Popen(
            self.argv(name, peers),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**self.env, ENV_PARENT: str(os.getpid()), "PYTHONUNBUFFERED": "1"},
        )

    def _wait_up(self, name: str) -> None:
        """Wait until the node answers on its client endpoint; learn its peer endpoint."""
        proc = self.procs[name]
        deadline = time.monotonic() + self.start_timeout_s
        client = Client(self.client_endpoints[name], timeout_s=5.0, connect_timeout_s=0.5)
        try:
            while True:
                if proc.poll() is not None:
                    raise ClusterError(f"node {name} exited with code {proc.returncode} while starting; see {self.log_path(name)}")
                try:
                    hello = client.ping()
                    break
                except StatesyncError as exc:
                    if time.monotonic() > deadline:
                        raise ClusterError(f"node {name} did not answer within {self.start_timeout_s:g} s; see {self.log_path(name)}") from exc
        finally:
            client.close()
        self.peer_endpoints[name] = str(hello["endpoints"][0])

    def start(self) -> LocalCluster:
        """Start every node and wait until each is linked with all the others."""
        try:
            for i, name in enumerate(self.names):
                self._spawn(name, [self.peer_endpoints[n] for n in self.names[:i]])
                self._wait_up(name)
            self.wait_linked()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_linked(self, timeout_s: float | None = None) -> None:
        """Wait until every running node is linked with every other running node."""
        running = [n for n in self.names if self.running(n)]
        want = len(running) - 1

        def linked() -> bool:
            for name in running:
                peers = self.client(name).status()["peers"]
                if sum(1 for p, v in peers.items() if v["connected"] and p in running) < want:
                    return False
            return True

        wait_until(linked, timeout_s or self.start_timeout_s, "every node to link with every other")

    # -- using

    def client(self, which: int | str, **options: Any) -> Client:
        """A Client of one node (shared, closed by :meth:`stop`, unless ``options`` are given)."""
        name = self.names[which] if isinstance(which, int) else which
        if options:
            return Client(self.client_endpoints[name], **options)
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = Client(self.client_endpoints[name], timeout_s=15.0, connect_timeout_s=15.0)
        return client

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, which: int | str, sig: int = signal.SIGKILL, timeout_s: float = 15.0) -> int:
        """Signal one node and wait for it to exit; its exit code."""
        name = self.names[which] if isinstance(which, int) else which
        proc = self.procs[name]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        return proc.wait(timeout=timeout_s)

    def restart(self, which: int | str) -> None:
        """Start a stopped node again: same id, data folder, ports and endpoints."""
        name = self.names[which] if isinstance(which, int) else which
        if self.running(name):
            raise ClusterError(f"node {name} is running; kill it first")
        peers = [self.peer_endpoints[n] for n in self.names if n != name and n in self.peer_endpoints]
        self._spawn(name, peers)
        self._wait_up(name)

    def stop(self, grace_s: float = 10.0) -> None:
        """End every node: SIGTERM, then SIGKILL after ``grace_s``; remove temporary folders."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        shutil.rmtree(self._sockets, ignore_errors=True)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.02) -> float:
    """Re-check ``cond`` every ``interval_s`` until it holds; the seconds it took.

    A node error while checking counts as "not yet". ClusterError after ``timeout_s``.
    """
    start = time.monotonic()
    tick = threading.Event()
    while True:
        with contextlib.suppress(StatesyncError):
            if cond():
                return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise ClusterError(f"timed out after {timeout_s:g} s waiting for {what}")
        tick.wait(interval_s)
