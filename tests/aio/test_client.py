"""statesync.aio.Client against real nodes (in a background trio thread, as the blocking
client's tests): every method, errors, watches, reconnects, concurrency, keys."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statesync import aio
from statesync.core import ABSENT, InvalidPath, StatesyncError, WriteConcernError
from statesync.errors import (
    AccessDenied,
    ClientClosed,
    ClientError,
    InvalidArgument,
    NodeRefused,
    NodeUnavailable,
)
from statesync.security import write_keypair
from tests.aio.support import run, until
from tests.client.nodes import NodeThread, short_socket


@pytest.fixture(scope="module")
def pair() -> Iterator[NodeThread]:
    nodes = NodeThread([{"node_id": "a"}, {"node_id": "b"}])
    yield nodes
    nodes.stop()


def test_every_method_round_trips(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    a_ep, b_ep = pair.endpoints

    async def main() -> None:
        async with aio.Client(a_ep) as a, aio.Client(b_ep) as b:
            assert (await a.ping())["node_id"] == "a"
            assert await a.node_id() == "a" and await b.node_id() == "b"
            user = {"name": "Ada", "langs": ["en", "fr"], "raw": b"\x00\xff", "n": None}
            r = await a.set(f"{base}.user", user)
            assert isinstance(r, aio.Receipt) and r.origin == "a" and r.seq > 0 and r.path == f"{base}.user"
            assert await a.get(f"{base}.user") == user
            assert await a.get((base, "user", "name")) == "Ada"
            assert await a.get(f"{base}.missing", "default") == "default"
            d = await a.delete(f"{base}.user.raw")
            assert d.seq == r.seq + 1 and "raw" not in await a.get(f"{base}.user")
            rs = await a.set_many([(f"{base}.k1", 1), (f"{base}.k2", 2)])
            assert [x.seq for x in rs] == [rs[0].seq, rs[0].seq + 1]
            r2 = await a.set(f"{base}.acked", True, ack="all")
            assert r2.acked_by == ("b",)
            assert await b.get(f"{base}.acked") is True
            assert await b.snapshot(base) == await a.snapshot(base) == {"user": {"name": "Ada", "langs": ["en", "fr"], "n": None}, "k1": 1, "k2": 2, "acked": True}
            assert await a.snapshot(f"{base}.nothing") == {}
            status = await a.status()
            assert status["node_id"] == "a" and status["peers"]["b"]["connected"]
            assert await a.sync(timeout_s=5) is True
            assert await a.conflicts(f"{base}.k1") == []

    run(main)


def test_ack_all_against_a_cut_peer_and_conflicts(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    key = f"{request.node.name}.color"
    a_ep, b_ep = pair.endpoints

    async def main() -> None:
        async with aio.Client(a_ep) as a, aio.Client(b_ep) as b:
            await a.cut("b")
            await b.cut("a")
            try:
                with pytest.raises(WriteConcernError) as info:
                    await a.set(key, "red", ack="all", timeout_s=0.3)
                assert info.value.missing == ("b",)
                await b.set(key, "blue")
            finally:
                await a.heal()
                await b.heal()

            async def both() -> bool:
                return len(await a.conflicts(key)) == 2 and len(await b.conflicts(key)) == 2

            await until(both, what="both versions on both nodes")
            versions = await a.conflicts(key)
            assert all(isinstance(v, aio.Conflict) for v in versions)
            assert {(v.value, v.origin) for v in versions} == {("red", "a"), ("blue", "b")}
            await a.set(key, "purple")

            async def resolved() -> bool:
                return await b.get(key) == "purple" and await b.conflicts(key) == []

            await until(resolved, what="the resolving write on b")

    run(main)


def test_errors_are_the_blocking_clients(pair: NodeThread) -> None:
    async def main() -> None:
        async with aio.Client(pair.endpoints[0]) as a:
            with pytest.raises(InvalidPath, match="empty segment"):
                await a.set("bad..path", 1)
            with pytest.raises(StatesyncError, match="set"):
                await a.set("x", {1, 2})
            with pytest.raises(ClientError, match="too large"):
                await a.set("big", "x" * 1_045_000)
            with pytest.raises(ValueError, match="ack"):
                await a.set("x", 1, ack="most")  # type: ignore[arg-type]
            assert (await a.ping())["node_id"] == "a"  # still works after errors
        with pytest.raises(ClientClosed):
            await a.get("x")

    run(main)
    with pytest.raises(ClientError, match="not a node endpoint"):
        aio.Client("localhost:7000")


def test_a_node_not_running_is_node_unavailable_within_the_timeout() -> None:
    endpoint = "ipc:///tmp/statesync-aio-no-such-node.sock"

    async def main() -> float:
        start = time.monotonic()
        async with aio.Client(endpoint, connect_timeout_s=0.3) as client:
            with pytest.raises(NodeUnavailable) as info:
                await client.get("x")
            text = str(info.value)
            assert endpoint in text and "socket file does not exist" in text and "\n" not in text
            with pytest.raises(NodeUnavailable):
                async with client.watch("x"):
                    pass
        return time.monotonic() - start

    assert run(main) < 10  # two calls of 0.3 s each, plus the watch's start margin


def test_watch_sees_changes_made_by_another_client_in_order(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    a_ep, b_ep = pair.endpoints

    async def main() -> None:
        async with aio.Client(a_ep) as a, aio.Client(b_ep) as b:
            await a.set(f"{base}.before", 0)
            async with a.watch(base) as watch:
                assert watch.initial == {"before": 0}
                for i in range(20):
                    await b.set(f"{base}.k", i)  # written on the other node
                await b.delete(f"{base}.before")
                seen = []
                async for event in watch:
                    assert isinstance(event, aio.WatchEvent)
                    seen.append(event)
                    if event.kind == "delete":
                        break
            assert [(e.kind, e.key, e.value) for e in seen[:20]] == [("put", f"{base}.k", i) for i in range(20)]
            assert all(e.origin == "b" for e in seen)
            assert (seen[-1].kind, seen[-1].key, seen[-1].value, seen[-1].old) == ("delete", f"{base}.before", ABSENT, 0)
            assert watch.closed and await watch.get(timeout=0.01) is None

    run(main)


def test_a_slow_watcher_gets_one_lagged_event_with_the_whole_subtree(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name

    async def main() -> None:
        async with aio.Client(pair.endpoints[0], watch_buffer_max=5) as client, client.watch(base) as watch:
            await client.set_many([(f"{base}.k{i:02d}", i) for i in range(30)])

            async def lagged() -> bool:
                return watch.lag_count >= 1

            await until(lagged, what="the watch to lag")
            first = await watch.get(timeout=10)
            assert first is not None and first.kind == "lagged" and first.path == (base,)
            assert first.value == {f"k{i:02d}": i for i in range(30)}
            await client.set(f"{base}.after", True)
            nxt = await watch.get(timeout=10)
            assert nxt is not None and (nxt.kind, nxt.key, nxt.value) == ("put", f"{base}.after", True)

    run(main)


def test_large_subtrees_travel_in_chunks(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    items = {f"k{i:04d}": "v" * 300 + str(i) for i in range(3000)}  # ~1 MB, over one message
    keys = list(items)

    async def main() -> None:
        async with aio.Client(pair.endpoints[0]) as a:
            for start in range(0, len(keys), 1000):
                await a.set_many([((base, k), items[k]) for k in keys[start : start + 1000]])
            assert await a.get(base) == items  # too large for one reply: streamed
            assert (await a.snapshot())[base] == items
            async with a.watch(base) as watch:
                assert watch.initial == items

    run(main)


def test_many_concurrent_requests_share_one_client_without_threads(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name

    async def main() -> None:
        async with aio.Client(pair.endpoints[0]) as a:
            await a.ping()
            threads = threading.active_count()

            async def work(t: int) -> None:
                for i in range(10):
                    await a.set((base, f"t{t}", f"i{i}"), i)
                    assert await a.get((base, f"t{t}", f"i{i}")) == i

            await asyncio.gather(*(work(t) for t in range(100)))
            receipts = await asyncio.gather(*(a.set((base, "burst", str(i)), i) for i in range(1000)))
            assert len({r.seq for r in receipts}) == 1000
            assert threading.active_count() == threads  # no thread was started for it
            tree = await a.get(base)
            assert sum(len(v) for k, v in tree.items() if k != "burst") == 1000 and len(tree["burst"]) == 1000

    run(main)


def test_reconnects_after_the_node_restarts(tmp_path: Path) -> None:
    endpoint = short_socket("aio-r")
    config = {"node_id": "r", "data_dir": str(tmp_path / "r"), "client": endpoint}
    nodes = [NodeThread([config])]
    restarted = threading.Event()

    def restart() -> None:
        nodes[0].stop()
        nodes.append(NodeThread([config]))
        restarted.set()

    async def main() -> None:
        async with aio.Client(endpoint, connect_timeout_s=10) as client:
            await client.set("k", 1)
            async with client.watch("") as watch:
                await asyncio.to_thread(restart)  # the test's own thread: the nodes' lifetime
                assert await client.get("k") == 1  # a read: retried on a new connection
                await client.set("k", 2)
                event = await watch.get(timeout=15)
                assert event is not None and event.kind == "lagged"  # changes while away are summed up
                assert event.value in ({"k": 1}, {"k": 2})
                if event.value == {"k": 1}:
                    nxt = await watch.get(timeout=10)
                    assert nxt is not None and nxt.value == 2
                assert watch.reconnects >= 1

    try:
        run(main)
    finally:
        for n in nodes:
            n.stop()
    assert restarted.is_set()


def test_keys_curve_access_denied_and_refused(tmp_path: Path) -> None:
    keys = {n: write_keypair(tmp_path / n)[0] for n in ("node", "writer", "reader", "stranger")}
    auth = tmp_path / "authorized_keys"
    auth.write_text(f"write {keys['writer'].public}\nread {keys['reader'].public}\n")
    config = {
        "node_id": "s",
        "data_dir": str(tmp_path / "s"),
        "secret_key_file": str(tmp_path / "node.key_secret"),
        "authorized_keys_file": str(auth),
        "listen": ["tcp://127.0.0.1:0"],
    }
    nodes = NodeThread([config])
    endpoint = nodes.endpoints[0]
    server = keys["node"].public

    def client(name: str) -> aio.Client:
        return aio.Client(endpoint, secret_key_file=tmp_path / f"{name}.key_secret", server_key=server, connect_timeout_s=5)

    async def main() -> None:
        async with client("writer") as writer, client("reader") as reader, client("stranger") as stranger:
            assert writer.server_key == server
            await writer.set("app.x", 1)
            assert await reader.get("app.x") == 1
            with pytest.raises(AccessDenied, match="read-only"):
                await reader.set("app.x", 2)
            with pytest.raises(NodeRefused, match="not on its authorized list"):
                await stranger.get("app")
        wrong = aio.Client(endpoint, secret_key_file=tmp_path / "writer.key_secret", server_key=keys["reader"].public, connect_timeout_s=5)
        async with wrong:
            with pytest.raises(NodeRefused):
                await wrong.ping()

    try:
        run(main)
    finally:
        nodes.stop()


def test_closing_the_client_ends_its_watches_on_the_node(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name

    async def main() -> None:
        async with aio.Client(pair.endpoints[0]) as observer:
            before = (await observer.status())["watches"]
            client = aio.Client(pair.endpoints[0])
            watches = [await client.watch(f"{base}.{i}").start() for i in range(3)]

            async def counted(n: int) -> bool:
                return bool((await observer.status())["watches"] == n)

            await until(lambda: counted(before + 3), what="the node to count the watches")
            await client.aclose()
            assert all(w.closed for w in watches)
            await until(lambda: counted(before), what="the node to end the watches")
            with pytest.raises(ClientClosed):
                client.watch(base)

    run(main)


def test_an_idle_client_keeps_its_connection_and_a_client_outlives_its_loop(pair: NodeThread) -> None:
    """Idle longer than the node's heartbeat timeout (1 s in these nodes): the client's pings
    keep the connection, its watch stays subscribed; a second ``asyncio.run`` may use it."""
    client = aio.Client(pair.endpoints[0])

    async def idle() -> None:
        await client.set("idle.k", 1)
        link = client._session().link
        async with client.watch("idle") as watch:
            await asyncio.sleep(2.5)  # the property under test: time passing with no traffic
            assert client._session().link is link and link is not None and not link.dead
            await client.set("idle.k", 2)
            event = await watch.get(timeout=5)
            assert event is not None and (event.kind, event.value) == ("put", 2)
            assert watch.reconnects == 0

    async def again() -> None:
        assert await client.get("idle.k") == 2
        await client.aclose()

    run(idle)
    run(again)  # the first loop is gone: a fresh connection on this one


def test_submit_keeps_at_most_inflight_max_writes_in_flight(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    counts: list[int] = []

    async def main() -> None:
        async with aio.Client(pair.endpoints[0], inflight_max=8) as client:
            with pytest.raises(InvalidArgument):
                await client.submit("x", 1, ack="most")
            tasks = []
            for i in range(100):
                tasks.append(await client.submit((base, f"k{i}"), i))
                counts.append(sum(1 for t in tasks if not t.done()))
            receipts = await asyncio.gather(*tasks)
            assert [r.path for r in receipts] == [f"{base}.k{i}" for i in range(100)]
            assert await client.get(base) == {f"k{i}": i for i in range(100)}

    run(main)
    assert max(counts) <= 8 and max(counts) > 1  # pipelined, and bounded
