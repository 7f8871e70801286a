"""The client protocol at the MessagePort level: raw dicts on a port, as docs/protocol.md describes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from statesync import ports
from statesync.node import ConfigError, Node, open_node
from statesync.node._service import client_endpoint
from statesync.protocol import INLINE_BYTES_MAX
from tests.client.nodes import short_socket


@asynccontextmanager
async def node_and_port() -> AsyncIterator[tuple[Node, ports.PortRuntime, ports.MessagePort]]:
    async with open_node(node_id="p", client=short_socket("p")) as node, ports.open_runtime() as rt:
        port = await rt.connect(node.client_endpoints[0])
        yield node, rt, port


async def test_requests_answer_ok_or_a_typed_one_line_error() -> None:
    async with node_and_port() as (node, _, port):
        hello = await port.request({"op": "hello", "protocol": 1})
        assert hello == {"ok": True, "node_id": "p", "protocol": 1, "endpoints": list(node.endpoints), "client_endpoints": list(node.client_endpoints)}
        assert (await port.request({"op": "set", "path": "a.b", "value": [1, 2]}))["receipt"]["seq"] == 1
        assert await port.request({"op": "get", "path": "a"}) == {"ok": True, "found": True, "value": {"b": [1, 2]}}
        assert await port.request({"op": "get", "path": "zz"}) == {"ok": True, "found": False, "value": None}
        bad: Any = await port.request({"op": "frobnicate"})
        assert bad["ok"] is False and bad["code"] == "bad_request" and "known:" in bad["error"]
        bad = await port.request(["not", "a", "dict"])
        assert bad["ok"] is False and bad["code"] == "bad_request"
        bad = await port.request({"op": "set", "path": "a..b", "value": 1})
        assert (bad["ok"], bad["code"]) == (False, "invalid_path")
        bad = await port.request({"op": "set", "path": "a", "value": 1, "ack": "most"})
        assert (bad["ok"], bad["code"]) == (False, "bad_request") and "ack" in bad["error"]
        bad = await port.request({"op": "set", "path": "a"})
        assert (bad["ok"], bad["code"]) == (False, "bad_request")
        bad = await port.request({"op": "set", "path": "a", "value": 1, "ack": 1, "timeout_s": 0.05})
        assert (bad["ok"], bad["code"], bad["missing"], bad["dot"][0]) == (False, "write_concern", [], "p")
        status = (await port.request({"op": "status"}))["status"]
        assert status["node_id"] == "p" and status["config"]["strategy"] == {"": "vector-clock"}


async def test_a_large_subtree_is_refused_inline_and_streamed_in_chunks() -> None:
    async with node_and_port() as (node, rt, port):
        await node.set_many([(("big", f"k{i:05d}"), "x" * 200) for i in range(2000)])
        bad: Any = await port.request({"op": "get", "path": "big"})
        assert (bad["ok"], bad["code"]) == (False, "too_large")
        stream = await rt.connect(node.client_endpoints[0])
        stream.post_message({"op": "snapshot", "prefix": "big"})
        leaves = 0
        chunks = 0
        async for event in stream:
            msg: Any = event.data
            if msg["kind"] == "leaves":
                chunks += 1
                leaves += len(msg["leaves"])
                assert all(len(path) == 1 for path, _ in msg["leaves"])  # paths relative to the prefix
            else:
                assert msg == {"kind": "end", "found": True, "value": None, "chunked": True, "omitted": [], "omitted_count": 0}
                break
        assert leaves == 2000 and chunks > 1
        assert INLINE_BYTES_MAX < 200 * 2000


async def test_a_watch_stream_starts_with_the_current_value_then_changes() -> None:
    async with node_and_port() as (node, rt, _):
        await node.set("w.x", 1)
        stream = await rt.connect(node.client_endpoints[0])
        stream.post_message({"op": "watch", "prefix": "w", "initial": True})
        got: list[Any] = []
        async for event in stream:
            got.append(event.data)
            if len(got) == 1:
                await node.set("w.y", 2)
            if len(got) == 2:
                break
        ready_token, change_token = got[0].pop("resume"), got[1].pop("resume")  # resume tokens (opaque)
        assert ready_token.startswith("r1.") and change_token.startswith("r1.") and ready_token != change_token
        assert got[0] == {"kind": "ready", "found": True, "value": {"x": 1}}
        assert got[1] == {"kind": "put", "path": "w.y", "value": 2, "origin": "p", "seq": 2}  # no "old": there was none
        stream.close()
        with trio.fail_after(5):
            while node.status()["watches"]:
                await trio.sleep(0.01)  # the node drops the watch when the client closes its port


async def test_a_bad_stream_opening_is_refused() -> None:
    async with node_and_port() as (node, rt, _):
        stream = await rt.connect(node.client_endpoints[0])
        stream.post_message({"op": "tail"})
        with trio.fail_after(5):
            events = [event async for event in stream]  # ends when the node closes the port
        assert [e.data["kind"] for e in events] == ["error"]  # type: ignore[index]
        assert stream.closed


def test_client_endpoint_values() -> None:
    assert client_endpoint("a", None, None) is None
    assert client_endpoint("a", "/var/lib/x", "none") is None
    assert client_endpoint("a", "/var/lib/x", "auto") == "ipc:///var/lib/x/client.sock"
    assert client_endpoint("a", None, "auto").startswith("ipc://")  # type: ignore[union-attr]
    long_dir = "/tmp/" + "d" * 120
    assert len(client_endpoint("a", long_dir, "auto")) < 110  # type: ignore[arg-type]
    assert client_endpoint("a", None, "tcp://127.0.0.1:7000") == "tcp://127.0.0.1:7000"
    for bad in ("carrier-pigeon", "udp://x:1", "ipc:///" + "s" * 200):
        with pytest.raises(ConfigError):
            client_endpoint("a", None, bad)


async def test_the_version_handshake_refuses_another_protocol_with_the_nodes_own() -> None:
    async with node_and_port() as (_, _rt, port):
        bad: Any = await port.request({"op": "hello", "protocol": 99})
        assert (bad["ok"], bad["code"], bad["protocol"]) == (False, "protocol_mismatch", 1)
        assert "99" in bad["error"] and "same statesync version" in bad["error"]


async def test_requests_and_stream_openings_go_on_their_own_kind_of_port() -> None:
    async with node_and_port() as (node, rt, port):
        bad: Any = await port.request({"op": "watch", "prefix": "a"})
        assert (bad["ok"], bad["code"]) == (False, "bad_request") and "opens a stream" in bad["error"]
        stream = await rt.connect(node.client_endpoints[0])
        stream.post_message({"op": "get", "path": "a"})
        with trio.fail_after(5):
            events = [e.data async for e in stream]
        assert [(m["kind"], m["code"]) for m in events] == [("error", "bad_request")]  # type: ignore[index]
        stream = await rt.connect(node.client_endpoints[0])
        stream.post_message({"op": "watch", "prefix": "a..b"})
        with trio.fail_after(5):
            events = [e.data async for e in stream]
        assert [(m["kind"], m["code"]) for m in events] == [("error", "invalid_path")]  # type: ignore[index]


async def test_a_delete_carries_no_value_and_a_stored_null_stays_null() -> None:
    async with node_and_port() as (node, rt, _):
        await node.set("w.x", None)
        stream = await rt.connect(node.client_endpoints[0])
        stream.post_message({"op": "watch", "prefix": "w", "initial": False})
        got: list[Any] = []
        async for event in stream:
            got.append(event.data)
            if len(got) == 1:
                await node.delete("w.x")
            if len(got) == 2:
                break
        for msg in got:
            assert msg.pop("resume").startswith("r1.")
        assert got[0] == {"kind": "ready", "found": False, "value": None}
        assert got[1] == {"kind": "delete", "path": "w.x", "old": None, "origin": "p", "seq": 2}


async def test_an_error_reply_stays_one_bounded_line_whatever_the_request_holds() -> None:
    async with node_and_port() as (_, _rt, port):
        bad: Any = await port.request({"op": "set", "path": "a", "value": 1, "ack": "x" * 500_000})
        assert (bad["ok"], bad["code"]) == (False, "bad_request") and len(bad["error"]) < 200
        bad = await port.request({"op": "get", "path": "a\n" * 200_000})
        assert bad["ok"] is False and len(bad["error"]) <= 1000 and "\n" not in bad["error"]
