"""Process tests: peers that die (SIGKILL) or stop (SIGSTOP), and a broker that hands ports over.

Each test starts peer processes (``tests/ports/peer.py``) that end by themselves
when the test closes their stdin; the test kills them in ``finally`` anyway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import trio

from statesync.ports import MessagePort, PortOptions, open_runtime

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 1.0  # the peers' and our heartbeat timeout
OPTIONS = PortOptions(
    heartbeat_interval_s=0.1, heartbeat_timeout_s=TIMEOUT_S, connect_timeout_s=10.0, linger_s=0.2
)


class Peer:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self._buf = b""

    async def line(self) -> Any:
        assert self.proc.stdout is not None
        with trio.fail_after(30):
            while b"\n" not in self._buf:
                chunk = await self.proc.stdout.receive_some(65536)
                if not chunk:
                    raise AssertionError(f"peer exited early with {self.proc.returncode}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)


@asynccontextmanager
async def peer(*args: str) -> AsyncIterator[Peer]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.ports.peer", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        yield Peer(proc)
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                with suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)  # a stopped peer could not end
            if proc.stdin is not None:
                await proc.stdin.aclose()  # the peer's signal to end
            with trio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def close_within(port: MessagePort, limit_s: float) -> float:
    """Seconds until ``port``'s close event (the test fails past ``limit_s``)."""
    closed = trio.Event()
    port.on_close = lambda ev: closed.set()
    start = trio.current_time()
    with trio.fail_after(limit_s):
        await closed.wait()
    return trio.current_time() - start


async def roundtrip(port: MessagePort, value: object) -> None:
    port.post_message(value)
    with trio.fail_after(10):
        async for ev in port:
            assert ev.data == value
            return


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP])
async def test_listening_peer_dies_or_stops(how: signal.Signals) -> None:
    async with open_runtime(OPTIONS) as rt, peer("echo-listen") as p:
        endpoint = (await p.line())["endpoint"]
        port = await rt.connect(endpoint)
        await roundtrip(port, "ping")
        os.kill(p.proc.pid, how)
        elapsed = await close_within(port, TIMEOUT_S + 3.0)
        assert port.closed
        assert elapsed <= TIMEOUT_S + 1.0


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP])
async def test_connecting_peer_dies_or_stops(how: signal.Signals) -> None:
    async with open_runtime(OPTIONS) as rt:
        listener = rt.listen("tcp://127.0.0.1:*")
        async with peer("echo-connect", listener.endpoints[0]) as p:
            assert (await p.line())["connected"]
            with trio.fail_after(10):
                port = await listener.accept()
            await roundtrip(port, "ping")
            os.kill(p.proc.pid, how)
            # the listening (passive) side learns it from the missing heartbeats
            elapsed = await close_within(port, TIMEOUT_S + 3.0)
            assert port.closed
            assert elapsed <= TIMEOUT_S + 1.0


async def test_broker_hands_ports_to_two_processes_and_exits() -> None:
    count = 300
    pre = 20
    async with peer("worker", str(count)) as a, peer("worker", str(count)) as b:
        ep_a = (await a.line())["endpoint"]
        ep_b = (await b.line())["endpoint"]
        async with peer("broker", ep_a, ep_b, str(pre)) as broker:
            assert (await broker.line()) == {"relays_released": True}
            with trio.fail_after(20):
                await broker.proc.wait()
            assert broker.proc.returncode == 0
        # the broker is gone; A and B finish talking directly
        result_a = await a.line()
        result_b = await b.line()
    for r in (result_a, result_b):
        assert r["closed"] == []
        assert r["pre"] == list(range(pre))  # queued before the move, in order
        assert r["got"] == list(range(count))  # none lost, duplicated or reordered
