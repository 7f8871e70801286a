"""Watch resume after a node restart with N writes missed: time to catch up, events = writes.

    .venv/bin/python bench/watch_bench.py [--quick] [--rounds R] [-n N]

A durable node runs in a child process (the peer benchmarks' ``statesync_side``
child, tcp loopback). Each round: a blocking ``Client`` watches ``m``, takes
one event (its resume token) and stops watching; N writes are made (``set_many``
batches of 500: one op, one event, per key); the node process is stopped and
started again on the same data folder; then ``watch("m", resume=token)`` and
the time until all N events arrived is measured, and the events are compared
with the writes made (key and value, in order). Beside it, in the same run on
the same node: a fresh ``watch("m")`` (no resume), whose start carries the
whole N-key subtree: what a watcher got before (one ``lagged`` with the state).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "peers"))

from _common import free_port, reap
from statesync_side import _peer

from statesync import Client


def round_(n: int, data_dir: str, r: int) -> tuple[float, float, int]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = {"node_id": "w", "listen": ["tcp://127.0.0.1:*"], "client": endpoint, "data_dir": data_dir}
    child, _ = _peer(config)
    made = [(("m", f"k{i}"), f"r{r}-{i}") for i in range(n)]
    try:
        with Client(endpoint, connect_timeout_s=10) as client, client.watch("m") as watch:
            client.set(("m", "start"), r)
            event = watch.get(timeout=10)
            assert event is not None
            token = event.resume
        with Client(endpoint, connect_timeout_s=10) as client:
            for start in range(0, n, 500):
                client.set_many(made[start : start + 500])
    finally:
        reap(child)  # the node stops; its data folder stays
    child, _ = _peer(config)
    try:
        with Client(endpoint, connect_timeout_s=10) as client:
            t0 = time.perf_counter()
            with client.watch("m", resume=token) as watch:
                got = []
                while len(got) < n:
                    ev = watch.get(timeout=30)
                    assert ev is not None, f"only {len(got)} of {n} events came"
                    got.append(ev)
                catch_up_s = time.perf_counter() - t0
                extra = watch.get(timeout=0.2)
            assert extra is None, f"an event beyond the writes made: {extra}"
            assert [(e.path, e.value) for e in got] == made, "the events are not the writes made"
            assert watch.lag_count == 0
            t1 = time.perf_counter()
            with client.watch("m") as fresh:
                assert isinstance(fresh.initial, dict) and len(fresh.initial) >= n
            subtree_s = time.perf_counter() - t1
        return catch_up_s, subtree_s, len(got)
    finally:
        reap(child)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="1,000 writes missed, 1 round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("-n", type=int, default=None, help="writes missed (default 10,000)")
    args = parser.parse_args()
    n = args.n or (1_000 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 3)
    catch_ups: list[float] = []
    subtrees: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            catch_up_s, subtree_s, events = round_(n, str(Path(tmp) / f"w{r}"), r)
            catch_ups.append(catch_up_s)
            subtrees.append(subtree_s)
            print(
                f"round {r + 1}: {n} writes missed, {events} events delivered after the restart "
                f"in {catch_up_s * 1000:7.1f} ms ({events / catch_up_s:,.0f} events/s); "
                f"a fresh watch's {n}-key subtree {subtree_s * 1000:6.1f} ms",
                flush=True,
            )
    cu, st = statistics.median(catch_ups), statistics.median(subtrees)
    print(f"median: catch up {cu * 1000:.1f} ms for {n} events = {n} writes made; fresh subtree {st * 1000:.1f} ms; ratio {cu / st:.2f}x")


if __name__ == "__main__":
    main()
