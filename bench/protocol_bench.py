"""Protocol benchmark: simulator speed and what the protocol puts on the wire.

    python bench/protocol_bench.py           # full run (catch-up out of 1M writes)
    python bench/protocol_bench.py --quick   # smaller sizes

Prints:
- simulated steps per second (the suite's fault mix, 5000-step runs);
- messages and bytes per write in steady state, 3 nodes, no faults;
- idle anti-entropy traffic per peer pair at the default sync interval;
- catch-up bytes for a replica missing k = 100 writes out of N = 10k and N = 1M.

Bytes are exact: every message is encoded with the wire layer as the node
sends it (one frame per link per output, compressed when it pays).
"""

from __future__ import annotations

import argparse
import random
import string
import time

from statesync import wire
from statesync.core import Message, Now, Replica, ReplicaLimits, Replicator, ReplicatorConfig
from statesync.testing._sim import config_for_seed, run

T = 1_700_000_000_000


class Wire:
    """Replicators wired by hand; every send is encoded and counted."""

    def __init__(self, reps: dict[str, Replicator], compression: wire.Compression | None = wire.DEFAULT_COMPRESSION) -> None:
        self.reps = reps
        self.compression = compression
        self.t = 0.0
        self.links: dict[tuple[str, int], tuple[str, int]] = {}
        self.messages = 0
        self.bytes = 0
        self.pair_bytes: dict[frozenset[str], int] = {}
        self._next = 1

    def now(self) -> Now:
        return Now(self.t, T + int(self.t * 1000))

    def connect(self, a: str, b: str) -> None:
        la, lb = self._next, self._next + 1
        self._next += 2
        self.links[(a, la)] = (b, lb)
        self.links[(b, lb)] = (a, la)
        self.reps[b].connected(lb, active=False, now=self.now())
        self.reps[a].connected(la, active=True, now=self.now())

    def pump(self) -> None:
        while True:
            moved = False
            for node, rep in self.reps.items():
                out = rep.take_output()
                per_link: dict[int, list[Message]] = {}
                for link, msg in out.sends:
                    per_link.setdefault(link, []).append(msg)
                for link, msgs in per_link.items():
                    dest = self.links.get((node, link))
                    if dest is None:
                        continue
                    frame = wire.encode_frame(msgs, compression=self.compression)
                    self.messages += len(msgs)
                    self.bytes += len(frame)
                    pair = frozenset((node, dest[0]))
                    self.pair_bytes[pair] = self.pair_bytes.get(pair, 0) + len(frame)
                    for msg in wire.decode_frame(frame).messages:
                        self.reps[dest[0]].received(dest[1], msg, self.now())  # type: ignore[arg-type]
                    moved = True
            if not moved:
                return

    def advance(self, dt: float) -> None:
        self.t += dt
        for rep in self.reps.values():
            rep.tick(self.now())
        self.pump()


def make(ids: list[str], config: ReplicatorConfig | None = None, log_ops_max: int = 2_000_000) -> dict[str, Replicator]:
    return {
        i: Replicator(
            Replica(i, limits=ReplicaLimits(log_ops_max=log_ops_max)),
            config=config or ReplicatorConfig(),
            rand=lambda: 0.5,
            known_peers=[j for j in ids if j != i],
        )
        for i in ids
    }


def sim_steps_per_s(seeds: int) -> float:
    steps = 0
    t = time.perf_counter()
    for seed in range(seeds):
        cfg = config_for_seed(seed)
        run(cfg)
        steps += cfg.steps
    return steps / (time.perf_counter() - t)


def steady_state(writes: int, per_output: int) -> tuple[float, float]:
    """3 nodes, writes spread over them, ``per_output`` writes per flush."""
    w = Wire(make(["a", "b", "c"]))
    w.connect("a", "b")
    w.connect("b", "c")
    w.connect("a", "c")
    w.pump()
    w.messages = w.bytes = 0
    names = ["a", "b", "c"]
    for i in range(writes):
        rep = w.reps[names[i % 3]]
        rep.write(("app", f"k{i % 1000}"), i, now=w.now())
        if i % per_output == per_output - 1:
            w.pump()
            w.advance(0.001)
    w.pump()
    return w.messages / writes, w.bytes / writes


def idle_traffic(seconds: float) -> float:
    w = Wire(make(["a", "b"]))
    w.connect("a", "b")
    w.pump()
    w.advance(5.0)
    w.pair_bytes.clear()
    start = w.t
    while w.t - start < seconds:
        w.advance(0.1)
    return sum(w.pair_bytes.values()) / (w.t - start)


def catch_up(n: int, k: int, *, compression: wire.Compression | None = wire.DEFAULT_COMPRESSION, random_values: bool = False) -> tuple[int, int]:
    """Bytes (and messages) to bring a replica missing the last k of n writes up to date."""
    rng = random.Random(1)
    src = Replica("a", limits=ReplicaLimits(log_ops_max=n + 1))
    for i in range(n):
        value = "".join(rng.choices(string.ascii_letters, k=8)) if random_values else "v"
        src.put(("data", f"k{i}"), value, T)
    lagging = Replica("b", limits=ReplicaLimits(log_ops_max=n + 1))
    ops = list(src.log)
    for op in ops[: n - k]:
        lagging.receive(op)
    reps = {
        "a": Replicator(src, rand=lambda: 0.5, known_peers=["b"]),
        "b": Replicator(lagging, rand=lambda: 0.5, known_peers=["a"]),
    }
    w = Wire(reps, compression)
    w.connect("b", "a")
    w.pump()
    assert lagging.vv == src.vv and lagging.digest() == src.digest()
    return w.bytes, w.messages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    big = 100_000 if args.quick else 1_000_000
    print("# statesync protocol benchmark")
    print(f"simulated steps/s (suite fault mix, 5000-step runs):    {sim_steps_per_s(3 if args.quick else 10):>10,.0f}")
    for per_output in (1, 100):
        msgs, nbytes = steady_state(3000, per_output)
        print(f"steady state, 3 nodes, {per_output:>3} write(s) per flush: {msgs:5.2f} messages and {nbytes:6.1f} bytes per write")
    print(f"idle anti-entropy, one peer pair, sync_interval_s=2:  {idle_traffic(120):8.1f} bytes/s")
    small_bytes, small_msgs = catch_up(10_000, 100)
    big_bytes, big_msgs = catch_up(big, 100)
    print(f"catch-up, k=100 missing of N=10,000:   {small_bytes:7,} bytes in {small_msgs} messages")
    print(f"catch-up, k=100 missing of N={big:,}: {big_bytes:7,} bytes in {big_msgs} messages  (ratio {big_bytes / small_bytes:.2f}x)")
    for label, kwargs in (("uncompressed", {"compression": None}), ("random 8-char values, zstd", {"random_values": True}), ("random values, uncompressed", {"compression": None, "random_values": True})):
        a, _ = catch_up(10_000, 100, **kwargs)  # type: ignore[arg-type]
        b, _ = catch_up(big, 100, **kwargs)  # type: ignore[arg-type]
        print(f"catch-up, k=100, {label}: N=10,000 {a:,} bytes, N={big:,} {b:,} bytes ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
