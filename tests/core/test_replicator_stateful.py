"""Hypothesis drives three replicators through writes and network faults.

Messages wait in a bag; rules deliver, drop or duplicate any of them (so any
order is possible), cut and heal links, crash and restart nodes (volatile
state lost, durable state kept), advance time. The teardown heals everything
and requires convergence with no acknowledged write lost.

Outputs go through the node's effects applier (``statesync.node._effects``),
the code the node runs, checkpoints included; only its store, sender and
publisher are fakes (:class:`Durable`, :class:`_Effects`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from statesync.core import Ack, Change, Message, Op, Snapshot, WriteStatus, WriteTicket
from statesync.core._replica import Replica, ReplicaLimits
from statesync.core._replicator import Now, Replicator, ReplicatorConfig
from statesync.node._effects import Checkpoints, EffectsApplier

T = 1_700_000_000_000
IDS = ("a", "b", "c")
CONFIG = ReplicatorConfig(
    sync_interval_s=1.0,
    retransmit_timeout_s=0.5,
    handshake_timeout_s=2.0,
    compact_interval_s=0.5,
    sync_chunk_bytes_max=400,
    snapshot_chunk_bytes_max=400,
)
CHECKPOINT_OPS = 6
"""Small, so that runs checkpoint (and restart from a checkpoint) often."""
paths = st.lists(st.sampled_from(["x", "y"]), min_size=1, max_size=2).map(tuple)


class Durable:
    """A node's durable state: what survives its crash (the applier's DurableLog)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.ops: list[Op] = []

    def append(self, ops: Sequence[Op]) -> None:
        self.ops.extend(ops)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.ops = [o for o in self.ops if o.seq > snapshot.vv.get(o.origin, 0)]


class _Effects:
    """One node's links and outcomes for the applier: messages go to the bag."""

    def __init__(self, machine: ReplicationMachine, node: str) -> None:
        self.machine = machine
        self.node = node

    def send(self, link: int, messages: list[Message], urgent: bool) -> None:
        m = self.machine
        if (self.node, link) not in m.links:
            return
        promised = m.promised[self.node]
        for msg in messages:
            m.bag.append((self.node, link, msg))
            if isinstance(msg, Ack):
                for origin, n in msg.vv.items():
                    promised[origin] = max(promised.get(origin, 0), n)

    def close(self, link: int, reason: str) -> None:
        self.machine._drop_link(self.node, link)

    def resolve(self, ticket: WriteTicket) -> None:
        if ticket.status is WriteStatus.DONE:
            self.machine.acknowledged.add(ticket.op.dot)

    def publish(self, changes: list[Change]) -> None:
        pass

    def peers(self, up: list[str], down: list[str], discovered: list[tuple[str, tuple[str, ...]]]) -> None:
        pass

    def notice(self, text: str) -> None:
        pass


class ReplicationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0
        self.durable = {i: Durable() for i in IDS}
        self.reps: dict[str, Replicator | None] = {}
        self.effects: dict[str, EffectsApplier] = {}
        self.links: dict[tuple[str, int], tuple[str, int]] = {}
        self.bag: list[tuple[str, int, Message]] = []
        self.acknowledged: set[tuple[str, int]] = set()
        self.promised: dict[str, dict[str, int]] = {i: {} for i in IDS}
        self.next_link = 1
        for i in IDS:
            self._start(i)
        for x, y in (("a", "b"), ("b", "c"), ("a", "c")):
            self._connect(x, y)

    def now(self) -> Now:
        return Now(self.t, T + int(self.t * 1000))

    def _start(self, node: str) -> None:
        d = self.durable[node]
        replica = Replica.restore(node, d.snapshot, d.ops, limits=ReplicaLimits(log_ops_max=8))
        for origin, n in self.promised[node].items():
            assert replica.vv.get(origin, 0) >= n, f"{node} lost acknowledged ops of {origin}"
        self.reps[node] = Replicator(
            replica, config=CONFIG, rand=lambda: 0.5, known_peers=[i for i in IDS if i != node], now=self.now()
        )
        fakes = _Effects(self, node)
        self.effects[node] = EffectsApplier(fakes, fakes, Checkpoints(replica, CHECKPOINT_OPS, len(d.ops)))

    def _connect(self, a: str, b: str) -> None:
        ra, rb = self.reps[a], self.reps[b]
        if ra is None or rb is None:
            return
        la, lb = self.next_link, self.next_link + 1
        self.next_link += 2
        self.links[(a, la)] = (b, lb)
        self.links[(b, lb)] = (a, la)
        rb.connected(lb, active=False, now=self.now())
        ra.connected(la, active=True, now=self.now())
        self._flush(a)
        self._flush(b)

    def _drop_link(self, node: str, link: int) -> None:
        other = self.links.pop((node, link), None)
        rep = self.reps[node]
        if rep is not None:
            rep.disconnected(link, self.now())
            self._flush(node)
        if other is not None:
            self.links.pop(other, None)
            orep = self.reps[other[0]]
            if orep is not None:
                orep.disconnected(other[1], self.now())
                self._flush(other[0])

    def _flush(self, node: str) -> None:
        rep = self.reps[node]
        if rep is None:
            return
        self.effects[node].run(rep.take_output(), self.durable[node])

    def _deliver(self, index: int) -> None:
        src, link, msg = self.bag.pop(index % len(self.bag))
        dest = self.links.get((src, link))
        if dest is None:
            return
        rep = self.reps[dest[0]]
        if rep is not None:
            rep.received(dest[1], msg, self.now())
            self._flush(dest[0])

    # ---------------------------------------------------------------- rules

    @rule(node=st.sampled_from(IDS), path=paths, value=st.integers(0, 5), remove=st.booleans(), ack=st.sampled_from(["local", "all", 1]))
    def write(self, node: str, path: tuple[str, ...], value: int, remove: bool, ack: Any) -> None:
        rep = self.reps[node]
        if rep is not None:
            rep.write(path, value, remove=remove, ack=ack, timeout_s=3.0, now=self.now())
            self._flush(node)

    @precondition(lambda self: self.bag)
    @rule(index=st.integers(0, 1000))
    def deliver(self, index: int) -> None:
        self._deliver(index)

    @precondition(lambda self: self.bag)
    @rule(index=st.integers(0, 1000))
    def drop(self, index: int) -> None:
        self.bag.pop(index % len(self.bag))

    @precondition(lambda self: self.bag)
    @rule(index=st.integers(0, 1000))
    def duplicate(self, index: int) -> None:
        self.bag.append(self.bag[index % len(self.bag)])

    @rule(a=st.sampled_from(IDS), b=st.sampled_from(IDS))
    def partition(self, a: str, b: str) -> None:
        for (node, link), (dest, _) in list(self.links.items()):
            if {node, dest} == {a, b} and node != dest:
                self._drop_link(node, link)

    @rule()
    def heal(self) -> None:
        connected = {frozenset((n, d)) for (n, _), (d, _) in self.links.items()}
        for i, a in enumerate(IDS):
            for b in IDS[i + 1 :]:
                if frozenset((a, b)) not in connected:
                    self._connect(a, b)

    @rule(node=st.sampled_from(IDS))
    def crash_and_restart(self, node: str) -> None:
        for (n, link) in [k for k in self.links if k[0] == node]:
            self._drop_link(n, link)
        self.reps[node] = None
        self._start(node)

    @rule(dt=st.floats(0.05, 3.0))
    def advance(self, dt: float) -> None:
        self.t += dt
        for node, rep in self.reps.items():
            if rep is not None:
                rep.tick(self.now())
                self._flush(node)

    @invariant()
    def vectors_cover_what_was_promised(self) -> None:
        for node, rep in self.reps.items():
            if rep is not None:
                for origin, n in self.promised[node].items():
                    assert rep.replica.vv.get(origin, 0) >= n

    def teardown(self) -> None:
        self.heal()
        for _ in range(400):
            while self.bag:
                self._deliver(0)
            replicas = [r.replica for r in self.reps.values() if r is not None]
            if len({r.digest() for r in replicas}) == 1 and not any(r.pending_count for r in replicas):
                break
            self.advance(0.5)
            self.heal()
        replicas = [r.replica for r in self.reps.values() if r is not None]
        digests = {r.node_id: r.digest() for r in replicas}
        assert len(set(digests.values())) == 1, f"no convergence after healing: {digests}"
        view = replicas[0].get(())
        assert all(r.get(()) == view for r in replicas)
        for dot in self.acknowledged:
            assert all(r.vv.get(dot[0], 0) >= dot[1] for r in replicas), f"acknowledged {dot} lost"


ReplicationMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestReplication = ReplicationMachine.TestCase
