"""Typed ops in the op block: round trips, runs of typing as one entry, fuzzing.

Whatever bytes arrive where a typed op block goes, only DecodeError comes out
(hypothesis mutates valid blocks and draws arbitrary typed sections).
"""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.core import TYPED, Ops, Replica, Snapshot, SnapshotChunk, SyncResponse
from statesync.wire import DEFAULT_LIMITS, DecodeError, decode_message, encode_message
from statesync.wire._opblock import decode_ops, encode_ops

MS = 1_700_000_000_000


def typed_replica() -> Replica:
    a = Replica("a")
    a.put("x", 1, MS)
    a.text_insert("t", 0, "ab", MS)
    for i, c in enumerate("hello world"):
        a.text_insert("t", 1 + i, c, MS + 10 * i)
    a.text_delete("t", 0, 1, MS + 200)
    a.counter_add("c", -2, MS + 201)
    a.list_insert("l", 0, [[1, 2], {"k": "v"}, None], MS + 202)
    a.list_move("l", 0, 2, MS + 203)
    a.list_delete("l", 1, 1, MS + 204)
    a.aw_add("s", 1.5, MS + 205)
    a.aw_remove("s", 1.5, MS + 206)
    a.put("y", "z", MS + 207)
    return a


def test_typed_ops_round_trip_in_every_message_that_carries_ops() -> None:
    a = typed_replica()
    ops = tuple(a.log)
    for msg in (Ops(ops), SyncResponse(ops, False)):
        back = decode_message(encode_message(msg))
        assert back.ops == ops  # type: ignore[attr-defined]
    for op in ops:  # blocks of one take their own path
        assert decode_message(encode_message(Ops((op,)))).ops == (op,)  # type: ignore[attr-defined]
    b = Replica("b")
    b.receive_many(decode_message(encode_message(Ops(ops))).ops)  # type: ignore[attr-defined]
    assert b.get("") == a.get("")


def test_a_run_of_typing_is_one_entry() -> None:
    a = Replica("a")
    a.text_insert("t", 0, "x", MS)
    for i in range(500):
        a.text_insert("t", 1 + i, "abc"[i % 3], MS + i)
    ops = tuple(a.log)
    block = encode_ops(ops)
    entries = block[-1][1]  # type: ignore[index]
    assert len(entries) == 2  # the creating op, then the run of 500
    assert decode_ops(msgpack.unpackb(msgpack.packb(block), use_list=False), DEFAULT_LIMITS) == ops
    per_op = len(encode_message(Ops(ops))) / len(ops)
    assert per_op < 8, per_op


def _block(ops: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(encode_ops(ops)), use_list=False)


def _only_decode_errors(block: Any) -> None:
    try:
        decode_ops(block, DEFAULT_LIMITS)
    except DecodeError as e:
        assert e.limit != "unexpected", str(e)


def _mutate(x: Any, path: list[int], new: Any) -> Any:
    if not path or type(x) is not tuple or not x:
        return new
    i = path[0] % len(x)
    return (*x[:i], _mutate(x[i], path[1:], new), *x[i + 1 :])


junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.text(max_size=5) | st.binary(max_size=9),
    lambda inner: st.lists(inner, max_size=4).map(tuple),
    max_leaves=12,
)


@settings(max_examples=400)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=6), junk)
def test_mutated_typed_blocks_raise_only_decode_errors(path: list[int], new: Any) -> None:
    block = _block(tuple(typed_replica().log))
    _only_decode_errors(_mutate(block, [11, *path], new))  # inside the typed section
    _only_decode_errors(_mutate(block, path, new))  # anywhere


@settings(max_examples=200)
@given(st.binary(max_size=60), st.integers(0, 400))
def test_corrupted_typed_message_bytes_raise_only_decode_errors(junk_bytes: bytes, at: int) -> None:
    data = encode_message(Ops(tuple(typed_replica().log)))
    at %= len(data)
    for bad in (data[:at] + junk_bytes + data[at + len(junk_bytes) :], data[:at]):
        try:
            decode_message(bad)
        except DecodeError as e:
            assert e.limit != "unexpected", str(e)


def test_snapshot_chunks_carry_typed_values() -> None:
    a = typed_replica()
    snap = a.snapshot()
    back = decode_message(encode_message(SnapshotChunk("t1", 0, len(snap.entries), dict(snap.vv), snap.entries)))
    fresh = Replica("z")
    fresh.install_snapshot(Snapshot(dict(back.vv), snap.hlc, tuple(back.entries)))  # type: ignore[attr-defined]
    assert fresh.get("") == a.get("")
    assert any(op.kind == TYPED for op in a.log)
