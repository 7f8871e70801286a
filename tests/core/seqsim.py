"""Helpers the sequence-type tests share: delta replay and a random multi-replica run."""

from __future__ import annotations

import gzip
import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st

from statesync.core._errors import InvalidOperation

_ROOT = pathlib.Path(__file__).resolve().parents[2]
# ../shared beside the clone (CI); a worktree one level deeper finds it one more up
TRACES = next(
    (
        p / "shared" / "data" / "editing-traces"
        for p in (_ROOT.parent, _ROOT.parent.parent)
        if (p / "shared" / "data" / "editing-traces").is_dir()
    ),
    _ROOT.parent / "shared" / "data" / "editing-traces",
)


def load_trace(name: str) -> dict[str, Any]:
    path = TRACES / name
    if not path.exists():
        pytest.skip(f"editing trace {path} is absent (CI lays shared/ beside the clone)")
    with gzip.open(path) as f:
        data: dict[str, Any] = json.load(f)
    return data


def apply_delta(value: Any, delta: list[dict[str, object]]) -> Any:
    """``value`` (str or list) after a Yjs-style delta."""
    out = value[:0]
    at = 0
    for step in delta:
        if "retain" in step:
            n = step["retain"]
            assert isinstance(n, int) and n > 0
            out += value[at : at + n]
            at += n
        elif "delete" in step:
            n = step["delete"]
            assert isinstance(n, int) and n > 0 and at + n <= len(value)
            at += n
        else:
            ins = step["insert"]
            out += ins
    assert at <= len(value)
    return out + value[at:]


# A schedule: a list of steps; each either a local edit on a replica or a delivery.
step = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 3), st.floats(0, 1), st.integers(0, 5)),
    st.tuples(st.just("deliver"), st.integers(0, 3), st.integers(0, 10_000), st.booleans()),
)
schedules = st.lists(step, min_size=1, max_size=60)


def run_schedule(
    n_replicas: int,
    schedule: list[tuple[Any, ...]],
    edit: Callable[[int, float, int, tuple[str, int]], Any],
    deliver: Callable[[int, Any], None],
) -> list[Any]:
    """Run ``schedule``: ``edit(replica, frac, k, dot)`` returns an op or None; ``deliver(replica, op)``.

    Returns every op made, in creation order. A delivery picks an op by index
    (mod the count) and may deliver it twice.
    """
    ops: list[Any] = []
    seqs = [0] * n_replicas
    for s in schedule:
        r = s[1] % n_replicas
        if s[0] == "edit":
            seqs[r] += 1
            op = edit(r, s[2], s[3], (f"r{r}", seqs[r]))
            if op is None:
                seqs[r] -= 1
            else:
                ops.append(op)
        elif ops:
            op = ops[s[2] % len(ops)]
            deliver(r, op)
            if s[3]:
                deliver(r, op)
    return ops


def sync_all(receivers: list[Callable[[Any], None]], ops: list[Any], rnd: Any) -> None:
    """Deliver every op to every replica, shuffled, half of them twice."""
    for receive in receivers:
        order = ops + rnd.sample(ops, len(ops) // 2)
        rnd.shuffle(order)
        for op in order:
            receive(op)


def renamed(edit: Callable[[int, float, int, tuple[str, int]], Any], suffix: str) -> Callable[[int, float, int, tuple[str, int]], Any]:
    """``edit`` with its dots' origins renamed (a second phase must not reuse dots)."""
    return lambda r, frac, k, dot: edit(r, frac, k, (dot[0] + suffix, dot[1]))


def assert_rejected(obj: Any, call: Callable[[Any], Any], where: str) -> None:
    """``call(obj)`` raises a one-line InvalidOperation naming ``where`` and changes nothing."""
    before = obj.to_snapshot()
    with pytest.raises(InvalidOperation) as exc:
        call(obj)
    assert "\n" not in str(exc.value) and exc.value.where == where
    assert obj.to_snapshot() == before


def compacted_snapshots_agree(types: list[Any], cls: Any) -> Any:
    """Compact every replica at the shared (stable) vector; their snapshots are equal and load back.

    Returns the type loaded from the snapshot.
    """
    for t in types:
        assert t.pending_count == 0
    stable = dict(types[0].applied)
    for t in types:
        t.compact(stable)
    snaps = [t.to_snapshot() for t in types]
    assert all(s == snaps[0] for s in snaps)
    loaded = cls.from_snapshot(snaps[0])
    assert loaded.value() == types[0].value() and loaded.to_snapshot() == snaps[0]
    return loaded
