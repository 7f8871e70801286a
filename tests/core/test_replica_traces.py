"""Real editing traces replayed through ``Replica`` (typed ops as ``Op``s, on the wire).

- ``friendsforever`` (concurrent, two authors): two replicas, each editing the
  state its transaction's parents describe, exchanging the ops as encoded op
  blocks; both end with the trace's ``endContent``.
- ``rustcode`` (sequential, one author, 36,981 transactions): one replica,
  then a second one fed the whole log as op blocks and a third from a
  snapshot; all end with ``endContent``.

Traces: Joseph Gentle's editing-traces collection (CC BY 4.0), in
../shared/data/editing-traces beside the clone; skipped where absent.
"""

from __future__ import annotations

from typing import Any

import msgpack

from statesync.core import Op, Replica
from statesync.testing._traces import apply_patches, replay_concurrent
from statesync.wire import DEFAULT_LIMITS
from statesync.wire._opblock import decode_ops, encode_ops
from tests.core.seqsim import load_trace

MS = 1_700_000_000_000


def over_the_wire(ops: list[Op]) -> tuple[Op, ...]:
    block = msgpack.unpackb(msgpack.packb(encode_ops(ops)), use_list=False)
    return decode_ops(block, DEFAULT_LIMITS)


def edit(r: Replica, patches: list[Any], wall_ms: int) -> list[Op]:
    return apply_patches(r, "doc", patches, wall_ms)


def test_friendsforever_on_two_replicas_exchanging_ops_ends_with_its_end_content() -> None:
    trace = load_trace("friendsforever.json.gz")
    reps = [Replica(f"agent{a}") for a in range(trace["numAgents"])]
    blocks: list[int] = []  # bytes of each op block sent

    def deliver(r: int, ops: list[Op]) -> None:
        blocks.append(len(msgpack.packb(encode_ops(ops))))
        reps[r].receive_many(over_the_wire(ops))
        assert reps[r].pending_count == 0

    replay_concurrent(trace["txns"], len(reps), lambda a, patches, i: edit(reps[a], patches, MS + i), deliver)
    for rep in reps:
        assert rep.get("doc") == trace["endContent"]
    assert reps[0].digest() == reps[1].digest()
    assert sum(blocks) < 40 * len(trace["txns"])  # runs of typing travel as runs


def test_sequential_trace_through_a_replica_ends_with_its_end_content() -> None:
    trace = load_trace("rustcode.json.gz")
    a = Replica("author")
    for i, txn in enumerate(trace["txns"]):
        edit(a, txn["patches"], MS + i)
    end = trace["endContent"]
    assert a.get("doc") == end
    b = Replica("reader")
    b.receive_many(over_the_wire(list(a.log)))
    assert b.get("doc") == end
    a.compact_typed(dict(a.vv))  # every op is stable: deleted runs go
    snap = a.snapshot()
    c = Replica("late")
    c.install_snapshot(snap)
    assert c.get("doc") == end
    size = len(msgpack.packb(snap.entries))
    assert size < 2.5 * len(end), (size, len(end))  # the live text once plus run metadata (Yjs: ~3x)
