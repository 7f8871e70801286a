"""Typed values through statesync.Client: text, list, counter and add-wins set over the client protocol."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

from statesync import protocol
from statesync.client import Client
from statesync.core import InvalidOperation
from statesync.errors import BadRequest
from tests.client.nodes import NodeThread, two_nodes_fixture  # noqa: F401 (the fixture two_nodes)
from tests.client.test_client import until


def test_typed_edits_round_trip_and_replicate(two_nodes: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    with Client(two_nodes.endpoints[0], timeout_s=10) as a, Client(two_nodes.endpoints[1], timeout_s=10) as b:
        doc = a.text(f"{base}.doc")
        assert doc.value() == ""
        r = doc.insert(0, "hello world", ack="all")
        assert r.origin == "a" and r.path == f"{base}.doc" and r.acked_by == ("b",)
        doc.delete(0, 6)
        todo = a.list(f"{base}.todo")
        todo.append("milk", "eggs")
        todo.insert(0, {"task": "bread"})
        todo.move(0, 2)
        todo.delete(0)
        a.counter(f"{base}.likes").add(4)
        a.counter(f"{base}.likes").add(-1)
        tags = a.awset(f"{base}.tags")
        tags.add("x")
        tags.add(2)
        tags.remove("x")
        want = {"doc": "world", "todo": ["eggs", {"task": "bread"}], "likes": 3, "tags": [2]}
        assert a.get(base) == want
        until(lambda: b.get(base) == want)
        assert b.text(f"{base}.doc").value() == "world"
        assert b.list(f"{base}.todo").value() == ["eggs", {"task": "bread"}]
        assert b.counter(f"{base}.likes").value() == 3
        b.text(f"{base}.doc").insert(5, "!")  # the other node edits the same text
        until(lambda: a.text(f"{base}.doc").value() == "world!")


def test_bad_edits_are_one_line_errors_and_apply_nothing(two_nodes: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    with Client(two_nodes.endpoints[0], timeout_s=10) as a:
        a.text(f"{base}.t").insert(0, "abc")
        a.set(f"{base}.m", {"k": 1})
        bad = [
            lambda: a.text(f"{base}.t").insert(9, "x"),
            lambda: a.text(f"{base}.t").delete(0, -2),
            lambda: a.list(f"{base}.t").append(1),
            lambda: a.list(f"{base}.l").move(0, 1),
            lambda: a.counter(f"{base}.m").add(1),
        ]
        for call in bad:
            with pytest.raises(InvalidOperation) as info:
                call()
            assert "\n" not in str(info.value) and base in str(info.value)
        with pytest.raises(BadRequest, match="pos"):
            a.text(f"{base}.t").insert("1", "x")  # type: ignore[arg-type]
        assert a.get(base) == {"t": "abc", "m": {"k": 1}}


def test_typed_requests_encode_decode_and_are_writes() -> None:
    req = protocol.ListInsert(("a", "b"), None, [1, "x"], ack="all")
    data = protocol.encode_request(req)
    assert data == {"op": "list_insert", "path": "a.b", "pos": None, "values": [1, "x"], "ack": "all", "timeout_s": None, "key": None}
    assert protocol.decode_request(data) == req
    assert {cls.OP for cls in protocol.TYPED_EDITS} <= protocol.WRITE_OPS
    with pytest.raises(BadRequest, match="amount"):
        protocol.decode_request({"op": "counter_add", "path": "c", "amount": 1.5})
    with pytest.raises(BadRequest, match="missing"):
        protocol.decode_request({"op": "text_insert", "path": "t", "pos": 0})


def test_a_watch_gets_the_delta_of_a_remote_edit(two_nodes: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    with Client(two_nodes.endpoints[0], timeout_s=10) as a, Client(two_nodes.endpoints[1], timeout_s=10) as b:
        a.text(f"{base}.doc").insert(0, "hello", ack="all")
        watch = b.watch(base)
        try:
            a.text(f"{base}.doc").insert(5, " world")
            a.text(f"{base}.doc").delete(0, 1)
            events = [watch.get(timeout=10) for _ in range(2)]
        finally:
            watch.close()
        assert [e.delta for e in events if e is not None] == [
            [{"retain": 5}, {"insert": " world"}],
            [{"delete": 1}],
        ]
        assert events[-1] is not None and events[-1].value == "ello world"
        assert events[-1].to_plain()["delta"] == [{"delete": 1}]


def test_the_readme_typed_example_runs(two_nodes: NodeThread) -> None:
    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    found = re.search(r"<!-- typed-example -->\n```python\n(.*?)\n```\n<!-- /typed-example -->", readme, re.S)
    assert found, "README.md has no typed-example block"
    code = found.group(1).replace("tcp://127.0.0.1:7111", two_nodes.endpoints[0])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (typed)", "exec"), {"__name__": "__readme__"})
    assert out.getvalue().splitlines() == ["['eggs', 'milk'] Shopping list"]


def test_text_append_through_the_client(two_nodes: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    with Client(two_nodes.endpoints[0], timeout_s=10) as a:
        a.text(f"{base}.t").append("Hello")
        a.text(f"{base}.t").append(", world")
        assert a.text(f"{base}.t").value() == "Hello, world"
        assert protocol.decode_request({"op": "text_insert", "path": "t", "pos": None, "text": "x"}) == protocol.TextInsert(("t",), None, "x")
