"""Gap-free watch resume on the node: the events after a token, from the journal, across a restart."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from statesync.core import ABSENT, Change
from statesync.errors import BadResumeToken, ConfigError
from statesync.node import NodeConfig, open_node
from statesync.node._resume import Journal, decode_token, encode_token
from statesync.node._watch import WatchEvent


async def take(watch: object, n: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    with trio.fail_after(10):
        async for event in watch:  # type: ignore[attr-defined]
            out.append(event)
            if len(out) == n:
                break
    return out


def puts(events: list[WatchEvent]) -> list[tuple[str, object]]:
    return [(e.key, e.value) for e in events]


# ------------------------------------------------------------------ tokens and the journal


def test_a_token_names_the_node_and_the_change() -> None:
    token = encode_token("d1", "n1", ("n1", 7, 2))
    assert decode_token(token) == ("d1", "n1", ("n1", 7, 2))


@given(st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: "r1." + base64.urlsafe_b64encode(b).decode())))
def test_garbled_tokens_are_refused_with_one_error(token: str) -> None:
    try:
        decode_token(token)
    except BadResumeToken as exc:
        assert "garbled" in str(exc)


def test_non_tokens_are_refused() -> None:
    shaped = "r1." + base64.urlsafe_b64encode(json.dumps(["d", "n", "o", -1, 0]).encode()).decode()
    for token in (None, 3, "", "r1.", "r1.!!!", "x" * 5000, shaped):
        with pytest.raises(BadResumeToken, match="garbled"):
            decode_token(token)


def test_the_journal_gives_the_changes_after_a_token_and_forgets_the_oldest() -> None:
    journal = Journal("d", "n", 5, {})
    changes = [Change(("k", str(i)), ABSENT, i, "n", i + 1) for i in range(8)]
    journal.record(changes[:3])
    mark = journal.position()
    journal.record(changes[3:4])
    after = journal.after(mark, (), {"n": 8})
    assert after is not None and puts(after) == [("k.3", 3)]
    journal.record(changes[4:])  # 8 recorded, 5 kept: the mark's change is gone
    assert journal.after(mark, (), {"n": 8}) is None
    assert len(journal) == 5


def test_the_journal_is_bounded_by_the_bytes_of_its_values_too() -> None:
    # a typed text's change holds the whole text: 1,000 edits of a 10 kB text would keep
    # 20 MB under a count bound alone
    journal = Journal("d", "n", 100_000, {}, bytes_max=200_000)
    text = "x" * 10_000
    journal.record([Change(("doc",), text, text, "n", 1)])
    mark = journal.position()
    for seq in range(2, 1_001):
        journal.record([Change(("doc",), text, text, "n", seq)])
        assert journal.bytes <= 200_000
    assert 0 < len(journal) <= 10  # about 20 kB an entry
    assert journal.after(mark, (), {"n": 1_000}) is None  # evicted: the watcher gets lagged
    last = journal.after(journal.token("n", 999, 0), (), {"n": 1_000})
    assert last is not None and [e.seq for e in last] == [1_000]


async def test_a_typed_text_edited_many_times_keeps_the_journal_within_its_bytes() -> None:
    async with open_node(node_id="solo", watch_resume_bytes_max=1_000_000) as node:
        text = node.text("doc")
        for i in range(300):
            await text.insert(i * 50, "y" * 50)  # the text grows to 15 kB
        assert node._journal is not None and node._journal.bytes <= 1_000_000
        assert len(node._journal) < 300


def test_a_bad_journal_byte_bound_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="watch_resume_bytes_max"):
        NodeConfig.from_mapping({"node_id": "a", "watch_resume_bytes_max": 0})


def test_the_journal_refuses_a_token_of_another_node_or_data_folder() -> None:
    journal = Journal("d", "n", 5, {})
    with pytest.raises(BadResumeToken, match="from node 'm'"):
        journal.after(encode_token("d", "m", ("m", 1, 0)), (), {})
    with pytest.raises(BadResumeToken, match="another cluster"):
        journal.after(encode_token("other", "n", ("n", 1, 0)), (), {"n": 1})
    with pytest.raises(BadResumeToken, match="another cluster"):
        journal.after(encode_token("d", "n", ("n", 9, 0)), (), {"n": 1})  # a write never applied here


# --------------------------------------------------------------------------- a node


async def test_resume_delivers_exactly_the_writes_made_while_away() -> None:
    async with open_node(node_id="solo") as node:
        await node.set("other", 0)
        async with node.watch("k") as watch:
            await node.set("k.a", 0)
            [first] = await take(watch, 1)
        made = []
        for i in range(50):
            await node.set(f"k.{i % 7}", i)
            made.append((f"k.{i % 7}", i))
        await node.set("other", 1)
        await node.set("k", {"x": 1, "y": 2})  # one op, many changes
        async with node.watch("k", resume=first.resume) as watch:
            events = await take(watch, 50 + 10)
        assert puts(events[:50]) == made
        assert {e.key for e in events[50:] if e.kind == "delete"} == {"k.a", *(f"k.{j}" for j in range(7))}
        assert {(e.key, e.value) for e in events[50:] if e.kind == "put"} == {("k.x", 1), ("k.y", 2)}
        # resuming from the middle of one op's changes gives the rest of them
        middle = events[-2]
        async with node.watch("k", resume=middle.resume) as watch:
            await node.set("k.z", 3)
            assert puts(await take(watch, 2)) == [puts(events[-1:])[0], ("k.z", 3)]


async def test_a_token_the_journal_no_longer_holds_gives_lagged_then_live() -> None:
    async with open_node(node_id="solo", watch_resume_events_max=10) as node:
        async with node.watch("") as watch:
            await node.set("a", 1)
            [first] = await take(watch, 1)
        async with node.watch("") as seen:
            for i in range(20):
                await node.set("a", i)
            await take(seen, 20)  # published (and journaled)
        async with node.watch("", resume=first.resume) as watch:
            [lagged] = await take(watch, 1)
            await node.set("b", 1)
            [nxt] = await take(watch, 1)
        assert lagged.kind == "lagged" and lagged.value == {"a": 19} and lagged.resume
        assert (nxt.kind, nxt.key, nxt.value) == ("put", "b", 1)


async def test_a_foreign_or_garbled_token_is_refused_cleanly() -> None:
    async with open_node(node_id="a") as a, open_node(node_id="b") as b:
        async with a.watch("") as watch:
            await a.set("k", 1)
            [event] = await take(watch, 1)
        with pytest.raises(BadResumeToken, match="from node 'a'"):
            async with b.watch("", resume=event.resume):
                pass
        with pytest.raises(BadResumeToken, match="garbled"):
            async with a.watch("", resume="r1.not-a-token"):
                pass
        assert len(a._hub) == 0 and len(b._hub) == 0  # nothing subscribed, nothing leaked
        await a.set("k", 2)  # and the node goes on


async def test_resume_after_a_restart_reads_the_durable_log(tmp_path: Path) -> None:
    data = str(tmp_path / "a")
    async with open_node(node_id="a", data_dir=data) as node:
        async with node.watch("k") as watch:
            await node.set("k.0", -1)
            [first] = await take(watch, 1)
        made = []
        for i in range(300):
            await node.set(f"k.{i % 11}", i)
            made.append((f"k.{i % 11}", i))
    async with open_node(node_id="a", data_dir=data) as node:
        async with node.watch("k", resume=first.resume) as watch:
            await node.set("k.new", 1)
            events = await take(watch, 301)
        assert puts(events) == [*made, ("k.new", 1)]
        assert all(e.kind == "put" and e.origin == "a" for e in events)


async def test_a_token_from_before_the_last_checkpoint_gives_lagged_after_a_restart(tmp_path: Path) -> None:
    data = str(tmp_path / "a")
    async with open_node(node_id="a", data_dir=data, checkpoint_ops=20) as node:
        async with node.watch("") as watch:
            await node.set("k", 0)
            [first] = await take(watch, 1)
        for i in range(100):
            await node.set("k", i)
    async with open_node(node_id="a", data_dir=data, checkpoint_ops=20) as node:
        async with node.watch("", resume=first.resume) as watch:
            [lagged] = await take(watch, 1)
        assert lagged.kind == "lagged" and lagged.value == {"k": 99}


async def test_an_in_memory_node_made_afresh_refuses_its_old_tokens() -> None:
    async with open_node(node_id="m") as node, node.watch("") as watch:
        await node.set("k", 1)
        [event] = await take(watch, 1)
    async with open_node(node_id="m") as node:
        with pytest.raises(BadResumeToken, match="another cluster or an earlier data folder"):
            async with node.watch("", resume=event.resume):
                pass


async def test_without_a_journal_resume_is_refused_and_config_is_checked() -> None:
    async with open_node(node_id="m", watch_resume_events_max=0) as node:
        async with node.watch("") as watch:
            await node.set("k", 1)
            [event] = await take(watch, 1)
        assert event.resume == ""
        with pytest.raises(BadResumeToken, match="watch_resume_events_max = 0"):
            async with node.watch("", resume=encode_token("d", "m", ("m", 1, 0))):
                pass
    with pytest.raises(ConfigError, match="watch_resume_events_max"):
        async with open_node(node_id="m", watch_resume_events_max=-1):
            pass
