"""Ports across runtimes (several port runtimes in one process, over tcp, ipc and inproc)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import zmq

from statesync.ports import (
    ConnectError,
    MessageEvent,
    MessagePort,
    PortClosedError,
    PortOptions,
    PortQueueFull,
    PortRuntime,
    RequestTimeout,
    open_runtime,
)
from statesync.ports._envelope import (
    KIND_MESSAGE,
    PROTOCOL_VERSION,
    Bye,
    Hello,
    Ping,
    Welcome,
)
from statesync.ports._zsocket import TrioSocket
from statesync.wire import decode_frame, encode_frame

FAST = PortOptions(
    heartbeat_interval_s=0.05, heartbeat_timeout_s=0.5, connect_timeout_s=2.0, linger_s=0.1
)


@asynccontextmanager
async def pair(
    options: PortOptions = FAST,
    endpoint: str = "tcp://127.0.0.1:*",
    context: zmq.Context[Any] | None = None,
) -> AsyncIterator[tuple[PortRuntime, PortRuntime, MessagePort, MessagePort]]:
    async with (
        open_runtime(options, context=context) as a,
        open_runtime(options, context=context) as b,
    ):
        listener = b.listen(endpoint)
        p = await a.connect(listener.endpoints[0])
        with trio.fail_after(5):
            q = await listener.accept()
        yield a, b, p, q


async def recv(port: MessagePort, n: int = 1) -> list[object]:
    out: list[object] = []
    with trio.fail_after(10):
        async for ev in port:
            out.append(ev.data)
            if len(out) == n:
                break
    return out


@pytest.mark.parametrize("kind", ["tcp", "tcp0", "ipc", "inproc"])
async def test_listen_connect_and_talk(kind: str, tmp_path: pathlib.Path) -> None:
    ctx: zmq.Context[Any] | None = None
    endpoint = {
        "tcp": "tcp://127.0.0.1:*",
        "tcp0": "tcp://127.0.0.1:0",
        "ipc": f"ipc://{tmp_path}/ports.sock",
        "inproc": "inproc://test-listen-connect",
    }[kind]
    if kind == "inproc":
        ctx = zmq.Context()
    try:
        async with pair(FAST, endpoint, ctx) as (a, b, p, q):
            assert b._listeners[0].endpoints[0] != endpoint or kind in ("ipc", "inproc")
            assert p.remote is not None and p.remote.runtime_id == b.id
            assert q.remote is not None and q.remote.runtime_id == a.id
            p.post_message({"hello": [1, 2.5, None, b"x"]})
            assert await recv(q) == [{"hello": [1, 2.5, None, b"x"]}]
            q.post_message("back")
            assert await recv(p) == ["back"]
    finally:
        if ctx is not None:
            ctx.term()


async def test_close_crosses_processes_both_ways() -> None:
    async with pair() as (_a, _b, p, q):
        closed = trio.Event()
        q.add_event_listener("close", lambda e: closed.set())
        p.post_message("last words")
        p.close()
        assert await recv(q) == ["last words"]
        with trio.fail_after(5):
            await closed.wait()
        assert q.closed
        with pytest.raises(PortClosedError):
            q.post_message(1)
    async with pair() as (_a, _b, p, q):
        q.close()
        events = [e async for e in p]  # ends at the close
        assert events == []
        assert p.closed


async def test_many_ports_share_one_connection() -> None:
    async with pair() as (a, b, p, q):
        listener = b._listeners[0]
        others = [await a.connect(listener.endpoints[0]) for _ in range(4)]
        peers = [await listener.accept() for _ in range(4)]
        assert len(a._links) == 1 and len(b._links) == 1
        for i, o in enumerate(others):
            o.post_message(i)
        got = sorted([(await recv(x))[0] for x in peers])  # type: ignore[type-var]
        assert got == [0, 1, 2, 3]
        p.post_message("p")
        assert await recv(q) == ["p"]


async def test_ordering_under_load_with_small_hwm() -> None:
    opts = attrs_evolve(FAST, sndhwm=2, rcvhwm=2, batch_messages_max=16, port_window=32)
    async with pair(opts) as (a, b, p, q):
        listener = b._listeners[0]
        ports = [(p, q)]
        for _ in range(2):
            x = await a.connect(listener.endpoints[0])
            ports.append((x, await listener.accept()))
        count = 3000
        got: list[list[object]] = [[] for _ in ports]

        async def produce(tx: MessagePort) -> None:
            for k in range(count):
                await tx.send(k)

        async def consume(i: int, rx: MessagePort) -> None:
            async for ev in rx:
                got[i].append(ev.data)
                if len(got[i]) == count:
                    return

        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                for i, (tx, rx) in enumerate(ports):
                    n.start_soon(produce, tx)
                    n.start_soon(consume, i, rx)
        assert all(g == list(range(count)) for g in got)


def attrs_evolve(o: PortOptions, **kw: Any) -> PortOptions:
    return attrs.evolve(o, **kw)


async def test_unstarted_remote_port_bounds_the_sender() -> None:
    async with pair(attrs_evolve(FAST, port_window=10)) as (_a, _b, p, q):
        for i in range(10):
            p.post_message(i)
        with pytest.raises(PortQueueFull):
            p.post_message(10)
        assert await recv(q, 10) == list(range(10))
        with trio.fail_after(5):
            await p.wait_writable()
        p.post_message(10)
        assert await recv(q) == [10]


async def test_connection_queue_bound() -> None:
    async with pair(attrs_evolve(FAST, link_queue_max=4, port_window=1000)) as (_a, _b, p, q):
        # no yield between posts: the sender task cannot run, the queue fills
        sent = 0
        with pytest.raises(PortQueueFull):
            for i in range(100):
                p.post_message(i)
                sent += 1
        assert 4 <= sent < 100
        with trio.fail_after(5):
            await p.wait_writable()
        assert await recv(q, sent) == list(range(sent))


async def test_messageerror_across_processes_and_port_keeps_working() -> None:
    async with pair() as (_a, _b, p, q):
        errors: list[MessageEvent] = []
        q.on_messageerror = errors.append
        st = p._state
        assert st is not None
        st.runtime.post(st, KIND_MESSAGE, 0, b"\xc1\x00", (), False)
        p.post_message("ok")
        # async for yields the messageerror event too (data None), then goes on
        assert await recv(q, 2) == [None, "ok"]
        assert len(errors) == 1 and errors[0].type == "messageerror"


async def test_request_across_processes() -> None:
    async with pair() as (_a, _b, p, q):

        async def handler(d: object) -> object:
            if d == "hang":
                await trio.sleep_forever()
            return ["done", d]

        q.set_request_handler(handler)
        assert await p.request(7) == ["done", 7]
        with pytest.raises(RequestTimeout):
            await p.request("hang", timeout_s=0.1)
        assert await p.request(8) == ["done", 8]


async def test_connect_to_nothing_times_out() -> None:
    async with open_runtime(attrs_evolve(FAST, connect_timeout_s=0.3)) as a:
        # an ephemeral port that nobody listens on
        s: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.ROUTER)
        s.bind("tcp://127.0.0.1:*")
        ep = s.getsockopt_string(zmq.LAST_ENDPOINT)
        s.close(0)
        with trio.fail_after(5), pytest.raises(ConnectError):
            await a.connect(ep)


class FakePeer:
    """A raw ROUTER that answers the handshake by hand, then does what the test says."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        s = ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.LINGER, 0)
        s.bind("tcp://127.0.0.1:*")
        self.endpoint = s.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.sock = TrioSocket(s)
        self.rid = b""

    async def handshake(self) -> None:
        rid, data = await self.sock.recv_multipart()
        self.rid = rid
        assert isinstance(decode_frame(data).messages[0], Hello)
        await self.sock.send_multipart(
            [rid, encode_frame([Welcome("fake", PROTOCOL_VERSION, (), 100)])]
        )


