"""Leases across processes: a SIGKILLed client's keys leave all three nodes within ttl + heartbeat timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.nodes import short_socket
from tests.node.test_processes import Proc, procs, start  # noqa: F401  (procs is a fixture)
from tests.support import FAST, wait_until

pytestmark = pytest.mark.process

HOLDER = str(Path(__file__).with_name("lease_holder.py"))
TTL_S = 2.0


def test_sigkilled_client_loses_its_keys_on_every_node(procs: list[Proc]) -> None:  # noqa: F811
    a = start(procs, "a", [], client=short_socket("a"))
    b = start(procs, "b", a.endpoints)
    c = start(procs, "c", a.endpoints + b.endpoints)
    for p in (a, b, c):
        wait_until(lambda p=p: len(p.state()["connected"]) == 2, what=f"{p.config['node_id']} linked to both")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    holder = subprocess.Popen(
        [sys.executable, HOLDER, a.config["client"], "room", "5", str(TTL_S)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.startswith("ready"), line
        wait_until(lambda: all(len(p.call(cmd="get", path="room")["value"] or {}) == 5 for p in (a, b, c)), what="the keys")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        bound_s = TTL_S + FAST["heartbeat_timeout_s"]
        took = wait_until(
            lambda: all(p.call(cmd="get", path="room")["value"] is None for p in (a, b, c)),
            timeout_s=bound_s + 1.0,  # scheduling margin on a loaded machine
            what="the SIGKILLed holder's keys to leave all three nodes",
        )
        assert took >= TTL_S / 3  # they stayed while the lease had time left (ttl minus one keepalive interval)
        assert all(p.call(cmd="get", path="_statesync")["value"] in (None, {}) for p in (a, b, c))
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
