"""Collaborative types benchmark: real editing traces through the text type, next to pycrdt.

    python bench/types_bench.py            # full run
    python bench/types_bench.py --quick    # the first 20,000 edits of the sequential trace
    python bench/types_bench.py --only node [--limit N]   # automerge-paper through a node and a peer process

Data: ../shared/data/editing-traces/ beside the repository (Joseph Gentle's
editing-traces collection; automerge-paper prepared by Martin Kleppmann;
CC BY 4.0). pycrdt (the Yjs engine for Python, optional ``bench`` extra) runs
in the same invocation where it is installed; the bench says so and skips it
where it is not. Prints figures; never passes or fails.

Bytes: a snapshot is msgpack of ``Text.to_snapshot()``, also shown
zstd-compressed (level 3), as the wire compresses a snapshot chunk; Yjs's is
``encodeStateAsUpdate`` (pycrdt ``Doc.get_update``), shown raw and with the
same zstd. The concurrent trace's bytes exchanged are msgpack of each
transaction's op records (``to_plain``), a stand-in for the wire's op block.
Memory is resident-set growth measured in a fresh child process per engine.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import pathlib
import pickle
import subprocess
import sys
import time
from typing import Any

import msgpack
import trio
import zstandard

from statesync.core import Replica, Strategies
from statesync.core._counter import Counter, counter_op_from_plain
from statesync.core._text import Text, text_op_from_plain
from statesync.node import NodeConfig, open_node
from statesync.testing._traces import apply_patches, replay_concurrent
from statesync.wire import DEFAULT_LIMITS
from statesync.wire._opblock import decode_ops, encode_ops

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRACES = next(
    (
        p / "shared" / "data" / "editing-traces"
        for p in (ROOT.parent, ROOT.parent.parent)
        if (p / "shared" / "data" / "editing-traces").is_dir()
    ),
    ROOT.parent / "shared" / "data" / "editing-traces",
)

try:
    import pycrdt
except ImportError:  # optional peer
    pycrdt = None


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load(name: str) -> dict[str, Any]:
    with gzip.open(TRACES / name) as f:
        data: dict[str, Any] = json.load(f)
    return data


def patches(trace: dict[str, Any], limit: int | None) -> list[tuple[int, int, str]]:
    out = [tuple(p) for txn in trace["txns"] for p in txn["patches"]]
    return out[:limit] if limit else out  # type: ignore[return-value]


def replay_ours(edits: list[tuple[int, int, str]]) -> tuple[Text, int]:
    t = Text()
    seq = 0
    for pos, ndel, ins in edits:
        if ndel:
            seq += 1
            t.delete(("paper", seq), pos, ndel)
        if ins:
            seq += 1
            t.insert(("paper", seq), pos, ins)
    return t, seq


def replay_pycrdt(edits: list[tuple[int, int, str]]) -> Any:
    assert pycrdt is not None
    doc = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    for pos, ndel, ins in edits:
        if ndel:
            del text[pos : pos + ndel]
        if ins:
            text.insert(pos, ins)
    return doc


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    gc.collect()
    t0 = time.perf_counter()
    got = fn(*args)
    return got, time.perf_counter() - t0


def memory_child(engine: str, limit: int | None) -> None:
    """Print the resident growth of building the final document with ``engine``."""
    trace = load("automerge-paper.json.gz")  # kept alive: its memory is not reused by the build
    edits = patches(trace, limit)
    gc.collect()
    before = rss_bytes()
    if engine == "ours":
        doc: Any = replay_ours(edits)[0]
    elif engine == "ours-loaded":
        t = replay_ours(edits)[0]
        t.compact(dict(t.applied))
        blob = msgpack.packb(t.to_snapshot())
        del t
        gc.collect()
        before = rss_bytes()
        doc = Text.from_snapshot(msgpack.unpackb(blob))
    elif engine == "replica":
        doc = replay_replica(edits)
    elif engine == "replica-compacted":  # the document and its op log, deleted runs forgotten
        doc = replay_replica(edits)
        doc.compact_typed(dict(doc.vv))
    elif engine == "replica-loaded":  # a fresh replica holding only the snapshot
        r = replay_replica(edits)
        r.compact_typed(dict(r.vv))
        blob = pickle.dumps(r.snapshot())  # bytes, so the loaded text shares no strings with the source
        del r
        gc.collect()
        before = rss_bytes()
        doc = Replica("late")
        doc.install_snapshot(pickle.loads(blob))
    else:
        doc = replay_pycrdt(edits)
    gc.collect()
    print(rss_bytes() - before)
    del doc, trace


def child_rss(engine: str, limit: int | None) -> int:
    args = [sys.executable, __file__, "--memory-child", engine]
    if limit:
        args += ["--limit", str(limit)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    return int(out.stdout.strip().splitlines()[-1])


def print_resident(ours: str, limit: int | None) -> None:
    """One line of resident growth: ours, then pycrdt's for the same edits where it is installed."""
    line = f"  resident growth: {ours}"
    if pycrdt is not None:
        line += f"; pycrdt {child_rss('pycrdt', limit) / 1e6:.1f} MB"
    print(line)


