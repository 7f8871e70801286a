"""The client's connection to its node in asyncio: made on first use, re-made with backoff,
requests with the protocol's retry rules, snapshot streams.

The same rules as the blocking client's loop (:mod:`statesync.client._loop`):
a call waits up to ``connect_timeout_s`` for the node, then raises
:class:`~statesync.errors.NodeUnavailable`; a request in
:data:`statesync.protocol.RETRY_SAFE` goes again on a fresh connection when
the old one died under it; any other (a write) goes again only when it
certainly was not sent, else :class:`~statesync.errors.ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Final, TypeVar

import attrs
import zmq.asyncio

from statesync import ports, protocol
from statesync._backoff import Backoff
from statesync.aio._link import End, Link
from statesync.client._loop import (
    BACKOFF_MAX_S,
    BACKOFF_MIN_S,
    PAYLOAD_BYTES_MAX,
    reply_of,
    stream_reader,
)
from statesync.core import AbsentType, Path, Value
from statesync.errors import (
    ClientError,
    ConnectionLost,
    HandshakeFailed,
    MessageTooLarge,
    NodeError,
    NodeRefused,
    NodeUnavailable,
    PortClosedError,
    PortsError,
    PortTransferredError,
    ProtocolMismatch,
    RequestFailed,
    RequestTimeout,
)

R = TypeVar("R")

OPTIONS: Final = ports.PortOptions(payload_bytes_max=PAYLOAD_BYTES_MAX, heartbeat_interval_s=1.0, heartbeat_timeout_s=5.0)
"""The blocking client's port options (the same Hello, window and heartbeats on the wire)."""


def backoff() -> Backoff:
    return Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S)


class Session:
    """One client's connection to its node (one DEALER at a time, ports on it)."""

    def __init__(self, endpoint: str, dial: str, keys: ports.CurveKeys | None, connect_timeout_s: float) -> None:
        self.endpoint = endpoint
        self.dial = dial
        self.connect_timeout_s = connect_timeout_s
        self.options = attrs.evolve(OPTIONS, curve=keys)
        self.ctx = zmq.asyncio.Context()
        self.link: Link | None = None
        self.port: End | None = None
        self.node_id: str | None = None
        self.lock = asyncio.Lock()
        self.link_lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    def unavailable(self, waited: float, detail: str) -> NodeUnavailable:
        address, _ = ports.split_key(self.endpoint)
        hint = ""
        if address.startswith("ipc://") and not os.path.exists(address[len("ipc://") :]):
            hint = " (its socket file does not exist)"
        return NodeUnavailable(
            f"no statesync node answered at {self.endpoint}{hint} within {waited:g} s{detail}; "
            "check that the node is running and that this is its client endpoint (the 'client' setting, shown by its log)"
        )

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

    async def connect(self, deadline: float) -> tuple[Link, End, protocol.HelloReply]:
        """A new port to the node, checked with ``hello``; retries with backoff until ``deadline``."""
        start = self.now()
        limit = min(deadline, start + self.connect_timeout_s)
        wait = backoff()
        detail = ""
        hello = protocol.encode_request(protocol.Hello(protocol.PROTOCOL))
        while True:
            remaining = limit - self.now()
            if remaining <= 0:
                raise self.unavailable(round(self.now() - start, 2), detail)
            try:
                link = await asyncio.wait_for(self._link(remaining), remaining)
                port = link.open_port()
                try:
                    reply = reply_of(await link.request(port, hello, remaining), protocol.HelloReply, self.endpoint)
                except BaseException:
                    link.close_port(port)
                    raise
            except HandshakeFailed as exc:
                raise NodeRefused(str(exc)) from exc
            except (PortsError, TimeoutError, OSError) as exc:
                detail = f" (last error: {exc})" if not isinstance(exc, TimeoutError | RequestTimeout) else ""
                await asyncio.sleep(min(wait.next_s(), max(0.0, limit - self.now())))
                continue
            except ProtocolMismatch as exc:
                raise ProtocolMismatch(f"the node at {self.endpoint} refused the handshake: {exc}") from exc
            if reply.protocol != protocol.PROTOCOL:
                link.close_port(port)
                raise ProtocolMismatch(
                    f"the node at {self.endpoint} speaks client protocol {reply.protocol}, this client "
                    f"{protocol.PROTOCOL}; use the same statesync version on both sides"
                )
            self.node_id = reply.node_id
            return link, port, reply

    async def _request_port(self, deadline: float) -> tuple[Link, End]:
        async with self.lock:
            link, port = self.link, self.port
            if link is not None and port is not None and not link.dead and not port.done and not port.partner_gone:
                return link, port
            link, port, _ = await self.connect(deadline)
            self.port = port
            return link, port

    async def request(self, request: protocol.Request, cls: type[R], timeout_s: float) -> R:
        """Send ``request`` and decode its reply as ``cls``, retrying as the protocol allows."""
        endpoint = self.endpoint
        op = request.OP
        msg = protocol.encode_request(request)
        deadline = self.now() + timeout_s
        again = backoff()
        while True:
            link, port = await self._request_port(deadline)
            remaining = deadline - self.now()
            if remaining <= 0:
                raise NodeUnavailable(f"the node at {endpoint} did not answer within {timeout_s:g} s; it is overloaded or stuck")
            if link.dead or port.done or port.partner_gone:  # died since: nothing was sent on it yet
                if self.port is port:
                    self.port = None
                continue
            try:
                reply = await link.request(port, msg, remaining)
            except RequestTimeout as exc:
                raise NodeUnavailable(
                    f"the node at {endpoint} did not answer a {op} request within {timeout_s:g} s; it is overloaded or stuck"
                ) from exc
            except (PortClosedError, PortTransferredError) as exc:
                if self.port is port:
                    self.port = None
                if op not in protocol.RETRY_SAFE:
                    raise ConnectionLost(
                        f"the connection to {endpoint} closed during a {op}; it may or may not have been applied: read it back"
                    ) from exc
                await asyncio.sleep(min(again.next_s(), max(0.0, deadline - self.now())))
                continue
            except MessageTooLarge as exc:
                raise ClientError(
                    f"the {op} request is too large: {exc}; the client protocol carries about 1 MB per request: "
                    "write a large subtree in several calls"
                ) from exc
            except RequestFailed as exc:
                raise NodeError(f"the node at {endpoint} failed the {op} request: {exc.remote_error}") from exc
            return reply_of(reply, cls, endpoint)

    async def stream_tree(self, prefix: Path, timeout_s: float) -> Value | AbsentType:
        """The subtree at ``prefix`` (ABSENT: nothing), streamed in chunks; each message must come within ``timeout_s``."""
        link, port, _ = await self.connect(self.now() + timeout_s)
        endpoint = self.endpoint
        try:
            link.post(port, protocol.encode_request(protocol.Snapshot(prefix)))
            reader = stream_reader(endpoint)
            while True:
                try:
                    data = await link.next_message(port, timeout_s)
                except TimeoutError:
                    raise NodeUnavailable(f"the node at {endpoint} stopped sending the snapshot for {timeout_s:g} s") from None
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

