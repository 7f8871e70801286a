"""The trio adapter for pyzmq: many tasks on one socket, small HWMs, cancel, close."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
import zmq

from statesync.errors import SocketClosed
from statesync.ports._zsocket import TrioSocket


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    c: zmq.Context[Any] = zmq.Context()
    try:
        yield c
    finally:
        c.destroy(linger=0)


_counter = iter(range(1_000_000))


def _pair(ctx: zmq.Context[Any], transport: str, hwm: int) -> tuple[TrioSocket, TrioSocket]:
    a = ctx.socket(zmq.DEALER)
    b = ctx.socket(zmq.DEALER)
    for s in (a, b):
        s.setsockopt(zmq.SNDHWM, hwm)
        s.setsockopt(zmq.RCVHWM, hwm)
        s.setsockopt(zmq.LINGER, 0)
    if transport == "tcp":
        a.bind("tcp://127.0.0.1:*")
    else:
        a.bind(f"inproc://zsocket-test-{next(_counter)}")
    b.connect(a.getsockopt(zmq.LAST_ENDPOINT).decode())
    return TrioSocket(a), TrioSocket(b)


@pytest.mark.parametrize("transport", ["tcp", "inproc"])
async def test_many_tasks_both_directions_small_hwm(ctx: zmq.Context[Any], transport: str) -> None:
    a, b = _pair(ctx, transport, hwm=2)
    senders, per_sender = 4, 300
    got: dict[int, list[tuple[int, int]]] = {0: [], 1: []}

    async def sender(sock: TrioSocket, who: int) -> None:
        for i in range(per_sender):
            if i % 3 == 0:
                await sock.send(b"%d:%d" % (who, i))
            else:
                await sock.send_batch([b"%d:%d" % (who, i)])

    async def receiver(sock: TrioSocket, side: int, stop: trio.Event) -> None:
        while len(got[side]) < senders * per_sender:
            msgs = await sock.recv_batch(7)
            for m in msgs:
                w, i = m.split(b":")
                got[side].append((int(w), int(i)))
        stop.set()

    done = [trio.Event(), trio.Event()]
    with trio.fail_after(20):
        async with trio.open_nursery() as n:
            for side, sock in ((0, a), (1, b)):
                for _ in range(3):
                    n.start_soon(receiver, sock, side, done[side])
            for w in range(senders):
                n.start_soon(sender, a, w)
                n.start_soon(sender, b, w)
            await done[0].wait()
            await done[1].wait()
            n.cancel_scope.cancel()
    for side in (0, 1):
        assert len(got[side]) == senders * per_sender
        for w in range(senders):
            # Each sender's messages arrive once each, in order (one thread appends).
            assert [i for ww, i in got[side] if ww == w] == list(range(per_sender))
    a.close(0)
    b.close(0)


async def test_cancelled_fd_waiter_hands_over(ctx: zmq.Context[Any]) -> None:
    a, b = _pair(ctx, "tcp", hwm=10)
    first_waiting = trio.Event()
    received: list[bytes] = []

    async with trio.open_nursery() as n:
        cancel_first = trio.CancelScope()

        async def first() -> None:
            with cancel_first:
                first_waiting.set()
                await b.recv()
            # must have been cancelled, not received
            assert cancel_first.cancelled_caught

        async def second(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            received.append(await b.recv())

        n.start_soon(first)
        await first_waiting.wait()
        await n.start(second)
        await trio.testing.wait_all_tasks_blocked()
        # the first task holds the fd; the second is parked; cancel the first
        cancel_first.cancel()
        await trio.testing.wait_all_tasks_blocked()
        await a.send(b"hello")
    assert received == [b"hello"]
    a.close(0)
    b.close(0)


async def test_close_wakes_waiting_tasks(ctx: zmq.Context[Any]) -> None:
    a, b = _pair(ctx, "tcp", hwm=1)
    outcomes: list[str] = []

    async def receiving() -> None:
        try:
            await b.recv()
        except SocketClosed:
            outcomes.append("recv-closed")

    async def sending() -> None:
        try:
            # nobody receives on b's side of this direction: fill HWMs until blocked
            while True:
                await b.send(b"x" * 10_000)
        except SocketClosed:
            outcomes.append("send-closed")

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(receiving)
            n.start_soon(receiving)
            n.start_soon(sending)
            await trio.testing.wait_all_tasks_blocked(0.05)
            b.close(0)
    assert sorted(outcomes) == ["recv-closed", "recv-closed", "send-closed"]
    with pytest.raises(SocketClosed):
        b.try_send(b"x")
    with pytest.raises(SocketClosed):
        await b.recv()
    a.close(0)


class _CountingSocket(TrioSocket):
    attempts = 0

    def try_send_multipart(self, parts: Any) -> bool:
        self.attempts += 1
        return super().try_send_multipart(parts)


async def test_router_full_peer_backs_off_without_spinning(ctx: zmq.Context[Any]) -> None:
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.SNDHWM, 1)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    ep = router.getsockopt(zmq.LAST_ENDPOINT).decode()
    peers = []
    for name in (b"slow", b"fast"):
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.RCVHWM, 1)
        d.setsockopt(zmq.ROUTING_ID, name)
        d.setsockopt(zmq.LINGER, 0)
        d.connect(ep)
        peers.append(TrioSocket(d))
    r = _CountingSocket(router)
    with trio.fail_after(10):
        for p in peers:
            await p.send(b"hi")
        seen = {tuple(await r.recv_multipart()) for _ in range(2)}
        assert {s[0] for s in seen} == {b"slow", b"fast"}
        # fill the slow peer until a send fails
        while r.try_send_multipart([b"slow", b"y" * 1000]):
            pass
    r.attempts = 0
    with trio.move_on_after(0.2):
        await r.send_multipart([b"slow", b"z"])
    # either POLLOUT stays true (the fast peer is writable: exponential back-off)
    # or it is not reported (wait on the fd): no spin either way
    assert r.attempts < 60
    # once the slow peer reads, the send completes
    with trio.fail_after(10):
        async with trio.open_nursery() as n:

            async def drain_slow() -> None:
                while True:
                    await peers[0].recv()

            n.start_soon(drain_slow)
            await r.send_multipart([b"slow", b"z"])
            n.cancel_scope.cancel()
    r.close(0)
    for p in peers:
        p.close(0)


async def test_refresh_after_calls_wakes_reader_when_edge_eaten(ctx: zmq.Context[Any]) -> None:
    """A reader waits; another task keeps calling zmq on the same socket; no wake-up is lost."""
    a, b = _pair(ctx, "tcp", hwm=1000)
    count = 200
    received = 0
    done = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as n:

            async def reader() -> None:
                nonlocal received
                while received < count:
                    received += len(await b.recv_batch())
                done.set()

            async def busy_sender_on_same_socket() -> None:
                # b's own sends process b's command mailbox, which can eat the
                # POLLIN edge the reader is waiting for
                while received < count:
                    await b.send(b"noise")
                    await trio.sleep(0)

            async def peer() -> None:
                for i in range(count):
                    await a.send(b"%d" % i)
                    await trio.sleep(0)

            async def sink() -> None:
                while True:
                    await a.recv_batch()

            n.start_soon(reader)
            n.start_soon(busy_sender_on_same_socket)
            n.start_soon(sink)
            n.start_soon(peer)
            await done.wait()
            n.cancel_scope.cancel()
    assert received == count
    a.close(0)
    b.close(0)


async def test_messages_queued_before_wrapping_are_seen(ctx: zmq.Context[Any]) -> None:
    """The EVENTS cache starts fresh: a wrapped socket whose edge was already eaten still sees input."""
    a = ctx.socket(zmq.PAIR)
    b = ctx.socket(zmq.PAIR)
    a.bind("inproc://zsocket-pre-wrapped")
    b.connect("inproc://zsocket-pre-wrapped")
    a.send(b"early")
    assert b.poll(5000) == zmq.POLLIN  # processes the commands: the fd edge is consumed
    tb = TrioSocket(b)
    with trio.fail_after(5):
        assert await tb.recv() == b"early"
    tb.close(0)
    a.close(0)
