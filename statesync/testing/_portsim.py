"""A deterministic simulator of the ports protocol: several runtimes, many ports, faults.

Every run is driven by one seeded ``random.Random`` and a simulated clock, so
a run replays exactly from its seed::

    python -m statesync.sim ports --seed 17

Each simulated runtime is a :class:`~statesync.ports._protocol.PortsProtocol`
(the same code the real runtime drives); connections are pairs of
:class:`~statesync.ports._outbox.Conn` whose frames (encoded and decoded with
the real codec) travel in order with random latency. The run:

- opens carrier channels between every pair of runtimes and local channels
  inside each, then, in the fault phase, posts messages on random ends, takes
  them at random paces (credit), transfers ends across runtimes (so an end
  hops through three runtimes with messages in flight, and relays form),
  closes ends, drops connections (what is on the wire is lost; both sides
  notice after a detection delay) and lets them be re-made by the dials the
  protocol asks for, makes brokers exit gracefully (waiting for their relays
  to be released or idle) and kills runtimes (their peers notice by heartbeat
  timeout, with the protocol's own liveness verdicts);
- then heals: no more faults, every queue taken, every end still open closed.

Invariants (each violation is reported with the seed's replay command):

- per-port order: every end receives its partner's messages as 1, 2, 3...
  with no gap and no duplicate;
- no loss: on a pair whose ends both live to the end of the fault phase and
  neither got ``close``, each end received everything the other sent;
- close: when an end is closed, lost or dies, its partner, if it survives,
  gets ``close`` within ``close_bound_s``;
- relays released and no state left: after the heal (every end closed) no
  runtime holds any entry (end or relay) and no request or reorder state.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs

from statesync.errors import PortsError
from statesync.ports import _codec
from statesync.ports._envelope import KIND_MESSAGE, Bye, Msg, Ping
from statesync.ports._liveness import Liveness, Verdict
from statesync.ports._outbox import Conn
from statesync.ports._protocol import PortsProtocol
from statesync.ports._sequencing import CLOSE_ITEM, Item, PortEnd, Relay
from statesync.wire import DecodeError

ProtocolFactory = Callable[[str, Callable[[], int]], PortsProtocol]


@attrs.define
class PortSimConfig:
    """One run. The defaults make a hard fault phase that heals."""

    latency_s: tuple[float, float] = (0.001, 0.05)
    """Each frame's time on the wire (frames of one connection arrive in order)."""
    seed: int = 0
    runtimes: int = 3
    """Runtimes in the run (:func:`config_for_seed` draws 3 or 4)."""
    carriers: int = 2
    """Carrier channels per pair of runtimes (made by connect at the start)."""
    step_s: tuple[float, float] = (0.001, 0.01)
    locals: int = 2
    """Channels inside each runtime at the start."""
    steps: int = 400
    """Fault-phase steps; each is one user action or fault on a random runtime."""
    window: int = 8
    """Every port's window."""
    mix: tuple[float, float, float] = (0.45, 0.3, 0.08)
    """What a fault-phase step does, by probability: post, take, transfer (else a fault)."""
    faults: tuple[float, float, float, float] = (0.01, 0.004, 0.002, 0.002)
    """Per step, about how likely a close, a dropped connection, a broker exit, a crash are."""
    heartbeat_s: tuple[float, float] = (0.25, 1.0)
    """Ping interval and timeout of the protocol's own liveness verdicts (which find a
    crashed peer)."""
    tick_s: float = 0.05
    detect_s: tuple[float, float] = (0.01, 0.2)
    """How long a side takes to notice a dropped connection (a TCP disconnect)."""
    close_bound_s: float = 2.5
    """The close invariant: a surviving end gets ``close`` this soon after its partner ends."""
    relay_idle_s: float = 0.3
    exit_wait_s: float = 2.0
    """An exiting broker waits at most this long for its relays to be idle."""
    heal_s: float = 10.0
    trace: bool = False


@attrs.define
class PortSimResult:
    config: PortSimConfig
    violations: list[str]
    trace: list[str]
    messages: int = 0
    transfers: int = 0
    closes: int = 0
    drops: int = 0
    exits: int = 0
    crashes: int = 0
    stale_relays: int = 0
    sim_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations


