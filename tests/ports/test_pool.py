"""PortPool: requests go to the least busy port; the wait queue is bounded."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from statesync.ports import (
    InvalidOptions,
    MessageChannel,
    PoolClosed,
    PoolQueueFull,
    PortPool,
    RequestTimeout,
)


def workers(n: int, gate: trio.Event, served: list[int]) -> list[MessageChannel]:
    chans = [MessageChannel() for _ in range(n)]
    for i, ch in enumerate(chans):

        async def handler(data: object, i: int = i) -> object:
            served.append(i)
            await gate.wait()
            return [i, data]

        ch.port2.set_request_handler(handler)
    return chans


async def test_requests_spread_to_the_least_busy_port() -> None:
    gate = trio.Event()
    served: list[int] = []
    chans = workers(3, gate, served)
    pool = PortPool([c.port1 for c in chans], per_port_max=2, queue_max=10)
    results: list[object] = []
    async with trio.open_nursery() as n:
        for k in range(6):

            async def one(k: int = k) -> None:
                results.append(await pool.request(k))

            n.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        # six requests, three ports, two each
        assert sorted(served) == [0, 0, 1, 1, 2, 2]
        assert pool.in_flight == 6
        gate.set()
    assert sorted(r[1] for r in results) == list(range(6))  # type: ignore[index]
    assert pool.in_flight == 0


async def test_bounded_wait_queue() -> None:
    gate = trio.Event()
    served: list[int] = []
    chans = workers(1, gate, served)
    pool = PortPool([chans[0].port1], per_port_max=1, queue_max=2)
    async with trio.open_nursery() as n:
        for k in range(3):  # one in flight, two waiting
            n.start_soon(pool.request, k)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.in_flight == 1 and pool.waiting == 2
        with pytest.raises(PoolQueueFull):
            await pool.request("one too many")
        gate.set()
    assert served == [0, 0, 0]


async def test_closed_ports_leave_the_pool() -> None:
    gate = trio.Event()
    gate.set()
    chans = workers(2, gate, [])
    pool = PortPool([c.port1 for c in chans])
    chans[0].port2.close()
    await trio.testing.wait_all_tasks_blocked()
    assert await pool.request("x") == [1, "x"]
    assert len(pool) == 1
    chans[1].port1.close()
    with pytest.raises(PoolClosed):
        await pool.request("y")


async def test_pool_timeout_covers_the_wait() -> None:
    gate = trio.Event()
    chans = workers(1, gate, [])
    pool = PortPool([chans[0].port1], per_port_max=1)
    async with trio.open_nursery() as n:
        n.start_soon(pool.request, "blocks")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RequestTimeout):
            await pool.request("waits", timeout_s=0.05)
        gate.set()


def test_pool_arguments_are_checked() -> None:
    with pytest.raises(InvalidOptions):
        PortPool(per_port_max=0)
