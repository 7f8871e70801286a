"""A full disk is an alarm, not a crash: reads, watches and status go on; writes are refused at
once; peers' ops are not acknowledged; the node resumes by itself; nothing acknowledged is lost.

Two ways to fill the disk: a size bound on the store (``SqliteStore.limit_bytes``, SQLite's
max_page_count), everywhere; and a real 3 MiB tmpfs, where the tests run as root and may mount.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from statesync.client import Client
from statesync.core import Replica, WriteConcernError
from statesync.errors import StorageError, StorageFull
from statesync.node import Node, open_node
from statesync.node._client_keys import row
from statesync.protocol import IdemKey
from statesync.storage import SqliteStore
from tests.client.nodes import short_socket
from tests.support import FAST, FAST_ARGS, wait_until, wait_until_async

VALUE = "x" * 1000
WRITES_MAX = 20_000
"""A bound on the writes that fill a store (a 3 MiB tmpfs takes about 2,500 of these)."""


def store_of(node: Node) -> SqliteStore:
    store = node._store
    assert isinstance(store, SqliteStore)
    return store


async def fill(node: Node, prefix: str, *, same_key: bool = False) -> tuple[dict[str, str], str, StorageFull]:
    """Write until the disk is full: the writes acknowledged, the key of the one that found it full."""
    acked: dict[str, str] = {}
    for i in range(WRITES_MAX):
        key = f"{prefix}.k" if same_key else f"{prefix}.k{i}"
        value = f"{i}:{VALUE}"
        try:
            await node.set(key, value)
        except StorageFull as exc:
            return acked, key, exc
        acked[key] = value
    raise AssertionError(f"{WRITES_MAX} writes never filled the store")


async def check_alarm(node: Node, folder: Path, pages: list[str], other: Node | None = None) -> None:
    """During the alarm: writes refused at once, reads, watches and status go on, the alarm shows."""
    status = node.status()
    alarm = status["alarm"]
    assert alarm["disk_full"] is True and alarm["raised"] == 1
    assert alarm["folder"] == str(folder) and alarm["free_bytes"] >= 0
    for write in (lambda: node.set("late", 1), lambda: node.delete("late"), lambda: node.set_many([("late", 1)])):
        with pytest.raises(StorageFull, match="write was refused") as info:
            await write()
        assert info.value.folder == str(folder) and str(folder) in str(info.value)
    assert node.status()["alarm"]["writes_refused"] == 3
    assert node.get("late") is None
    async with node.watch("") as watch:  # a new watch opens; it is handed what changes later
        assert watch.pending() == 0
    if other is not None:  # a peer's op is not acknowledged while the alarm is on
        with pytest.raises(WriteConcernError):
            await other.set(pages[0], "from the peer", ack="all", timeout_s=0.5)
        assert node.get(pages[0]) is None


async def test_a_store_size_bound_raises_the_alarm_and_space_coming_back_ends_it(tmp_path: Path) -> None:
    opts: dict[str, Any] = {**FAST, "disk_probe_interval_s": 0.1}
    folder = tmp_path / "a"
    async with open_node(node_id="a", data_dir=str(folder), **opts) as a, open_node(node_id="b", peers=list(a.endpoints), **opts) as b:
        await wait_until_async(
            lambda: a.status()["peers"].get("b", {}).get("connected", False) and b.status()["peers"].get("a", {}).get("connected", False),
            what="the link, both ways",
        )
        store = store_of(a)
        store.limit_bytes(store.stats()["disk_bytes"] + (256 << 10))
        async with a.watch("w") as watch:
            acked, held_key, exc = await fill(a, "w")
            assert "filled up under this write" in str(exc) and exc.folder == str(folder)
            assert len(acked) > 50
            await check_alarm(a, folder, ["peer.k"], other=b)
            # reads go on, and acknowledged writes read back
            assert all(a.get(k) == v for k, v in acked.items())
            assert a.status()["transport"]["frames_dropped_alarm"] > 0
            # the replicator is left as it is: no sync rounds while the alarm is on
            syncs, probes = a.status()["counters"]["sync_requests"], a.status()["alarm"]["probes"]
            await wait_until_async(lambda: a.status()["alarm"]["probes"] >= probes + 5, what="probes (0.5 s)")
            assert a.status()["counters"]["sync_requests"] == syncs

            store.limit_bytes(None)  # space returns: the timer's probe ends the alarm
            await wait_until_async(lambda: not a.status()["alarm"]["disk_full"], what="the alarm to end")
            assert a.status()["alarm"]["probes"] >= 1
            assert a.metrics.registry.get_sample_value("statesync_disk_full_alarm") == 0
            assert a.metrics.registry.get_sample_value("statesync_disk_full_alarms_total") == 1
            assert a.metrics.registry.get_sample_value("statesync_writes_refused_full_total") == 3
            await a.set("after", 1)  # writes are accepted again
            # the held write went through, and the peer's op is acknowledged now
            await wait_until_async(lambda: a.get("peer.k") == "from the peer", what="the peer's op to arrive")
            assert a.get(held_key) is not None
            # the watch opened before the alarm saw every write it covers, in order
            seen: list[str] = []
            while watch.pending():
                seen.append((await watch.__anext__()).key)
            assert seen == [*acked, held_key]
    # nothing acknowledged was lost
    async with open_node(node_id="a", data_dir=str(folder), **opts) as again:
        assert all(again.get(k) == v for k, v in acked.items())
        assert again.get("after") == 1 and again.get("peer.k") == "from the peer"


async def test_a_compaction_ends_the_alarm_without_more_space(tmp_path: Path) -> None:
    # one key written over and over: the log is much larger than the state, and a checkpoint
    # (which covers the held write) makes room by itself
    opts: dict[str, Any] = {**FAST, "disk_probe_interval_s": 0.1, "checkpoint_ops": 1_000_000}
    folder = tmp_path / "a"
    async with open_node(node_id="a", data_dir=str(folder), **opts) as a:
        store = store_of(a)
        store.limit_bytes(store.stats()["disk_bytes"] + (256 << 10))
        acked, key, _ = await fill(a, "c", same_key=True)
        held = a.get(key)
        assert held != acked[key]  # the held write is visible here, not acknowledged
        await wait_until_async(lambda: not a.status()["alarm"]["disk_full"], what="the compaction to end the alarm")
        assert a.status()["alarm"]["compactions"] == 1
        assert store.stats()["log_ops"] == 0
        await a.set(key, "last")
    async with open_node(node_id="a", data_dir=str(folder), **opts) as again:
        assert again.get(key) == "last"


@pytest.mark.parametrize("durability", ["process", "fsync"])
async def test_without_a_way_out_the_alarm_stays_and_the_node_stops_cleanly(
    tmp_path: Path, durability: str, caplog: pytest.LogCaptureFixture
) -> None:
    # process: the write that finds the disk full is committed in the writer's task;
    # fsync: by the flusher task, while the writer waits (the alarm wakes it)
    folder = tmp_path / "a"
    async with open_node(node_id="a", data_dir=str(folder), durability=durability, disk_probe_interval_s=0.05, **FAST) as a:
        store = store_of(a)
        store.limit_bytes(store.stats()["disk_bytes"] + (128 << 10))
        acked, _, exc = await fill(a, "s")
        assert "filled up under this write" in str(exc)
        assert a.metrics.registry.get_sample_value("statesync_disk_full_alarm") == 1
        probes = a.status()["alarm"]["probes"]
        await wait_until_async(lambda: a.status()["alarm"]["probes"] >= probes + 3, what="probes that fail")
        assert a.status()["alarm"]["disk_full"] and a.status()["alarm"]["compactions"] == 0
        with pytest.raises(StorageFull):
            await a.set("x", 1)
        # saving the peer list (on a peer linked) is skipped with a warning, the node goes on
        a._save_peers({f"n{i}": (f"tcp://127.0.0.1:{i + 1}?{'x' * 900}",) for i in range(300)})
        await wait_until_async(lambda: "the peer list not saved" in caplog.text, what="the warning")
        assert a.get(next(iter(acked))) is not None
    async with open_node(node_id="a", data_dir=str(folder), **FAST) as again:
        assert all(again.get(k) == v for k, v in acked.items())


# ------------------------------------------------------------------ a real full disk


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (root only; skipped where mounting is not allowed), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a 3 MiB tmpfs (the size-bound tests cover the same paths)")
    where = tmp_path / "tmpfs"
    where.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip() or mount.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_a_full_tmpfs_raises_the_alarm_and_freeing_space_ends_it(tmpfs: Path) -> None:
    ballast = tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (1 << 20))
    folder = tmpfs / "a"
    opts: dict[str, Any] = {**FAST, "disk_probe_interval_s": 0.1, "checkpoint_ops": 1_000_000}
    async with open_node(node_id="a", data_dir=str(folder), **opts) as a, a.watch("t") as watch:
        acked, held_key, exc = await fill(a, "t")
        assert exc.folder == str(folder)
        await check_alarm(a, folder, [])
        assert all(a.get(k) == v for k, v in acked.items())
        ballast.unlink()  # space returns
        await wait_until_async(lambda: not a.status()["alarm"]["disk_full"], what="the alarm to end")
        await a.set("after", 1)
        n = 0
        while watch.pending():
            await watch.__anext__()
            n += 1
        assert n == len(acked) + 1  # every acknowledged write and the held one
    await trio.lowlevel.checkpoint()
    async with open_node(node_id="a", data_dir=str(folder), **opts) as again:
        assert all(again.get(k) == v for k, v in acked.items())
        assert again.get("after") == 1 and again.get(held_key) is not None


def test_the_store_names_the_folder_and_what_is_free_and_writes_nothing(tmp_path: Path) -> None:
    replica = Replica("s")
    with SqliteStore(tmp_path / "s", "s") as store:
        store.limit_bytes(store.stats()["disk_bytes"] + (64 << 10))
        written = 0
        with pytest.raises(StorageFull, match="the disk is full") as info:
            for i in range(WRITES_MAX):
                changes: list[Any] = []
                store.append([replica.put(("k", str(i)), VALUE, 1_700_000_000_000 + i, changes)])
                written += 1
        assert info.value.folder == str(tmp_path / "s") and str(tmp_path / "s") in str(info.value)
        assert info.value.free_bytes < 64 << 10
        assert store.stats()["log_ops"] == written
        store.limit_bytes(None)
        store.append([replica.put(("after",), 1, 1_800_000_000_000, [])])
    with SqliteStore(tmp_path / "s", "s") as store:
        assert len(store.load().ops) == written + 1


async def test_a_client_reads_during_the_alarm_and_its_write_fails_with_the_storage_code(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    async with open_node(node_id="a", data_dir=str(folder), client="tcp://127.0.0.1:*", disk_probe_interval_s=0.05, **FAST) as a:
        store = store_of(a)
        store.limit_bytes(store.stats()["disk_bytes"] + (128 << 10))
        acked, _, _ = await fill(a, "c")
        first, value = next(iter(acked.items()))

        def as_a_client() -> tuple[object, str, bool]:
            with Client(a.client_endpoints[0], timeout_s=10, connect_timeout_s=5) as client:
                got = client.get(first)
                with pytest.raises(StorageError) as info:
                    client.set("from.client", 1)
                return got, str(info.value), client.status()["alarm"]["disk_full"]

        got, message, alarm = await trio.to_thread.run_sync(as_a_client)
        assert got == value and alarm is True
        assert "write was refused" in message and str(folder) in message
        store.limit_bytes(None)
        await wait_until_async(lambda: not a.status()["alarm"]["disk_full"], what="the alarm to end")


async def test_a_committed_write_waiting_for_acks_hears_that_it_is_durable(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    async with open_node(node_id="a", data_dir=str(folder), disk_probe_interval_s=0.05, **FAST) as a, trio.open_nursery() as nursery:
        store = store_of(a)
        heard: list[StorageFull] = []

        async def waiting_writer() -> None:
            with pytest.raises(StorageFull) as info:
                await a.set("waits", 1, ack=1, timeout_s=60)  # no peer: it waits for one
            heard.append(info.value)

        nursery.start_soon(waiting_writer)
        await wait_until_async(lambda: a.status()["pending_writes"] == 1, what="the write to wait")
        store.limit_bytes(store.stats()["disk_bytes"] + (128 << 10))
        _, _, exc = await fill(a, "f")
        assert "filled up under this write" in str(exc)
        await wait_until_async(lambda: bool(heard), what="the waiting writer to hear of the alarm")
        assert "durable here" in str(heard[0]) and str(folder) in str(heard[0])
    async with open_node(node_id="a", data_dir=str(folder), **FAST) as again:
        assert again.get("waits") == 1


@pytest.mark.process
def test_statesync_node_on_a_full_tmpfs_keeps_serving_then_resumes(tmpfs: Path, tmp_path: Path) -> None:
    """The issue's case: `statesync node` on a 3 MiB tmpfs, written to by a client until it is full."""
    ballast = tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (1 << 20))
    endpoint = short_socket("full")
    log_file = tmp_path / "node.log"
    argv = [sys.executable, "-m", "statesync.cli", "node", "--id", "f", "--listen", "tcp://127.0.0.1:0",
            "--data-dir", str(tmpfs / "f"), "--client", endpoint, "--metrics", "127.0.0.1:0",
            "-o", "disk_probe_interval_s=0.1", *FAST_ARGS]  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        with log_file.open("ab") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def alarm_gauge() -> float:
        port = re.findall(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log_file.read_text())[-1]
        page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return next(s.value for f in text_string_to_metric_families(page) for s in f.samples if s.name == "statesync_disk_full_alarm")

    node = start()
    try:
        acked: dict[str, str] = {}
        with Client(endpoint, connect_timeout_s=20, timeout_s=20, watch_buffer_max=100_000) as client, client.watch("t") as watch:
            for i in range(WRITES_MAX):
                try:
                    client.set(f"t.k{i}", f"{i}:{VALUE}")
                except StorageError as exc:
                    assert str(tmpfs / "f") in str(exc)
                    break
                acked[f"t.k{i}"] = f"{i}:{VALUE}"
            assert len(acked) > 100 and node.poll() is None
            assert client.get(next(iter(acked))) is not None  # reads go on
            assert client.status()["alarm"]["disk_full"] is True
            wait_until(lambda: alarm_gauge() == 1, what="the metric")
            with pytest.raises(StorageError, match="write was refused"):
                client.set("late", 1)
            ballast.unlink()
            wait_until(lambda: not client.status()["alarm"]["disk_full"], what="the alarm to end")
            client.set("after", 1)
            assert alarm_gauge() == 0
            keys = []
            for _ in range(len(acked) + 1):  # every acknowledged write, then the held one
                event = watch.get(timeout=10)
                assert event is not None
                keys.append(event.key)
            assert keys[: len(acked)] == list(acked) and keys[-1] not in acked
        node.send_signal(signal.SIGTERM)
        assert node.wait(30) == 0
        node = start()
        with Client(endpoint, connect_timeout_s=20, timeout_s=20) as client:
            assert all(client.get(k) == v for k, v in acked.items())
            assert client.get("after") == 1
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(10)
    assert "Traceback" not in log_file.read_text()


def test_a_client_key_staged_with_an_op_the_full_disk_refused_is_written_with_it_later(tmp_path: Path) -> None:
    replica = Replica("s")
    with SqliteStore(tmp_path / "s", "s") as store:
        store.limit_bytes(store.stats()["disk_bytes"] + (64 << 10))
        for i in range(WRITES_MAX):
            op = replica.put(("k", str(i)), VALUE, 1_700_000_000_000 + i, [])
            store.stage_client_key((op.origin, op.seq), row(IdemKey("c" * 32, i + 1), None, b"f", {"ok": True, "seq": op.seq}))
            try:
                store.append([op])
            except StorageFull:
                break
        else:
            raise AssertionError("the store never filled")
        store.limit_bytes(None)
        store.append([op])  # the held commit, again: its key goes with it
        assert [r[1] for r in store.load_client_keys()][-1] == i + 1
    with SqliteStore(tmp_path / "s", "s") as store:
        assert len(store.load().ops) == i + 1 and len(store.load_client_keys()) == i + 1
