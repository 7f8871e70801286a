"""The client's connection to its node in asyncio: made on first use, re-made with backoff,
requests with the protocol's retry rules, snapshot streams.

The rules (connecting, retries, the handshake's checks) are
:mod:`statesync.client._common`'s, shared with the blocking client; this
module is the asyncio I/O that follows them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import attrs
import zmq.asyncio

from statesync import protocol
from statesync.aio._link import End, Link
from statesync.client._common import (
    HELLO,
    Attempts,
    Connecting,
    Settings,
    port_options,
    reply_of,
    stream_reader,
)
from statesync.client._common import request as send_request
from statesync.core import AbsentType, Path, Value
from statesync.errors import (
    ConnectionLost,
    HandshakeFailed,
    NodeUnavailable,
    PortsError,
    ProtocolMismatch,
    RequestTimeout,
)

R = TypeVar("R")


class Session:
    """One client's connection to its node (one DEALER at a time, ports on it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint
        self.dial = settings.dial
        self.connect_timeout_s = settings.connect_timeout_s
        self.options = port_options(settings.keys)
        self.ctx = zmq.asyncio.Context()
        self.link: Link | None = None
        self.port: End | None = None
        self.node_id: str | None = None
        self.lock = asyncio.Lock()
        self.link_lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    async def _link(self, timeout_s: float) -> Link:
        """The connection, made (one at a time) if there is none or it died."""
        async with self.link_lock:
            link = self.link
            if link is None or link.dead:
                options = attrs.evolve(self.options, connect_timeout_s=max(timeout_s, 0.05))
                link = self.link = Link(self.ctx, self.dial, options)
            if not link.up.is_set():
                await link.wait_up(timeout_s)
            return link

    async def connect(self, deadline: float, patient: bool = False) -> tuple[Link, End, protocol.HelloReply]:
        """A new port to the node, checked with ``hello``; retries with backoff until ``deadline``."""
        # without keys, once connected before, a refusal is most likely the node restarting
        patient = self.settings.keys is None and (patient or self.node_id is not None)
        tries = Connecting(self.endpoint, self.now(), deadline, patient=patient)
        while True:
            remaining = tries.remaining(self.now())
            try:
                link = await asyncio.wait_for(self._link(remaining), remaining)
                port = link.open_port()
                try:
                    reply = tries.hello(await link.request(port, HELLO, remaining))
                except BaseException:
                    link.close_port(port)
                    raise
            except HandshakeFailed as exc:
                await asyncio.sleep(tries.handshake_failed(exc, self.now()))
                continue
            except (PortsError, TimeoutError, OSError) as exc:
                await asyncio.sleep(tries.failed(exc, self.now(), timed_out=isinstance(exc, TimeoutError | RequestTimeout)))
                continue
            except ProtocolMismatch as exc:
                raise tries.refused(exc) from exc
            self.node_id = reply.node_id
            return link, port, reply

    async def _request_port(self, deadline: float, patient: bool = False) -> tuple[Link, End]:
        async with self.lock:
            link, port = self.link, self.port
            if link is not None and port is not None and not link.dead and not port.done and not port.partner_gone:
                return link, port
            link, port, _ = await self.connect(deadline, patient)
            self.port = port
            return link, port

    async def request(self, request: protocol.Request, cls: type[R], timeout_s: float) -> R:
        """Send ``request`` and decode its reply as ``cls``, retrying as the protocol allows."""
        tries = Attempts(self.endpoint, request, timeout_s, self.now())
        return reply_of(await send_request(self, tries, self.connect_timeout_s), cls, self.endpoint)

    # -- the request I/O (statesync.client._common.RequestIO)

    async def connection(self, deadline: float, patient: bool) -> tuple[Link, End]:
        return await self._request_port(deadline, patient)

    def dead(self, conn: tuple[Link, End]) -> bool:
        link, port = conn
        return link.dead or port.done or port.partner_gone

    def forget(self, conn: tuple[Link, End]) -> None:
        if self.port is conn[1]:
            self.port = None

    async def send(self, conn: tuple[Link, End], msg: dict[str, Any], timeout_s: float) -> object:
        return await conn[0].request(conn[1], msg, timeout_s)

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(seconds)

    async def stream_tree(self, prefix: Path, timeout_s: float) -> Value | AbsentType:
        """The subtree at ``prefix`` (ABSENT: nothing), streamed in chunks; each message must come within ``timeout_s``."""
        link, port, _ = await self.connect(self.now() + min(timeout_s, self.connect_timeout_s))
        endpoint = self.endpoint
        try:
            link.post(port, protocol.encode_request(protocol.Snapshot(prefix)))
            reader = stream_reader(endpoint)
            while True:
                try:
                    data = await link.next_message(port, timeout_s)
                except TimeoutError as exc:
                    raise NodeUnavailable(f"the node at {endpoint} stopped sending the snapshot for {timeout_s:g} s") from exc
                if data is None:
                    raise ConnectionLost(f"the connection to {endpoint} closed during a snapshot; try again")
                item = reader.feed(data)
                if isinstance(item, protocol.Subtree) and item.kind == "end":
                    return item.value
        finally:
            link.close_port(port)

    def abandon(self) -> None:
        """Forget a connection whose loop has ended (nothing can be sent on it any more)."""
        self.link = self.port = None
        self.ctx.destroy(linger=0)

    def close(self) -> None:
        link, self.link, self.port = self.link, None, None
        if link is not None and not link.dead:
            link.proto.close_all("the client closed")
            link.apply()
            link.close("the client closed", graceful=True)
        self.ctx.destroy(linger=int(self.options.linger_s * 1000))