def sequential(limit: int | None) -> None:
    trace = load("automerge-paper.json.gz")
    edits = patches(trace, limit)
    (t, n_ops), secs = timed(replay_ours, edits)
    n = len(edits)
    print(f"sequential trace automerge-paper: {n:,} edits ({n_ops:,} ops, one per insert or delete)")
    check = "not checked (a prefix of the trace)" if limit else ("ok" if t.value() == trace["endContent"] else "WRONG")
    print(f"  statesync Text : {secs:6.2f} s  {secs / n * 1e6:6.2f} us/edit  endContent {check}")
    zc = zstandard.ZstdCompressor(level=3)
    _, compact_s = timed(t.compact, dict(t.applied))
    snap, dump_s = timed(lambda: msgpack.packb(t.to_snapshot()))
    z = zc.compress(snap)
    loaded, load_s = timed(lambda b: Text.from_snapshot(msgpack.unpackb(b)), snap)
    assert loaded.value() == t.value()
    py_secs = None
    if pycrdt is None:
        print("  pycrdt         : not installed (pip install -e '.[bench]'); skipped")
    else:
        doc, py_secs = timed(replay_pycrdt, edits)
        assert str(doc.get("t", type=pycrdt.Text)) == t.value()
        print(f"  pycrdt {pycrdt.__version__:8s}: {py_secs:6.2f} s  {py_secs / n * 1e6:6.2f} us/edit")
        print(f"  speed vs pycrdt: {py_secs / secs:.2f}x")
    live = len(t.value().encode())
    print(f"  final document: {len(t):,} chars ({live:,} B UTF-8)")
    print(f"  compaction at a stable vector covering everything: {compact_s * 1e3:.0f} ms")
    print(f"  snapshot (compacted): {len(snap):,} B msgpack, {len(z):,} B zstd; dump {dump_s * 1e3:.0f} ms, load {load_s * 1e3:.0f} ms")
    if pycrdt is not None:
        upd = doc.get_update()
        yz = zc.compress(upd)
        d2 = pycrdt.Doc()
        _, y_load = timed(d2.apply_update, upd)
        print(f"  Yjs update (pycrdt get_update): {len(upd):,} B, {len(yz):,} B zstd; load {y_load * 1e3:.0f} ms")
        print(f"  ratio to Yjs: {len(snap) / len(upd):.2f}x raw, {len(z) / len(upd):.2f}x zstd vs Yjs raw, {len(z) / len(yz):.2f}x both zstd")
    mem = child_rss("ours", limit)
    mem_l = child_rss("ours-loaded", limit)
    print_resident(f"ours {mem / 1e6:.1f} MB after the replay, {mem_l / 1e6:.1f} MB loaded from the snapshot", limit)


