"""Nodes in one process, linked over tcp loopback: the Python API end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from statesync import ports
from statesync.core import InvalidPath, InvalidValue, Version, WriteConcernError
from statesync.node import Node, NodeClosedError, open_node
from statesync.storage import DataDirMismatch
from statesync.testing import faults
from tests.support import FAST, wait_until_async


@asynccontextmanager
async def cluster(n: int, **options: Any) -> AsyncIterator[list[Node]]:
    """n nodes; each connects to the first (the rest of the mesh is learned)."""
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_node(node_id="n0", **{**FAST, **options}))
        nodes = [first]
        for i in range(1, n):
            nodes.append(
                await stack.enter_async_context(
                    open_node(node_id=f"n{i}", peers=list(first.endpoints), **{**FAST, **options})
                )
            )
        await wait_until_async(
            lambda: all(sum(p["connected"] for p in x.status()["peers"].values()) == n - 1 for x in nodes),
            what=f"{n} nodes to link",
        )
        yield nodes


def converged(nodes: list[Node]) -> bool:
    digests = {x.replica.digest() for x in nodes}
    return len(digests) == 1


@pytest.mark.parametrize("strategy", ["vector-clock", "last-write-wins"])
async def test_three_nodes_converge_after_concurrent_writes(strategy: str) -> None:
    async with cluster(3, strategy=strategy) as nodes:
        async with trio.open_nursery() as nursery:
            for i, node in enumerate(nodes):
                for k in range(30):
                    nursery.start_soon(node.set, ("shared", f"k{k % 10}"), f"{node.node_id}-{k}")
                nursery.start_soon(node.set, ("own", f"n{i}"), {"x": i, "y": [i]})
        await wait_until_async(lambda: converged(nodes))
        view = nodes[0].get()
        assert all(x.get() == view for x in nodes)
        assert view["own"] == {f"n{i}": {"x": i, "y": [i]} for i in range(3)}
        if strategy == "last-write-wins":
            assert all(x.conflicts(("shared", "k1")) == [] for x in nodes)


async def test_api_basics() -> None:
    async with cluster(2) as (a, b):
        receipt = await a.set("user.name", "Ada", ack="all", timeout_s=5)
        assert receipt.path == "user.name" and receipt.origin == "n0" and receipt.acked_by == ("n1",)
        assert a.get("user.name") == "Ada" and a.get("user") == {"name": "Ada"}
        assert b.get("user.name") == "Ada"  # ack="all": b has it
        assert a.get("missing", default=42) == 42
        await b.delete("user", ack="all")
        assert a.get("user") is None
        with pytest.raises(InvalidPath):
            await a.set("a..b", 1)
        with pytest.raises(InvalidValue, match="set"):
            await a.set("x", {1, 2})
        receipts = await a.set_many([("m.a", 1), ("m.b", 2)], ack="all")
        assert [r.path for r in receipts] == ["m.a", "m.b"] and receipts[1].seq == receipts[0].seq + 1
        assert b.get("m") == {"a": 1, "b": 2}


async def test_large_values_travel_and_oversized_ones_are_refused_at_the_call() -> None:
    async with cluster(2, frame_bytes_max=100_000) as (a, b):
        big = "x" * 24_000  # under a quarter of a frame
        await a.set_many([(("big", str(i)), big) for i in range(20)], ack="all")
        assert b.get(("big", "19")) == big
        with pytest.raises(InvalidValue, match="limit"):
            await a.set("too.big", "y" * 30_000)
        with pytest.raises(ports.MessageTooLarge, match="exceeds"):
            a.broadcast_channel("c").post_message("z" * 60_000)


async def test_conflicts_listed_and_resolved_by_a_later_write() -> None:
    async with cluster(2, strategy="vector-clock") as (a, b):
        faults(a).cut("n1")
        faults(b).cut("n0")
        await a.set("doc.title", "from a")
        await b.set("doc.title", "from b")
        faults(a).heal()
        faults(b).heal()
        await wait_until_async(lambda: len(a.conflicts("doc.title")) == 2 and len(b.conflicts("doc.title")) == 2)
        values = sorted(c.value for c in a.conflicts("doc.title"))
        assert values == ["from a", "from b"]
        await a.set("doc.title", "merged", ack="all")
        assert a.conflicts("doc.title") == b.conflicts("doc.title") == []
        assert b.get("doc.title") == "merged"


async def test_custom_resolver_per_prefix() -> None:
    def longest(path: tuple[str, ...], versions: tuple[Version, ...]) -> object:
        return max((v.value for v in versions), key=lambda x: (len(str(x)), str(x)))

    async with cluster(2, strategy={"": "vector-clock", "notes": longest}) as (a, b):
        faults(a).cut("n1")
        faults(b).cut("n0")
        await a.set("notes.x", "short")
        await b.set("notes.x", "much longer")
        faults(a).heal()
        faults(b).heal()
        await wait_until_async(lambda: a.get("notes.x") == "much longer" == b.get("notes.x") and len(a.conflicts("notes.x")) == 2)


async def test_ack_all_fails_naming_the_silent_peer_and_the_write_stays() -> None:
    async with cluster(3) as (a, b, c):
        faults(c).cut("n0")  # c receives nothing from a (and sends nothing back)
        faults(a).cut("n2")
        with pytest.raises(WriteConcernError) as info:
            await a.set("k", 1, ack="all", timeout_s=0.5)
        assert info.value.missing == ("n2",)
        assert "n2" in str(info.value)
        assert a.get("k") == 1
        await wait_until_async(lambda: b.get("k") == 1)
        faults(a).heal()
        faults(c).heal()
        await wait_until_async(lambda: c.get("k") == 1)  # spreads later


async def test_ack_n_counts_peers() -> None:
    async with cluster(3) as (a, _b, _c):
        r = await a.set("k", 1, ack=2, timeout_s=5)
        assert len(r.acked_by) >= 2


async def test_watch_delivers_in_order_and_cancels() -> None:
    async with cluster(2) as (a, b):
        got: list[tuple[str, Any, Any, str]] = []
        async with b.watch("user") as changes:

            async def consume() -> None:
                async for change in changes:
                    got.append((change.key, change.kind, change.old, change.origin))
                    if len(got) == 4:
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                await a.set("user.name", "Ada", ack="all")
                await a.set("user.name", "Grace", ack="all")
                await a.set("other", 1, ack="all")
                await a.set("user.age", 36, ack="all")
                await a.delete("user.name", ack="all")
        assert [g[0] for g in got] == ["user.name", "user.name", "user.age", "user.name"]
        assert [g[1] for g in got] == ["put", "put", "put", "delete"]
        assert got[1][2] == "Ada" and got[3][2] == "Grace" and got[0][3] == "n0"
        assert len(b._hub) == 0  # the watch ended with its block


async def test_slow_watcher_gets_lagged_then_current_subtree() -> None:
    async with open_node(node_id="solo", watch_buffer_max=10) as node, node.watch("k") as changes:
        await node.set_many([(("k", str(i)), i) for i in range(50)])
        first = await changes.__anext__()
        assert first.kind == "lagged" and first.value == {str(i): i for i in range(50)}
        await node.set("k.new", 1)
        nxt = await changes.__anext__()
        assert nxt.kind == "put" and nxt.key == "k.new"


async def test_broadcast_channel_reaches_listening_nodes_only() -> None:
    async with cluster(3) as (a, b, c):
        ch_a = a.broadcast_channel("presence")
        ch_b = b.broadcast_channel("presence")
        ch_b2 = b.broadcast_channel("presence")
        other = c.broadcast_channel("elsewhere")
        ch_a.post_message({"user": "ada", "online": True})
        with trio.fail_after(5):
            assert await ch_b.__anext__() == ({"user": "ada", "online": True}, "n0")
            assert await ch_b2.__anext__() == ({"user": "ada", "online": True}, "n0")
        ch_b.post_message("hi")
        with trio.fail_after(5):
            assert await ch_b2.__anext__() == ("hi", "n1")  # same-node listeners too
            assert await ch_a.__anext__() == ("hi", "n1")
        assert not other._buffer
        assert a.get() == {}  # never stored
        ch_a.close()
        with pytest.raises(NodeClosedError):
            ch_a.post_message(1)


async def test_membership_learns_peers_of_peers() -> None:
    async with open_node(node_id="a", **FAST) as a, open_node(node_id="b", peers=list(a.endpoints), **FAST) as b:
        await wait_until_async(lambda: b.status()["peers"].get("a", {}).get("connected", False))
        # c only knows b; it learns a from b and links with it directly
        async with open_node(node_id="c", peers=list(b.endpoints), **FAST) as c:
            await wait_until_async(lambda: c.status()["peers"].get("a", {}).get("connected", False))
            await a.set("from.a", 1)
            await wait_until_async(lambda: c.get("from.a") == 1)


async def test_restart_from_disk_keeps_state_and_never_reuses_a_seq(tmp_path: Path) -> None:
    data = tmp_path / "a"
    async with open_node(node_id="a", data_dir=str(data)) as node:
        receipts = await node.set_many([(("k", str(i)), i) for i in range(100)])
        await node.delete("k.5")
        last = receipts[-1].seq + 1
    async with open_node(node_id="a", data_dir=str(data)) as node:
        assert node.get("k.7") == 7 and node.get("k.5") is None
        r = await node.set("k.new", 1)
        assert r.seq == last + 1
    with pytest.raises(DataDirMismatch, match=r"belongs to|node id"):
        async with open_node(node_id="b", data_dir=str(data)):
            pass


async def test_checkpoint_then_restart(tmp_path: Path) -> None:
    data = tmp_path / "a"
    async with open_node(node_id="a", data_dir=str(data), checkpoint_ops=50) as node:
        for start in range(0, 300, 30):
            await node.set_many([(("k", str(i)), i) for i in range(start, start + 30)])
        stats = node.status()["storage"]
        assert stats["log_ops"] < 300
        digest = node.replica.digest()
    async with open_node(node_id="a", data_dir=str(data)) as node:
        assert node.replica.digest() == digest


async def test_sync_returns_once_peers_answered() -> None:
    async with cluster(2, sync_interval_s=60) as (a, b):
        faults(a).cut("n1")
        await a.set("k", 1)
        faults(a).heal()
        assert await b.sync(timeout_s=5)
        await wait_until_async(lambda: b.get("k") == 1, timeout_s=2)


async def test_status_reports_peers_log_and_storage() -> None:
    async with cluster(2) as (a, b):
        await a.set("k", 1, ack="all")
        await a.set_many([("m.x", 1), ("m.y", 2)], ack="all")
        st = a.status()
        assert st["node_id"] == "n0" and st["vv"] == {"n0": 3} and st["seq"] == 3
        assert st["endpoints"] == list(a.endpoints) and st["links"] == 1 and st["watches"] == 0
        assert list(st["peers"]) == ["n1"]
        peer = st["peers"]["n1"]
        assert peer["connected"] and peer["endpoints"] == list(b.endpoints)
        assert peer["they_lack_ops"] == 0 and peer["we_lack_ops"] == 0 and peer["unacked_own_ops"] == 0  # ack="all"
        assert st["pending_writes"] == 0 and st["causal_buffer_ops"] == 0 and st["leaves"] == 3
        assert st["log_ops"] == len(a.replica.log) <= 3
        transport = st["transport"]
        assert transport["commits"] == 2  # one per write call: nothing else wrote on a
        assert transport["frames_out"] >= 2 and transport["frames_in"] >= 2  # the ops out, the acks in
        assert transport["bad_frames"] == 0 and transport["frames_dropped_full"] == 0
        assert st["storage"]["log_ops"] == 0  # an in-memory node persists nothing
        assert st["security"] == {"curve": False, "insecure_endpoints": []}
        assert st["snapshot_progress"] == {} and "faults" not in st
        theirs = b.status()
        assert theirs["vv"] == {"n0": 3} and theirs["peers"]["n0"]["we_lack_ops"] == 0
        assert theirs["transport"]["commits"] >= 1 and theirs["seq"] == 0
        faults(a).cut("n1")
        assert a.status()["faults"] == {"dropped": 0, "duplicated": 0, "cut": ["n1"]}


async def test_writes_after_close_are_refused() -> None:
    async with open_node(node_id="a") as node:
        pass
    with pytest.raises(NodeClosedError):
        await node.set("k", 1)


async def test_a_second_live_node_with_the_same_id_is_refused() -> None:
    async with open_node(node_id="a", **FAST) as a, open_node(node_id="b", peers=list(a.endpoints), **FAST) as b:
        await wait_until_async(lambda: a.status()["peers"].get("b", {}).get("connected", False))
        async with open_node(node_id="b", peers=list(a.endpoints), **FAST) as impostor:
            await wait_until_async(lambda: a._rep.counters["refused"] >= 1)
            assert a.status()["peers"]["b"]["connected"]
            await b.set("k", "real", ack="all")
            assert a.get("k") == "real"
            assert impostor.status()["peers"].get("a", {}).get("connected") in (None, False)
