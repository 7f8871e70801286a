"""A node cannot tell the asyncio client from the blocking one: the same frames, up to the
random ids (runtime id, port ids), seen by a raw ROUTER that plays the node."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import attrs
import zmq

from statesync import aio
from statesync.client import Client
from statesync.errors import StatesyncError
from statesync.ports._envelope import PROTOCOL_VERSION, Welcome
from statesync.wire import decode_frame, encode_frame

RANDOM_FIELDS = ("runtime_id", "port", "partner", "dst")


def _normal(envelope: Any) -> object:
    """The envelope with its random ids blanked."""
    fields = {f.name: (0 if f.type in (int, "int") else "") for f in attrs.fields(type(envelope)) if f.name in RANDOM_FIELDS}
    return attrs.evolve(envelope, **fields)


def capture(client: Callable[[str], None]) -> list[tuple[bytes, tuple[object, ...]]]:
    """The first three frames ``client(endpoint)`` sends (Hello, then Open and the hello request
    after a Welcome): each frame's two header bytes and its envelopes, ids blanked."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    thread = threading.Thread(target=client, args=(f"tcp://127.0.0.1:{port}",), daemon=True)
    thread.start()
    frames: list[bytes] = []
    try:
        while len(frames) < 3:
            assert router.poll(10_000), f"the client sent {len(frames)} frames"
            rid, frame = router.recv_multipart()
            if not frames:
                welcome = Welcome("fake-node", PROTOCOL_VERSION, (), 8192, 5000)
                router.send_multipart([rid, encode_frame([welcome], priority=True)])
            frames.append(frame)
    finally:
        router.close()
        ctx.term()
        thread.join(15)
    return [(f[:2], tuple(_normal(m) for m in decode_frame(f).messages)) for f in frames]


def _blocking(endpoint: str) -> None:
    with Client(endpoint, connect_timeout_s=1, timeout_s=1) as client, contextlib.suppress(StatesyncError):
        client.ping()


def _asyncio(endpoint: str) -> None:
    async def main() -> None:
        async with aio.Client(endpoint, connect_timeout_s=1, timeout_s=1) as client:
            with contextlib.suppress(StatesyncError):
                await client.ping()

    asyncio.run(main())


def test_the_asyncio_client_sends_the_blocking_clients_frames() -> None:
    blocking = capture(_blocking)
    asyncio_side = capture(_asyncio)
    assert [type(m).__name__ for _, ms in blocking for m in ms] == ["Hello", "Open", "Msg"]
    assert asyncio_side == blocking