def replay_command(config: PortSimConfig) -> str:
    return f"python -m statesync.sim ports --seed {config.seed}"


def config_for_seed(seed: int, **overrides: Any) -> PortSimConfig:
    """The configuration the test suite runs for ``seed`` (3 or 4 runtimes)."""
    rng = random.Random(seed ^ 0x5EED)
    config = PortSimConfig(seed=seed, runtimes=rng.choice((3, 3, 4)))
    return attrs.evolve(config, **overrides)


class _End:
    """What the simulated user knows about one port end (by id, stable across moves)."""

    __slots__ = ("close_seen_at", "closed_at", "ended_at", "next_n", "partner", "received")

    def __init__(self, partner: int) -> None:
        self.partner = partner
        self.next_n = 1  # the number of the next message this end posts
        self.received: list[int] = []
        self.close_seen_at: float | None = None
        self.closed_at: float | None = None  # closed by its user
        self.ended_at: float | None = None  # closed, lost or dead: it stops counting


class SimConn(Conn):
    """One side of a simulated connection."""

    def __init__(self, rt: _Runtime, config: PortSimConfig, now: float, *, accepts: bool) -> None:
        super().__init__(queue_max=1 << 16, queue_bytes_max=1 << 26, window=config.window, accepts=accepts)
        self.rt = rt
        self.peer: SimConn | None = None
        self.live = Liveness(now, now, now, config.heartbeat_s[0])
        self.arrive_at = 0.0  # frames arrive in order: never before the previous one


class _Runtime:
    def __init__(self, name: str, proto: PortsProtocol) -> None:
        self.name = name
        self.proto = proto
        self.alive = True
        self.exiting = False
        self.conns: dict[str, SimConn] = {}  # by the other runtime's name
        self.owned: dict[int, PortEnd] = {}  # ends the user holds here


