"""Child processes for the storage process tests. Each ends by itself.

    _child.py writer DATA_DIR DURABILITY OPS_MAX DEADLINE_S KEYS SNAPSHOT_EVERY CHUNK_BYTES
        Restores node "n" from DATA_DIR and keeps writing: puts of key
        k<seq % KEYS> at wall time seq ms, appended in batches of 1 to 7, and
        a snapshot about every SNAPSHOT_EVERY ops (stored in chunks of
        CHUNK_BYTES). After each ``append`` returns it prints the seq of every
        op in it, one per line; after each ``save_snapshot`` returns, "s <seq>".
        Stops after OPS_MAX more ops or DEADLINE_S seconds.
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


def write_op(replica: Replica, seq: int, keys: int) -> object:
    """The deterministic write number ``seq`` (the test replays the same ones)."""
    return replica.put(("k", str(seq % keys)), {"seq": seq, "tail": [seq, "x"]}, seq)


def writer(
    data_dir: str,
    durability: str,
    ops_max: int,
    deadline_s: float,
    keys: int,
    snapshot_every: int,
    chunk_bytes: int,
) -> None:
    end = time.monotonic() + deadline_s
    store = SqliteStore(data_dir, NODE_ID, durability=durability, snapshot_chunk_bytes=chunk_bytes)
    loaded = store.load()
    replica = Replica.restore(NODE_ID, loaded.snapshot, loaded.ops, hlc=loaded.hlc)
    out = sys.stdout
    written = 0
    batch = 1
    while written < ops_max and time.monotonic() < end:
        ops = [write_op(replica, replica.seq + 1, keys) for _ in range(batch)]
        store.append(ops)  # type: ignore[arg-type]
        out.write("".join(f"{o.seq}\n" for o in ops))  # type: ignore[attr-defined]
        out.flush()
        before = written
        written += batch
        if written // snapshot_every != before // snapshot_every:
            store.save_snapshot(replica.snapshot())
            out.write(f"s {replica.seq}\n")
            out.flush()
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
        writer(args[0], args[1], int(args[2]), float(args[3]), *map(int, args[4:7]))
    elif cmd == "holder":
        holder(args[0], float(args[1]))
    elif cmd == "try-open":
        try_open(args[0])
    else:
        raise SystemExit(f"unknown command {cmd!r}")
