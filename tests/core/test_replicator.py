"""Unit tests of the replication protocol's handlers, two or three replicators
wired by hand, with a manual clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from statesync.core import (
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Hello,
    Members,
    Message,
    Ops,
    Refuse,
    RefuseReason,
    SnapshotChunk,
    SnapshotRequest,
    SyncRequest,
    SyncResponse,
    Version,
    Welcome,
)
from statesync.core._replica import Replica, ReplicaLimits
from statesync.core._replication import Now, Output, ReplicatorConfig, WriteStatus
from statesync.core._replicator import Replicator
from statesync.core._sizes import entries_size
from statesync.wire import encode_message

T = 1_700_000_000_000


class Net:
    """Replicators connected by hand; ``pump`` delivers until quiet."""

    def __init__(self, *ids: str, config: ReplicatorConfig | None = None, log_ops_max: int = 10_000) -> None:
        self.t = 0.0
        self.skew: dict[str, int] = dict.fromkeys(ids, 0)
        cfg = config or ReplicatorConfig()
        self.reps = {
            i: Replicator(
                Replica(i, limits=ReplicaLimits(log_ops_max=log_ops_max)),
                config=cfg,
                rand=lambda: 0.5,
                known_peers=[j for j in ids if j != i],
                endpoints=(f"tcp://{i}",),
            )
            for i in ids
        }
        self.links: dict[tuple[str, int], tuple[str, int]] = {}
        self.outputs: dict[str, list[Output]] = {i: [] for i in ids}
        self.sent: list[tuple[str, Message]] = []
        self._next = 1

    def now(self, node: str) -> Now:
        return Now(self.t, T + int(self.t * 1000) + self.skew[node])

    def connect(self, active: str, passive: str) -> tuple[int, int]:
        la, lb = self._next, self._next + 1
        self._next += 2
        self.links[(active, la)] = (passive, lb)
        self.links[(passive, lb)] = (active, la)
        self.reps[passive].connected(lb, active=False, now=self.now(passive))
        self.reps[active].connected(la, active=True, now=self.now(active))
        return la, lb

    def pump(self, drop: Callable[[str, Message], bool] = lambda src, m: False, rounds: int = 100) -> None:
        for _ in range(rounds):
            moved = False
            for node, rep in self.reps.items():
                out = rep.take_output()
                self.outputs[node].append(out)
                for link, _reason in out.closes:
                    dest = self.links.pop((node, link), None)
                    if dest is not None:
                        self.links.pop(dest, None)
                        self.reps[dest[0]].disconnected(dest[1], self.now(dest[0]))
                        moved = True
                for link, msg in out.sends:
                    self.sent.append((node, msg))
                    dest = self.links.get((node, link))
                    if dest is None or drop(node, msg):
                        continue
                    self.reps[dest[0]].received(dest[1], msg, self.now(dest[0]))
                    moved = True
            if not moved:
                return

    def cut(self, a: str, b: str) -> None:
        for (node, link), (dest, _dlink) in list(self.links.items()):
            if {node, dest} == {a, b}:
                self.links.pop((node, link), None)
                self.reps[node].disconnected(link, self.now(node))

    def tick(self, dt: float) -> None:
        self.t += dt
        for node, rep in self.reps.items():
            rep.tick(self.now(node))

    def all_out(self, node: str) -> Output:
        merged = Output()
        for out in self.outputs[node]:
            for field in ("persist", "sends", "closes", "completed", "failed", "changes", "discovered", "notices", "peers_up", "peers_down"):
                getattr(merged, field).extend(getattr(out, field))
            merged.snapshot = out.snapshot or merged.snapshot
        return merged

    def sent_of(self, kind: type) -> list[tuple[str, Message]]:
        return [(n, m) for n, m in self.sent if isinstance(m, kind)]


def test_handshake_brings_both_sides_up_and_exchanges_members() -> None:
    net = Net("a", "b")
    net.connect("a", "b")
    net.pump()
    assert net.reps["a"].up_peers() == ["b"] and net.reps["b"].up_peers() == ["a"]
    hello = net.sent_of(Hello)
    assert hello and hello[0][0] == "a"  # the active side speaks first
    assert net.sent_of(Welcome)[0][0] == "b"
    assert net.all_out("a").peers_up == ["b"]
    assert any(isinstance(m, Members) for _, m in net.sent)


def hello_from(node_id: str, *, version: int = PROTOCOL_VERSION, wall_ms: int = T) -> Hello:
    return Hello(node_id=node_id, protocol_version=version, vv={}, wall_ms=wall_ms)


def refusal(net: Net, node: str) -> Refuse:
    out = net.reps[node].take_output()
    refuses = [m for _, m in out.sends if isinstance(m, Refuse)]
    assert len(refuses) == 1 and len(out.closes) == 1
    return refuses[0]


def test_refuses_unknown_protocol_version() -> None:
    net = Net("b")
    net.reps["b"].connected(1, active=False, now=net.now("b"))
    net.reps["b"].received(1, hello_from("a", version=PROTOCOL_VERSION + 1), net.now("b"))
    r = refusal(net, "b")
    assert r.reason == RefuseReason.VERSION and "same statesync release" in r.detail


def test_refuses_its_own_node_id() -> None:
    net = Net("b")
    net.reps["b"].connected(1, active=False, now=net.now("b"))
    net.reps["b"].received(1, hello_from("b"), net.now("b"))
    assert refusal(net, "b").reason == RefuseReason.SAME_ID


def test_refuses_a_second_live_node_with_the_same_id() -> None:
    net = Net("a", "b")
    net.connect("a", "b")
    net.pump()
    rep = net.reps["b"]
    rep.connected(99, active=False, now=net.now("b"))
    rep.received(99, hello_from("a"), net.now("b"))
    r = refusal(net, "b")
    assert r.reason == RefuseReason.DUPLICATE_ID and "'a'" in r.detail
    assert rep.up_peers() == ["a"]  # the live one stays


def test_simultaneous_connects_between_two_processes_keep_one_link() -> None:
    net = Net("a", "b")
    net.reps["a"].instance = "ia"
    net.reps["b"].instance = "ib"
    net.connect("a", "b")
    net.connect("b", "a")
    net.pump()
    net.tick(0.1)
    net.pump()
    up_links_a = [x for x in net.reps["a"]._links.values() if x.up]
    up_links_b = [x for x in net.reps["b"]._links.values() if x.up]
    assert len(up_links_a) == 1 and len(up_links_b) == 1
    assert up_links_a[0].active  # "a" < "b": the link a opened is kept
    net.reps["a"].write("k", 1, now=net.now("a"))
    net.pump()
    assert net.reps["b"].replica.get("k") == 1


def test_refuses_a_skewed_clock_both_ways() -> None:
    net = Net("b", config=ReplicatorConfig(max_drift_s=1.0))
    rep = net.reps["b"]
    rep.connected(1, active=False, now=net.now("b"))
    rep.received(1, hello_from("a", wall_ms=T + 5_000), net.now("b"))
    r = refusal(net, "b")
    assert r.reason == RefuseReason.CLOCK_SKEW and "NTP" in r.detail
    # the active side checks the WELCOME too
    net2 = Net("a", "b", config=ReplicatorConfig(max_drift_s=1.0))
    net2.skew["b"] = -3_000
    net2.connect("a", "b")
    net2.pump()
    assert net2.reps["a"].up_peers() == [] and net2.reps["b"].up_peers() == []
    assert any(isinstance(m, Refuse) and m.reason == RefuseReason.CLOCK_SKEW for _, m in net2.sent)


def test_active_side_learns_why_it_was_refused() -> None:
    net = Net("a")
    rep = net.reps["a"]
    rep.connected(1, active=True, now=net.now("a"))
    rep.take_output()
    rep.received(1, Refuse(RefuseReason.UNAUTHORIZED, "key not on the list"), net.now("a"))
    out = rep.take_output()
    assert out.closes == [(1, RefuseReason.UNAUTHORIZED)]
    assert any("key not on the list" in n for n in out.notices)


def test_messages_before_handshake_are_dropped_and_late_hellos_ignored() -> None:
    net = Net("a", "b")
    _la, lb = net.connect("a", "b")
    net.reps["b"].received(lb, Ack({"a": 5}), net.now("b"))
    net.pump()
    assert net.reps["b"].counters["dropped_before_handshake"] == 1
    net.reps["b"].received(lb, hello_from("a"), net.now("b"))
    assert net.reps["b"].counters["bad_messages"] == 0 and net.reps["b"].up_peers() == ["a"]


def test_handshake_timeout_closes_a_silent_link() -> None:
    net = Net("a", config=ReplicatorConfig(handshake_timeout_s=2.0))
    rep = net.reps["a"]
    rep.connected(1, active=True, now=net.now("a"))
    rep.take_output()
    assert rep.next_tick_s() <= 2.0
    net.tick(2.5)
    assert rep.take_output().closes == [(1, "handshake-timeout")]


def test_push_ack_and_write_concern_all() -> None:
    net = Net("a", "b", "c")
    net.connect("a", "b")
    net.connect("a", "c")
    net.pump()
    ticket = net.reps["a"].write("user.name", "Ada", ack="all", timeout_s=5, now=net.now("a"))
    assert ticket.required == {"b", "c"} and ticket.status == WriteStatus.PENDING
    out = net.reps["a"].take_output()
    assert out.persist == [ticket.op]
    assert sorted(type(m).__name__ for _, m in out.sends) == ["Ops", "Ops"]
    net.outputs["a"].append(out)
    for link, msg in out.sends:
        dest = net.links[("a", link)]
        net.reps[dest[0]].received(dest[1], msg, net.now(dest[0]))
    net.pump()
    assert ticket.status == WriteStatus.DONE and ticket in net.all_out("a").completed
    assert net.reps["b"].replica.get("user.name") == "Ada"
    acks = net.sent_of(Ack)
    assert {n for n, _ in acks} >= {"b", "c"}


def test_write_concern_fails_naming_the_silent_peer_and_the_write_stays() -> None:
    net = Net("a", "b", "c")
    net.connect("a", "b")
    net.connect("a", "c")
    net.pump()
    ticket = net.reps["a"].write("k", 1, ack="all", timeout_s=1.0, now=net.now("a"))
    net.pump(drop=lambda src, m: src == "c" and isinstance(m, Ack))
    assert ticket.status == WriteStatus.PENDING and ticket.acked == {"b"}
    net.tick(1.01)
    out = net.reps["a"].take_output()
    assert out.failed == [ticket] and ticket.status == WriteStatus.FAILED
    assert ticket.error is not None and ticket.error.missing == ("c",)
    assert "missing: c" in str(ticket.error) and "durable here" in str(ticket.error)
    assert net.reps["a"].replica.get("k") == 1 and net.reps["c"].replica.get("k") == 1


def test_write_concern_counts_n_peers() -> None:
    net = Net("a", "b", "c")
    net.connect("a", "b")
    net.pump()
    t1 = net.reps["a"].write("k", 1, ack=1, timeout_s=1, now=net.now("a"))
    t2 = net.reps["a"].write("k", 2, ack=2, timeout_s=1, now=net.now("a"))
    net.pump()
    assert t1.status == WriteStatus.DONE and t2.status == WriteStatus.PENDING
    net.tick(1.5)
    assert t2.status == WriteStatus.FAILED and t2.error is not None and t2.error.missing == ("c",)


def test_local_and_all_without_peers_complete_at_once() -> None:
    net = Net("a")
    t1 = net.reps["a"].write("k", 1, now=net.now("a"))
    t2 = net.reps["a"].write("k", 2, ack="all", now=net.now("a"))
    out = net.reps["a"].take_output()
    assert out.completed == [t1, t2]


def test_lost_push_is_retransmitted_with_backoff_then_given_up() -> None:
    cfg = ReplicatorConfig(retransmit_timeout_s=1.0, retransmit_backoff=2.0, retransmit_attempts_max=3, sync_interval_s=1000)
    net = Net("a", "b", config=cfg)
    net.connect("a", "b")
    net.pump()
    net.reps["a"].write("k", 1, now=net.now("a"))
    net.pump(drop=lambda src, m: isinstance(m, Ops))
    assert net.reps["b"].replica.get("k") != 1
    sends_at = []
    for _ in range(30):
        net.tick(0.5)
        before = len(net.sent_of(Ops))
        net.pump(drop=lambda src, m: isinstance(m, Ops))
        if len(net.sent_of(Ops)) > before:
            sends_at.append(net.t)
    assert len(sends_at) == 3  # bounded
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(sends_at)]
    assert gaps == [2.0, 4.0]  # exponential backoff
    # the next successful retransmission after a new write delivers both
    net.reps["a"].write("k2", 2, now=net.now("a"))
    net.pump()
    net.tick(1.1)
    net.pump()
    assert net.reps["b"].replica.get("k") == 1 and net.reps["b"].replica.get("k2") == 2


def test_anti_entropy_sends_only_what_is_missing_in_bounded_chunks() -> None:
    cfg = ReplicatorConfig(sync_chunk_bytes_max=300)
    net = Net("a", "b", config=cfg)
    for i in range(50):
        net.reps["a"].write(f"k{i}", i, now=net.now("a"))
    net.reps["a"].take_output()
    for i in range(5):
        net.reps["b"].write(f"j{i}", i, now=net.now("b"))
    net.reps["b"].take_output()
    net.connect("a", "b")
    net.pump()
    responses = [m for n, m in net.sent_of(SyncResponse) if n == "a"]
    assert len(responses) > 3 and all(r.more for r in responses[:-1]) and not responses[-1].more
    assert sum(len(r.ops) for r in responses) == 50  # nothing b had, nothing twice
    assert net.reps["a"].replica.digest() == net.reps["b"].replica.digest()
    # an idle sync round carries no ops at all
    net.sent.clear()
    net.reps["b"].sync_now(net.now("b"))
    net.pump()
    assert [len(m.ops) for _, m in net.sent_of(SyncResponse)] == [0]
    assert len(net.sent_of(SyncRequest)) == 1


def test_a_sync_request_names_a_bounded_number_of_buffered_dots() -> None:
    net = Net("a", "b", config=ReplicatorConfig(sync_cloud_dots_max=5, sync_interval_s=1000))
    net.connect("a", "b")
    net.pump()
    for i in range(30):
        net.reps["a"].write(f"k{i}", i, now=net.now("a"))
    # the first op is lost; the other 29 arrive and wait in b's causal buffer
    out = net.reps["a"].take_output()
    la = next(link for (node, link) in net.links if node == "a")
    lb = net.links[("a", la)][1]
    ops = [op for _, m in out.sends if isinstance(m, Ops) for op in m.ops]
    net.reps["b"].received(lb, Ops(tuple(ops[1:])), net.now("b"))
    assert net.reps["b"].replica.pending_count == 29
    net.sent.clear()
    net.pump()
    requests = [m for n, m in net.sent_of(SyncRequest) if n == "b"]
    assert requests and requests[0].cloud == tuple(("a", s) for s in range(2, 7))
    assert net.reps["b"].replica.get(()) == net.reps["a"].replica.get(())


def test_two_cut_off_nodes_converge_through_a_third() -> None:
    net = Net("a", "b", "c")
    net.reps["a"].write("from.a", 1, now=net.now("a"))
    net.reps["b"].write("from.b", 2, now=net.now("b"))
    net.connect("a", "c")
    net.connect("c", "b")
    net.pump()
    net.tick(3)
    net.pump()
    assert net.reps["a"].replica.get("from") == {"a": 1, "b": 2} == net.reps["b"].replica.get("from")


def test_snapshot_when_the_log_was_compacted_and_resume_after_reconnect() -> None:
    cfg = ReplicatorConfig(snapshot_chunk_bytes_max=200, sync_interval_s=1000)
    net = Net("a", "b", config=cfg, log_ops_max=10)
    for i in range(60):
        net.reps["a"].write(f"k{i}", "v" * 10, now=net.now("a"))
    net.reps["a"].take_output()
    assert net.reps["a"].replica.log.low("a") > 0
    _la, _lb = net.connect("a", "b")
    chunks = 0

    def drop_after_three(src: str, m: Message) -> bool:
        nonlocal chunks
        if isinstance(m, SnapshotChunk):
            chunks += 1
            return chunks > 3
        return False

    net.pump(drop=drop_after_three)
    progress = net.reps["b"].snapshot_progress()
    assert list(progress) == ["a"] and 0 < progress["a"][0] < progress["a"][1]
    received = progress["a"][0]
    net.cut("a", "b")
    net.pump()
    net.connect("b", "a")  # reconnect, the other way round this time
    net.pump()
    requests = [m for n, m in net.sent_of(SnapshotRequest) if n == "b"]
    assert any(r.offset == received for r in requests)  # resumed where it stopped
    assert net.reps["a"].replica.digest() == net.reps["b"].replica.digest()
    assert net.all_out("b").snapshot is not None
    assert net.reps["a"].counters["snapshots_sent"] == 1
    assert not net.reps["a"]._snapshots_out  # released once complete


def _snapshot_net() -> Net:
    cfg = ReplicatorConfig(snapshot_chunk_bytes_max=200, sync_interval_s=1000)
    net = Net("a", "b", config=cfg, log_ops_max=10)
    for i in range(60):
        net.reps["a"].write(f"k{i}", "v" * 10, now=net.now("a"))
    net.reps["a"].take_output()
    return net


def test_snapshot_keeps_one_chunk_in_flight_and_sends_each_once() -> None:
    net = _snapshot_net()
    net.connect("a", "b")
    net.pump()
    kinds = [type(m) for n, m in net.sent if isinstance(m, SnapshotChunk | SnapshotRequest)]
    # the sender does not wait for the first request before sending the second chunk
    assert kinds[:2] == [SnapshotChunk, SnapshotChunk]
    offsets = [m.offset for _, m in net.sent_of(SnapshotChunk)]
    assert len(offsets) > 5 and offsets == sorted(set(offsets))  # each chunk once, in order
    assert net.reps["a"].replica.digest() == net.reps["b"].replica.digest()


def test_snapshot_recovers_a_lost_chunk_and_ignores_duplicates() -> None:
    net = _snapshot_net()
    net.connect("a", "b")
    seen = 0

    def lose_the_third(src: str, m: Message) -> bool:
        nonlocal seen
        if isinstance(m, SnapshotChunk):
            seen += 1
            return seen == 3
        return False

    net.pump(drop=lose_the_third)
    assert net.reps["a"].replica.digest() == net.reps["b"].replica.digest()
    offsets = [m.offset for _, m in net.sent_of(SnapshotChunk)]
    assert len(offsets) - len(set(offsets)) <= 2  # the lost chunk and the one after it, again
    # a duplicated chunk behind the receiver changes nothing and asks for nothing
    net2 = _snapshot_net()
    _la, lb = net2.connect("a", "b")

    def stall_after_four(src: str, m: Message) -> bool:
        return isinstance(m, SnapshotChunk) and len(net2.sent_of(SnapshotChunk)) > 4

    net2.pump(drop=stall_after_four)
    b = net2.reps["b"]
    held = b.snapshot_progress()["a"][0]
    assert held > 0
    stale = next(m for _, m in net2.sent_of(SnapshotChunk) if 0 < m.offset < held)
    b.received(lb, stale, net2.now("b"))
    out = b.take_output()
    assert not out.sends and b.snapshot_progress()["a"][0] == held


def test_membership_gossip_reports_new_members() -> None:
    net = Net("a", "b")
    net.reps["a"].peers["c"] = type(net.reps["a"].peers["b"])("c", endpoints=("tcp://c",))
    net.connect("a", "b")
    net.pump()
    assert ("c", ("tcp://c",)) in net.all_out("b").discovered
    assert "c" in net.reps["b"].peers


def test_ops_from_a_clock_far_ahead_are_kept_but_the_peer_dropped() -> None:
    net = Net("a", "b", config=ReplicatorConfig(max_drift_s=10))
    net.connect("a", "b")
    net.pump()
    net.skew["a"] = 60_000  # a's clock jumps ahead after the handshake
    net.reps["a"].write("k", "future", now=net.now("a"))
    net.pump()
    assert net.reps["b"].replica.get("k") == "future"  # never dropped for its timestamp
    assert net.reps["b"].up_peers() == [] and net.reps["a"].up_peers() == []
    assert any(isinstance(m, Refuse) and m.reason == RefuseReason.CLOCK_SKEW for _, m in net.sent)


def test_bye_closes_and_repeated_garbage_disconnects() -> None:
    net = Net("a", "b", config=ReplicatorConfig(bad_messages_max=3))
    _la, lb = net.connect("a", "b")
    net.pump()
    for _ in range(3):
        net.reps["b"].bad_frame(lb, "undecodable frame", net.now("b"))
    out = net.reps["b"].take_output()
    assert out.closes == [(lb, RefuseReason.BAD_INPUT)]
    net2 = Net("a", "b")
    _la, lb = net2.connect("a", "b")
    net2.pump()
    net2.reps["a"].shutdown(net2.now("a"))
    net2.pump()
    assert net2.reps["b"].up_peers() == [] and net2.sent_of(Bye)


def test_log_compacts_once_every_known_peer_acknowledged() -> None:
    net = Net("a", "b", "c", config=ReplicatorConfig(compact_interval_s=0.1))
    net.connect("a", "b")
    net.pump()
    for i in range(20):
        net.reps["a"].write(f"k{i}", i, now=net.now("a"))
    net.pump()
    net.tick(0.2)
    assert len(net.reps["a"].replica.log) == 20  # c, a known peer, has not acknowledged
    net.connect("a", "c")
    net.pump()
    net.tick(0.2)
    assert len(net.reps["a"].replica.log) == 0


def test_status_reports_lag_each_way() -> None:
    net = Net("a", "b")
    net.connect("a", "b")
    net.pump()
    net.reps["a"].write("k", 1, now=net.now("a"))
    net.reps["a"].take_output()  # the push is never delivered
    status = net.reps["a"].status(net.now("a"))
    peer = status["peers"]["b"]  # type: ignore[index]
    assert peer["connected"] and peer["they_lack_ops"] == 1 and peer["unacked_own_ops"] == 1
    assert status["log_ops"] == 1


_segment = st.text(st.characters(codec="utf-8", exclude_characters="."), min_size=1, max_size=12)
_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.lists(st.integers(0, 9), max_size=5),
    st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=4),
)
_version = st.builds(
    Version, _value, st.integers(0, 2**64 - 1), st.text(st.characters(codec="utf-8"), min_size=1, max_size=8), st.integers(1, 2**64 - 1)
)
_entries = st.lists(
    st.tuples(st.lists(_segment, min_size=1, max_size=4).map(tuple), st.lists(_version, min_size=1, max_size=3).map(tuple)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200)
@given(_entries)
def test_snapshot_entry_sizes_bound_their_encoding(entries: list[tuple[tuple[str, ...], tuple[Version, ...]]]) -> None:
    """The sender sizes chunks with an estimate: it must never be below the real size."""
    chunk = tuple(entries)
    encoded = encode_message(SnapshotChunk("t", 0, len(chunk), {}, chunk))
    bare = encode_message(SnapshotChunk("t", 0, len(chunk), {}, ()))
    assert len(encoded) - len(bare) <= entries_size(chunk)


def test_snapshot_chunks_stay_within_their_budget() -> None:
    budget = 2_000
    net = Net("a", "b", config=ReplicatorConfig(snapshot_chunk_bytes_max=budget, sync_interval_s=1000), log_ops_max=10)
    for i in range(400):
        value = "ü" * (i % 50) if i % 3 else b"\x00" * (i % 70)
        net.reps["a"].write(("p", f"k{i}"), value, now=net.now("a"))
    net.reps["a"].write(("big",), "x" * 5_000, now=net.now("a"))  # alone over the budget: a chunk of one
    net.reps["a"].take_output()
    net.connect("a", "b")
    net.pump()
    chunks = [m for _, m in net.sent_of(SnapshotChunk)]
    assert len(chunks) > 5
    for m in chunks:
        size = len(encode_message(m)) - len(encode_message(SnapshotChunk(m.transfer_id, m.offset, m.total, m.vv, ())))
        assert size <= budget or len(m.entries) == 1
        assert len(m.entries) == 1 or entries_size(m.entries) <= budget
    assert sum(len(m.entries) for m in chunks) == 401
    assert net.reps["a"].replica.digest() == net.reps["b"].replica.digest()
