"""Child processes for the storage process tests. Each ends by itself.

    _child.py writer DATA_DIR DURABILITY OPS_MAX DEADLINE_S
        Restores node "n" from DATA_DIR and keeps writing: puts of key
        k<seq % 50> = seq at wall time seq ms, appended in batches of 1 to 7,
        a snapshot every 97 ops. After each ``append`` returns it prints the
        seq of every op in it, one per line. Stops after OPS_MAX more ops or
        DEADLINE_S seconds.
    _child.py holder DATA_DIR DEADLINE_S
        Opens the store, prints "ready", and holds it until stdin closes or
        DEADLINE_S seconds pass.
    _child.py try-open DATA_DIR
        Tries to open the store; prints "opened" or "in-use: <message>".
"""

from __future__ import annotations

import select
import sys
import time

from statesync.core import Replica
from statesync.storage import DataDirInUse, SqliteStore

NODE_ID = "n"
KEYS = 50
SNAPSHOT_EVERY = 97


def write_op(replica: Replica, seq: int) -> object:
    """The deterministic write number ``seq`` (the test replays the same ones)."""
    return replica.put(("k", str(seq % KEYS)), {"seq": seq, "tail": [seq, "x"]}, seq)


def writer(data_dir: str, durability: str, ops_max: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    store = SqliteStore(data_dir, NODE_ID, durability=durability)
    loaded = store.load()
    replica = Replica.restore(NODE_ID, loaded.snapshot, loaded.ops, hlc=loaded.hlc)
    out = sys.stdout
    written = 0
    batch = 1
    while written < ops_max and time.monotonic() < end:
        ops = [write_op(replica, replica.seq + 1) for _ in range(batch)]
        store.append(ops)  # type: ignore[arg-type]
        out.write("".join(f"{o.seq}\n" for o in ops))  # type: ignore[attr-defined]
        out.flush()
        before = written
        written += batch
        if written // SNAPSHOT_EVERY != before // SNAPSHOT_EVERY:
            store.save_snapshot(replica.snapshot())
        batch = batch % 7 + 1
    store.close()


def holder(data_dir: str, deadline_s: float) -> None:
    with SqliteStore(data_dir, NODE_ID):
        print("ready", flush=True)
        end = time.monotonic() + deadline_s
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([sys.stdin], [], [], left)
            if ready and not sys.stdin.buffer.read1(4096):  # type: ignore[attr-defined]
                break


def try_open(data_dir: str) -> None:
    try:
        SqliteStore(data_dir, NODE_ID).close()
    except DataDirInUse as e:
        print(f"in-use: {e}", flush=True)
    else:
        print("opened", flush=True)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "writer":
        writer(args[0], args[1], int(args[2]), float(args[3]))
    elif cmd == "holder":
        holder(args[0], float(args[1]))
    elif cmd == "try-open":
        try_open(args[0])
    else:
        raise SystemExit(f"unknown command {cmd!r}")
