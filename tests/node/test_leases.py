"""Leases and presence on nodes in one process, on trio's autojump clock (no sleeping in real time)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from statesync.core import ABSENT
from statesync.errors import (
    AccessDenied,
    BadRequest,
    InvalidPath,
    LeaseExpired,
    LeaseNotFound,
    LeaseNotHeld,
    TooManyLeases,
)
from statesync.node import Node, open_node
from statesync.node._leases import Lease
from statesync.node._service import unreserved
from statesync.testing import faults
from tests.node.test_node import cluster
from tests.support import FAST, wait_until_async

TTL_S = 2.0
HB_S = FAST["heartbeat_timeout_s"]
CALM = {"heartbeat_timeout_s": 30.0}
"""For tests not about losing a node: on the autojump clock a loaded machine can make a peer look
silent for seconds of clock time (the clock jumps while frames are in flight), and its successor
would then rightly end its leases."""


async def linked(nodes: list[Node]) -> None:
    n = len(nodes)
    await wait_until_async(
        lambda: all(sum(p["connected"] for p in x.status()["peers"].values()) == n - 1 for x in nodes),
        what=f"{n} nodes to link",
    )


class Deletes:
    """The delete events one node's watch sees under a prefix, by key."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    async def run(self, node: Node, prefix: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with node.watch(prefix) as watch:
            task_status.started()
            async for event in watch:
                if event.kind == "delete":
                    self.seen[event.key] = self.seen.get(event.key, 0) + 1


async def client_lease(node: Node, ttl_s: float = TTL_S, client: str = "c") -> Lease:
    """A lease held the way a remote client holds it: kept alive only by keepalives."""
    return await node._leases.grant(ttl_s, client=client)


async def keep_alive(lease: Lease, until: Callable[[], bool]) -> None:
    while not until():
        lease.keepalive()
        await trio.sleep(lease.ttl_s / 3)


