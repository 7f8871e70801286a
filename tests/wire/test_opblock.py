"""The columnar op block: every column form, and every check on the way in."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.core import Op, Ops, SnapshotChunk, SyncResponse, Version
from statesync.wire import (
    BadPath,
    BatchTooLong,
    ContainerTooLong,
    DataCloneError,
    DecodeError,
    DecodeLimits,
    MalformedFrame,
    NestingTooDeep,
    OutOfRange,
    PathTooDeep,
    SegmentTooLong,
    StringTooLong,
    ValueRejected,
    WrongType,
    decode_message,
    encode_message,
)
from statesync.wire._opblock import decode_block as general_decode
from statesync.wire._opblock import decode_one_fast
from tests.wire import strategies as sst

U64 = 2**64 - 1
HLC = int(1.8e12) << 16


def put(seq: int, origin: str = "node-a", **kw: Any) -> Op:
    fields: dict[str, Any] = {
        "origin": origin,
        "seq": seq,
        "hlc": HLC + seq,
        "path": ("user", f"k{seq}"),
        "kind": 0,
        "value": "v",
        "context": ((origin, seq - 1),),
    }
    fields.update(kw)
    return Op(**fields)


def round_trip(ops: tuple[Op, ...]) -> tuple[Op, ...]:
    back = decode_message(encode_message(Ops(ops)))
    assert isinstance(back, Ops)
    assert back.ops == ops
    assert all(type(op) is Op for op in back.ops)
    return back.ops


def block_of(ops: tuple[Op, ...]) -> list[Any]:
    raw = msgpack.unpackb(encode_message(Ops(ops)))
    assert raw[0] == Ops.TAG
    return list(raw[1])


def decode_block(block: list[Any], limits: DecodeLimits | None = None) -> object:
    data = msgpack.packb([Ops.TAG, block], use_bin_type=True)
    return decode_message(data) if limits is None else decode_message(data, limits)


@settings(max_examples=300, deadline=None)
@given(sst.op_tuples)
def test_op_blocks_round_trip(ops: tuple[Op, ...]) -> None:
    round_trip(ops)
    assert decode_message(encode_message(SyncResponse(ops, True))) == SyncResponse(ops, True)


def test_column_forms_are_compact() -> None:
    ops = tuple(put(s) for s in range(10, 20))
    n, table, origins, seqs, _hlcs, paths, kinds, values, lens, names, ns = block_of(ops)
    assert (n, table, origins, kinds, lens, names) == (10, ["node-a"], 0, 0, 1, 0)
    assert seqs == [10, b"=" + (1).to_bytes(8, "little")]  # a constant step
    assert ns == [9, b"=" + (1).to_bytes(8, "little")]
    hlcs = block_of((put(1, hlc=5), put(2, hlc=6), put(3, hlc=300), put(4, hlc=300)))[4]
    assert hlcs == [5, b"H" + bytes([1, 0, 38, 1, 0, 0])]  # unsigned 16-bit deltas
    assert paths[0] == ["user", "k10"] and values == ["v"] * 10


@pytest.mark.parametrize(
    "ops",
    [
        (),
        (put(1),),
        (put(1), put(2)),
        (put(5), put(3)),  # decreasing seqs: signed deltas
        (put(1), put(U64, hlc=5), put(2)),  # deltas beyond 64 bits: absolute values
        (put(1, hlc=U64), put(2, hlc=0)),
        (put(1, hlc=0), put(2, hlc=U64)),
        (put(1, context=()), put(2, context=())),
        (put(1, context=(("a", 0), ("b", U64), ("c", 3))), put(2, context=(("a", 1), ("b", 2), ("c", 3)))),
        (put(1, context=()), put(2, context=(("a", 1),)), put(3, context=(("a", 1), ("b", 2)))),
        (put(1, context=tuple((f"n{i}", i) for i in range(300))), put(2)),  # a context longer than 255
        (put(1, kind=1, value=None), put(2, kind=1, value=None)),
        (put(1), put(2, kind=1, value=None), put(3)),
        (put(1, path=()), put(2, path=("a",) * 32)),
        (put(1, value={"a": [1, [2, {"b": []}]], "c": {}}), put(2, value=[[], [[]]])),
        (put(1, value=b"\x00" * 300), put(2, value=-(2**63)), put(3, value=1.5), put(4, value=True)),
    ],
)
def test_op_block_shapes(ops: tuple[Op, ...]) -> None:
    back = round_trip(ops)
    for op in back:
        if isinstance(op.value, dict):
            assert all(type(v) is not tuple for v in op.value.values())


def test_many_node_ids_use_int_indices() -> None:
    ops = tuple(put(i + 1, origin=f"node-{i}") for i in range(300))
    block = block_of(ops)
    assert len(block[1]) == 300 and isinstance(block[2], list)
    round_trip(ops)
    few = tuple(put(i + 1, origin=f"node-{i % 3}") for i in range(30))
    assert isinstance(block_of(few)[2], bytes)
    round_trip(few)


# ---------------------------------------------------------------- checks


def _edit(ops: tuple[Op, ...], column: int, value: Any) -> list[Any]:
    block = block_of(ops)
    block[column] = value
    return block


TWO = (put(1), put(2))


@pytest.mark.parametrize(
    ("block", "error", "limit", "where"),
    [
        (_edit(TWO, 0, 3), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 0, -1), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 0, "2"), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 1, ["node-a", 5]), WrongType, "type", "$.ops"),
        (_edit(TWO, 1, [""]), OutOfRange, "node_id", "$.ops"),
        (_edit(TWO, 1, ["n" * 257]), StringTooLong, "node_id_chars_max", "$.ops"),
        (_edit(TWO, 2, 1), OutOfRange, "table", "$.ops"),
        (_edit(TWO, 2, -1), OutOfRange, "table", "$.ops"),
        (_edit(TWO, 2, b"\x00\x01"), OutOfRange, "table", "$.ops"),
        (_edit(TWO, 2, [0, True]), WrongType, "type", "$.ops"),
        (_edit(TWO, 2, b"\x00"), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 3, [0, b"B\x01"]), OutOfRange, "seq", "$.ops"),
        (_edit(TWO, 3, [1, b"b\xfe"]), OutOfRange, "seq", "$.ops"),
        (_edit(TWO, 3, [U64, b"B\x01"]), OutOfRange, "seq", "$.ops"),
        (_edit(TWO, 3, [1, b"Z\x01"]), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 3, [1, b"H\x01"]), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 3, [1, b""]), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 3, [1.0, b"B\x01"]), WrongType, "type", "$.ops"),
        (_edit(TWO, 3, [1, 2.5]), WrongType, "type", "$.ops"),
        (_edit(TWO, 3, [1, 2, 3]), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 3, 7), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 4, [0, b"b\xff"]), OutOfRange, "hlc", "$.ops"),
        (_edit(TWO, 5, [["a"], "a"]), BadPath, "path", "$.ops[1].path"),
        (_edit(TWO, 5, [["a"]]), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 5, [["a"], ["a", ""]]), BadPath, "path", "$.ops"),
        (_edit(TWO, 5, [["a"], ["a", 1]]), BadPath, "path", "$.ops"),
        (_edit(TWO, 5, [["a"], ["x"] * 33]), PathTooDeep, "path_depth_max", "$.ops[1].path"),
        (_edit(TWO, 5, [["a"], ["x" * 257]]), SegmentTooLong, "segment_chars_max", "$.ops"),
        (_edit(TWO, 6, 2), OutOfRange, "kind", "$.ops"),
        (_edit(TWO, 6, True), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 6, b"\x00\x02"), OutOfRange, "kind", "$.ops"),
        (_edit(TWO, 6, b"\x00"), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 7, ["v"]), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 7, ["v", {b"k": 1}]), WrongType, "type", "$.ops[1].value"),
        (_edit(TWO, 7, ["v", {"": 1}]), ValueRejected, "value", "$.ops[1].value"),
        ([*_edit(TWO, 8, 2)[:10], [0, b"B\x01"]], MalformedFrame, "format", "$.ops"),  # 4 pairs, 2 counters
        (_edit(TWO, 8, -1), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 8, b"\x01"), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 8, [1, -1]), MalformedFrame, "format", "$.ops"),
        (_edit(TWO, 9, 3), OutOfRange, "table", "$.ops"),
        (_edit(TWO, 10, [0, b"b\xff"]), OutOfRange, "context", "$.ops"),
        (_edit(TWO, 10, None), MalformedFrame, "format", "$.ops"),
        ([1, 2, 3], MalformedFrame, "format", "$.ops"),
        ("block", MalformedFrame, "format", "$.ops"),
    ],
)
def test_block_checks(block: Any, error: type[DecodeError], limit: str, where: str) -> None:
    with pytest.raises(error) as info:
        decode_block(block)
    assert info.value.limit == limit
    assert info.value.where == where
    assert str(info.value)


def test_value_nesting_is_bounded() -> None:
    deep: Any = 1
    for _ in range(31):
        deep = [deep]
    with pytest.raises(NestingTooDeep) as info:
        decode_block(_edit(TWO, 7, ["v", {"a": {"b": deep}}]))
    assert info.value.limit == "depth_max"
    assert info.value.where == "$.ops[1].value['a']['b']" + "[0]" * 30
    assert decode_block(_edit(TWO, 7, ["v", {"a": deep[0]}])) is not None


def test_limits_on_blocks() -> None:
    ops = tuple(put(s) for s in range(1, 11))
    with pytest.raises(BatchTooLong) as info:
        decode_block(block_of(ops), DecodeLimits(ops_len_max=9))
    assert (info.value.limit, info.value.bound, info.value.value) == ("ops_len_max", 9, 10)
    with pytest.raises(ContainerTooLong) as ctx:
        decode_block(block_of(ops), DecodeLimits(container_len_max=9))
    assert ctx.value.limit == "container_len_max"
    with pytest.raises(PathTooDeep):
        decode_block(block_of(ops), DecodeLimits(path_depth_max=1))
    with pytest.raises(SegmentTooLong):
        decode_block(block_of(ops), DecodeLimits(segment_chars_max=2))
    with pytest.raises(StringTooLong):
        decode_block(block_of(ops), DecodeLimits(node_id_chars_max=5))


def test_a_huge_count_with_little_data_is_refused_before_allocating() -> None:
    block = _edit(TWO, 0, 60_000)
    block[2] = 0  # a uniform column would otherwise expand to the count
    with pytest.raises(MalformedFrame):
        decode_block(block)


# ---------------------------------------------------------------- versions and snapshots


def test_snapshot_entries_checks() -> None:
    chunk = SnapshotChunk("t", 0, 1, {}, ((("a",), (Version("x", 1, "n", 1),)),))
    raw = msgpack.unpackb(encode_message(chunk))
    assert decode_message(msgpack.packb(raw)) == chunk
    assert raw[5] == [1, ["n"], 1, [["a"]], ["x"], 1, 0, 1]  # the entry block

    def block(**change: Any) -> list[Any]:
        cols = {"n": 1, "table": ["n"], "counts": 1, "paths": [["a"]], "values": ["x"], "hlcs": 1, "origins": 0, "seqs": 1}
        cols.update(change)
        return list(cols.values())

    bad_entries: list[tuple[Any, type[DecodeError]]] = [
        (block(seqs=0), OutOfRange),
        (block(hlcs=-1), OutOfRange),
        (block(table=[""]), OutOfRange),
        (block(table=[5]), WrongType),
        (block(hlcs=1.0), MalformedFrame),
        (block(origins=1), OutOfRange),  # outside the table
        (block(counts=2), MalformedFrame),  # one version where two are announced
        (block(counts=b"\x01\x01"), MalformedFrame),
        (block(counts=[-1]), MalformedFrame),
        (block(counts="x"), MalformedFrame),
        (block(counts=10**9), ContainerTooLong),  # sized from the count: refused before anything is built
        (block(n=10**9), BatchTooLong),
        (block(n=2), MalformedFrame),  # one path where two entries are announced
        (block(paths=[["a", ""]]), BadPath),
        (block(values=[{b"k": 1}]), WrongType),
        (block()[:7], MalformedFrame),
        ([[["a"], [["x", 1, "n", 1]]]], MalformedFrame),  # the old row form
        ("entries", MalformedFrame),
    ]
    for entries, error in bad_entries:
        raw[5] = entries
        with pytest.raises(error):
            decode_message(msgpack.packb(raw, use_bin_type=True))


def test_entry_blocks_round_trip_every_column_form() -> None:
    many = tuple(
        (("p", f"k{i}"), tuple(Version(f"v{j}", 10**15 - 7 * i + j, f"node{(i + j) % 300}", 1 + i * j) for j in range(i % 3)))
        for i in range(600)
    )
    for entries in (many, many[:1], many[1:2], tuple((p, vs[:1]) for p, vs in many if vs), ((("a",), ()),)):
        chunk = SnapshotChunk("t", 0, len(entries), {"n": 1}, entries)
        assert decode_message(encode_message(chunk)) == chunk


def test_versions_keep_list_values() -> None:
    chunk = SnapshotChunk("t", 0, 1, {}, ((("a",), (Version([1, [2]], 1, "n", 1), Version({"k": [3]}, 2, "m", 4))),))
    back = decode_message(encode_message(chunk))
    assert back == chunk
    versions = back.entries[0][1]  # type: ignore[attr-defined]
    assert all(type(v) is Version for v in versions)
    assert type(versions[0].value) is list and type(versions[0].value[1]) is list


def test_bad_versions_fail_at_encode() -> None:
    with pytest.raises(DataCloneError) as info:
        encode_message(SnapshotChunk("t", 0, 1, {}, ((("a",), (Version("x", 1, "n", 0),)),)))
    assert info.value.where == "$.entries[0][1][0]"
    with pytest.raises(DataCloneError) as info:
        encode_message(SnapshotChunk("t", 0, 1, {}, ((("a",), (Version({1, 2}, 1, "n", 1),)),)))  # type: ignore[arg-type]
    assert info.value.where == "$.entries[0][1][0].value"
    with pytest.raises(DataCloneError):
        encode_message(SnapshotChunk("t", 0, 1, {}, ((("a", ""), ()),)))


def test_wide_deltas_fall_back_to_absolute_values() -> None:
    ops = (put(1), put(U64, hlc=5), put(2))
    assert block_of(ops)[3] == [1, U64, 2]
    assert block_of((put(1), put(2), put(4)))[3] == [1, b"B\x01\x02"]
    assert block_of((put(1), put(2), put(3)))[3] == [1, b"=" + (1).to_bytes(8, "little")]
    assert block_of((put(3), put(2), put(1)))[3] == [3, b"=" + (-1).to_bytes(8, "little", signed=True)]
    assert block_of((put(3), put(2), put(4)))[3] == [3, b"b\xff\x02"]
    for ops in [(put(3), put(2), put(1)), (put(3), put(2), put(4)), (put(7), put(7), put(7))]:
        round_trip(ops)
    round_trip(ops)


_ONE_BLOCKS = [
    msgpack.unpackb(msgpack.packb(block_of((op,)), use_bin_type=True), use_list=False)
    for op in (
        put(7),
        put(7, context=()),
        put(7, context=(("other", 3),)),
        put(7, kind=1, value=None, path=()),
        put(7, value={"a": 1}),
        put(7, context=(("a", 1), ("b", 2))),
    )
]
_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-1, 3), st.integers(-(2**63), 2**64 - 1), st.text(max_size=3),
    st.sampled_from(["", "x" * 257, "node-a"]), st.binary(max_size=2),
)
_JUNK = st.recursive(_LEAVES, lambda c: st.lists(c, max_size=3).map(tuple), max_leaves=6)


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(_ONE_BLOCKS),
    st.lists(st.tuples(st.integers(1, 10), _JUNK), max_size=2),
    st.sampled_from([DecodeLimits(), DecodeLimits(segment_chars_max=3, node_id_chars_max=5, path_depth_max=1)]),
)
def test_single_op_fast_path_agrees_with_the_general_path(
    block: tuple[Any, ...], edits: list[tuple[int, Any]], limits: DecodeLimits
) -> None:
    mutated = list(block)
    for column, junk in edits:
        mutated[column] = junk
    edited = tuple(mutated)
    fast = decode_one_fast(edited, limits)
    try:
        general: object = general_decode(edited, limits)
    except DecodeError as e:
        general = e
    if fast is not None:
        assert fast == general, (edited, fast, general)
        assert all(type(op) is Op for op in fast)
