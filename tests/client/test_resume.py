"""Gap-free watch resume through both clients: across a lost connection and a node restart,
the events seen are exactly the writes made; bad tokens are refused cleanly."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import trio

from statesync import aio
from statesync.client import Client
from statesync.core import ABSENT
from statesync.errors import BadResumeToken
from statesync.node._watch import WatchEvent
from tests.aio.support import run
from tests.client.nodes import NodeThread, short_socket
from tests.node.test_processes import Proc


def seen(events: list[WatchEvent]) -> list[tuple[str, object]]:
    return [(e.key, e.value) for e in events]


def take(watch: object, n: int) -> list[WatchEvent]:
    out = []
    for _ in range(n):
        event = watch.get(timeout=20)  # type: ignore[attr-defined]
        assert event is not None, f"only {len(out)} of {n} events came"
        out.append(event)
    return out


def test_a_blocking_watch_resumes_after_its_connection_is_lost() -> None:
    nodes = NodeThread([{"node_id": "a"}])
    try:
        with Client(nodes.endpoints[0]) as client:
            watch = client.watch("k")
            client.set("k.0", -1)
            assert seen(take(watch, 1)) == [("k.0", -1)]
            port, token = watch._port, watch._token
            assert port is not None and token is not None
            trio.from_thread.run_sync(port.close, trio_token=token)  # the connection is gone
            made = [(f"k.{i % 5}", i) for i in range(300)]
            for key, value in made:
                client.set(key, value)
            assert seen(take(watch, len(made))) == made
            assert watch.reconnects >= 1 and watch.lag_count == 0 and watch.get(timeout=0.2) is None
            watch.close()
    finally:
        nodes.stop()


def test_a_watch_resumes_by_token_after_a_node_restart(tmp_path: Path) -> None:
    endpoint = short_socket("r")
    config = {"node_id": "r", "data_dir": str(tmp_path / "r"), "client": endpoint}
    first = NodeThread([config])
    with Client(endpoint, connect_timeout_s=10) as client:
        try:
            with client.watch("k") as watch:
                client.set("k.0", -1)
                [last] = take(watch, 1)
            made = [(f"k.{i % 7}", i) for i in range(500)]  # written while nobody watched
            for key, value in made:
                client.set(key, value)
        finally:
            first.stop()
        second = NodeThread([config])
        try:
            with client.watch("k", resume=last.resume) as watch:
                assert seen(take(watch, len(made))) == made
                client.set("k.after", 1)
                assert seen(take(watch, 1)) == [("k.after", 1)]
                assert watch.lag_count == 0
        finally:
            second.stop()


def test_garbled_and_foreign_tokens_are_refused_and_the_client_goes_on() -> None:
    nodes = NodeThread([{"node_id": "a"}, {"node_id": "b"}], link=False)
    try:
        with Client(nodes.endpoints[0]) as a, Client(nodes.endpoints[1]) as b:
            with a.watch("") as watch:
                a.set("k", 1)
                [event] = take(watch, 1)
            with pytest.raises(BadResumeToken, match="garbled"):
                a.watch("", resume="r1.nonsense")
            with pytest.raises(BadResumeToken, match="from node 'a'"):
                b.watch("", resume=event.resume)
            for i in range(50):  # many refusals leave nothing behind
                with pytest.raises(BadResumeToken):
                    a.watch("", resume=f"not a token {i}")
            assert nodes.call(lambda ns: [len(n._hub) for n in ns]) == [0, 0]
            assert a.get("k") == 1

            async def main() -> None:
                async with aio.Client(nodes.endpoints[0]) as client:
                    with pytest.raises(BadResumeToken, match="garbled"):
                        async with client.watch("", resume="r1.nonsense"):
                            pass
                    assert await client.get("k") == 1

            run(main)
    finally:
        nodes.stop()


def test_an_aio_watch_resumes_after_its_connection_is_lost() -> None:
    nodes = NodeThread([{"node_id": "a"}])

    async def main() -> None:
        async with aio.Client(nodes.endpoints[0]) as client, client.watch("k") as watch:
            await client.set("k.0", -1)
            first = await watch.get(timeout=20)
            assert first is not None and first.key == "k.0"
            current = watch._current
            assert current is not None
            current[0].close_port(current[1])  # the connection is gone
            made = [(f"k.{i % 5}", i) for i in range(300)]
            for key, value in made:
                await client.set(key, value)
            got = []
            for _ in made:
                event = await watch.get(timeout=20)
                assert event is not None
                got.append(event)
            assert seen(got) == made
            assert watch.reconnects >= 1 and watch.lag_count == 0

    try:
        run(main)
    finally:
        nodes.stop()


def test_the_api_docs_resume_example_runs() -> None:
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    found = re.search(r"<!-- resume-example -->\n```python\n(.*?)\n```\n<!-- /resume-example -->", text, re.S)
    assert found, "docs/api.md has no resume-example block"
    code = found.group(1)
    nodes = NodeThread([{"node_id": "a"}])
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code.replace("tcp://127.0.0.1:7111", nodes.endpoints[0]), "api.md (resume)", "exec"), {})
        assert out.getvalue().splitlines() == ["[('put', 'cache.b'), ('delete', 'cache.a')]"]
    finally:
        nodes.stop()


@pytest.mark.process
def test_a_watch_loses_no_change_when_its_node_process_is_killed_and_restarted(tmp_path: Path) -> None:
    endpoint = short_socket("k")
    config = {"node_id": "k", "data_dir": str(tmp_path / "k"), "client": endpoint, "listen": ["tcp://127.0.0.1:*"]}
    node = Proc(config)
    made: list[tuple[str, object]] = []
    try:
        with Client(endpoint, connect_timeout_s=20, timeout_s=20) as client, client.watch("k") as watch:
            for i in range(200):
                client.set(f"k.{i % 9}", i)
                made.append((f"k.{i % 9}", i))
            before = take(watch, 50)  # the rest may still be on their way when the node dies
            node.kill()  # SIGKILL: every write acknowledged above is durable
            node = Proc(config)
            for i in range(200, 400):
                client.set(f"k.{i % 9}", i)  # retried until the node is back
                made.append((f"k.{i % 9}", i))
            after = take(watch, len(made) - len(before))
            assert seen(before + after) == made
            assert watch.lag_count == 0 and watch.get(timeout=0.3) is None
    finally:
        node.close()


def test_a_client_watch_resumed_past_the_journal_starts_with_lagged() -> None:
    nodes = NodeThread([{"node_id": "a", "watch_resume_events_max": 5}])
    try:
        with Client(nodes.endpoints[0]) as client:
            with client.watch("k") as watch:
                client.set("k.a", 0)
                [first] = take(watch, 1)
                for i in range(20):
                    client.set("k.a", i)
                take(watch, 20)  # published, so the journal moved past ``first``
            with client.watch("k", resume=first.resume) as watch:
                [lagged] = take(watch, 1)
                assert (lagged.kind, lagged.value, watch.lag_count) == ("lagged", {"a": 19}, 1)
                client.set("k.b", 1)
                assert seen(take(watch, 1)) == [("k.b", 1)]
    finally:
        nodes.stop()


def test_a_watch_whose_in_memory_node_came_back_empty_gets_lagged() -> None:
    endpoint = short_socket("m")
    config = {"node_id": "m", "client": endpoint}
    first = NodeThread([config])
    with Client(endpoint, connect_timeout_s=10, timeout_s=20) as client:
        try:
            watch = client.watch("")
            client.set("k", 1)
            take(watch, 1)
        finally:
            first.stop()
        second = NodeThread([config])  # a new in-memory node: it refuses the old token
        try:
            client.set("k", 2)
            [lagged] = take(watch, 1)
            assert lagged.kind == "lagged" and lagged.value in ({"k": 2}, ABSENT)
            assert watch.error is None and not watch.closed
            watch.close()
        finally:
            second.stop()