async def test_silent_peer_is_declared_dead_and_ports_close() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        fake = FakePeer(ctx)
        async with open_runtime(FAST) as a, trio.open_nursery() as n:
            n.start_soon(fake.handshake)
            p = await a.connect(fake.endpoint)
            closes: list[MessageEvent] = []
            p.on_close = closes.append
            start = trio.current_time()
            # the fake peer never answers pings: heartbeat timeout (0.5 s)
            events = [e async for e in p]
            assert events == []
            assert p.closed
            elapsed = trio.current_time() - start
            assert 0.3 < elapsed < 3.0
            assert len(closes) == 1 and "heartbeat" in closes[0].reason
        fake.sock.close(0)
    finally:
        ctx.destroy(0)


async def test_dropped_tcp_connection_closes_ports_at_once() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        fake = FakePeer(ctx)
        slow = attrs_evolve(FAST, heartbeat_interval_s=5, heartbeat_timeout_s=30)
        async with open_runtime(slow) as a, trio.open_nursery() as n:
            n.start_soon(fake.handshake)
            p = await a.connect(fake.endpoint)
            await trio.testing.wait_all_tasks_blocked()
            fake.sock.close(0)  # the TCP connection drops: the monitor sees it
            with trio.fail_after(5):
                events = [e async for e in p]
            assert events == []
            assert p.closed
    finally:
        ctx.destroy(0)