def concurrent() -> None:
    """friendsforever on two replicas: each transaction's ops travel as msgpack."""
    trace = load("friendsforever.json.gz")
    txns = trace["txns"]
    n_agents = trace["numAgents"]
    reps = [Text() for _ in range(n_agents)]
    have: list[set[int]] = [set() for _ in range(n_agents)]
    blocks: list[bytes] = []
    seqs = [0] * n_agents
    sent = 0

    def catch_up(r: int, wanted: list[int]) -> None:
        nonlocal sent
        todo = [i for i in wanted if i not in have[r]]
        while todo:
            i = todo[-1]
            gaps = [p for p in txns[i]["parents"] if p not in have[r]]
            if gaps:
                todo += gaps
                continue
            todo.pop()
            if i in have[r]:
                continue
            have[r].add(i)
            sent += len(blocks[i])
            for plain in msgpack.unpackb(blocks[i]):
                reps[r].apply(text_op_from_plain(plain))

    t0 = time.perf_counter()
    for i, txn in enumerate(txns):
        a = txn["agent"]
        catch_up(a, txn["parents"])
        ops = []
        for pos, ndel, ins in txn["patches"]:
            if ndel:
                seqs[a] += 1
                ops.append(reps[a].delete((f"agent{a}", seqs[a]), pos, ndel).to_plain())
            if ins:
                seqs[a] += 1
                ops.append(reps[a].insert((f"agent{a}", seqs[a]), pos, ins).to_plain())
        blocks.append(msgpack.packb(ops))
        have[a].add(i)
    for r in range(n_agents):
        catch_up(r, list(range(len(txns))))
    secs = time.perf_counter() - t0
    ok = all(rep.value() == trace["endContent"] for rep in reps)
    edits = sum(len(t["patches"]) for t in txns)
    print(f"concurrent trace friendsforever: {len(txns):,} transactions, {edits:,} edits, {n_agents} replicas")
    print(f"  total {secs:.2f} s ({secs / edits * 1e6:.1f} us/edit, local and remote), endContent {'ok on both' if ok else 'WRONG'}")
    print(f"  bytes exchanged: {sent:,} B msgpack op blocks ({sent / edits:.1f} B/edit), one block per transaction")


def replay_replica(edits: list[tuple[int, int, str]]) -> Replica:
    r = Replica("paper")
    ins, rm = r.text_insert, r.text_delete
    wall_ms = 1_700_000_000_000
    for pos, ndel, s in edits:
        if ndel:
            rm("doc", pos, ndel, wall_ms)
        if s:
            ins("doc", pos, s, wall_ms)
    return r


def replica_sequential(limit: int | None) -> None:
    """The same trace through Replica.text_insert/text_delete: one Op per edit, as a node makes them."""
    trace = load("automerge-paper.json.gz")
    edits = patches(trace, limit)
    n = len(edits)
    r, secs = timed(replay_replica, edits)
    check = "not checked (a prefix)" if limit else ("ok" if r.get("doc") == trace["endContent"] else "WRONG")
    print(f"sequential trace automerge-paper through Replica.text_insert/text_delete: {n:,} edits, {len(r.log):,} Ops")
    print(f"  statesync Replica: {secs:6.2f} s  {secs / n * 1e6:6.2f} us/edit  endContent {check}")
    if pycrdt is not None:
        doc, py_secs = timed(replay_pycrdt, edits)
        print(f"  pycrdt {pycrdt.__version__:8s}  : {py_secs:6.2f} s  {py_secs / n * 1e6:6.2f} us/edit (same run)")
        print(f"  speed vs pycrdt: {py_secs / secs:.2f}x")
    block, enc_s = timed(lambda: msgpack.packb(encode_ops(list(r.log))))
    print(f"  the whole log as one op block: {len(block):,} B ({len(block) / n:.2f} B/edit), encode {enc_s:.2f} s")
    r.compact_typed(dict(r.vv))
    snap = r.snapshot()
    body, dump_s = timed(lambda: msgpack.packb(snap.entries))
    zc = zstandard.ZstdCompressor(level=3)
    z = zc.compress(body)

    def load_fresh() -> Replica:
        fresh = Replica("late")
        fresh.install_snapshot(snap)
        return fresh

    fresh, load_s = timed(load_fresh)
    assert fresh.get("doc") == r.get("doc")
    line = f"  Replica snapshot: {len(body):,} B msgpack, {len(z):,} B zstd; freeze+pack {dump_s * 1e3:.0f} ms, load into a fresh replica {load_s * 1e3:.0f} ms"
    print(line)
    if pycrdt is not None:
        upd = doc.get_update()
        print(f"  vs Yjs update {len(upd):,} B: {len(body) / len(upd):.2f}x raw, {len(z) / len(upd):.2f}x zstd")
    mems = {e: child_rss(e, limit) / 1e6 for e in ("replica", "replica-compacted", "replica-loaded")}
    print_resident(
        f"Replica {mems['replica']:.1f} MB after the replay ({len(r.log):,} Ops in its log), "
        f"{mems['replica-compacted']:.1f} MB compacted, {mems['replica-loaded']:.1f} MB loaded from the snapshot",
        limit,
    )


