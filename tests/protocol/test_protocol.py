"""statesync.protocol on its own (sans-IO): requests and replies round-trip, decoding names
the bad field, every error code maps to one class and back, subtrees survive chunking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path as FilePath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statesync import protocol
from statesync.core import ABSENT, Path, Value, iter_leaves
from statesync.errors import (
    BadRequest,
    InvalidPath,
    NodeError,
    ProtocolError,
    StatesyncError,
    TooLarge,
    WriteConcernError,
)

segments = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=6)
paths = st.lists(segments, max_size=4).map(tuple)
leaves: st.SearchStrategy[Value] = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20)
)
values: st.SearchStrategy[Value] = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(segments, inner, min_size=1, max_size=3), max_leaves=10
)
acks = st.sampled_from(["local", "all"]) | st.integers(0, 5)
timeouts = st.none() | st.floats(0.001, 1e6)

requests = st.one_of(
    st.builds(protocol.Hello, st.integers(0, 9)),
    st.builds(protocol.Get, paths),
    st.builds(protocol.Set, paths, values, ack=acks, timeout_s=timeouts),
    st.builds(protocol.SetMany, st.lists(st.tuples(paths, values), max_size=4).map(tuple), ack=acks, timeout_s=timeouts),
    st.builds(protocol.Delete, paths, ack=acks, timeout_s=timeouts),
    st.builds(protocol.Conflicts, paths),
    st.builds(protocol.Status),
    st.builds(protocol.Sync, timeouts),
    st.builds(protocol.Cut, st.text(max_size=8)),
    st.builds(protocol.Heal, st.none() | st.text(max_size=8)),
    st.builds(protocol.Watch, paths, st.booleans()),
    st.builds(protocol.Snapshot, paths),
    st.builds(protocol.Set, paths, values, lease=st.builds(protocol.LeaseRef, st.text(max_size=8), st.text(max_size=8))),
    st.builds(protocol.LeaseGrant, st.floats(0.1, 100), st.text(max_size=8)),
    st.builds(protocol.LeaseKeepalive, st.builds(protocol.LeaseRef, st.text(max_size=8), st.text(max_size=8))),
    st.builds(protocol.LeaseRevoke, st.builds(protocol.LeaseRef, st.text(max_size=8), st.text(max_size=8))),
)


@given(requests)
def test_every_request_round_trips_through_its_dict(request: protocol.Request) -> None:
    data = protocol.encode_request(request)
    assert data["op"] == request.OP and protocol.REQUESTS[request.OP] is type(request)
    assert protocol.decode_request(data) == request


def test_the_op_sets_partition_the_ops_and_writes_are_not_retried() -> None:
    assert protocol.READ_OPS | protocol.WRITE_OPS | protocol.ADMIN_OPS | {"sync"} == set(protocol.REQUESTS)
    assert not protocol.WRITE_OPS & protocol.RETRY_SAFE and not protocol.STREAM_OPS & protocol.RETRY_SAFE
    assert protocol.STREAM_OPS <= protocol.READ_OPS


@pytest.mark.parametrize(
    ("data", "error", "names"),
    [
        ({"op": "set", "path": "a"}, BadRequest, "'value' is missing"),
        ({"op": "set", "path": "a", "value": 1, "ack": "most"}, BadRequest, "ack"),
        ({"op": "set", "path": "a", "value": 1, "ack": True}, BadRequest, "ack"),
        ({"op": "set", "path": "a", "value": 1, "timeout_s": "soon"}, BadRequest, "timeout_s"),
        ({"op": "set", "path": "a", "value": 1, "timeout_s": -1}, BadRequest, "timeout_s"),
        ({"op": "set", "path": 7, "value": 1}, BadRequest, "'path'"),
        ({"op": "set", "path": "a..b", "value": 1}, InvalidPath, "empty segment"),
        ({"op": "set_many", "items": [["a", 1], ["b"]]}, BadRequest, "items[1]"),
        ({"op": "set_many", "items": {"a": 1}}, BadRequest, "items"),
        ({"op": "cut", "peer": 5}, BadRequest, "'peer'"),
        ({"op": "watch", "prefix": "w", "initial": "yes"}, BadRequest, "'initial'"),
        ({"op": "hello", "protocol": "1"}, BadRequest, "'protocol'"),
        ({"op": "frobnicate"}, BadRequest, "known: aw_add, aw_remove, conflicts, counter_add, cut"),
        ({"path": "a"}, BadRequest, "'op'"),
        (["get", "a"], BadRequest, "'op'"),
    ],
)
def test_a_malformed_request_raises_one_error_naming_the_field(data: Any, error: type[StatesyncError], names: str) -> None:
    with pytest.raises(error) as info:
        protocol.decode_request(data)
    assert type(info.value) is error and names in str(info.value) and "\n" not in str(info.value)


def test_every_code_maps_to_one_class_and_back() -> None:
    assert set(protocol.ERROR_CLASSES) == set(protocol.ErrorCode)
    assert len(set(protocol.ERROR_CLASSES.values())) == len(protocol.ERROR_CLASSES)
    for code, cls in protocol.ERROR_CLASSES.items():
        exc = cls("what went wrong") if cls is not WriteConcernError else cls("late", missing=("b",), dot=("a", 3))
        assert protocol.code_of(exc) is code
        reply = protocol.error_reply(exc)
        assert reply["code"] == code.value and reply["ok"] is False and "." not in reply["code"]
        again = protocol.error_from_reply(reply)
        assert type(again) is cls and str(again) == str(exc)
    late = protocol.error_from_reply(protocol.error_reply(WriteConcernError("late", missing=("b", "c"), dot=("a", 3))))
    assert isinstance(late, WriteConcernError) and late.missing == ("b", "c") and late.dot == ("a", 3)


def test_codes_are_stable_strings_never_class_names() -> None:
    assert [c.value for c in protocol.ErrorCode] == [
        "bad_request", "protocol_mismatch", "invalid_path", "invalid_value", "too_large", "write_concern",
        "access_denied", "too_many_streams", "node_closed", "storage", "node_error",
        "lease_not_found", "lease_expired", "lease_not_held", "too_many_leases", "bad_resume", "invalid_operation",
    ]  # fmt: skip
    class Unlisted(StatesyncError):
        pass

    assert protocol.code_of(Unlisted("x")) is protocol.ErrorCode.NODE_ERROR
    assert type(protocol.error_from_reply({"ok": False, "code": "from_the_future", "error": "x"})) is NodeError


def test_a_reply_is_decoded_or_refused_with_a_protocol_error() -> None:
    ok = protocol.encode_reply(protocol.WriteReply(protocol.ReceiptData("a.b", "n", 3, 99, ["m"])))
    assert ok == {"ok": True, "receipt": {"path": "a.b", "origin": "n", "seq": 3, "hlc": 99, "acked_by": ["m"]}}
    assert protocol.decode_reply(ok, protocol.WriteReply).receipt.seq == 3
    with pytest.raises(ProtocolError, match=r"receipt\.seq"):
        protocol.decode_reply({"ok": True, "receipt": {**ok["receipt"], "seq": "3"}}, protocol.WriteReply)
    with pytest.raises(ProtocolError):
        protocol.decode_reply(["not", "a", "dict"], protocol.GetReply)
    with pytest.raises(TooLarge, match="node at x: too big"):
        protocol.decode_reply({"ok": False, "code": "too_large", "error": "too big"}, protocol.GetReply, prefix="node at x: ")


def _rebuild(messages: list[dict[str, Any]]) -> Value | object:
    reader = protocol.TreeReader()
    *chunks, tail = messages
    assert all(reader.feed(m) for m in chunks) and not reader.feed(tail)
    return reader.value(tail)


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(segments, st.dictionaries(segments, st.text(min_size=1, max_size=40), min_size=1, max_size=10), min_size=1, max_size=10), st.integers(1, 40))
def test_a_subtree_of_any_size_survives_the_leaf_chunks(tree: dict[str, Value], copies: int) -> None:
    big: dict[str, Value] = {f"c{i}": tree for i in range(copies * 20)}  # from inline to many chunks
    messages = list(protocol.tree_messages(big, {"kind": "end"}))
    assert messages[-1]["kind"] == "end" and messages[-1]["found"] is True
    if len(messages) > 1:
        assert messages[-1]["chunked"] is True and messages[-1]["omitted_count"] == 0
        for m in messages[:-1]:
            assert m["kind"] == "leaves" and 0 < len(m["leaves"]) <= protocol.CHUNK_LEAVES_MAX
            assert protocol.fits(m, protocol.MESSAGE_BYTES_MAX + 1)
    assert _rebuild(messages) == big
    assert sum(1 for _ in iter_leaves(big)) == sum(len(m.get("leaves", ())) for m in messages) or len(messages) == 1


def test_nothing_and_a_leaf_too_large_for_any_message() -> None:
    assert list(protocol.tree_messages(ABSENT, {"kind": "ready"})) == [{"kind": "ready", "found": False, "value": None}]
    assert _rebuild([{"kind": "ready", "found": False, "value": None}]) is ABSENT
    huge = {"small": 1, "big": b"x" * (protocol.MESSAGE_BYTES_MAX + 10)}
    messages = list(protocol.tree_messages(huge, {"kind": "end"}))
    assert messages[-1]["omitted"] == [["big"]] and messages[-1]["omitted_count"] == 1
    with pytest.raises(TooLarge, match="1 values under this path"):
        _rebuild(messages)


@given(paths, st.sampled_from(["put", "delete"]), values | st.just(ABSENT), values | st.just(ABSENT))
def test_a_change_keeps_nothing_apart_from_null(path: Path, kind: str, value: Any, old: Any) -> None:
    msg = protocol.change_message(kind, path, value, old, origin="n", seq=7)
    assert protocol.decode_change(msg) == (kind, path, value, old, "n", 7)


def test_a_change_too_large_loses_old_then_value() -> None:
    big: Value = ["x" * 1000] * 1000  # over one message (1,000,000 bytes), within the value limit
    msg = protocol.change_message("put", ("k",), "new", big, origin="n", seq=1)
    assert msg["old"] is None and msg["old_omitted"] is True and msg["value"] == "new"
    msg = protocol.change_message("put", ("k",), big, big, origin="n", seq=1)
    assert msg["value"] is None and msg["value_omitted"] is True and msg["old"] is None
    msg = protocol.change_message("put", ("k",), "v", ABSENT, origin="n", seq=1)
    assert msg == {"kind": "put", "path": "k", "value": "v", "origin": "n", "seq": 1}


def test_the_protocol_imports_no_transport() -> None:
    code = "import statesync.protocol, sys; bad = [m for m in ('trio', 'zmq') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_reference_documents_every_op_and_code() -> None:
    text = (FilePath(__file__).parents[2] / "docs" / "protocol.md").read_text()
    for op, cls in protocol.REQUESTS.items():
        assert f"| `{op}` | `{cls.__name__}` |" in text, op
    for code, error in protocol.ERROR_CLASSES.items():
        assert f"| `{code.value}` | `{error.__name__}` |" in text, code
    assert f"today **{protocol.PROTOCOL}**" in text


def test_a_stream_reader_turns_messages_into_subtrees_events_and_errors() -> None:
    def event(*fields: Any) -> tuple[Any, ...]:
        return fields

    reader = protocol.StreamReader(event, prefix="node x: ")
    big = {f"k{i}": "v" * 100 for i in range(5000)}
    *chunks, tail = protocol.tree_messages(big, {"kind": "ready"})
    assert [reader.feed(m) for m in chunks] == [None] * len(chunks)
    assert reader.feed(tail) == protocol.Subtree("ready", big)
    change = protocol.change_message("delete", ("k1",), ABSENT, "v", origin="n", seq=4)
    assert reader.feed(change) == ("delete", ("k1",), ABSENT, "v", "n", 4)
    assert reader.feed({"kind": "lagged", "path": "", "found": False, "value": None}) == protocol.Subtree("lagged", ABSENT)
    assert reader.feed({"kind": "closed", "reason": "stopping"}) == protocol.Closed("stopping")
    assert reader.feed({"kind": "from_a_newer_node"}) is None
    with pytest.raises(InvalidPath, match=r"^node x: bad$"):
        reader.feed({"kind": "error", "ok": False, "code": "invalid_path", "error": "bad"})
    with pytest.raises(ProtocolError):
        reader.feed(["not", "a", "dict"])


def test_a_writes_idempotency_key_travels_as_a_pair_and_is_checked() -> None:
    key = protocol.IdemKey("ab" * 16, 7)
    for request in (protocol.Set(("a",), 1, key=key), protocol.SetMany(((("a",), 1),), key=key), protocol.Delete(("a",), key=key)):
        data = protocol.encode_request(request)
        assert data["key"] == ["ab" * 16, 7]
        assert protocol.decode_request(data) == request
    assert protocol.decode_request({"op": "set", "path": "a", "value": 1}).key is None  # optional: older clients
    for bad in (["ab" * 4, 1], ["AB" * 16, 1], ["ab" * 40, 1], ["ab" * 16, 0], ["ab" * 16, 2**63], ["ab" * 16, 1.0], {"client": "x"}):
        with pytest.raises(BadRequest, match="key"):
            protocol.decode_request({"op": "set", "path": "a", "value": 1, "key": bad})