async def test_bad_input_never_crashes_the_listener() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        async with open_runtime(FAST) as b:
            listener = b.listen("tcp://127.0.0.1:*")
            raw = ctx.socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(listener.endpoints[0])
            t = TrioSocket(raw)
            # garbage before any handshake: dropped
            for junk in (b"", b"\x01", b"\xff" * 50, b"\x01\x00\xc1"):
                await t.send(junk)
            # a valid frame that is not a Hello: the listener says Bye
            await t.send(encode_frame([Ping()]))
            with trio.fail_after(5):
                bye = decode_frame(await t.recv()).messages[0]
            assert isinstance(bye, Bye)
            # handshake, then garbage until the listener drops the connection
            await t.send(encode_frame([Hello("raw", PROTOCOL_VERSION, (), 10)]))
            with trio.fail_after(5):
                assert isinstance(decode_frame(await t.recv()).messages[0], Welcome)
            for _ in range(20):
                await t.send(b"\x01\x00\x92\x01")
            with trio.fail_after(5):
                while True:
                    m = decode_frame(await t.recv()).messages[0]
                    if isinstance(m, Bye):
                        break
            assert b.bad_frames >= 17
            t.close(0)
            # the listener still works
            async with open_runtime(FAST) as a:
                p = await a.connect(listener.endpoints[0])
                q = await listener.accept()
                p.post_message("still fine")
                assert await recv(q) == ["still fine"]
    finally:
        ctx.destroy(0)


async def test_heartbeat_rate_follows_the_peers_timeout() -> None:
    slow = PortOptions()  # pings every 1 s, times out after 5 s
    async with open_runtime(slow) as a, open_runtime(FAST) as b:  # b times out after 0.5 s
        listener = b.listen("tcp://127.0.0.1:*")
        p = await a.connect(listener.endpoints[0])
        q = await listener.accept()
        (a_link,) = a._links
        (b_link,) = b._links
        assert a_link.live.ping_interval_s <= FAST.heartbeat_timeout_s / 4
        start = b_link.frames_received
        # an idle connection stays alive past b's timeout: a pings fast enough
        with trio.fail_after(FAST.heartbeat_timeout_s * 3):
            while b_link.frames_received < start + 4:
                await trio.sleep(FAST.heartbeat_timeout_s / 10)
        assert not p.closed and not q.closed


async def test_full_accept_backlog_closes_the_new_port() -> None:
    async with open_runtime(FAST) as a, open_runtime(attrs_evolve(FAST, accept_backlog=1)) as b:
        listener = b.listen("tcp://127.0.0.1:*")
        first = await a.connect(listener.endpoints[0])
        second = await a.connect(listener.endpoints[0])
        with trio.fail_after(5):
            events = [e async for e in second]  # ends at its close
        assert events == [] and second.closed
        accepted = await listener.accept()
        first.post_message("kept")
        assert await recv(accepted) == ["kept"]


async def test_closing_a_listener_closes_its_ports_and_ends_iteration() -> None:
    async with pair() as (_a, b, p, _q):
        listener = b._listeners[0]
        closed = trio.Event()
        p.on_close = lambda ev: closed.set()
        ended = trio.Event()

        async def iterate() -> None:
            async for _ in listener:
                pass
            ended.set()

        async with trio.open_nursery() as n:
            n.start_soon(iterate)
            await trio.testing.wait_all_tasks_blocked()
            listener.close()
            with trio.fail_after(5):
                await closed.wait()
                await ended.wait()
        assert p.closed