def replica_concurrent() -> None:
    """friendsforever on two Replicas exchanging encoded op blocks (one per catch-up)."""
    trace = load("friendsforever.json.gz")
    txns = trace["txns"]
    reps = [Replica(f"agent{a}") for a in range(trace["numAgents"])]
    sent = 0

    def deliver(r: int, ops: list[Any]) -> None:
        nonlocal sent
        data = msgpack.packb(encode_ops(ops))
        sent += len(data)
        reps[r].receive_many(decode_ops(msgpack.unpackb(data, use_list=False), DEFAULT_LIMITS))

    t0 = time.perf_counter()
    replay_concurrent(txns, len(reps), lambda a, p, i: apply_patches(reps[a], "doc", p, 1_700_000_000_000 + i), deliver)
    secs = time.perf_counter() - t0
    ok = all(rep.get("doc") == trace["endContent"] for rep in reps)
    edits = sum(len(t["patches"]) for t in txns)
    print(f"concurrent trace friendsforever on {len(reps)} Replicas (typed Ops, encoded op blocks): {edits:,} edits")
    print(f"  total {secs:.2f} s ({secs / edits * 1e6:.1f} us/edit, local, encode, decode and remote), endContent {'ok on both' if ok else 'WRONG'}")
    print(f"  bytes exchanged: {sent:,} B op blocks ({sent / edits:.2f} B/edit)")


def peer_child(spec_json: str) -> None:
    """A node listening on tcp loopback: reports when its vector holds ``until`` ops of the writer."""
    spec = json.loads(spec_json)

    async def main() -> None:
        async with open_node(NodeConfig.from_mapping({"tune_gc": True, **spec["config"]})) as node:
            print(json.dumps({"endpoints": list(node.endpoints)}), flush=True)
            origin, n = spec["until"]
            while node.replica.vv.get(origin, 0) < n:
                await trio.sleep(0.001)
            done_at = time.time()
            print(json.dumps({"done_at": done_at, "value": node.text(spec["path"]).value()}), flush=True)
            stdin = trio.lowlevel.FdStream(os.dup(0))
            await stdin.receive_some(1)  # runs until the parent closes stdin

    trio.run(main)


