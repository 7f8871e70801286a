"""Safe retries: every client write carries an idempotency key; a node carries a write out
once per key, answers a retry with the original reply, refuses forged and garbled keys,
keeps a bounded table, and keeps it with the op log (durable across a crash)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import trio

from statesync import ports, protocol
from statesync.client import AccessDenied, Client, Receipt
from statesync.client._common import Call
from statesync.core import Op
from statesync.errors import BadRequest
from statesync.node import _client_keys
from statesync.node._client_keys import ClientKeys, fingerprint, row
from statesync.security import write_keypair
from statesync.storage import SqliteStore
from tests.client.nodes import NodeThread, short_socket
from tests.support import FAST, wait_until

CLIENT = "0123456789abcdef0123456789abcdef"


def key(seq: int, client: str = CLIENT) -> protocol.IdemKey:
    return protocol.IdemKey(client, seq)


# ------------------------------------------------------------- the table


async def test_a_key_runs_its_write_once_and_a_retry_gets_the_same_reply() -> None:
    table = ClientKeys(keys_max=100)
    runs: list[int] = []

    async def run() -> dict[str, Any]:
        runs.append(1)
        return {"ok": True, "n": len(runs)}

    first = await table.once(key(1), None, b"f", run)
    again = await table.once(key(1), None, b"f", run)
    assert first == again == {"ok": True, "n": 1} and len(runs) == 1
    assert (await table.once(key(2), None, b"f", run))["n"] == 2


async def test_a_retry_while_the_first_runs_waits_for_it() -> None:
    table = ClientKeys(keys_max=100)
    gate = trio.Event()
    runs: list[int] = []
    replies: list[dict[str, Any]] = []

    async def run() -> dict[str, Any]:
        runs.append(1)
        await gate.wait()
        return {"ok": True}

    async def call() -> None:
        replies.append(await table.once(key(1), None, b"f", run))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        nursery.start_soon(call)
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    assert len(runs) == 1 and replies == [{"ok": True}, {"ok": True}]


async def test_a_write_that_failed_before_it_ran_runs_again() -> None:
    table = ClientKeys(keys_max=100)

    async def boom() -> dict[str, Any]:
        raise trio.TooSlowError

    with pytest.raises(trio.TooSlowError):
        await table.once(key(1), None, b"f", boom)

    async def ok() -> dict[str, Any]:
        return {"ok": True}

    assert await table.once(key(1), None, b"f", ok) == {"ok": True}


async def test_forged_and_reused_keys_are_refused() -> None:
    table = ClientKeys(keys_max=100)

    async def ok() -> dict[str, Any]:
        return {"ok": True}

    await table.once(key(1), "alice-public-key", b"f", ok)
    with pytest.raises(AccessDenied, match="belongs to another client"):
        await table.once(key(1), "mallory-public-key", b"f", ok)
    with pytest.raises(BadRequest, match="used for another write"):
        await table.once(key(1), "alice-public-key", b"other", ok)


async def test_the_table_is_bounded_oldest_first() -> None:
    table = ClientKeys(keys_max=50)
    runs: list[int] = []

    async def run() -> dict[str, Any]:
        runs.append(1)
        return {"ok": True}

    for seq in range(1, 1001):
        await table.once(key(seq), None, b"f", run)
        assert len(table) <= 50
    await table.once(key(1000), None, b"f", run)  # remembered
    assert len(runs) == 1000
    await table.once(key(1), None, b"f", run)  # forgotten long ago: runs again
    assert len(runs) == 1001


def test_the_store_keeps_a_key_exactly_with_its_op_and_bounded(tmp_path: Path) -> None:
    def op(seq: int) -> Op:
        return Op("n", seq, seq, ("k", str(seq)), 0, seq, ())

    with SqliteStore(tmp_path / "d", "n") as store:
        store.client_keys_max = 5
        store.stage_client_key(("n", 1), row(key(1), None, b"f", {"ok": True, "seq": 1}))
        store.stage_client_key(("n", 99), row(key(99), None, b"f", {"ok": True}))  # its op never comes
        store.append([op(1)])
        for seq in range(2, 12):
            store.stage_client_key(("n", seq), row(key(seq), None, b"f", {"ok": True, "seq": seq}))
            store.append([op(seq)])
    with SqliteStore(tmp_path / "d", "n") as store:
        store.client_keys_max = 5
        rows = store.load_client_keys()
    assert [r[1] for r in rows] == [7, 8, 9, 10, 11]  # the newest five; 99 was never written
    assert json.loads(rows[-1][4]) == {"ok": True, "seq": 11}


def test_the_fingerprint_ignores_only_the_key() -> None:
    a = protocol.encode_request(protocol.Set(("a",), 1, key=key(1)))
    b = protocol.encode_request(protocol.Set(("a",), 1, key=key(2)))
    c = protocol.encode_request(protocol.Set(("a",), 2, key=key(1)))
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


# ------------------------------------------------------------- a real node


@pytest.fixture(scope="module")
def node() -> Iterator[NodeThread]:
    nodes = NodeThread([{"node_id": "a"}])
    yield nodes
    nodes.stop()


def raw(endpoint: str, requests: list[dict[str, Any]]) -> list[Any]:
    """Send requests over a bare port (no client): the node's answers, in order."""

    async def main() -> list[Any]:
        port = await ports.connect(endpoint)
        try:
            return [await port.request(r) for r in requests]
        finally:
            port.close()

    return trio.run(main)


