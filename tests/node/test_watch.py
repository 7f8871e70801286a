from __future__ import annotations

import trio
import trio.testing

from statesync import client, protocol
from statesync.core import ABSENT, Change, Replica
from statesync.node._watch import WatchEvent, WatchHub

T = 1_700_000_000_000


def make() -> tuple[Replica, WatchHub]:
    r = Replica("a")
    return r, WatchHub(r.tree.get, buffer_max=5)


async def test_changes_under_prefix_in_order() -> None:
    r, hub = make()
    w = hub.subscribe(("user",))
    other = hub.subscribe(("other",))
    everything = hub.subscribe(())
    for i in range(3):
        changes: list[Change] = []
        r.put(("user", "name"), f"v{i}", T, changes)
        hub.publish(changes)
    changes = []
    r.remove(("user",), T, changes)
    hub.publish(changes)
    got = [await w.__anext__() for _ in range(4)]
    assert [(e.kind, e.value, e.old) for e in got] == [
        ("put", "v0", ABSENT),
        ("put", "v1", "v0"),
        ("put", "v2", "v1"),
        ("delete", ABSENT, "v2"),
    ]
    assert got[0].key == "user.name" and got[0].origin == "a" and got[0].seq == 1
    assert other.pending() == 0 and everything.pending() == 4


async def test_lagging_watcher_gets_a_snapshot_then_new_changes() -> None:
    r, hub = make()
    w = hub.subscribe(("k",))
    for i in range(20):
        changes: list[Change] = []
        r.put(("k", str(i)), i, T, changes)
        hub.publish(changes)
    assert w.pending() == 0 and w.lag_count == 1  # buffer dropped, nothing kept while lagged
    lagged = await w.__anext__()
    assert lagged.kind == "lagged" and lagged.value == {str(i): i for i in range(20)}
    changes = []
    r.put(("k", "new"), 1, T, changes)
    hub.publish(changes)
    nxt = await w.__anext__()
    assert (nxt.kind, nxt.key) == ("put", "k.new")


async def test_close_ends_iteration_and_unsubscribes() -> None:
    r, hub = make()
    w = hub.subscribe(("k",))
    got = []

    async def consume() -> None:
        async for event in w:
            got.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        changes: list[Change] = []
        r.put(("k",), 1, T, changes)
        hub.publish(changes)
        await trio.testing.wait_all_tasks_blocked()
        w.close()
    assert len(got) == 1 and len(hub) == 0


def test_one_watch_event_type_with_absent_for_nothing() -> None:
    assert client.WatchEvent is WatchEvent
    r, hub = make()
    w = hub.subscribe(("k",))
    changes: list[Change] = []
    r.put(("k",), None, T, changes)  # a stored null is a value, not nothing
    r.remove(("k",), T, changes)
    hub.publish(changes)
    put, delete = w._buffer
    assert (put.value, put.old, delete.value, delete.old) == (None, ABSENT, ABSENT, None)
    assert delete.to_plain() == {"kind": "delete", "path": "k", "value": None, "old": None, "origin": "a", "seq": 2}
    for event in (put, delete):  # through the client protocol and back: nothing stays apart from null
        msg = protocol.change_message(event.kind, event.path, event.value, event.old, origin=event.origin, seq=event.seq)
        assert WatchEvent(*protocol.decode_change(msg)) == event