def node_sequential(limit: int | None) -> None:
    """automerge-paper through a node, one ``await node.text(path).insert/delete`` per edit, to a peer process.

    Edits/s applied at the peer: from the first edit to the peer holding all of
    them (its vector covering the writer's last op); both in-memory, tcp loopback.
    """
    trace = load("automerge-paper.json.gz")
    edits = patches(trace, limit)
    n = len(edits)
    n_ops = 1 + sum(bool(d) + bool(s) for _, d, s in edits)  # the warm-up write, then one op per insert or delete
    # watch_resume_events_max 0: the resume journal keeps each change's whole new and old value
    # (a text of up to 100k chars per edit), 100,000 of them by default: ~10 GB on this trace.
    no_journal = {"watch_resume_events_max": 0}
    spec = {"config": {"node_id": "b", "listen": ["tcp://127.0.0.1:*"], **no_journal}, "until": ["a", n_ops], "path": "doc"}
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", "peer", "--spec", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None and child.stdin is not None
    endpoints = json.loads(child.stdout.readline())["endpoints"]
    try:

        async def main() -> tuple[float, float, str, str]:
            cfg = {"node_id": "a", "peers": endpoints, "tune_gc": True, **no_journal}
            async with open_node(NodeConfig.from_mapping(cfg)) as node:
                await node.set("warmup", 1, ack="all", timeout_s=10)
                text = node.text("doc")
                ins, rm = text.insert, text.delete
                gc.collect()
                t0 = time.time()
                for pos, ndel, s in edits:
                    if ndel:
                        await rm(pos, ndel)
                    if s:
                        await ins(pos, s)
                local_s = time.time() - t0
                assert child.stdout is not None
                line = await trio.to_thread.run_sync(child.stdout.readline)
                got = json.loads(line)
                return got["done_at"] - t0, local_s, got["value"], text.value()

        secs, local_s, peer_text, own_text = trio.run(main)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    want = trace["endContent"] if not limit else own_text
    check = "ok" if peer_text == want else "WRONG"
    what = "endContent" if not limit else "the writer's text (a prefix)"
    print(f"automerge-paper through a node to one peer process (tcp loopback, in-memory): {n:,} edits, {n_ops - 1:,} typed ops")
    print(f"  one await node.text(path).insert/delete per edit: {n / local_s:,.0f} edits/s at the writer ({local_s:.2f} s)")
    print(f"  applied at the peer: {secs:.2f} s, {n / secs:,.0f} edits/s ({secs / n * 1e6:.1f} us/edit); peer text = {what}: {check}")


def counters(n: int = 1540) -> None:
    """The crdt-benchmarks B3 shape: n replicas each add 1, merged into one."""
    t0 = time.perf_counter()
    blobs = [msgpack.packb(Counter().add((f"node{i}", 1), 1).to_plain()) for i in range(n)]
    made = time.perf_counter() - t0
    t0 = time.perf_counter()
    merged = Counter()
    for b in blobs:
        merged.apply(counter_op_from_plain(msgpack.unpackb(b)))
    secs = time.perf_counter() - t0
    assert merged.value() == n
    snap = msgpack.packb(merged.to_snapshot())
    print(f"counters: {n:,} replicas each add 1, merged into one: value {merged.value():,}")
    print(f"  merge {secs * 1e3:.1f} ms ({secs / n * 1e6:.1f} us/op; making the ops {made * 1e3:.1f} ms)")
    print(f"  bytes: {sum(map(len, blobs)):,} B of ops ({sum(map(len, blobs)) / n:.1f} B each), merged snapshot {len(snap):,} B")


def plain_key_writers(n: int = 1540) -> None:
    """Next to the counter: n replicas each write one plain key, merged into one replica."""
    for name in ("last-write-wins", "vector-clock"):
        ops = [Replica(f"node{i}", strategies=Strategies(name)).put("likes", 1, 1_700_000_000_000 + i) for i in range(n)]
        blobs = [msgpack.packb(encode_ops([op])) for op in ops]
        merged = Replica("merger", strategies=Strategies(name))
        t0 = time.perf_counter()
        for op in ops:
            merged.receive(op)
        secs = time.perf_counter() - t0
        kept = len(merged.versions("likes"))
        print(
            f"  one plain key, {name}: merge {secs * 1e3:.1f} ms ({secs / n * 1e6:.1f} us/op), "
            f"{sum(map(len, blobs)):,} B of ops (wire op blocks of one), {kept:,} version(s) kept, value {merged.get('likes')!r}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--memory-child", default=None)
    ap.add_argument("--only", choices=["node"], help="one figure: the sequential trace through a node and a peer process")
    ap.add_argument("--role", choices=["peer"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.limit)
        return
    if args.role == "peer":
        peer_child(args.spec)
        return
    if not TRACES.is_dir():
        print(f"editing traces not found at {TRACES}; nothing to measure")
        return
    limit = 20_000 if args.quick else args.limit
    print(f"python {sys.version.split()[0]}; traces from {TRACES}")
    if args.only == "node":
        node_sequential(limit)
        return
    sequential(limit)
    replica_sequential(limit)
    concurrent()
    replica_concurrent()
    counters()
    plain_key_writers()


if __name__ == "__main__":
    main()
