"""Malformed requests sent to a real node's client service: always an error reply, never a crash.

Hypothesis builds dicts (and non-dicts) near the shape of real requests: known
and unknown ops, fields missing, extra, or of the wrong type. Each goes to a
live node over its client endpoint, as a request and as a stream opening; the
node must answer every one with ``ok`` or an error reply carrying a known
code and a one-line message, and keep serving afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statesync import ports, protocol
from statesync.node import Node
from tests.client.nodes import NodeThread

CODES = {code.value for code in protocol.ErrorCode}
FIELDS = ["path", "value", "ack", "timeout_s", "items", "peer", "prefix", "initial", "protocol", "ttl_s", "client", "lease"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.sampled_from(["", "a", "a.b", "a..b", ".", "local", "all", "most", "\\", "a\\.b"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
ops = st.sampled_from([*protocol.REQUESTS, "frobnicate", "", "HELLO"]) | st.text(max_size=10) | values
WELL_FORMED: list[dict[str, Any]] = [
    {"op": "hello", "protocol": 1},
    {"op": "get", "path": "a.b"},
    {"op": "set", "path": "fz.a", "value": 1, "ack": "local", "timeout_s": 0.2},
    {"op": "set_many", "items": [["fz.b", 2], ["fz.c", {"d": 3}]], "ack": 0, "timeout_s": 0.2},
    {"op": "delete", "path": "fz.a", "ack": "local", "timeout_s": 0.2},
    {"op": "conflicts", "path": "fz.b"},
    {"op": "status"},
    {"op": "heal", "peer": None},
    {"op": "watch", "prefix": "fz", "initial": True},
    {"op": "snapshot", "prefix": "fz"},
    {"op": "lease_grant", "ttl_s": 5, "client": "fz"},
    {"op": "lease_keepalive", "lease": {"id": "a~0000000000000001", "token": "x"}},
    {"op": "lease_revoke", "lease": {"id": "a~0000000000000001", "token": "x"}},
    {"op": "set", "path": "fz.l", "value": 1, "lease": {"id": "a~0000000000000001", "token": "x"}},
]
one_field_off = st.tuples(st.sampled_from(WELL_FORMED), st.sampled_from(FIELDS), values).map(
    lambda t: {**t[0], t[1]: t[2]}
)  # a real request with one field replaced (or added) by anything
requests = st.one_of(
    one_field_off,
    st.sampled_from(WELL_FORMED),
    st.fixed_dictionaries({"op": ops}, optional={f: values for f in FIELDS}),
    st.dictionaries(st.text(max_size=6), values, max_size=4),
    values,
)


@pytest.fixture(scope="module")
def node() -> Iterator[NodeThread]:
    nodes = NodeThread([{"node_id": "f"}])
    yield nodes
    nodes.stop()


def _check_reply(reply: Any, sent: Any) -> None:
    assert isinstance(reply, dict), (sent, reply)
    if reply.get("ok") is True:
        return
    assert reply["ok"] is False, (sent, reply)
    assert reply["code"] in CODES, (sent, reply)
    assert isinstance(reply["error"], str) and reply["error"] and "\n" not in reply["error"], (sent, reply)
    assert "Traceback" not in reply["error"]
    if reply["code"] == "bad_request" and isinstance(sent, dict) and isinstance(sent.get("op"), str) and sent["op"] in protocol.REQUESTS:
        fields = [f for f in FIELDS if f in reply["error"]]
        assert fields or "stream" in reply["error"] or "ack" in reply["error"], (sent, reply)  # names the field


async def _request(nodes: list[Node], data: Any) -> tuple[Any, list[Any]]:
    node = nodes[0]
    endpoint = node.client_endpoints[0]
    with trio.fail_after(10):
        port = await node._runtime.connect(endpoint)
        try:
            if isinstance(data, dict) and isinstance(data.get("op"), str) and data["op"] in ("set", "set_many", "delete", "sync"):
                wait = data.get("timeout_s")
                if wait is None or (type(wait) in (int, float) and wait > 0.2):
                    data = {**data, "timeout_s": 0.2}  # a write concern no peer can meet fails fast
            reply = await port.request(data, timeout_s=5)
        finally:
            port.close()
        stream = await node._runtime.connect(endpoint)
        stream.post_message(data)
        got: list[Any] = []
        async for event in stream:  # until the stream's first closing message, or the node closes the port
            got.append(event.data)
            if isinstance(event.data, dict) and event.data.get("kind") in ("ready", "end", "error"):
                break
        stream.close()
        hello = await (await node._runtime.connect(endpoint)).request({"op": "hello", "protocol": protocol.PROTOCOL}, timeout_s=5)
        assert hello["ok"] is True  # still serving
    return reply, got


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=requests)
def test_any_request_gets_an_answer_never_a_crash(node: NodeThread, data: Any) -> None:
    try:
        reply, streamed = node.call(lambda nodes: _request(nodes, data))
    except ports.DataCloneError:
        return  # the client side could not even encode it (e.g. a float NaN key): nothing was sent
    _check_reply(reply, data)
    for msg in streamed:
        assert isinstance(msg, dict) and "kind" in msg, (data, msg)
        if msg["kind"] == "error":
            assert msg["ok"] is False and msg["code"] in CODES and "\n" not in msg["error"], (data, msg)