class PortSimulation:
    def __init__(self, config: PortSimConfig, protocol: ProtocolFactory = PortsProtocol) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.ends: dict[int, _End] = {}
        self.result = PortSimResult(config, [], [])
        self.runtimes: dict[str, _Runtime] = {}
        for i in range(config.runtimes):
            name = f"r{i}"
            proto = protocol(name, self._new_id)
            proto.endpoints = (f"sim://{name}",)
            self.runtimes[name] = _Runtime(name, proto)
        self.healing = False

    # -- plumbing ---------------------------------------------------------------------

    def _new_id(self) -> int:
        return self.rng.getrandbits(63)

    def log(self, text: str) -> None:
        if self.config.trace:
            self.result.trace.append(f"{self.now:9.4f} {text}")

    def violation(self, text: str) -> None:
        self.result.violations.append(f"t={self.now:.3f}: {text}")

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, fn))

    def run_until(self, t_end: float) -> None:
        while self._events and self._events[0][0] <= t_end:
            when, _, fn = heapq.heappop(self._events)
            self.now = max(self.now, when)
            fn()
        self.now = max(self.now, t_end)

    def settle(self, rt: _Runtime) -> None:
        """Carry out ``rt``'s protocol output: send frames, note deliveries and closes."""
        out = rt.proto.out
        for _ in range(1000):
            if not out:
                break
            for st in list(out.scheduled) + list(out.delivered):
                self._note(st)
            out.scheduled.clear()
            out.delivered.clear()
            out.writable.clear()
            out.responses.clear()
            out.failed.clear()
            for r in out.retired:
                self._note(r.port)
                if r.port.done and not r.port.exported:
                    self._ended(r.port.id)  # closed here (by its user or the protocol)
            out.retired.clear()
            for st in out.close_soon:
                self._note(st)
            out.close_soon.clear()
            incoming, out.incoming = out.incoming, []
            for inc in incoming:
                rt.owned[inc.port.id] = inc.port
                self.ends.setdefault(inc.port.id, _End(inc.port.partner))
            for v in out.violations:
                self.log(f"{rt.name} protocol violation on {v.port.id:x}: {v.reason}")
            out.violations.clear()
            dials, out.dials = out.dials, []
            for d in dials:
                self.at(self.now + self.rng.uniform(0.005, 0.05), partial(self._dial, rt, d.runtime_id))
            kicks = list(out.kicks)
            out.kicks.clear()
            for conn in kicks:
                self._flush(conn)  # type: ignore[arg-type]
        out.relays_changed = False

    def _note(self, st: PortEnd) -> None:
        if st.partner_gone:
            e = self.ends.get(st.id)
            if e is not None and e.close_seen_at is None:
                e.close_seen_at = self.now

    def _flush(self, conn: SimConn) -> None:
        peer = conn.peer
        while True:
            taken = conn.take_frame(256, 1 << 20)
            if taken is None:
                return
            envs, priority = taken
            frame = _codec.encode_envelopes(envs, priority=priority)
            conn.live.last_send = self.now
            if peer is None or conn.dead:
                self._lost_frame(frame)
                continue
            lo, hi = self.config.latency_s
            conn.arrive_at = max(conn.arrive_at, self.now + self.rng.uniform(lo, hi))
            self.at(conn.arrive_at, partial(self._arrive, conn, frame))

    def _arrive(self, src: SimConn, frame: bytes) -> None:
        dst = src.peer
        if dst is None or src.dead or dst.dead or not dst.rt.alive:
            self._lost_frame(frame)  # the connection is gone: what was on the wire is lost
            return
        try:
            envelopes = _codec.decode_envelopes(frame)
        except DecodeError as e:
            self.violation(f"an undecodable frame from {src.rt.name}: {e}")
            return
        dst.live.last_recv = self.now
        rt = dst.rt
        for m in envelopes:
            if type(m) is Bye:
                self._conn_down(dst, "the peer closed the connection")
                break
            if type(m) is Ping:
                continue
            if not rt.proto.receive(dst, m, self.now):
                self.violation(f"{rt.name} got an unexpected {type(m).__name__}")
        self.settle(rt)

    # -- connections ----------------------------------------------------------------

    def _connect(self, a: _Runtime, b: _Runtime) -> tuple[SimConn, SimConn]:
        ca = SimConn(a, self.config, self.now, accepts=False)
        cb = SimConn(b, self.config, self.now, accepts=True)
        ca.peer, cb.peer = cb, ca
        ca.remote_id, cb.remote_id = b.name, a.name
        ca.remote_endpoints, cb.remote_endpoints = b.proto.endpoints, a.proto.endpoints
        a.conns[b.name] = ca
        b.conns[a.name] = cb
        a.proto.link_up(ca, self.now)
        b.proto.link_up(cb, self.now)
        self.settle(a)
        self.settle(b)
        self.log(f"connected {a.name} -> {b.name}")
        return ca, cb

    def _dial(self, rt: _Runtime, target: str) -> None:
        rt.proto.dial_done(target)
        other = self.runtimes.get(target)
        if not rt.alive or rt.exiting or other is None or not other.alive or other.exiting:
            return
        if target in rt.conns or rt.name in other.conns:
            return
        self._connect(rt, other)

    def _conn_down(self, conn: SimConn, reason: str) -> None:
        if conn.dead:
            return
        rt = conn.rt
        if rt.conns.get(conn.remote_id or "") is conn:
            del rt.conns[conn.remote_id or ""]
        rt.proto.link_down(conn, reason)
        self.log(f"{rt.name} lost its connection to {conn.remote_id}: {reason}")
        self.settle(rt)

    def _drop(self, conn: SimConn) -> None:
        """The network drops a connection: frames on the wire are lost; each side
        notices after a detection delay."""
        peer = conn.peer
        self.result.drops += 1
        for side in (conn, peer):
            if side is None:
                continue
            side.peer = None  # frames on the wire are lost when they would arrive
            lo, hi = self.config.detect_s
            self.at(self.now + self.rng.uniform(lo, hi), partial(self._conn_down, side, "the connection was lost"))

    def _lost_frame(self, frame: bytes) -> None:
        for m in _codec.decode_envelopes(frame):
            if type(m) is Msg:
                for ref in m.ports:
                    self._ended(ref.id)

    def _ended(self, pid: int) -> None:
        e = self.ends.get(pid)
        if e is not None and e.ended_at is None:
            e.ended_at = self.now

    # -- faults and user actions -------------------------------------------------------

    def _alive(self) -> list[_Runtime]:
        return [rt for rt in self.runtimes.values() if rt.alive and not rt.exiting]

    def _usable(self, rt: _Runtime) -> list[PortEnd]:
        return [st for st in rt.owned.values() if not st.done and not st.partner_gone]

    def _post(self, rt: _Runtime) -> None:
        """Post a burst (up to a window) on a random end, as far as there is room."""
        ends = self._usable(rt)
        if ends:
            st = self.rng.choice(ends)
            for _ in range(self.rng.randint(1, self.config.window)):
                if not self._post_one(rt, st):
                    break

    def _post_one(self, rt: _Runtime, st: PortEnd) -> bool:
        if st.done or st.partner_gone or not rt.proto.room(st, 16):
            return False
        e = self.ends[st.id]
        payload = _codec.encode([st.id, e.next_n])
        try:
            rt.proto.post(st, KIND_MESSAGE, 0, payload, (), False, self.now)
        except PortsError:  # closing: the partner is gone, the connection says Bye
            self.settle(rt)
            return False
        e.next_n += 1
        self.result.messages += 1
        self.settle(rt)
        return True

    def _transfer(self, rt: _Runtime) -> None:
        ends = self._usable(rt)
        carriers = [c for c in ends if isinstance(rt.proto.entries.get(c.partner), Relay)]
        if not carriers:
            return
        carrier = self.rng.choice(carriers)
        movable = [p for p in ends if p is not carrier and p.id != carrier.partner]
        if not movable or not rt.proto.room(carrier, 16):
            return
        moving = self.rng.choice(movable)
        e = self.ends[carrier.id]
        payload = _codec.encode([carrier.id, e.next_n])
        try:
            rt.proto.post(carrier, KIND_MESSAGE, 0, payload, (moving,), False, self.now)
        except PortsError:
            self.settle(rt)
            return
        e.next_n += 1
        del rt.owned[moving.id]
        self.result.transfers += 1
        self.result.messages += 1
        self.log(f"{rt.name} transfers {moving.id:x} over {carrier.id:x}")
        self.settle(rt)

    def _take(self, rt: _Runtime, st: PortEnd, count: int) -> None:
        """The user of ``st`` takes up to ``count`` messages (and adopts the ends they carry)."""
        e = self.ends[st.id]
        while st.queue and count > 0 and not st.done:
            entry = st.queue.popleft()
            if entry is CLOSE_ITEM:
                if e.close_seen_at is None:
                    e.close_seen_at = self.now
                continue
            count -= 1
            payload = entry.payload if type(entry) is Item else entry
            assert isinstance(payload, bytes)
            decoded = _codec.decode(payload)
            assert isinstance(decoded, list)
            sender, n = decoded
            assert isinstance(sender, int) and isinstance(n, int)
            expected = len(e.received) + 1
            if sender != st.partner or n != expected:
                self.violation(
                    f"port {st.id:x} got message {n} from {sender:x}, expected {expected} from {st.partner:x}"
                )
            e.received.append(n)
            if type(entry) is Item:
                for p in entry.ports:
                    if not p.done:
                        rt.owned[p.id] = p
                        self.log(f"{rt.name} adopts {p.id:x} (partner {p.partner:x})")
            rt.proto.consumed(st)
        self.settle(rt)

    def _take_some(self, rt: _Runtime) -> None:
        ends = [st for st in rt.owned.values() if st.queue and not st.done]
        if ends:
            self._take(rt, self.rng.choice(ends), self.rng.randint(1, self.config.window))

    def _close(self, rt: _Runtime) -> None:
        ends = [st for st in rt.owned.values() if not st.done]
        if not ends:
            return
        st = self.rng.choice(ends)
        self._user_close(rt, st)

    def _user_close(self, rt: _Runtime, st: PortEnd) -> None:
        e = self.ends[st.id]
        e.closed_at = self.now
        self._ended(st.id)
        self.log(f"{rt.name} closes {st.id:x}")
        rt.proto.close(st, "the partner closed the port", local="closed here")
        self.result.closes += 1
        self.settle(rt)

    def _crash(self, rt: _Runtime) -> None:
        """A process dies: nothing more from it; peers find out by heartbeat timeout."""
        rt.alive = False
        self.result.crashes += 1
        self.log(f"{rt.name} crashes")
        for x in rt.proto.entries.values():
            if isinstance(x, PortEnd):
                self._ended(x.id)
        for conn in rt.conns.values():
            conn.dead = True

    def _exit(self, rt: _Runtime) -> None:
        """A broker exits gracefully: waits (bounded) until its relays are idle, closes
        its ends, says Bye on every connection behind what is queued."""
        rt.exiting = True
        self.result.exits += 1
        self.log(f"{rt.name} exits")
        deadline = self.now + self.config.exit_wait_s

        def check() -> None:
            busy, wait_s = rt.proto.relays_busy(self.now, self.config.relay_idle_s)
            if busy and self.now < deadline and rt.alive:
                self.at(self.now + max(wait_s, 0.01), check)
                return
            if not rt.alive:
                return
            for st in list(rt.owned.values()):
                if not st.done:
                    self._ended(st.id)
            for x in rt.proto.entries.values():
                if isinstance(x, PortEnd):
                    self._ended(x.id)
            rt.proto.close_all("the process is closing")
            self.settle(rt)
            for conn in list(rt.conns.values()):
                conn.put_bye("the process is closing")
                self._flush(conn)
            rt.alive = False

        self.at(self.now, check)

    def _tick(self) -> None:
        """Heartbeats of every live runtime (the protocol's own verdicts)."""
        c = self.config
        for rt in self.runtimes.values():
            if not rt.alive:
                continue
            for conn in list(rt.conns.values()):
                verdict = conn.live.verdict(self.now, True, c.heartbeat_s[1], 10.0, lambda: False)
                if verdict is Verdict.SILENT:
                    self._conn_down(conn, "heartbeat timeout")
                    peer = conn.peer
                    if peer is not None and peer.rt.alive:  # it reads the Bye when it can
                        self.at(self.now + 0.01, partial(self._conn_down, peer, "the peer said Bye"))
                elif verdict is Verdict.PING:
                    conn.put(Ping(), prio=True)
                    self._flush(conn)
        if not self.healing or self._events:
            self.at(self.now + c.tick_s, self._tick)

    def _step(self) -> None:
        c = self.config
        rng = self.rng
        alive = self._alive()
        if not alive:
            return
        rt = rng.choice(alive)
        post, take, transfer = c.mix
        close, drop, exit_, crash = c.faults
        r = rng.random()
        if r < post:
            self._post(rt)
        elif r < post + take:
            self._take_some(rt)
        elif r < post + take + transfer:
            self._transfer(rt)
        else:
            f = rng.random()
            if f < close * 10:
                self._close(rt)
            elif f < (close + drop) * 10 and rt.conns:
                self._drop(rng.choice(list(rt.conns.values())))
            elif f < (close + drop + exit_) * 10 and len(alive) > 2:
                self._exit(rt)
            elif f < (close + drop + exit_ + crash) * 10 and len(alive) > 2:
                self._crash(rt)

    # -- the run -----------------------------------------------------------------------

    def setup(self) -> None:
        c = self.config
        rts = list(self.runtimes.values())
        for rt in rts:
            for _ in range(c.locals):
                for st in rt.proto.new_channel(c.window):
                    rt.owned[st.id] = st
                    self.ends[st.id] = _End(st.partner)
        for i, a in enumerate(rts):
            for b in rts[i + 1 :]:
                ca, _ = self._connect(a, b)
                for _ in range(c.carriers):
                    st = a.proto.connect(ca, c.window, self.now)
                    a.owned[st.id] = st
                    self.ends[st.id] = _End(st.partner)
                self.settle(a)
        self.at(self.now + c.tick_s, self._tick)

    def run(self) -> PortSimResult:
        c = self.config
        self.setup()
        t = 0.0
        for _ in range(c.steps):
            t += self.rng.uniform(*c.step_s)
            self.at(t, self._step)
        self.run_until(t + c.latency_s[1])
        self.fault_end = self.now
        self._heal()
        self.check()
        self.result.sim_time_s = self.now
        return self.result

    def _take_all(self) -> None:
        for rt in self.runtimes.values():
            if rt.alive:
                for st in list(rt.owned.values()):
                    if st.queue and not st.done:
                        self._take(rt, st, 1 << 30)

    def _heal(self) -> None:
        """No more faults: let everything arrive, take every queue, check, close all."""
        c = self.config
        end = self.now + c.heal_s / 2
        while self.now < end:
            self._take_all()
            self.run_until(self.now + 0.1)
        self._take_all()
        self.check_no_loss()
        for rt in self.runtimes.values():
            if rt.alive:
                for st in list(rt.owned.values()):
                    if not st.done:
                        self._user_close(rt, st)
        end = self.now + c.heal_s / 2
        while self.now < end:
            self._take_all()
            self.run_until(self.now + 0.1)
        self.healing = True

    # -- invariants ----------------------------------------------------------------------

    def _owned_ids(self) -> set[int]:
        return {
            pid
            for rt in self.runtimes.values()
            if rt.alive
            for pid, st in rt.owned.items()
            if not st.done
        }

    def check_no_loss(self) -> None:
        owned = self._owned_ids()
        for pid, e in self.ends.items():
            p = self.ends.get(e.partner)
            if p is None or e.ended_at is not None or p.ended_at is not None:
                continue
            if pid not in owned or e.partner not in owned:
                continue  # an end in a transfer cycle (each inside the other's queue): unreachable
            if e.close_seen_at is not None or p.close_seen_at is not None:
                continue
            if len(e.received) != p.next_n - 1:
                self.violation(
                    f"port {pid:x} received {len(e.received)} of the {p.next_n - 1} messages its "
                    f"partner {e.partner:x} sent, and neither end closed"
                )

    def _unreachable(self) -> set[int]:
        """Ends that rode into each other's queues (a transfer cycle) are unreachable for
        every user, as on the web; they, their partners and the relays toward them are
        not counted."""
        cycle: set[int] = set()
        for rt in self.runtimes.values():
            if rt.alive:
                for x in rt.proto.entries.values():
                    if isinstance(x, PortEnd) and x.id not in rt.owned:
                        cycle.update((x.id, x.partner))
        return cycle

    def check(self) -> None:
        bound = self.config.close_bound_s
        cycle = self._unreachable()
        for pid, e in self.ends.items():
            p = self.ends.get(e.partner)
            if p is None or p.ended_at is None or pid in cycle:
                continue
            due = p.ended_at + bound
            if e.ended_at is not None and e.ended_at <= due:
                continue  # it did not survive its partner by the bound
            if e.close_seen_at is None or e.close_seen_at > due:
                seen = "never" if e.close_seen_at is None else f"at t={e.close_seen_at:.3f}"
                self.violation(
                    f"port {pid:x}: its partner {e.partner:x} ended at t={p.ended_at:.3f}, "
                    f"close came {seen} (bound {bound} s)"
                )
        if cycle:
            self.log(f"{len(cycle)} ends unreachable in transfer cycles")
        for rt in self.runtimes.values():
            if not rt.alive:
                continue
            left = {
                pid: x
                for pid, x in rt.proto.entries.items()
                if pid not in cycle and (not isinstance(x, Relay) or x.partner not in cycle)
            }
            relays = sum(1 for x in left.values() if isinstance(x, Relay) and rt.proto.is_forwarding(x))
            if relays:
                self.violation(f"{rt.name} kept {relays} relays after every port closed")
            # the documented limit: a trip can leave relays that forward nothing (both
            # ends beyond one connection); they go with their connection
            self.result.stale_relays += sum(1 for x in left.values() if isinstance(x, Relay)) - relays
            ends = [x for x in left.values() if isinstance(x, PortEnd)]
            if ends:
                self.violation(f"{rt.name} kept {len(ends)} ends after every port closed")


def run(config: PortSimConfig, protocol: ProtocolFactory = PortsProtocol) -> PortSimResult:
    """Run one simulation (``protocol`` makes each runtime's protocol: tests pass broken ones)."""
    return PortSimulation(config, protocol).run()


def describe(config: PortSimConfig) -> str:
    return (
        f"seed={config.seed} runtimes={config.runtimes} steps={config.steps} "
        f"window={config.window} replay: {replay_command(config)}"
    )