async def test_a_revoked_lease_deletes_its_keys_everywhere_once(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(3, **CALM) as nodes, trio.open_nursery() as nursery:
        watchers = [Deletes() for _ in nodes]
        for node, w in zip(nodes, watchers, strict=True):
            await nursery.start(w.run, node, "room")
        a = nodes[0]
        async with a.lease(ttl_s=TTL_S) as lease:
            await a.set("room.ada", {"x": 1, "y": 2}, lease=lease)
            await a.set("room.bob", "here", lease=lease)
            await a.set("room.ada", {"x": 3, "y": 4}, lease=lease)  # re-tied by the newer write
            await a.set("room.keep", "not leased")
            await wait_until_async(lambda: all(n.get("room.bob") == "here" for n in nodes))
            await trio.sleep(10 * TTL_S)  # held by the node itself: no keepalive needed
            assert all(n.get("room.ada") == {"x": 3, "y": 4} for n in nodes)
        await wait_until_async(lambda: all(n.get("room") == {"keep": "not leased"} for n in nodes), what="the deletes")
        await wait_until_async(lambda: all(n.get("_statesync.leases", ABSENT) in (ABSENT, {}) for n in nodes))
        await trio.sleep(5.0)
        for w in watchers:
            assert w.seen == {"room.ada.x": 1, "room.ada.y": 1, "room.bob": 1}
        with pytest.raises(LeaseExpired, match="revoked"):
            lease.keepalive()
        with pytest.raises(LeaseExpired):
            await a.set("room.ada", 5, lease=lease)
        nursery.cancel_scope.cancel()


async def test_a_silent_holder_loses_its_lease_after_ttl(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(2, **CALM) as (a, b), trio.open_nursery() as nursery:
        lease = await client_lease(a)
        await a.set("svc.api", "tcp://10.0.0.1:80", lease=lease)
        stop = trio.Event()
        nursery.start_soon(keep_alive, lease, stop.is_set)
        await trio.sleep(5 * TTL_S)
        assert a.get("svc.api") is not None and b.get("svc.api") is not None  # kept alive
        stop.set()
        stopped_at = trio.current_time()
        await trio.sleep(TTL_S / 2)
        assert b.get("svc.api") is not None  # not before its ttl
        await wait_until_async(lambda: a.get("svc") is None and b.get("svc") is None, timeout_s=3 * TTL_S)
        assert trio.current_time() - stopped_at >= TTL_S - TTL_S / 3
        with pytest.raises(LeaseExpired, match="expired"):
            lease.keepalive()
        assert a.status()["leases"]["expired"] == 1


async def test_the_lease_of_a_dead_node_is_ended_by_its_successor(autojump_clock: trio.abc.Clock) -> None:
    """Three nodes; the granting one dies; the smallest live id deletes its keys after ttl + heartbeat timeout."""
    async with AsyncExitStack() as stack:
        b = await stack.enter_async_context(open_node(node_id="b", **FAST))
        c = await stack.enter_async_context(open_node(node_id="c", peers=list(b.endpoints), **FAST))
        nursery = await stack.enter_async_context(trio.open_nursery())
        a_done, a_stop = trio.Event(), trio.Event()
        holder: dict[str, Any] = {}

        async def run_a() -> None:
            async with open_node(node_id="a", peers=list(b.endpoints), **FAST) as a:
                holder["a"] = a
                await linked([a, b, c])
                lease = await client_lease(a)
                await a.set("room.ada", "cursor 1", lease=lease)
                await a.set("room.bob", "cursor 2", lease=lease)
                holder["lease"] = lease
                await a.sync()
                a_done.set()
                await a_stop.wait()

        nursery.start_soon(run_a)
        await a_done.wait()
        watchers = [Deletes(), Deletes()]
        for node, w in zip((b, c), watchers, strict=True):
            await nursery.start(w.run, node, "room")
        await wait_until_async(lambda: all(n.get("room.bob") == "cursor 2" for n in (b, c)))
        a_stop.set()  # a stops; its holder with it
        await wait_until_async(lambda: "a" not in {p for p, s in b.status()["peers"].items() if s["connected"]})
        await trio.sleep(TTL_S / 2)
        assert b.get("room.ada") == "cursor 1" and c.get("room.ada") == "cursor 1"
        await wait_until_async(
            lambda: b.get("room") is None and c.get("room") is None, timeout_s=TTL_S + HB_S + 3, what="the successor's deletes"
        )
        await trio.sleep(2.0)
        assert [w.seen for w in watchers] == [{"room.ada": 1, "room.bob": 1}] * 2
        # b, the successor, ends it (c too if the loaded machine made it lose b: the deletes converge)
        assert b.status()["leases"]["expired"] == 1
        nursery.cancel_scope.cancel()


async def test_a_partition_ends_the_lease_on_the_far_side_and_the_holder_learns_on_heal(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with cluster(3) as (a, b, c), trio.open_nursery() as nursery:
        lease = await client_lease(a)
        await a.set("room.ada", "before", lease=lease)
        await a.sync()
        holding = True
        nursery.start_soon(keep_alive, lease, lambda: not holding)
        for peer in ("n1", "n2"):
            faults(a).cut(peer)
        faults(b).cut("n0")
        faults(c).cut("n0")
        # the far side ends it; the owner's side keeps it (its holder is alive) and writes on
        await wait_until_async(lambda: b.get("room") is None and c.get("room") is None, timeout_s=TTL_S + 3 * HB_S + 3)
        await a.set("room.ada", "during", lease=lease)
        await a.set("room.cyd", "during", lease=lease)
        assert a.get("room") == {"ada": "during", "cyd": "during"}
        faults(a).heal()
        faults(b).heal()
        faults(c).heal()
        await wait_until_async(lambda: all(n.get("room") is None for n in (a, b, c)), timeout_s=30, what="convergence")
        with pytest.raises(LeaseExpired):
            lease.keepalive()
        holding = False
        await trio.sleep(10.0)
        assert all(n.get("room") is None for n in (a, b, c))  # keys never come back
        assert len({n.replica.digest() for n in (a, b, c)}) == 1


async def test_presence_lists_the_participants_and_forgets_those_who_leave(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(2, **CALM) as (a, b):
        async with a.presence("room.lobby", {"name": "Ada"}, participant="ada") as ada:
            async with b.presence("room.lobby", {"name": "Bob"}, participant="bob") as bob:
                await bob.update({"name": "Bob", "cursor": 7})
                await wait_until_async(lambda: len(ada.members()) == 2)
                assert ada.members() == {"ada": {"name": "Ada"}, "bob": {"name": "Bob", "cursor": 7}}
            await wait_until_async(lambda: a.get("room.lobby") == {"ada": {"name": "Ada"}})
            # another node ends ada's lease (as the far side of a partition would): her key goes,
            # and her next update joins again on a new lease
            assert ada.lease is not None
            record = ("_statesync", "leases", ada.lease.id)
            await wait_until_async(lambda: b.get((*record, "keys")) is not None)  # b has seen all of it
            await b.delete(record)
            await wait_until_async(lambda: a.get("room.lobby") is None and ada.lease is not None and ada.lease.ended)
            await ada.update({"name": "Ada", "back": True})
            assert ada.rejoins == 1 and a.get("room.lobby") == {"ada": {"name": "Ada", "back": True}}
        await wait_until_async(lambda: b.get("room.lobby") is None)


async def test_bad_lease_ids_tokens_and_ttls_are_refused(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(2, **CALM) as (a, b):
        lease = await client_lease(a)
        m = a._leases
        with pytest.raises(LeaseNotFound, match="no lease"):
            m.keepalive("n0~0000000000000000", "x")
        with pytest.raises(LeaseNotFound):
            m.keepalive("not a lease id", "x")
        with pytest.raises(LeaseNotHeld, match="another holder"):
            m.keepalive(lease.id, "forged")
        with pytest.raises(LeaseNotHeld, match="another holder"):
            await m.revoke(lease.id, "forged")
        await wait_until_async(lambda: lease.id in b._leases.index.records)
        with pytest.raises(LeaseNotHeld, match="granted by node n0"):
            b._leases.keepalive(lease.id, lease.token)
        for ttl in (0, -1, 1e9, "5", None):
            with pytest.raises(BadRequest, match="ttl_s"):
                await m.grant(ttl)  # type: ignore[arg-type]
        with pytest.raises(InvalidPath, match="cannot be tied"):
            await a.set("_statesync.leases.x", 1, lease=lease)
        with pytest.raises(AccessDenied, match="reserved"):
            unreserved(("_statesync", "leases", lease.id))
        assert a.get("room") is None


async def test_the_lease_tables_are_bounded(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(1, **CALM, leases_max=40, leases_per_client_max=15, lease_keys_max=3) as (a,):
        held = [await client_lease(a, client="greedy") for _ in range(15)]
        with pytest.raises(TooManyLeases, match="leases_per_client_max"):
            await client_lease(a, client="greedy")
        held += [await client_lease(a, client=f"c{i}") for i in range(25)]
        with pytest.raises(TooManyLeases, match="leases_max"):
            await client_lease(a, client="other")
        for i in range(3):
            await a.set(f"k.{i}", i, lease=held[0])
        await a.set("k.0", "again", lease=held[0])  # the same key: no new entry
        with pytest.raises(TooManyLeases, match="lease_keys_max"):
            await a.set("k.3", 3, lease=held[0])
        await trio.sleep(3 * TTL_S)  # nobody keeps them alive: all expire, and room is made again
        assert len(a._leases.index) == 0 and a.get("k") is None
        again = [await client_lease(a, client="greedy") for _ in range(15)]
        assert len(again) == 15
        assert len(a._leases._ended) == 40


async def test_a_key_overwritten_without_the_lease_outlives_it(autojump_clock: trio.abc.Clock) -> None:
    async with cluster(2, **CALM) as (a, b):
        lease = await client_lease(a)
        await a.set("cfg.owned", 1, lease=lease)
        await a.set("cfg.taken", 1, lease=lease)
        await a.sync()
        await b.set("cfg.taken", "b's now")  # b saw a's write: this one replaces it, untied
        await wait_until_async(lambda: a.get("cfg.taken") == "b's now")
        await lease.revoke()
        await wait_until_async(lambda: a.get("cfg") == {"taken": "b's now"} and b.get("cfg") == {"taken": "b's now"})


async def test_a_lease_survives_its_owner_restarting(autojump_clock: trio.abc.Clock, tmp_path: Any) -> None:
    """The record is durable and holds the token's digest: after a restart the holder's keepalives
    are accepted, and a holder that stays silent still loses the lease a ttl after the restart."""
    data = str(tmp_path / "a")
    async with open_node(node_id="a", data_dir=data, **{**FAST, **CALM}) as a:
        lease = await client_lease(a)
        silent = await client_lease(a)
        await a.set("room.kept", 1, lease=lease)
        await a.set("room.silent", 1, lease=silent)
    async with open_node(node_id="a", data_dir=data, **{**FAST, **CALM}) as a:
        assert a.get("room") == {"kept": 1, "silent": 1}
        again = a._leases.handle(lease.id, lease.token)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_alive, again, lambda: a.get("room.silent") is None)
            await wait_until_async(lambda: a.get("room.silent") is None, timeout_s=3 * TTL_S)
            nursery.cancel_scope.cancel()
        assert a.get("room") == {"kept": 1}
        with pytest.raises(LeaseNotHeld):
            a._leases.keepalive(lease.id, silent.token)
