"""The asyncio client's errors against nodes that answer wrong or not at all: the blocking
client's typed errors, each within its timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
import zmq
import zmq.asyncio

from statesync import aio
from statesync.errors import (
    NodeError,
    NodeUnavailable,
    ProtocolError,
    ProtocolMismatch,
    StorageError,
)
from statesync.ports._codec import decode, encode
from statesync.ports._envelope import (
    CLOSE_NOW,
    KIND_REQUEST,
    KIND_RESPONSE,
    PROTOCOL_VERSION,
    Close,
    Hello,
    Msg,
    Open,
    Welcome,
)
from statesync.wire import decode_frame, encode_frame
from tests.aio.support import run
from tests.client.test_client import FakeNode, _hello_then


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (lambda d: {"ok": True, "node_id": "fake", "protocol": 2}, ProtocolMismatch, "speaks client protocol 2"),
        (lambda d: {"ok": False, "code": "protocol_mismatch", "error": "no", "protocol": 2}, ProtocolMismatch, "refused the handshake"),
        (_hello_then(lambda d: {"ok": False, "code": "from_the_future", "error": "new trouble"}), NodeError, "new trouble"),
        (_hello_then(lambda d: {"ok": True, "found": "yes"}), ProtocolError, "found"),
        (_hello_then(lambda d: ["not", "a", "dict"]), ProtocolError, "does not understand"),
        (_hello_then(lambda d: {"ok": False, "code": "storage", "error": "disk full"}), StorageError, "disk full"),
        (_hello_then(lambda d: 1 / 0), NodeError, "failed the get request: ZeroDivisionError"),
    ],
)
def test_a_node_that_answers_wrong_is_a_clear_typed_error(answer: Any, error: type[Exception], match: str) -> None:
    fake = FakeNode(answer)

    async def main() -> None:
        async with aio.Client(fake.endpoint, timeout_s=5, connect_timeout_s=2) as client:
            with pytest.raises(error, match=match):
                await client.get("a")

    try:
        run(main)
    finally:
        fake.stop()


def test_a_node_that_never_answers_is_node_unavailable_within_the_timeout() -> None:
    """A peer that completes the ports handshake and then answers no request."""

    async def main() -> float:
        ctx = zmq.asyncio.Context()
        router = ctx.socket(zmq.ROUTER)
        router.linger = 0
        port = router.bind_to_random_port("tcp://127.0.0.1")

        async def welcome_only() -> None:
            while True:
                rid, frame = await router.recv_multipart()
                with contextlib.suppress(Exception):
                    if isinstance(decode_frame(frame).messages[0], Hello):
                        welcome = Welcome("silent", PROTOCOL_VERSION, (), 8192, 60_000)
                        await router.send_multipart([rid, encode_frame([welcome], priority=True)])

        task = asyncio.ensure_future(welcome_only())
        start = time.monotonic()
        try:
            async with aio.Client(f"tcp://127.0.0.1:{port}", timeout_s=1, connect_timeout_s=1) as client:
                with pytest.raises(NodeUnavailable, match="no statesync node answered"):
                    await client.get("a")
            return time.monotonic() - start
        finally:
            task.cancel()
            router.close()
            ctx.term()

    assert run(main) < 5


class PortKiller:
    """A raw ROUTER playing a node: it answers ``hello`` and closes the port (as a dying
    node would) under every other request, counting them by op."""

    def __init__(self, router: zmq.asyncio.Socket) -> None:
        self.router = router
        self.partners: dict[int, int] = {}
        self.seqs: dict[int, int] = {}
        self.ops: dict[str, int] = {}
        self.keys: dict[str, set[tuple[str, int]]] = {}

    def _answer(self, port: int, req_id: int, reply: dict[str, Any]) -> list[object]:
        seq = self.seqs.get(port, 1)
        self.seqs[port] = seq + 1
        return [Msg(self.partners[port], seq, False, KIND_RESPONSE, req_id, encode(reply))]

    async def serve(self) -> None:
        while True:
            rid, frame = await self.router.recv_multipart()
            out: list[object] = []
            for m in decode_frame(frame).messages:
                if isinstance(m, Hello):
                    out.append(Welcome("killer", PROTOCOL_VERSION, (), 8192, 60_000))
                elif isinstance(m, Open):
                    self.partners[m.port] = m.partner
                elif isinstance(m, Msg) and m.kind == KIND_REQUEST:
                    request = decode(m.payload)
                    assert isinstance(request, dict)
                    op = str(request["op"])
                    if op == "hello":
                        out += self._answer(m.dst, m.req_id, HELLO_REPLY)
                    else:
                        self.ops[op] = self.ops.get(op, 0) + 1
                        if request.get("key") is not None:
                            self.keys.setdefault(op, set()).add(tuple(request["key"]))
                        out.append(Close(self.partners[m.dst], CLOSE_NOW, CLOSE_NOW, "the node died"))
            if out:
                await self.router.send_multipart([rid, encode_frame(out)])


HELLO_REPLY = {"ok": True, "node_id": "killer", "protocol": 1, "endpoints": [], "client_endpoints": []}


def test_a_cut_off_write_goes_again_with_its_key_and_a_read_goes_again_until_the_timeout() -> None:
    killer_box: list[PortKiller] = []

    async def main() -> None:
        ctx = zmq.asyncio.Context()
        router = ctx.socket(zmq.ROUTER)
        router.linger = 0
        port = router.bind_to_random_port("tcp://127.0.0.1")
        killer = PortKiller(router)
        killer_box.append(killer)
        task = asyncio.ensure_future(killer.serve())
        try:
            async with aio.Client(f"tcp://127.0.0.1:{port}", timeout_s=1, connect_timeout_s=1) as client:
                with pytest.raises(NodeUnavailable):
                    await client.set("k", 1, timeout_s=0.5)  # 0.5 s + the 5 s margin: a write is retried that long
                with pytest.raises(NodeUnavailable):
                    await client.get("k")  # retried on fresh ports until the timeout
        finally:
            task.cancel()
            router.close()
            ctx.term()

    run(main)
    # a write goes again on fresh ports, always with its one key (so a node applies it once)
    assert killer_box[0].ops["set"] >= 2 and len(killer_box[0].keys["set"]) == 1
    assert 2 <= killer_box[0].ops["get"] <= 12  # a read goes again, with backoff (20 ms doubling) within its 1 s
