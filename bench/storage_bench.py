"""Storage benchmark: append throughput and snapshot save/load times.

    python bench/storage_bench.py                 # full run (snapshots of 100k and 1M paths)
    python bench/storage_bench.py --quick         # smaller sizes, for a smoke run
    python bench/storage_bench.py --dir /var/tmp  # where the data dirs go (default: the system temp dir)

Prints figures; never passes or fails. Appends are small put ops made by a
Replica (key ``user.k<i>``, an int value), in batches of 1, 100 and 1000,
each batch one ``append`` call (one transaction), in both durability modes;
the in-memory store is shown for comparison. FSYNC figures depend entirely on
the disk under ``--dir`` (and on whether it honours flushes): a tmpfs makes
fsync free, a virtual disk with a write-back cache makes it cheap.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from statesync.core import Op, Replica, Snapshot, Version
from statesync.storage import Durability, MemoryStore, SqliteStore, Store

WALL_MS = 1_700_000_000_000


def make_ops(n: int) -> list[Op]:
    r = Replica("node-a")
    return [r.put(("user", f"k{i}"), i, WALL_MS) for i in range(n)]


def append_rate(store: Store, ops: list[Op], batch: int, budget_s: float) -> tuple[float, int]:
    """ops/s appending ``ops`` in batches of ``batch`` until done or ``budget_s`` ran out."""
    batches = [ops[i : i + batch] for i in range(0, len(ops), batch)]
    append = store.append
    done = 0
    gc.collect()
    t0 = time.perf_counter()
    end = t0 + budget_s
    for b in batches:
        append(b)
        done += len(b)
        if time.perf_counter() > end:
            break
    return done / (time.perf_counter() - t0), done


def snapshot_of(n: int) -> Snapshot:
    entries = tuple(
        (("users", f"u{i:07d}", "name"), (Version(f"name-{i}", WALL_MS << 16 | i, "node-a", i + 1),))
        for i in range(n)
    )
    return Snapshot({"node-a": n}, (WALL_MS << 16) + n, entries)


def fs_of(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "-T", str(path)], capture_output=True, text=True, timeout=5, check=False
        ).stdout.splitlines()
        fields = out[-1].split()
        return f"{fields[0]} ({fields[1]})"
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--dir", default=None, help="parent of the temporary data dirs")
    args = parser.parse_args()
    quick = args.quick
    root = Path(tempfile.mkdtemp(prefix="statesync-storage-bench-", dir=args.dir))
    print(f"python {sys.version.split()[0]}, data dirs under {root} on {fs_of(root)}, {os.cpu_count()} cpus")
    try:
        run(root, quick)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, quick: bool) -> None:
    n_ops = 20_000 if quick else 200_000
    budget_s = 1.0 if quick else 3.0
    ops = make_ops(n_ops)
    print(f"\nappend: small put ops, one transaction per batch (each cell: up to {n_ops} ops or {budget_s:.0f} s)")
    print(f"{'store':<16}{'batch':>7}{'ops/s':>12}{'commits/s':>12}{'ops done':>10}")
    for name in ("memory", "sqlite process", "sqlite fsync"):
        for batch in (1, 100, 1000):
            if name == "memory":
                store: Store = MemoryStore("node-a")
            else:
                durability = Durability.FSYNC if name.endswith("fsync") else Durability.PROCESS
                store = SqliteStore(root / f"{name.split()[1]}-{batch}", "node-a", durability=durability)
            try:
                rate, done = append_rate(store, ops, batch, budget_s)
            finally:
                store.close()
            print(f"{name:<16}{batch:>7}{rate:>12,.0f}{rate / batch:>12,.0f}{done:>10,}")

    print("\nrestart: load a log of ops (no snapshot)")
    n_log = 20_000 if quick else 100_000
    with SqliteStore(root / "log", "node-a") as store:
        store.append(ops[:n_log])
    gc.collect()
    t0 = time.perf_counter()
    with SqliteStore(root / "log", "node-a") as store:
        loaded = store.load()
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    Replica.restore("node-a", loaded.snapshot, loaded.ops, hlc=loaded.hlc)
    t_restore = time.perf_counter() - t0
    print(f"{n_log:>9,} ops: open+load {t_load * 1000:,.0f} ms ({n_log / t_load:,.0f} ops/s), Replica.restore {t_restore * 1000:,.0f} ms")

    print("\nsnapshots: one version per path, ('users', 'u<i>', 'name') = 'name-<i>'")
    print(f"{'paths':>10}{'save s':>9}{'open+load s':>13}{'restore s':>11}{'chunks':>8}{'disk MB':>9}")
    for n in (10_000, 100_000) if quick else (100_000, 1_000_000):
        snap = snapshot_of(n)
        d = root / f"snap-{n}"
        with SqliteStore(d, "node-a") as store:
            store.append(ops[:1000])
            gc.collect()
            t0 = time.perf_counter()
            store.save_snapshot(snap)
            t_save = time.perf_counter() - t0
            stats = store.stats()
        del snap
        gc.collect()
        t0 = time.perf_counter()
        with SqliteStore(d, "node-a") as store:
            loaded = store.load()
        t_load = time.perf_counter() - t0
        assert loaded.snapshot is not None and len(loaded.snapshot.entries) == n
        t0 = time.perf_counter()
        Replica.restore("node-a", loaded.snapshot, loaded.ops, hlc=loaded.hlc)
        t_restore = time.perf_counter() - t0
        del loaded
        print(
            f"{n:>10,}{t_save:>9.2f}{t_load:>13.2f}{t_restore:>11.2f}"
            f"{stats['snapshot_chunks']:>8}{stats['disk_bytes'] / 1e6:>9.1f}"
        )


if __name__ == "__main__":
    main()
