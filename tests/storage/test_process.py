"""Real processes: SIGKILL during a stream of appends, and the data dir lock."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from statesync.core import Replica
from statesync.storage import DataDirInUse, Durability, SqliteStore
from tests.storage._child import NODE_ID, write_op

CHILD = str(Path(__file__).with_name("_child.py"))
WAIT_S = 20.0  # bound on any wait for a child; generous for a busy CI machine

pytestmark = pytest.mark.process


class Child:
    """A child process whose stdout is read line by line with bounded waits."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        self._buf = b""
        self.eof = False

    def _read(self, timeout_s: float) -> None:
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout_s))
        if ready:
            chunk = os.read(self._fd, 1 << 16)
            if chunk:
                self._buf += chunk
            else:
                self.eof = True

    def lines(self) -> list[str]:
        """The complete lines received so far (a partial last line stays buffered)."""
        *done, self._buf = self._buf.split(b"\n")
        return [line.decode() for line in done]

    def wait_lines(self, enough: int, timeout_s: float = WAIT_S) -> list[str]:
        """Lines until at least ``enough`` arrived, EOF, or the timeout."""
        got: list[str] = []
        end = time.monotonic() + timeout_s
        while len(got) < enough and not self.eof and time.monotonic() < end:
            self._read(end - time.monotonic())
            got.extend(self.lines())
        return got

    def drain(self, timeout_s: float = WAIT_S) -> list[str]:
        """Every line left until EOF (the process is dead or ending)."""
        end = time.monotonic() + timeout_s
        while not self.eof and time.monotonic() < end:
            self._read(end - time.monotonic())
        return self.lines()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=WAIT_S)

    def close(self) -> None:
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


def reference(seq: int, keys: int) -> Replica:
    r = Replica(NODE_ID)
    for s in range(1, seq + 1):
        write_op(r, s, keys)
    return r


SCENARIOS = {
    # many small appends, a small snapshot now and then: kills land in appends
    "appends": ("50", "97", str(16 << 10)),
    # a snapshot of up to 2000 paths in ~60 rows every ~20 ops: kills land in snapshots too
    "snapshots": ("2000", "20", "1024"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("durability", [Durability.PROCESS, Durability.FSYNC])
def test_sigkill_mid_stream_loses_no_committed_op(
    tmp_path: Path, durability: Durability, scenario: str
) -> None:
    keys, snapshot_every, chunk_bytes = SCENARIOS[scenario]
    rng = random.Random(f"crash-{durability.value}-{scenario}")
    committed: list[int] = []
    resume = 0
    for _ in range(3):
        child = Child(
            "writer", str(tmp_path), durability.value, "200000", str(WAIT_S),
            keys, snapshot_every, chunk_bytes,
        )  # fmt: skip
        try:
            lines = child.wait_lines(rng.randint(40, 400))
            assert lines, "the writer printed nothing"
            assert not child.eof, "the writer ended before it was killed"
            child.kill()
            lines += child.drain()  # printed before the kill: committed too
        finally:
            child.close()
        assert child.proc.returncode == -signal.SIGKILL
        seqs = [int(x) for x in lines if not x.startswith("s ")]
        snapped = [int(x[2:]) for x in lines if x.startswith("s ")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert not committed or seqs[0] > committed[-1]
        committed += seqs

        with SqliteStore(tmp_path, NODE_ID, durability=durability) as store:  # the lock was released
            loaded = store.load()
        snap_seq = loaded.snapshot.vv.get(NODE_ID, 0) if loaded.snapshot else 0
        if snapped:  # a snapshot whose save returned is there (or a newer one)
            assert snap_seq >= snapped[-1]
        log_seqs = [o.seq for o in loaded.ops]
        # consistent: the log continues the snapshot without a gap or a repeat
        assert log_seqs == list(range(snap_seq + 1, snap_seq + 1 + len(log_seqs)))
        restored = Replica.restore(NODE_ID, loaded.snapshot, loaded.ops, hlc=loaded.hlc)
        # every op whose append returned is there (a few more may be: committed, not yet printed)
        assert restored.seq >= committed[-1]
        assert restored.seq - committed[-1] <= 7  # at most one batch in flight
        # nothing half-written: the log ends on a batch boundary (batches of 1, 2, ..., 7, 1, ...)
        boundaries, total = {0}, 0
        while total < restored.seq - resume:
            total += len(boundaries) % 7 or 7
            boundaries.add(total)
        assert restored.seq - resume in boundaries
        expected = reference(restored.seq, int(keys))
        assert restored.digest() == expected.digest()
        assert loaded.hlc == expected.clock.last
        # the next round resumes from here: a seq is never reused
        committed.append(restored.seq)
        resume = restored.seq


def test_lock_across_processes_and_release_on_death(tmp_path: Path) -> None:
    holder = Child("holder", str(tmp_path), str(WAIT_S))
    try:
        assert holder.wait_lines(1) == ["ready"]
        with pytest.raises(DataDirInUse, match=f"in use by process {holder.proc.pid}"):
            SqliteStore(tmp_path, NODE_ID)
        holder.kill()  # SIGKILL: no chance to release anything itself
    finally:
        holder.close()
    with SqliteStore(tmp_path, NODE_ID):
        # and the other way round: a second process is refused while this one holds it
        other = Child("try-open", str(tmp_path))
        try:
            out = other.wait_lines(1)
        finally:
            other.close()
        assert len(out) == 1 and out[0].startswith("in-use: ") and f"process {os.getpid()}" in out[0]
    other = Child("try-open", str(tmp_path))
    try:
        assert other.wait_lines(1) == ["opened"]
    finally:
        other.close()


def test_holder_releases_the_lock_when_it_ends_by_itself(tmp_path: Path) -> None:
    holder = Child("holder", str(tmp_path), str(WAIT_S))
    try:
        assert holder.wait_lines(1) == ["ready"]
        assert holder.proc.stdin is not None
        holder.proc.stdin.close()  # asks it to end
        assert holder.drain() == []
        assert holder.proc.wait(timeout=WAIT_S) == 0
    finally:
        holder.close()
    SqliteStore(tmp_path, NODE_ID).close()
