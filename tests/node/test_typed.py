"""The node's typed API: text, list, counter and add-wins set handles, end to end over links."""

from __future__ import annotations

import pathlib
import re

import pytest
import trio

from statesync.core import ABSENT, InvalidOperation
from statesync.node import apply_delta, open_node
from statesync.node._delta import typed_delta
from tests.node.test_node import cluster, converged
from tests.support import FAST, wait_until_async


async def test_handles_edit_and_read_plain_values() -> None:
    async with open_node(node_id="n0", **FAST) as node:
        doc = node.text("doc.body")
        assert doc.value() == ""
        r = await doc.insert(0, "hello")
        assert r.path == "doc.body" and r.origin == "n0"
        await doc.insert(5, " world")
        await doc.delete(0, 1)
        assert doc.value() == "ello world"
        todo = node.list("todo")
        await todo.append("milk", "eggs")
        await todo.insert(0, "bread")
        await todo.move(0, 2)  # bread to the end
        assert todo.value() == ["milk", "eggs", "bread"]
        await todo.delete(1)
        assert todo.value() == ["milk", "bread"]
        likes = node.counter("likes")
        await likes.add(3)
        await likes.add(-1)
        assert likes.value() == 2
        tags = node.awset("tags")
        await tags.add("urgent")
        await tags.add("home")
        await tags.remove("urgent")
        assert tags.value() == ["home"]
        assert node.get("") == {
            "doc": {"body": "ello world"},
            "todo": ["milk", "bread"],
            "likes": 2,
            "tags": ["home"],
        }


async def test_bad_input_is_one_line_applies_nothing_and_the_node_keeps_serving() -> None:
    async with open_node(node_id="n0", **FAST) as node:
        await node.text("notes").insert(0, "abc")
        await node.list("todo").append(1, 2)
        await node.set("prefs", {"a": 1})
        seq = node.replica.vv["n0"]
        bad = [
            (node.text("notes").insert(4, "x"), "notes"),  # past the end
            (node.text("notes").delete(0, -1), "notes"),  # negative count
            (node.text("notes").delete(2, 5), "notes"),  # range past the end
            (node.list("todo").move(7, 0), "todo"),  # move of a missing item
            (node.counter("prefs").add(1), "prefs"),  # typed op on a map path
            (node.counter("notes").add(1), "notes"),  # another type's path
            (node.text("notes").insert(0, "x" * 2_000_000), "notes"),  # over the value bound
            (node.text("notes").insert("0", "x"), "notes"),  # type: ignore[arg-type]
            (node.awset("tags").remove("gone"), "tags"),  # nothing to remove
        ]
        for call, path in bad:
            with pytest.raises(InvalidOperation) as info:
                await call
            message = str(info.value)
            assert "\n" not in message and path in message, message
        assert node.replica.vv["n0"] == seq  # nothing applied
        assert node.get("") == {"notes": "abc", "todo": [1, 2], "prefs": {"a": 1}}
        await node.text("notes").insert(3, "d")  # still serving
        assert node.text("notes").value() == "abcd"


@pytest.mark.parametrize("ack", ["all", 1])
async def test_ack_waits_for_the_peer_like_set(ack: str | int) -> None:
    async with cluster(2) as (a, b):
        r = await a.counter("c").add(5, ack=ack, timeout_s=10)
        assert r.acked_by == ("n1",)
        assert b.counter("c").value() == 5


