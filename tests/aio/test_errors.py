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
from statesync.ports._envelope import PROTOCOL_VERSION, Hello, Welcome
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
