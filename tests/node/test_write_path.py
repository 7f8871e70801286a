"""The write path on real nodes: a lone write goes at once, a burst coalesces,
acknowledgements are delayed and cumulative but never delay a write concern.

Counts (frames, acks), never timings: the timings live in bench/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from statesync.node import Node, open_node
from statesync.storage import StorageError
from tests.support import FAST, wait_until_async

QUIET = {**FAST, "sync_interval_s": 1000.0}
"""No anti-entropy rounds: every frame counted is a push or an ack."""


@asynccontextmanager
async def pair(**options: Any) -> AsyncIterator[tuple[Node, Node]]:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_node(node_id="a", **{**QUIET, **options}))
        b = await stack.enter_async_context(open_node(node_id="b", peers=list(a.endpoints), **{**QUIET, **options}))
        await wait_until_async(lambda: bool(a._rep.up_peers()) and bool(b._rep.up_peers()), what="a and b to link")
        await a.set("warmup", 0, ack="all", timeout_s=5)
        await b._flusher.drain()
        yield a, b


async def test_a_lone_write_on_an_idle_link_goes_at_once() -> None:
    async with pair() as (a, b):
        before = a.counters["frames_out"]
        await a.set("k", 1)
        # no checkpoint since the write: its frame is already handed to the port
        assert a.counters["frames_out"] == before + 1
        assert a.counters["writes_coalesced"] == 0
        await wait_until_async(lambda: b.get("k") == 1, what="b to apply the write")


async def test_ack_local_in_memory_completes_without_a_task_round_trip() -> None:
    async with pair() as (a, _b):
        with trio.CancelScope() as scope:
            scope.cancel()
            receipt = await a.set("k", 2)  # a checkpoint here would raise Cancelled
        assert receipt.seq == a.replica.seq and a.get("k") == 2


async def test_a_burst_of_single_writes_coalesces_into_few_frames() -> None:
    n, per_frame = 600, 100
    async with pair(coalesce_ops_max=per_frame, coalesce_hold_max_s=60.0) as (a, b):
        before = a.counters["frames_out"]
        for i in range(n):
            await a.set(("m", f"k{i}"), i)
        seq = a.replica.seq
        await wait_until_async(lambda: b.replica.vv.get("a", 0) == seq, what="b to hold the burst")
        frames = a.counters["frames_out"] - before
        # the first write of each turn goes alone, the next ones join a frame of per_frame
        assert frames <= 2 * (n // per_frame) + 2, frames
        assert a.counters["writes_coalesced"] >= n - 2 * (n // per_frame) - 2
        assert b.get("m") == {f"k{i}": i for i in range(n)}


async def test_a_burst_is_bounded_by_count_and_bytes() -> None:
    async with pair(coalesce_ops_max=10_000, coalesce_bytes_max=20_000, coalesce_hold_max_s=60.0) as (a, b):
        before = a.counters["frames_out"]
        for i in range(50):
            await a.set(("big", f"k{i}"), "x" * 1000)  # ~1 kB each: the byte bound sends every ~20
        await wait_until_async(lambda: len(b.get("big", {})) == 50, what="b to hold the burst")
        frames = a.counters["frames_out"] - before
        assert 3 <= frames <= 8, frames
        assert a.counters["coalesced_flushes"] >= 2


async def test_acks_are_cumulative_and_a_waiting_writer_is_acked_at_once() -> None:
    # an ack delay far beyond the test's patience: only the count bound and ack_now can ack
    async with pair(ack_delay_s=600.0, ack_ops_max=10) as (a, b):
        acks_before = b.counters["frames_out"]
        for i in range(20):
            await a.set(("m", f"k{i}"), i)
            await trio.lowlevel.checkpoint()  # each write its own turn: its own frame
        await wait_until_async(lambda: a._rep.peers["b"].acked.get("a", 0) == a.replica.seq, what="a to be acked")
        assert b.counters["frames_out"] - acks_before == 2  # 20 ops, one ack per 10
        with trio.fail_after(5):  # would wait 600 s if the ack waited for the delay
            receipt = await a.set("waited", 1, ack="all", timeout_s=5)
        assert receipt.acked_by == ("b",)
        assert b.counters["frames_out"] - acks_before == 3


async def test_a_durable_write_commits_in_the_writers_task(tmp_path: Path) -> None:
    async with open_node(node_id="a", data_dir=str(tmp_path / "a"), **QUIET) as a:
        logged = a.status()["storage"]["log_ops"]
        with trio.CancelScope() as scope:
            scope.cancel()
            receipt = await a.set("k", 1)  # no checkpoint: committed here, not by the flusher task
        assert a.status()["storage"]["log_ops"] == logged + 1 and receipt.seq == a.replica.seq
        await a.set_many([("m.x", 1), ("m.y", 2)])
        assert a.status()["storage"]["log_ops"] == logged + 3


async def test_durable_inline_commits_hand_checkpoints_to_the_task_and_survive_a_restart(tmp_path: Path) -> None:
    data = str(tmp_path / "a")
    async with open_node(node_id="a", data_dir=data, checkpoint_ops=7, **QUIET) as a:
        for i in range(40):
            await a.set(("k", str(i)), i)
        await a.set_many([(("big", str(i)), i) for i in range(100)])  # over commit_inline_ops_max: the task commits
        await a._flusher.drain()
        assert a.status()["storage"]["snapshot_entries"] > 0  # checkpoints were written
        view, seq = a.get(), a.replica.seq
    async with open_node(node_id="a", data_dir=data, **QUIET) as again:
        assert again.get() == view and again.replica.seq == seq


async def test_a_failed_inline_commit_reaches_the_writer_and_takes_the_node_down(tmp_path: Path) -> None:
    def broken(ops: object) -> None:
        raise StorageError("disk full")

    with pytest.raises((StorageError, BaseExceptionGroup)) as caught:
        async with open_node(node_id="a", data_dir=str(tmp_path / "a"), **QUIET) as a:
            a._store.append = broken  # type: ignore[method-assign]
            with pytest.raises(StorageError, match="disk full"):
                await a.set("k", 1)
            await a._flusher.progress.wait()  # never set: the flusher task raises it too, the node stops
    assert "disk full" in repr(caught.value)