def test_a_retried_write_is_answered_with_the_original_receipt(node: NodeThread) -> None:
    write = protocol.encode_request(protocol.Set(("retry", "k"), 1, key=key(10)))
    first, again = raw(node.endpoints[0], [write, write])
    assert first["ok"] and again == first
    (third,) = raw(node.endpoints[0], [write])  # on another connection too
    assert third == first
    (plain,) = raw(node.endpoints[0], [protocol.encode_request(protocol.Set(("retry", "other"), 2))])
    assert plain["receipt"]["seq"] == first["receipt"]["seq"] + 1  # the retries wrote nothing


@pytest.mark.parametrize(
    "bad",
    [["short", 1], [CLIENT, 0], [CLIENT, -5], [CLIENT.upper(), 1], "abc", [CLIENT], [CLIENT, 1, 2], [CLIENT, "1"], 7],
)
def test_garbled_keys_are_a_clean_refusal_naming_the_field(node: NodeThread, bad: object) -> None:
    write = {**protocol.encode_request(protocol.Set(("garbled",), 1)), "key": bad}
    (reply,) = raw(node.endpoints[0], [write])
    assert reply["ok"] is False and reply["code"] == "bad_request" and "key" in reply["error"]
    (get,) = raw(node.endpoints[0], [{"op": "get", "path": "garbled"}])
    assert get == {"ok": True, "found": False, "value": None}  # nothing was written


def test_a_key_reused_for_another_write_is_refused(node: NodeThread) -> None:
    one = protocol.encode_request(protocol.Set(("reuse",), 1, key=key(20)))
    two = protocol.encode_request(protocol.Set(("reuse",), 2, key=key(20)))
    first, second = raw(node.endpoints[0], [one, two])
    assert first["ok"] and second["code"] == "bad_request" and "another write" in second["error"]
    (get,) = raw(node.endpoints[0], [{"op": "get", "path": "reuse"}])
    assert get["value"] == 1


def test_the_nodes_table_is_bounded_when_a_client_sends_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client_keys, "KEYS_MAX", 100)
    nodes = NodeThread([{"node_id": "m"}])
    try:
        writes = [protocol.encode_request(protocol.Set(("many", str(i)), i, key=key(i + 1))) for i in range(1000)]
        replies = raw(nodes.endpoints[0], writes)
        assert all(r["ok"] for r in replies)
        newest, oldest = raw(nodes.endpoints[0], [writes[-1], writes[0]])
        assert newest == replies[-1]  # still remembered
        assert oldest["receipt"]["seq"] != replies[0]["receipt"]["seq"]  # forgotten (bounded): applied anew
    finally:
        nodes.stop()


def test_another_clients_key_is_refused_with_curve(tmp_path: Path) -> None:
    node_key, alice, mallory = (write_keypair(tmp_path / n)[0] for n in ("node", "alice", "mallory"))
    (tmp_path / "authorized").write_text(f"write {alice.public}\nwrite {mallory.public}\n")
    config = {
        "node_id": "s",
        "data_dir": str(tmp_path / "s"),
        "secret_key_file": str(tmp_path / "node.key_secret"),
        "authorized_keys_file": str(tmp_path / "authorized"),
        "listen": ["tcp://127.0.0.1:0"],
    }
    nodes = NodeThread([config])
    try:
        endpoint = nodes.endpoints[0]
        with Client(endpoint, secret_key_file=tmp_path / "alice.key_secret", server_key=node_key.public) as a, Client(
            endpoint, secret_key_file=tmp_path / "mallory.key_secret", server_key=node_key.public
        ) as m:
            a.set("x", 1)
            stolen = protocol.Set(("x",), 1, key=protocol.IdemKey(a._calls.keys.client_id, 1))
            with pytest.raises(AccessDenied, match="belongs to another client"):
                m._do(Call(stolen, protocol.WriteReply, 5.0, lambda r: r))
            assert a.get("x") == 1
    finally:
        nodes.stop()


# ------------------------------------------------------------- a crash under load

CHILD = """
import json, sys, trio
from statesync import NodeConfig, open_node
async def main():
    async with open_node(NodeConfig.from_mapping(json.loads(sys.argv[1]))) as node:
        print(json.dumps({"ready": True}), flush=True)
        await trio.sleep_forever()
trio.run(main)
"""


def start(config: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(config)], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    line = child.stdout.readline()
    assert json.loads(line) == {"ready": True}, line
    return child


@pytest.mark.process
def test_sigkill_under_in_flight_writes_applies_each_reported_write_exactly_once(tmp_path: Path) -> None:
    endpoint = short_socket("crash")
    config = {"node_id": "c", "data_dir": str(tmp_path / "c"), "client": endpoint, **FAST}
    n = 1500
    child = start(config)
    futures: list[Future[Receipt]] = []
    try:
        with Client(endpoint, timeout_s=40, connect_timeout_s=10, inflight_max=256) as client:
            producer = threading.Thread(target=lambda: futures.extend(client.submit(("w", f"k{i}"), i) for i in range(n)))
            producer.start()
            done_before = []
            for answered in (200, 700):  # two crashes, each with up to 256 writes in flight
                wait_until(lambda n_=answered: sum(f.done() for f in futures) >= n_, timeout_s=60, what=f"{answered} writes answered")
                child.send_signal(signal.SIGKILL)  # some in flight are committed and unanswered
                child.wait(10)
                done_before.append(sum(f.done() for f in futures))
                child = start(config)
            producer.join(60)
            receipts = [f.result(timeout=60) for f in futures]  # every write is reported done
            assert done_before[-1] < n
            assert len(receipts) == n
            assert client.get("w") == {f"k{i}": i for i in range(n)}
            log_ops = client.status()["storage"]["log_ops"]
    finally:
        child.kill()
        child.wait(10)
    dots = {(r.origin, r.seq) for r in receipts}
    assert len(dots) == n  # n distinct writes were reported ...
    assert log_ops == n  # ... and the log holds exactly n ops: none applied twice, none lost