async def test_two_nodes_replicate_concurrent_edits() -> None:
    async with cluster(2) as (a, b):
        # create each shared value once, then edit it from both nodes at the same time
        await a.text("doc").insert(0, "ab", ack="all")
        await a.list("todo").append("milk", "eggs", "tea", ack="all")
        await a.counter("likes").add(1, ack="all")
        await a.awset("tags").add("x", ack="all")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.text("doc").insert, 1, "XXX")
            nursery.start_soon(b.text("doc").insert, 1, "yyy")
            nursery.start_soon(a.list("todo").append, "bread")
            nursery.start_soon(b.list("todo").append, "jam")
            nursery.start_soon(a.counter("likes").add, 2)
            nursery.start_soon(b.counter("likes").add, 3)
            nursery.start_soon(a.awset("tags").remove, "x")
            nursery.start_soon(b.awset("tags").add, "x")  # add wins over the concurrent remove
            nursery.start_soon(b.awset("tags").add, "y")
        await wait_until_async(lambda: converged([a, b]), what="the typed edits to converge")
        await a.list("todo").move(0, 2)  # milk after tea, on a
        await b.list("todo").move(0, 1)  # milk after eggs, on b, concurrently
        await wait_until_async(lambda: converged([a, b]), what="the moves to converge")
        for node in (a, b):
            assert node.text("doc").value() in ("aXXXyyyb", "ayyyXXXb")  # runs never interleave
            todo = node.list("todo").value()
            assert sorted(todo) == sorted(["milk", "eggs", "tea", "bread", "jam"])  # moved once, never lost
            assert todo[-2:] in (["bread", "jam"], ["jam", "bread"])
            assert node.counter("likes").value() == 6
            assert node.awset("tags").value() == ["x", "y"]
        assert a.get("") == b.get("")


async def test_watch_events_of_typed_paths_carry_a_delta_that_rebuilds_the_value() -> None:
    async with cluster(2) as (a, b):
        async with b.watch("doc") as watch:
            await a.text("doc.body").insert(0, "hello world")
            await a.text("doc.body").delete(0, 6)
            await a.text("doc.body").insert(5, "!")
            await a.list("doc.todo").append("milk", "eggs", "tea")
            await a.list("doc.todo").move(0, 2)
            await a.counter("doc.likes").add(3)
            await a.counter("doc.likes").add(-1)
            await a.set("doc.title", "plain")  # a plain value: no delta
            shown: dict[str, object] = {}
            with trio.fail_after(10):
                async for event in watch:
                    if event.key == "doc.title":
                        assert event.delta is None
                        break
                    assert event.delta is not None, event
                    before = shown.get(event.key, event.old if event.old is not ABSENT else None)
                    if before is None:
                        before = {"doc.body": "", "doc.todo": [], "doc.likes": 0}[event.key]
                    shown[event.key] = apply_delta(before, event.delta)  # type: ignore[arg-type]
                    assert shown[event.key] == event.value
        assert shown == {"doc.body": "world!", "doc.todo": ["eggs", "tea", "milk"], "doc.likes": 2}


def test_the_delta_of_single_edits_is_yjs_style() -> None:
    assert typed_delta("hello", "hXello") == [{"retain": 1}, {"insert": "X"}]
    assert typed_delta("hello", "hlo") == [{"retain": 1}, {"delete": 2}]
    assert typed_delta(ABSENT, "ab") == [{"insert": "ab"}]
    # a move is one delete and one insert of the moved item
    assert typed_delta(["a", "b", "c", "d"], ["b", "c", "a", "d"]) == [{"delete": 1}, {"retain": 2}, {"insert": ["a"]}]
    assert typed_delta(["x", "a", "b", "c"], ["x", "c", "a", "b"]) == [{"retain": 1}, {"insert": ["c"]}, {"retain": 2}, {"delete": 1}]
    assert typed_delta(["a", "b"], ["c", "d"]) == [{"delete": 2}, {"insert": ["c", "d"]}]
    assert typed_delta([1], [True]) == [{"delete": 1}, {"insert": [True]}]  # JSON types kept apart
    assert typed_delta(5, 7) == [{"add": 2}]
    assert typed_delta("x", ABSENT) is None


def test_the_usage_example_in_docs_types_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    doc = (pathlib.Path(__file__).parents[2] / "docs" / "types.md").read_text()
    found = re.search(r"<!-- usage-example -->\n```python\n(.*?)```\n<!-- /usage-example -->", doc, re.S)
    assert found, "docs/types.md has no usage-example block"
    code = found.group(1)
    exec(compile(code, "docs/types.md (usage)", "exec"), {"__name__": "__doc__"})
    expected = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    assert capsys.readouterr().out.splitlines() == expected


async def test_text_append_goes_at_the_end_as_the_node_sees_it() -> None:
    async with open_node(node_id="n0", **FAST) as node:
        doc = node.text("doc")
        await doc.append("ab")  # creates it
        await doc.append("cd")
        assert doc.value() == "abcd"
