"""Pipelined writes with the blocking client: ``submit`` returns a future at once, at most
``inflight_max`` writes are in flight, errors arrive through the future."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
import trio

from statesync.client import Client, ClientClosed, InvalidArgument, Receipt
from statesync.errors import WriteConcernError
from tests.client.nodes import NodeThread
from tests.client.test_client import FakeNode
from tests.support import wait_until


@pytest.fixture(scope="module")
def node() -> Iterator[NodeThread]:
    nodes = NodeThread([{"node_id": "a"}])
    yield nodes
    nodes.stop()


def test_submitted_writes_all_land_and_each_future_holds_its_receipt(node: NodeThread) -> None:
    with Client(node.endpoints[0], inflight_max=16) as client:
        futures = [client.submit(("sub", f"k{i}"), i) for i in range(300)]
        receipts = [f.result(timeout=30) for f in futures]
        assert all(isinstance(r, Receipt) for r in receipts)
        assert [r.path for r in receipts] == [f"sub.k{i}" for i in range(300)]
        assert len({r.seq for r in receipts}) == 300  # 300 distinct writes, none applied twice
        assert client.get("sub") == {f"k{i}": i for i in range(300)}


def test_set_many_and_submit_mix(node: NodeThread) -> None:
    with Client(node.endpoints[0]) as client:
        receipts = client.set_many([(("mix", f"k{i}"), i) for i in range(50)])
        assert len(receipts) == 50
        more = [client.submit(("mix", f"j{i}"), -i) for i in range(50)]
        assert [f.result(timeout=30).path for f in more] == [f"mix.j{i}" for i in range(50)]
        assert len(client.get("mix")) == 100


def test_bad_arguments_raise_at_submit_and_node_errors_through_the_future(node: NodeThread) -> None:
    with Client(node.endpoints[0]) as client:
        with pytest.raises(InvalidArgument):
            client.submit("x", 1, ack="most")
        # five peers cannot acknowledge on a node without peers: the future raises the node's error
        future = client.submit("alone", 2, ack=5, timeout_s=0.2)
        with pytest.raises(WriteConcernError):
            future.result(timeout=30)
        assert client.get("alone") == 2  # the write stays, as with set
    with pytest.raises(ClientClosed):
        client.submit("x", 1)


class GatedNode(FakeNode):
    """A fake node that holds set requests and answers them ``batch`` at a time.

    It records the most requests it held at once: a client that kept more than
    ``inflight_max`` writes in flight would show it (the gate opens at
    ``batch`` = ``inflight_max`` pending, so a bounded client always progresses).
    """

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.held: list[trio.Event] = []
        self.most_held = 0
        self.answered = 0
        super().__init__(self._hold)

    async def _hold(self, data: Any) -> Any:
        if data.get("op") == "hello":
            return {"ok": True, "node_id": "gated", "protocol": 1, "endpoints": [], "client_endpoints": []}
        gate = trio.Event()
        self.held.append(gate)
        self.most_held = max(self.most_held, len(self.held))
        if len(self.held) >= self.batch:
            for g in self.held:
                g.set()
            self.held = []
        await gate.wait()
        self.answered += 1
        path = data["path"]
        return {"ok": True, "receipt": {"path": path, "origin": "gated", "seq": self.answered, "hlc": 1, "acked_by": []}}


def test_at_most_inflight_max_writes_are_in_flight() -> None:
    gated = GatedNode(batch=4)
    try:
        with Client(gated.endpoint, inflight_max=4) as client:
            futures: list[Future[Receipt]] = [client.submit(f"k{i}", i) for i in range(40)]
            assert sorted(f.result(timeout=30).path for f in futures) == sorted(f"k{i}" for i in range(40))
            wait_until(lambda: gated.answered == 40, timeout_s=10, what="all 40 answered")
        assert gated.most_held == 4  # the gate opened at 4 every time: never 5 or more in flight
    finally:
        gated.stop()


def test_without_the_bound_the_gated_node_would_see_more() -> None:
    """The check above can fail: with a larger bound the node holds more at once."""
    gated = GatedNode(batch=8)
    try:
        with Client(gated.endpoint, inflight_max=8) as client:
            futures = [client.submit(f"k{i}", i) for i in range(40)]
            for f in futures:
                f.result(timeout=30)
        assert gated.most_held == 8
    finally:
        gated.stop()
