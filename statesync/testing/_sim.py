"""A deterministic simulator of N replicators over a hostile network.

Everything is driven by one seeded ``random.Random`` and a simulated clock,
so a run is reproducible from its seed and a failure replays exactly::

    python -m statesync.sim --seed 17 --nodes 4 --steps 5000 --strategy custom

The network delays messages (so it reorders them, within a link too), loses
and duplicates them, cuts links (partitions, including a node that bridges
two halves), and crashes nodes: a crash loses everything volatile, including
outputs not yet committed; what a node had made durable survives its
restart. Physical clocks are skewed per node (within ``max_drift_s``). The
run has a fault phase, then heals the network and must converge within a
bounded simulated time.

Checks (each violation is reported with the seed):

- convergence: after the heal, every replica ends with the same digest and
  the same read view, with empty causal buffers;
- no acknowledged write lost: the dot of every write whose concern completed
  is in every replica's context, and every replica's state equals that of a
  fresh replica that applied exactly the ops its context covers;
- a dot is never reused (two different ops committed under one dot);
- version vectors never go backwards, across crashes included (a restarted
  node has at least what it had acknowledged);
- the op log stays within its bound, and once the network is healthy and
  everyone has acknowledged everything it is compacted empty.

Each node's output goes through the node's own effects applier
(``statesync.node._effects``), the same code the real node runs: commit,
then send, close, resolve, in the contract's order, with the node's
checkpoint policy. Only its three interfaces are fakes here (:class:`_Effects`):
the durable log is two lists, the sender is the simulated network.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import attrs

from statesync.core._context import Dot
from statesync.core._messages import Ack, Message
from statesync.core._op import Change, Op
from statesync.core._replica import Replica, ReplicaLimits, Snapshot
from statesync.core._replication import WriteStatus, WriteTicket
from statesync.core._replicator import (
    AckSpec,
    Now,
    Output,
    Replicator,
    ReplicatorConfig,
    op_size,
)
from statesync.core._strategy import Strategies, StrategySpec
from statesync.errors import InvalidOperation
from statesync.node._effects import Checkpoints, EffectsApplier

WALL_BASE_MS = 1_700_000_000_000
SEGMENTS = ("a", "b", "c", "d")


@attrs.define
class SimConfig:
    """One simulation run. The defaults are a hard but healable fault phase."""

    seed: int = 0
    nodes: int = 3
    steps: int = 5000
    strategy: StrategySpec = "vector-clock"
    loss: float = 0.1
    """Fault phase: probability that a message is lost."""
    dup: float = 0.1
    """Fault phase: probability that a message is delivered twice."""
    delay_ms: tuple[int, int] = (0, 40)
    step_ms: tuple[int, int] = (1, 10)
    write_rate: float = 0.35
    typed_rate: float = 0.3
    """The share of writes that are typed edits (text, list, counter, set) on the same paths."""
    burst_max: int = 1
    concerns: tuple[AckSpec, ...] = ("local", "local", "local", "all", 1, 2)
    """The write concerns a write draws from."""
    """A write step makes 1 to this many writes on one node before its output is
    taken: a writer running on in one scheduling turn, whose writes coalesce."""
    partition_rate: float = 0.004
    heal_rate: float = 0.01
    crash_rate: float = 0.002
    restart_rate: float = 0.02
    skew_ms_max: int = 5_000
    detect_ms: tuple[int, int] = (50, 400)
    """How long a side takes to notice a dead link (heartbeat timeout)."""
    commit_ms: tuple[int, int] = (0, 4)
    """Group-commit latency: outputs are durable, and sent, only after it."""
    heal_s: float = 120.0
    """Convergence bound after the heal, in simulated seconds."""
    log_ops_max: int = 400
    replicator: ReplicatorConfig = attrs.field(
        factory=lambda: ReplicatorConfig(
            sync_interval_s=1.0,
            retransmit_timeout_s=0.3,
            handshake_timeout_s=1.0,
            compact_interval_s=0.5,
            sync_chunk_bytes_max=2048,
            snapshot_chunk_bytes_max=2048,
            ops_message_count_max=64,
        )
    )
    trace: bool = False


@attrs.define
class _Conn:
    a: str
    la: int
    b: str
    lb: int
    alive: bool = True

    def other(self, node: str, link: int) -> tuple[str, int]:
        return (self.b, self.lb) if (node, link) == (self.a, self.la) else (self.a, self.la)


@attrs.define
class _Node:
    node_id: str
    skew_ms: int
    rng: random.Random
    replicator: Replicator | None
    effects: EffectsApplier | None = None
    """The applier of the running replicator's outputs (the node's own code)."""
    log: _Effects | None = None
    durable_snapshot: Snapshot | None = None
    durable_ops: list[Op] = attrs.field(factory=list)
    durable_hlc: int = 0
    uncommitted: list[Output] = attrs.field(factory=list)
    commit_pending: bool = False
    links: dict[int, _Conn] = attrs.field(factory=dict)
    tick_token: int = 0
    acked_vv: dict[str, int] = attrs.field(factory=dict)
    """The highest vector this node ever sent in an ACK (what it promised)."""
    last_vv: dict[str, int] = attrs.field(factory=dict)

    @property
    def up(self) -> bool:
        return self.replicator is not None


@attrs.define(eq=False)
class _Effects:
    """One simulated node's side of the effects applier: its durable log, its links, its outcomes.

    The ``DurableLog``, ``Sender`` and ``Publisher`` of ``statesync.node._effects``,
    over the node's in-memory durable state and the simulated network; the
    commit also checks that no dot is ever reused.
    """

    sim: Simulation
    node: _Node

    def append(self, ops: Sequence[Op]) -> None:
        node = self.node
        for op in ops:
            node.durable_ops.append(op)
            node.durable_hlc = max(node.durable_hlc, op.hlc)
            if op.origin == node.node_id:
                seen = self.sim.committed_ops.get(op.dot)
                if seen is not None and seen != op:
                    self.sim.violations.append(f"dot {op.dot} reused: {seen} then {op}")
                self.sim.committed_ops[op.dot] = op

    def save_snapshot(self, snapshot: Snapshot) -> None:
        node = self.node
        node.durable_snapshot = snapshot
        node.durable_ops = [o for o in node.durable_ops if o.seq > snapshot.vv.get(o.origin, 0)]

    def send(self, link: int, messages: list[Message], urgent: bool) -> None:
        for msg in messages:
            self.sim._send(self.node, link, msg)

    def close(self, link: int, reason: str) -> None:
        self.sim._close(self.node, link, reason)

    def resolve(self, ticket: WriteTicket) -> None:
        if ticket.status is WriteStatus.FAILED:
            self.sim._log(f"{self.node.node_id} write {ticket.op.dot} concern failed: {ticket.error}")
        else:
            self.sim.acknowledged.add(ticket.op.dot)

    def publish(self, changes: list[Change]) -> None:
        pass  # nobody watches in the simulation

    def peers(self, up: list[str], down: list[str], discovered: list[tuple[str, tuple[str, ...]]]) -> None:
        pass  # the simulation links every pair itself

    def notice(self, text: str) -> None:
        self.sim._log(f"{self.node.node_id} {text}")


@attrs.define
class SimResult:
    seed: int
    ok: bool
    violations: list[str]
    steps: int
    sim_time_s: float
    converged_after_s: float | None
    writes: int
    acknowledged: int
    messages: int
    bytes_estimate: int
    sent: dict[str, int]
    """Messages sent, per type name (OPS, ACK, ...)."""
    crashes: int
    partitions: int
    trace: list[str]
    typed_writes: int = 0
    """Typed edits (text, list, counter, set) made, of ``writes``."""
    typed_paths: int = 0
    """Paths that hold a typed value at the end (on the first replica)."""

    def replay_command(self, config: SimConfig) -> str:
        strategy = config.strategy if isinstance(config.strategy, str) else "custom"
        return (
            f"python -m statesync.sim --seed {self.seed} --nodes {config.nodes} "
            f"--steps {config.steps} --strategy {strategy}"
        )


def _max_canon(path: tuple[str, ...], versions: tuple[Any, ...]) -> Any:
    """The custom resolver the simulator uses for ``--strategy custom``."""
    return max(versions, key=lambda v: (repr(type(v.value)), repr(v.value))).value


def strategy_for(name: str) -> StrategySpec:
    return _max_canon if name == "custom" else name


class Simulation:
    """One seeded run; call :meth:`run`."""

    def __init__(self, config: SimConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.time_s = 0.0
        self.events: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self._event_seq = 0
        self.loss = config.loss
        self.dup = config.dup
        self.cut: set[frozenset[str]] = set()
        self.conns: list[_Conn] = []
        self._next_link = 1
        self.violations: list[str] = []
        self.trace: list[str] = []
        self.committed_ops: dict[Dot, Op] = {}
        self.acknowledged: set[Dot] = set()
        self.writes = 0
        self.typed_writes = 0
        self.messages = 0
        self.sent: dict[str, int] = {}
        self.bytes_estimate = 0
        self.crashes = 0
        self.partitions = 0
        ids = [f"n{i}" for i in range(config.nodes)]
        self.ids = ids
        self.nodes: dict[str, _Node] = {}
        for nid in ids:
            skew = self.rng.randint(-config.skew_ms_max, config.skew_ms_max)
            node = _Node(nid, skew, random.Random(self.rng.getrandbits(64)), None)
            self.nodes[nid] = node
            self._start(node)
        self._schedule(0.5, "maintain", ())

    # ------------------------------------------------------------ plumbing

    def _log(self, text: str) -> None:
        if self.cfg.trace:
            self.trace.append(f"{self.time_s:9.3f} {text}")

    def _now(self, node: _Node) -> Now:
        return Now(self.time_s, WALL_BASE_MS + int(self.time_s * 1000) + node.skew_ms)

    def _schedule(self, delay_s: float, kind: str, payload: tuple[Any, ...]) -> None:
        self._event_seq += 1
        heapq.heappush(self.events, (self.time_s + delay_s, self._event_seq, kind, payload))

    def _start(self, node: _Node) -> None:
        replica = Replica.restore(
            node.node_id,
            node.durable_snapshot,
            node.durable_ops,
            strategies=Strategies.from_spec(self.cfg.strategy),
            max_drift_ms=int(self.cfg.replicator.max_drift_s * 1000),
            limits=ReplicaLimits(log_ops_max=self.cfg.log_ops_max),
            hlc=node.durable_hlc,
        )
        for origin, n in node.acked_vv.items():
            if replica.vv.get(origin, 0) < n:
                self.violations.append(
                    f"{node.node_id} restarted with {origin}:{replica.vv.get(origin, 0)} "
                    f"but had acknowledged {origin}:{n} (an acknowledged op was not durable)"
                )
        node.last_vv = dict(replica.vv)
        node.replicator = Replicator(
            replica,
            config=self.cfg.replicator,
            rand=node.rng.random,
            known_peers=[i for i in self.ids if i != node.node_id],
            endpoints=(f"sim://{node.node_id}",),
            instance=f"{node.node_id}-{node.rng.getrandbits(32):08x}",
            now=self._now(node),
        )
        fakes = node.log = _Effects(self, node)
        # The node's checkpoint policy, with a bound that keeps the durable log short.
        checkpoints = Checkpoints(replica, 4 * self.cfg.log_ops_max, len(node.durable_ops))
        node.effects = EffectsApplier(fakes, fakes, checkpoints)
        self._after(node)

    def _after(self, node: _Node) -> None:
        """Collect a node's output for the next group commit; re-arm its timer."""
        rep = node.replicator
        if rep is None:
            return
        out = rep.take_output()
        if out:
            node.uncommitted.append(out)
            if not node.commit_pending:
                node.commit_pending = True
                lo, hi = self.cfg.commit_ms
                self._schedule(node.rng.randint(lo, hi) / 1000, "commit", (node.node_id,))
        node.tick_token += 1
        self._schedule(max(0.0, rep.next_tick_s() - self.time_s), "tick", (node.node_id, node.tick_token))

    def _commit(self, node: _Node) -> None:
        node.commit_pending = False
        outputs, node.uncommitted = node.uncommitted, []
        rep = node.replicator
        effects = node.effects
        if rep is None or effects is None:
            return
        for out in outputs:
            effects.run(out, node.log)
        vv = rep.replica.vv
        for origin, n in node.last_vv.items():
            if vv.get(origin, 0) < n:
                self.violations.append(f"{node.node_id}'s vector went backwards on {origin}: {n} -> {vv.get(origin, 0)}")
        node.last_vv = dict(vv)

    def _send(self, node: _Node, link: int, msg: Message) -> None:
        conn = node.links.get(link)
        if conn is None or not conn.alive:
            return
        if isinstance(msg, Ack):
            for origin, n in msg.vv.items():
                if node.acked_vv.get(origin, 0) < n:
                    node.acked_vv[origin] = n
        self.messages += 1
        name = type(msg).__name__
        self.sent[name] = self.sent.get(name, 0) + 1
        self.bytes_estimate += _size(msg)
        copies = 1
        roll = self.rng.random()
        if roll < self.loss:
            self._log(f"{node.node_id} -> lost {type(msg).__name__}")
            return
        if roll < self.loss + self.dup:
            copies = 2
        dest, dest_link = conn.other(node.node_id, link)
        lo, hi = self.cfg.delay_ms
        for _ in range(copies):
            self._schedule(self.rng.randint(lo, hi) / 1000, "deliver", (dest, dest_link, conn, msg))

    def _close(self, node: _Node, link: int, reason: str) -> None:
        conn = node.links.pop(link, None)
        if conn is None:
            return
        conn.alive = False
        dest, dest_link = conn.other(node.node_id, link)
        lo, hi = self.cfg.detect_ms
        self._schedule(self.rng.randint(lo, hi) / 1000 / 4, "lost_link", (dest, dest_link))

    def _connect(self, a: str, b: str) -> None:
        na, nb = self.nodes[a], self.nodes[b]
        if na.replicator is None or nb.replicator is None:
            return
        la, lb = self._next_link, self._next_link + 1
        self._next_link += 2
        conn = _Conn(a, la, b, lb)
        self.conns.append(conn)
        na.links[la] = conn
        nb.links[lb] = conn
        nb.replicator.connected(lb, active=False, now=self._now(nb))
        na.replicator.connected(la, active=True, now=self._now(na))
        self._after(na)
        self._after(nb)

    def _break(self, conn: _Conn) -> None:
        """A link dies without a goodbye: each side notices after a while."""
        if not conn.alive:
            return
        conn.alive = False
        lo, hi = self.cfg.detect_ms
        for nid, link in ((conn.a, conn.la), (conn.b, conn.lb)):
            self._schedule(self.rng.randint(lo, hi) / 1000, "lost_link", (nid, link))

    def _connected_pairs(self) -> set[frozenset[str]]:
        pairs = set()
        for node in self.nodes.values():
            for conn in node.links.values():
                if conn.alive:
                    pairs.add(frozenset((conn.a, conn.b)))
        return pairs

    # -------------------------------------------------------------- events

    def _handle(self, kind: str, payload: tuple[Any, ...]) -> None:
        if kind == "deliver":
            dest, link, conn, msg = payload
            node = self.nodes[dest]
            if node.replicator is None or not conn.alive or node.links.get(link) is not conn:
                return
            node.replicator.received(link, msg, self._now(node))
            self._after(node)
        elif kind == "commit":
            node = self.nodes[payload[0]]
            if node.replicator is not None:
                self._commit(node)
                self._after(node)
        elif kind == "tick":
            nid, token = payload
            node = self.nodes[nid]
            if node.replicator is not None and token == node.tick_token:
                node.replicator.tick(self._now(node))
                self._after(node)
        elif kind == "lost_link":
            nid, link = payload
            node = self.nodes[nid]
            conn = node.links.pop(link, None)
            if node.replicator is not None and conn is not None:
                node.replicator.disconnected(link, self._now(node))
                self._after(node)
        elif kind == "maintain":
            connected = self._connected_pairs()
            for i, a in enumerate(self.ids):
                for b in self.ids[i + 1 :]:
                    pair = frozenset((a, b))
                    if pair in connected or pair in self.cut:
                        continue
                    if self.nodes[a].up and self.nodes[b].up:
                        first, second = (a, b) if self.rng.random() < 0.5 else (b, a)
                        self._connect(first, second)
            self._schedule(0.5, "maintain", ())

    def _run_until(self, t: float) -> None:
        while self.events and self.events[0][0] <= t:
            when, _, kind, payload = heapq.heappop(self.events)
            self.time_s = max(self.time_s, when)
            self._handle(kind, payload)
        self.time_s = max(self.time_s, t)

    # ------------------------------------------------------------- actions

    def _random_write(self) -> None:
        rng = self.rng
        up = [n for n in self.nodes.values() if n.replicator is not None]
        if not up:
            return
        node = rng.choice(up)
        burst = 1 if self.cfg.burst_max <= 1 else rng.randint(1, self.cfg.burst_max)
        for _ in range(burst):
            self._write_on(node)
        self._after(node)

    def _write_on(self, node: _Node) -> None:
        rng = self.rng
        rep = node.replicator
        assert rep is not None
        depth = rng.randint(1, 3)
        path = tuple(rng.choice(SEGMENTS) for _ in range(depth))
        roll = rng.random()
        ack: AckSpec = rng.choice(self.cfg.concerns)
        now = self._now(node)
        if rng.random() < self.cfg.typed_rate:
            edit = _typed_edit(rep.replica, path, rng)
            try:
                ticket = rep.write_typed(edit, ack=ack, timeout_s=2.0, now=now)
            except InvalidOperation as exc:  # a path holding a map or another type, an edit of nothing
                self._log(f"{node.node_id} typed edit refused: {exc}")
                return
            self.typed_writes += 1
        elif roll < 0.6:
            value: Any = rng.choice([rng.randint(0, 99), f"s{rng.randint(0, 9)}", None, [1, 2], True])
            ticket = rep.write(path, value, ack=ack, timeout_s=2.0, now=now)
        elif roll < 0.8:
            value = {rng.choice(SEGMENTS): rng.randint(0, 9) for _ in range(rng.randint(1, 3))}
            ticket = rep.write(path[: rng.randint(0, depth)], value, ack=ack, timeout_s=2.0, now=now)
        else:
            ticket = rep.write(path[: rng.randint(0, depth)], remove=True, ack=ack, timeout_s=2.0, now=now)
        self.writes += 1
        self._log(f"{node.node_id} write {ticket.op.dot} {ticket.op.path} ack={ack}")

    def _random_fault(self) -> None:
        rng = self.rng
        cfg = self.cfg
        roll = rng.random()
        if roll < cfg.partition_rate:
            # Cut one random pair, or isolate a random group from the rest
            # (the nodes in neither group then bridge the halves).
            if rng.random() < 0.5 and len(self.ids) > 2:
                group = set(rng.sample(self.ids, rng.randint(1, len(self.ids) // 2)))
                rest = [i for i in self.ids if i not in group]
                bridge = rng.choice(rest) if len(rest) > 1 and rng.random() < 0.5 else None
                for a in group:
                    for b in rest:
                        if b != bridge:
                            self._cut(a, b)
            else:
                a, b = rng.sample(self.ids, 2)
                self._cut(a, b)
            self.partitions += 1
        elif roll < cfg.partition_rate + cfg.heal_rate and self.cut:
            pair = rng.choice(sorted(self.cut, key=sorted))
            self.cut.discard(pair)
            self._log(f"heal {sorted(pair)}")
        elif roll < cfg.partition_rate + cfg.heal_rate + cfg.crash_rate:
            up = [n for n in self.nodes.values() if n.replicator is not None]
            if len(up) > 1:
                self._crash(rng.choice(up))
        elif roll < cfg.partition_rate + cfg.heal_rate + cfg.crash_rate + cfg.restart_rate:
            down = [n for n in self.nodes.values() if n.replicator is None]
            if down:
                node = rng.choice(down)
                self._log(f"restart {node.node_id}")
                self._start(node)

    def _cut(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        self.cut.add(pair)
        self._log(f"cut {a} {b}")
        for conn in self.conns:
            if conn.alive and frozenset((conn.a, conn.b)) == pair:
                self._break(conn)

    def _crash(self, node: _Node) -> None:
        self.crashes += 1
        lost = sum(len(o.persist) for o in node.uncommitted)
        self._log(f"crash {node.node_id} (losing {lost} uncommitted ops)")
        node.replicator = node.effects = None
        node.uncommitted = []
        node.commit_pending = False
        for conn in list(node.links.values()):
            if conn.alive:
                conn.alive = False
                other, other_link = conn.other(node.node_id, conn.la if conn.a == node.node_id else conn.lb)
                lo, hi = self.cfg.detect_ms
                self._schedule(self.rng.randint(lo, hi) / 1000, "lost_link", (other, other_link))
        node.links = {}

    # ----------------------------------------------------------------- run

    def run(self) -> SimResult:
        cfg = self.cfg
        for _ in range(cfg.steps):
            lo, hi = cfg.step_ms
            self._run_until(self.time_s + self.rng.randint(lo, hi) / 1000)
            if self.rng.random() < cfg.write_rate:
                self._random_write()
            self._random_fault()
        # Heal: a clean network, every link allowed, every node up.
        self._log("heal everything")
        self.loss = self.dup = 0.0
        self.cut.clear()
        for node in self.nodes.values():
            if node.replicator is None:
                self._start(node)
        heal_start = self.time_s
        converged_at = None
        while self.time_s - heal_start < cfg.heal_s:
            self._run_until(self.time_s + 0.25)
            if self._converged():
                converged_at = self.time_s - heal_start
                break
        if converged_at is None:
            digests = {n.node_id: n.replicator.replica.digest() for n in self.nodes.values() if n.replicator}
            self.violations.append(f"no convergence within {cfg.heal_s:g} s after the heal: {digests}")
        else:
            # Let acknowledgements and a sync round settle, then the logs must be compacted.
            self._run_until(self.time_s + 2 * cfg.replicator.sync_interval_s * (1 + cfg.replicator.sync_jitter) + 1.0)
            self._check_final()
        return SimResult(
            seed=cfg.seed,
            ok=not self.violations,
            violations=self.violations,
            steps=cfg.steps,
            sim_time_s=self.time_s,
            converged_after_s=converged_at,
            writes=self.writes,
            acknowledged=len(self.acknowledged),
            messages=self.messages,
            bytes_estimate=self.bytes_estimate,
            sent=dict(self.sent),
            crashes=self.crashes,
            partitions=self.partitions,
            trace=self.trace,
            typed_writes=self.typed_writes,
            typed_paths=self._typed_paths(),
        )

    def _typed_paths(self) -> int:
        replicas = self._replicas()
        if not replicas:
            return 0
        r = replicas[0]
        return sum(1 for p in r.tree.typed_paths if r.typed_value(p) is not None)

    def _replicas(self) -> list[Replica]:
        return [n.replicator.replica for n in self.nodes.values() if n.replicator is not None]

    def _converged(self) -> bool:
        replicas = self._replicas()
        if len(replicas) != len(self.nodes) or any(r.pending_count for r in replicas):
            return False
        if any(n.uncommitted for n in self.nodes.values()):
            return False
        first = replicas[0].vv
        if any(r.vv != first for r in replicas[1:]):
            return False
        digest = replicas[0].digest()
        return all(r.digest() == digest for r in replicas[1:])

    def _check_final(self) -> None:
        replicas = self._replicas()
        view = replicas[0].get(())
        for r in replicas:
            if r.get(()) != view:
                self.violations.append(f"{r.node_id} reads a different tree: {r.get(())!r} vs {view!r}")
            for dot in self.acknowledged:
                if r.vv.get(dot[0], 0) < dot[1]:
                    self.violations.append(f"acknowledged write {dot} is missing at {r.node_id}")
            if len(r.log) > self.cfg.log_ops_max:
                self.violations.append(f"{r.node_id}'s log holds {len(r.log)} ops, over its bound")
            if len(r.log) > 0:
                self.violations.append(f"{r.node_id}'s log still holds {len(r.log)} ops everyone has acknowledged")
        reference = Replica("reference", strategies=Strategies.from_spec(self.cfg.strategy))
        vv = replicas[0].vv
        for op in sorted(self.committed_ops.values(), key=lambda o: o.hlc):
            if vv.get(op.origin, 0) >= op.seq:
                reference.receive(op)
        if reference.pending_count:
            self.violations.append(f"{reference.pending_count} ops of the final context depend on ops outside it")
        if reference.vv != vv:
            self.violations.append(f"the final context {vv} holds ops nobody committed: {reference.vv}")
        elif reference.digest() != replicas[0].digest():
            self.violations.append("the converged state differs from a fresh replica applying exactly its context's ops")


_EDITS = {"Text": (0, 0, 1), "List": (2, 3, 3, 4), "Counter": (5,), "AWSet": (6, 7)}


def _typed_edit(replica: Replica, path: tuple[str, ...], rng: random.Random) -> Callable[[int, list[Change] | None], Op]:
    """A random typed edit at ``path``, valid where the path holds the type (else the replica refuses it)."""
    shown = replica.get(path)
    n = len(shown) if isinstance(shown, str | list) else 0
    held = type(replica.typed_value(path)).__name__
    kind = rng.choice(_EDITS.get(held, (0, 2, 5, 6)))
    if kind == 0:
        return partial(replica.text_insert, path, rng.randint(0, n), rng.choice(["x", "yz", "hello"]))
    if kind == 1:
        pos = rng.randint(0, max(0, n - 1))
        return partial(replica.text_delete, path, pos, rng.randint(1, max(1, n - pos)))
    if kind == 2:
        return partial(replica.list_insert, path, rng.randint(0, n), [rng.randint(0, 9)])
    if kind == 3:
        return partial(replica.list_move, path, rng.randint(0, max(0, n - 1)), rng.randint(0, max(0, n - 1)))
    if kind == 4:
        return partial(replica.list_delete, path, rng.randint(0, max(0, n - 1)), 1)
    if kind == 5:
        return partial(replica.counter_add, path, rng.randint(-5, 5))
    if kind == 6:
        return partial(replica.aw_add, path, rng.randint(0, 3))
    return partial(replica.aw_remove, path, rng.randint(0, 3))


def _size(msg: Message) -> int:
    """A rough size estimate of a message (the wire layer has the exact one)."""
    ops = getattr(msg, "ops", None)
    if ops is not None:
        return 8 + sum(op_size(o) for o in ops)
    vv = getattr(msg, "vv", None)
    return 16 + (12 * len(vv) if vv else 0)


def config_for_seed(
    seed: int,
    *,
    nodes: int | None = None,
    steps: int = 5000,
    strategy: str | None = None,
    trace: bool = False,
) -> SimConfig:
    """The fault mix the test suite uses for ``seed``: rates drawn from the seed.

    Loss 0-30 %, duplication 0-50 %, a log bound of 20, 100 or 400 ops (small
    bounds force snapshot transfers), 3 to 5 nodes and a strategy, unless given.
    """
    rng = random.Random(f"config-{seed}")
    chosen = strategy or rng.choice(["vector-clock", "last-write-wins", "custom"])
    return SimConfig(
        seed=seed,
        nodes=nodes if nodes is not None else rng.randint(3, 5),
        steps=steps,
        strategy=strategy_for(chosen),
        loss=round(rng.uniform(0.0, 0.3), 3),
        dup=round(rng.uniform(0.0, 0.5), 3),
        log_ops_max=rng.choice([20, 100, 400]),
        trace=trace,
    )


def describe(config: SimConfig) -> str:
    strategy = config.strategy if isinstance(config.strategy, str) else "custom"
    return (
        f"seed={config.seed} nodes={config.nodes} steps={config.steps} strategy={strategy} "
        f"loss={config.loss} dup={config.dup} log_ops_max={config.log_ops_max}"
    )


def run(config: SimConfig) -> SimResult:
    """Run one simulation."""
    return Simulation(config).run()
