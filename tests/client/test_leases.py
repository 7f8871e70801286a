"""Leases and presence through the blocking and the asyncio clients, against real nodes.

The first test runs the example of docs/leases.md as written there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statesync import Client, aio
from statesync.errors import (
    AccessDenied,
    InvalidArgument,
    LeaseExpired,
    LeaseNotFound,
    LeaseNotHeld,
)
from statesync.protocol import LeaseKeepalive, LeaseRef, LeaseReply
from tests.aio.support import run, until
from tests.client.nodes import NodeThread
from tests.support import wait_until

DOC = Path(__file__).parents[2] / "docs" / "leases.md"


@pytest.fixture(scope="module")
def pair() -> Iterator[NodeThread]:
    """Nodes a and b, linked, each serving clients."""
    started = NodeThread([{"node_id": name} for name in "ab"])
    try:
        yield started
    finally:
        started.stop()


def test_the_example_in_docs_leases_runs_as_written(pair: NodeThread) -> None:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert code is not None
    source = code.group(1).replace("ipc:///var/lib/statesync/client.sock", pair.endpoints[0]).replace("...", "pass")
    namespace: dict[str, Any] = {}
    exec(compile(source, str(DOC), "exec"), namespace)
    with Client(pair.endpoints[1]) as other:
        wait_until(lambda: other.get("services") is None and other.get("rooms.lobby") is None, what="the deletes on b")


def test_a_client_keeps_its_lease_alive_and_closing_it_ends_the_lease(pair: NodeThread) -> None:
    holder = Client(pair.endpoints[0])
    reader = Client(pair.endpoints[1])
    try:
        lease = holder.lease(ttl_s=1.5)
        holder.set("svc.x", 1, lease=lease)
        wait_until(lambda: reader.get("svc.x") == 1)
        def heard() -> float:
            return float(pair.call(lambda nodes: nodes[0]._leases.index._heard[lease.id]))

        granted = heard()
        first = pair.call(lambda nodes: nodes[0]._leases.counters["expired"])
        # two ttls later it is still there: the client's own keepalives hold it
        wait_until(lambda: heard() - granted > 2 * lease.ttl_s, what="keepalives for two ttls")
        assert reader.get("svc.x") == 1 and not lease.ended
        with pytest.raises(AccessDenied, match="reserved"):
            holder.set("_statesync.leases.x", 1)
        holder.close()
        wait_until(lambda: reader.get("svc") is None, what="the revoke on close")
        assert pair.call(lambda nodes: nodes[0]._leases.counters["expired"]) == first
    finally:
        holder.close()
        reader.close()


def test_a_presence_whose_lease_ended_joins_again_on_update(pair: NodeThread) -> None:
    with Client(pair.endpoints[0]) as client, Client(pair.endpoints[1]) as other:
        with client.presence("lobby", {"at": 1}, participant="ada", ttl_s=5) as me:
            wait_until(lambda: other.get("lobby") == {"ada": {"at": 1}})
            old = me.lease
            old.revoke()  # as if it had expired
            wait_until(lambda: other.get("lobby") is None)
            me.update({"at": 2})
            assert me.rejoins == 1 and me.lease is not old
            wait_until(lambda: other.get("lobby") == {"ada": {"at": 2}})
            assert me.members() == {"ada": {"at": 2}}
        wait_until(lambda: other.get("lobby") is None)


def test_forged_and_unknown_leases_are_refused(pair: NodeThread) -> None:
    with Client(pair.endpoints[0]) as client, Client(pair.endpoints[1]) as other:
        lease = client.lease(ttl_s=5)
        with pytest.raises(LeaseNotHeld, match="another holder"):
            client._do(client._calls.plain(LeaseKeepalive(LeaseRef(lease.id, "forged")), LeaseReply))
        with pytest.raises(LeaseNotFound):
            client._do(client._calls.plain(LeaseKeepalive(LeaseRef("a~0000000000000000", "x")), LeaseReply))
        wait_until(lambda: pair.call(lambda nodes: lease.id in nodes[1]._leases.index.records))
        with pytest.raises(LeaseNotHeld, match="granted by node a"):
            other.set("k", 1, lease=lease)  # another node's lease
        with pytest.raises(InvalidArgument, match="ttl_s"):
            client.lease(ttl_s=0)
        lease.revoke()
        with pytest.raises(LeaseExpired):
            client.set("k", 1, lease=lease)


def test_the_asyncio_client_holds_leases_and_presence(pair: NodeThread) -> None:
    async def main() -> None:
        async with aio.Client(pair.endpoints[0]) as client, aio.Client(pair.endpoints[1]) as other:
            async with await client.lease(ttl_s=1.5) as lease:
                await client.set("aio.k", "v", lease=lease)
                await until(lambda: _eq(other.get("aio.k"), "v"))
                assert (await lease.keepalive()) == 1.5
            await until(lambda: _eq(other.get("aio"), None))
            async with await client.presence("aio.room", {"n": 1}, participant="me") as me:
                await me.update({"n": 2})
                await until(lambda: _eq(other.get("aio.room"), {"me": {"n": 2}}))
                assert await me.members() == {"me": {"n": 2}}
            await until(lambda: _eq(other.get("aio.room"), None))

    run(main)


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
