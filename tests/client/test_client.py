"""statesync.Client against real nodes (in a background trio thread): reads, writes,
watches, large subtrees, threads, reconnects, fork, errors."""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from statesync import ports
from statesync.client import (
    Client,
    ClientClosed,
    ClientError,
    NodeUnavailable,
    WatchEvent,
)
from statesync.core import ABSENT, InvalidPath, StatesyncError, WriteConcernError
from statesync.errors import NodeError, ProtocolError, ProtocolMismatch, StorageError
from tests.client.nodes import NodeThread, short_socket


@pytest.fixture(scope="module")
def pair() -> Iterator[NodeThread]:
    nodes = NodeThread([{"node_id": "a"}, {"node_id": "b"}])
    yield nodes
    nodes.stop()


@pytest.fixture
def clients(pair: NodeThread) -> Iterator[tuple[Client, Client]]:
    a = Client(pair.endpoints[0], timeout_s=10, connect_timeout_s=5)
    b = Client(pair.endpoints[1], timeout_s=10, connect_timeout_s=5)
    yield a, b
    a.close()
    b.close()


def until(cond: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    tick = threading.Event()
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        tick.wait(0.01)


def test_set_get_delete_round_trip(clients: tuple[Client, Client], request: pytest.FixtureRequest) -> None:
    a, b = clients
    base = request.node.name
    r = a.set(f"{base}.user", {"name": "Ada", "langs": ["en", "fr"], "raw": b"\x00\xff", "n": None})
    assert r.origin == "a" and r.seq > 0 and r.path == f"{base}.user"
    assert a.get(f"{base}.user") == {"name": "Ada", "langs": ["en", "fr"], "raw": b"\x00\xff", "n": None}
    assert a.get(f"{base}.user.name") == "Ada"
    assert a.get(f"{base}.missing", "default") == "default"
    assert a.get((base, "user", "name")) == "Ada"  # tuple paths
    a.delete(f"{base}.user.raw")
    assert "raw" not in a.get(f"{base}.user")
    rs = a.set_many([(f"{base}.k1", 1), (f"{base}.k2", 2)])
    assert [x.seq for x in rs] == [rs[0].seq, rs[0].seq + 1]
    until(lambda: b.get(f"{base}.k2") == 2)
    assert b.get(f"{base}.user.name") == "Ada"
    assert b.snapshot(base) == a.snapshot(base)
    assert a.node_id == "a" and b.node_id == "b"


def test_ack_all_waits_for_the_peer_and_a_cut_peer_fails_the_concern(clients: tuple[Client, Client], request: pytest.FixtureRequest) -> None:
    a, b = clients
    key = f"{request.node.name}.x"
    r = a.set(key, 1, ack="all")
    assert r.acked_by == ("b",)
    assert b.get(key) == 1  # acknowledged by b means b has it
    a.cut("b")
    try:
        with pytest.raises(WriteConcernError) as info:
            a.set(key, 2, ack="all", timeout_s=0.3)
        assert info.value.missing == ("b",)
        assert info.value.dot[0] == "a"
        assert a.get(key) == 2  # the write stays
    finally:
        a.heal()
    until(lambda: b.get(key) == 2)


def test_errors_are_clear_and_local_where_possible(clients: tuple[Client, Client]) -> None:
    a, _ = clients
    with pytest.raises(InvalidPath, match="empty segment"):
        a.set("bad..path", 1)
    with pytest.raises(StatesyncError, match="set"):
        a.set("x", {1, 2})
    with pytest.raises(ClientError, match="too large"):
        a.set("big", "x" * 1_045_000)  # a valid value, but over one request's size
    with pytest.raises(StatesyncError, match="split it"):
        a.set("big", "x" * 1_100_000)  # over the size of any one string
    with pytest.raises(ValueError, match="ack"):
        a.set("x", 1, ack="most")  # type: ignore[arg-type]
    assert a.ping()["node_id"] == "a"  # the client still works after errors


def test_conflicts_list_concurrent_versions(clients: tuple[Client, Client], request: pytest.FixtureRequest) -> None:
    a, b = clients
    key = f"{request.node.name}.color"
    a.cut("b")
    b.cut("a")
    try:
        a.set(key, "red")
        b.set(key, "blue")
    finally:
        a.heal()
        b.heal()
    until(lambda: len(a.conflicts(key)) == 2 and len(b.conflicts(key)) == 2)
    versions = a.conflicts(key)
    assert {v.value for v in versions} == {"red", "blue"}
    assert {v.origin for v in versions} == {"a", "b"}
    assert a.get(key) == b.get(key)
    a.set(key, "purple")  # has seen both: resolves them
    until(lambda: b.get(key) == "purple" and b.conflicts(key) == [])


def test_watch_iterates_changes_in_order_from_the_moment_it_starts(clients: tuple[Client, Client], request: pytest.FixtureRequest) -> None:
    a, b = clients
    base = request.node.name
    a.set(f"{base}.before", 0)
    until(lambda: b.get(f"{base}.before") == 0)
    with b.watch(base) as watch:
        assert watch.initial == {"before": 0}
        for i in range(20):
            a.set(f"{base}.k", i)
        a.delete(f"{base}.before")
        events = [watch.get(timeout=10) for _ in range(21)]
    assert all(isinstance(e, WatchEvent) for e in events)
    puts = [e for e in events if e is not None and e.kind == "put"]
    assert [e.value for e in puts] == list(range(20))
    assert [e.old for e in puts] == [ABSENT, *range(19)]  # the first put made the key: nothing was there
    last = events[-1]
    assert last is not None and last.kind == "delete" and last.key == f"{base}.before" and last.old == 0
    assert last.value is ABSENT  # the same marker as the node's own watches
    assert puts[0].origin == "a" and puts[0].path == (base, "k")
    assert watch.closed
    assert watch.get(timeout=0.01) is None


def test_watch_with_a_callback(clients: tuple[Client, Client], request: pytest.FixtureRequest) -> None:
    a, b = clients
    base = request.node.name
    seen: list[object] = []
    done = threading.Event()
    threads: set[str] = set()

    def on_event(event: WatchEvent) -> None:
        seen.append(event.value)
        threads.add(threading.current_thread().name)
        if event.value == "boom":
            raise RuntimeError("a callback error is logged; the watch goes on")
        if len(seen) == 3:
            done.set()

    watch = b.watch(base, on_event)
    try:
        for value in ("one", "boom", "three"):
            a.set(f"{base}.v", value)
        assert done.wait(10)
    finally:
        watch.close()
    assert seen == ["one", "boom", "three"]
    assert threading.current_thread().name not in threads


def test_a_slow_watcher_gets_one_lagged_event_with_the_whole_subtree(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    with Client(pair.endpoints[0], watch_buffer_max=5) as client:
        watch = client.watch(base)
        client.set_many([(f"{base}.k{i:02d}", i) for i in range(30)])
        until(lambda: watch.lag_count >= 1)
        first = watch.get(timeout=10)
        assert first is not None and first.kind == "lagged"
        assert first.path == (base,)
        assert first.value == {f"k{i:02d}": i for i in range(30)}
        client.set(f"{base}.after", True)
        nxt = watch.get(timeout=10)
        assert nxt is not None and (nxt.kind, nxt.key, nxt.value) == ("put", f"{base}.after", True)
        watch.close()


def test_large_subtrees_travel_in_chunks(clients: tuple[Client, Client], request: pytest.FixtureRequest) -> None:
    a, b = clients
    base = request.node.name
    items = {f"k{i:04d}": "v" * 300 + str(i) for i in range(3000)}  # ~1 MB, over one message
    keys = list(items)
    for start in range(0, len(keys), 1000):
        a.set_many([((base, k), items[k]) for k in keys[start : start + 1000]])
    assert a.get(base) == items
    until(lambda: len(b.get(base, {})) == len(items))
    assert b.snapshot(base) == items
    assert b.snapshot()[base] == items
    with b.watch(base) as watch:
        assert watch.initial == items


def test_many_threads_share_one_client(clients: tuple[Client, Client], request: pytest.FixtureRequest) -> None:
    a, _ = clients
    base = request.node.name
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                a.set((base, f"t{t}", f"i{i}"), i)
                assert a.get((base, f"t{t}", f"i{i}")) == i
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    tree = a.get(base)
    assert sum(len(v) for v in tree.values()) == 200


def test_an_unreachable_node_is_one_clear_error() -> None:
    endpoint = "ipc:///tmp/statesync-no-such-node.sock"
    start = time.monotonic()
    with Client(endpoint, connect_timeout_s=0.3) as client, pytest.raises(NodeUnavailable) as info:
        client.get("x")
    assert time.monotonic() - start < 5
    text = str(info.value)
    assert endpoint in text and "socket file does not exist" in text and "\n" not in text


def test_bad_endpoints_and_closed_clients() -> None:
    with pytest.raises(ClientError, match="not a node endpoint"):
        Client("localhost:7000")
    env = os.environ.pop("STATESYNC_NODE", None)
    try:
        with pytest.raises(ClientError, match="STATESYNC_NODE"):
            Client()
    finally:
        if env is not None:
            os.environ["STATESYNC_NODE"] = env
    client = Client("ipc:///tmp/statesync-nothing.sock")
    client.close()
    with pytest.raises(ClientClosed):
        client.get("x")


async def test_calling_the_blocking_client_from_trio_says_what_to_do(pair: NodeThread) -> None:
    client = Client(pair.endpoints[0])
    try:
        with pytest.raises(ClientError, match=r"to_thread\.run_sync"):
            client.get("x")
        assert await trio.to_thread.run_sync(client.ping)
    finally:
        await trio.to_thread.run_sync(client.close)


def test_reconnects_after_a_node_restart(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    endpoint = short_socket("r")
    config = {"node_id": "r", "data_dir": str(tmp_path / "r"), "client": endpoint}
    first = NodeThread([config])
    client = Client(endpoint, connect_timeout_s=10)
    try:
        client.set("k", 1)
        watch = client.watch("")
        first.stop()
        second = NodeThread([config])
        try:
            assert client.get("k") == 1  # reconnected on its own
            client.set("k", 2)
            event = watch.get(timeout=15)
            assert event is not None and event.kind == "lagged"  # changes while away are summed up
            assert event.value == {"k": 1} or event.value == {"k": 2}
            if event.value == {"k": 1}:
                nxt = watch.get(timeout=10)
                assert nxt is not None and nxt.value == 2
            watch.close()
        finally:
            second.stop()
    finally:
        client.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_client_made_before_fork_works_in_the_child(pair: NodeThread) -> None:
    client = Client(pair.endpoints[0])
    try:
        client.set("fork.parent", 1)
        pid = os.fork()
        if pid == 0:  # the child: a fresh background thread, same API
            code = 1
            try:
                client.set("fork.child", 2)
                code = 0 if client.get("fork.parent") == 1 else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert client.get("fork.child") == 2
    finally:
        client.close()


class FakeNode:
    """A ports listener answering every request with ``answer(request)`` (awaited if it is a
    coroutine): a node that speaks the protocol wrong, or holds its answers."""

    def __init__(self, answer: Any) -> None:
        self.endpoint = short_socket("fake")
        self._answer = answer
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _main(self) -> None:
        async with ports.open_runtime() as rt:
            listener = rt.listen(self.endpoint)
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()

            async def handle(data: Any) -> Any:
                reply = self._answer(data)
                return await reply if inspect.isawaitable(reply) else reply

            async def accept() -> None:
                async for port in listener:
                    port.set_request_handler(handle)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(accept)
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

    def stop(self) -> None:
        assert self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)


def _hello_then(answer: Any) -> Any:
    def reply(data: Any) -> Any:
        if data.get("op") == "hello":
            return {"ok": True, "node_id": "fake", "protocol": 1, "endpoints": [], "client_endpoints": []}
        return answer(data)

    return reply


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (lambda d: {"ok": True, "node_id": "fake", "protocol": 2}, ProtocolMismatch, "speaks client protocol 2"),
        (lambda d: {"ok": False, "code": "protocol_mismatch", "error": "no", "protocol": 2}, ProtocolMismatch, "refused the handshake"),
        (_hello_then(lambda d: {"ok": False, "code": "from_the_future", "error": "new trouble"}), NodeError, "new trouble"),
        (_hello_then(lambda d: {"ok": True, "found": "yes"}), ProtocolError, "found"),
        (_hello_then(lambda d: ["not", "a", "dict"]), ProtocolError, "does not understand"),
        (_hello_then(lambda d: {"ok": False, "code": "storage", "error": "disk full"}), StorageError, "disk full"),
    ],
)
def test_a_node_that_answers_wrong_is_a_clear_typed_error(answer: Any, error: type[Exception], match: str) -> None:
    fake = FakeNode(answer)
    try:
        with Client(fake.endpoint, timeout_s=5, connect_timeout_s=2) as client, pytest.raises(error, match=match):
            client.get("a")
    finally:
        fake.stop()
