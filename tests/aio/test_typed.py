"""Typed values through statesync.aio.Client (the blocking client's handles, awaitable)."""

from __future__ import annotations

import pytest

from statesync import aio
from statesync.core import InvalidOperation
from tests.aio.support import run, until
from tests.client.nodes import NodeThread, two_nodes_fixture  # noqa: F401 (the fixture two_nodes)


def test_typed_edits_round_trip_and_replicate(two_nodes: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name
    a_ep, b_ep = two_nodes.endpoints

    async def main() -> None:
        async with aio.Client(a_ep) as a, aio.Client(b_ep) as b:
            doc = a.text(f"{base}.doc")
            assert await doc.value() == ""
            r = await doc.insert(0, "hi there", ack="all")
            assert isinstance(r, aio.Receipt) and r.acked_by == ("b",)
            await doc.delete(2, 6)
            todo = a.list(f"{base}.todo")
            await todo.append("a", "b", "c")
            await todo.move(2, 0)
            await todo.delete(1)
            await a.counter(f"{base}.n").add(7)
            await a.awset(f"{base}.s").add("k")
            want = {"doc": "hi", "todo": ["c", "b"], "n": 7, "s": ["k"]}
            assert await a.get(base) == want

            async def arrived() -> bool:
                return bool(await b.get(base) == want)

            await until(arrived, what="the typed edits at b")
            assert await b.list(f"{base}.todo").value() == ["c", "b"]
            with pytest.raises(InvalidOperation, match=f"{base}.doc"):
                await a.text(f"{base}.doc").insert(3, "x")
            assert await a.text(f"{base}.doc").value() == "hi"

    run(main)
