"""Real nodes running in a background thread (one trio run), for tests of blocking clients.

``NodeThread([config, ...])`` starts the nodes (each with a client endpoint),
links them, and keeps them running until ``stop()``; ``call(fn, *args)`` runs
a function in the nodes' trio thread (``fn(nodes)``, sync or async).
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from statesync.node import Node, open_node

FAST = {
    "sync_interval_s": 0.2,
    "retransmit_timeout_s": 0.2,
    "heartbeat_interval_s": 0.1,
    "heartbeat_timeout_s": 1.0,
    "reconnect_max_s": 0.3,
}


_SOCKETS: list[str] = []
_COUNT = itertools.count()


def short_socket(name: str) -> str:
    """A fresh ipc endpoint under a short temporary folder (socket paths are limited to ~107 bytes).

    One folder per test process, removed when the process exits.
    """
    if not _SOCKETS:
        _SOCKETS.append(tempfile.mkdtemp(prefix="ss-", dir="/tmp"))
        atexit.register(shutil.rmtree, _SOCKETS[0], True)
    return f"ipc://{_SOCKETS[0]}/{name}-{next(_COUNT)}.sock"


class NodeThread:
    def __init__(self, configs: list[dict[str, Any]], *, link: bool = True) -> None:
        self.configs = [{**FAST, "client": short_socket(c["node_id"]), **c} for c in configs]
        self.link = link
        self.nodes: list[Node] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the nodes did not start within 30 s")
        if self._error is not None:
            raise self._error

    @property
    def endpoints(self) -> list[str]:
        return [n.client_endpoints[0] for n in self.nodes]

    def _main(self) -> None:
        try:
            trio.run(self._amain)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _amain(self) -> None:
        async with AsyncExitStack() as stack:
            first: Node | None = None
            for config in self.configs:
                peers = list(first.endpoints) if first is not None and self.link else []
                node = await stack.enter_async_context(open_node(**{"peers": peers, **config}))
                first = first or node
                self.nodes.append(node)
            if self.link and len(self.nodes) > 1:
                want = len(self.nodes) - 1
                with trio.fail_after(20):
                    while not all(sum(p["connected"] for p in n.status()["peers"].values()) == want for n in self.nodes):
                        await trio.sleep(0.01)
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()

    def call(self, fn: Callable[[list[Node]], Any]) -> Any:
        """Run ``fn(nodes)`` in the nodes' thread (awaited if it returns an awaitable)."""

        async def run() -> Any:
            result = fn(self.nodes)
            if hasattr(result, "__await__"):
                result = await result
            return result

        return trio.from_thread.run(run, trio_token=self._token)

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the nodes did not stop"


def data_dir(tmp: Path, name: str) -> str:
    return str(tmp / name)


@pytest.fixture(scope="module", name="two_nodes")
def two_nodes_fixture() -> Iterator[NodeThread]:
    """Two linked nodes, a and b, for one test module (import this name to use ``two_nodes``)."""
    nodes = NodeThread([{"node_id": "a"}, {"node_id": "b"}])
    yield nodes
    nodes.stop()
