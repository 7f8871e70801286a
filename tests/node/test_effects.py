"""The effects applier: the Output contract's order, the checkpoint policy, and its purity."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from statesync.core import (
    Ack,
    Bye,
    Change,
    Hello,
    Message,
    Now,
    Op,
    Ops,
    Output,
    Replica,
    Replicator,
    Snapshot,
    WriteTicket,
)
from statesync.node import _effects
from statesync.node._effects import Checkpoints, EffectsApplier

T = 1_700_000_000_000


class Recorder:
    """Every interface of the applier, writing what it is asked into one journal."""

    def __init__(self) -> None:
        self.journal: list[tuple[Any, ...]] = []

    def append(self, ops: Sequence[Op]) -> None:
        self.journal.append(("append", [op.seq for op in ops]))

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self.journal.append(("snapshot", dict(snapshot.vv)))

    def send(self, link: int, messages: list[Message], urgent: bool) -> None:
        self.journal.append(("send", link, [type(m).__name__ for m in messages], urgent))

    def close(self, link: int, reason: str) -> None:
        self.journal.append(("close", link, reason))

    def resolve(self, ticket: WriteTicket) -> None:
        self.journal.append(("resolve", ticket.op.seq, ticket.status.value))

    def publish(self, changes: list[Change]) -> None:
        self.journal.append(("publish", [".".join(c.path) for c in changes]))

    def peers(self, up: list[str], down: list[str], discovered: list[tuple[str, tuple[str, ...]]]) -> None:
        self.journal.append(("peers", up, down, discovered))

    def notice(self, text: str) -> None:
        self.journal.append(("notice", text))


def written(n: int) -> tuple[Replicator, Output]:
    """A replicator after n local writes (ack="local"), and their output."""
    rep = Replicator(Replica("a"), rand=lambda: 0.5, now=Now(0.0, T))
    rep.record_changes = True
    for i in range(n):
        rep.write(("k", str(i)), i, ack="local", timeout_s=1.0, now=Now(0.0, T))
    return rep, rep.take_output()


def test_contract_order_commit_then_send_close_resolve_publish() -> None:
    rep, out = written(2)
    hello = Hello("a", 1, {}, T)
    out.sends = [(1, Ops(tuple(out.persist))), (2, Bye()), (1, Ack({"b": 1})), (1, hello), (2, Ops(()))]
    out.closes = [(3, "gone")]
    out.peers_up, out.discovered = ["b"], [("c", ("tcp://c",))]
    out.notices = ["hello"]
    rec = Recorder()
    applier = EffectsApplier(rec, rec, Checkpoints(rep.replica, every_ops=1000))
    applier.run(out, rec)
    assert rec.journal == [
        ("append", [1, 2]),
        ("send", 1, ["Ack", "Hello"], True),  # urgent first, and apart from the bulk
        ("send", 1, ["Ops"], False),
        ("send", 2, ["Bye"], True),
        ("send", 2, ["Ops"], False),
        ("close", 3, "gone"),
        ("resolve", 1, "done"),
        ("resolve", 2, "done"),
        ("publish", ["k.0", "k.1"]),
        ("peers", ["b"], [], [("c", ("tcp://c",))]),
        ("notice", "hello"),
    ]
    assert applier.commits == 1


def test_commit_is_separate_from_the_rest() -> None:
    """What a durable node does: the commit (written elsewhere, later), then apply."""
    rep, out = written(1)
    rec = Recorder()
    applier = EffectsApplier(rec, rec, Checkpoints(rep.replica, every_ops=1000))
    commit = applier.commit_for(out)
    assert commit is not None and [op.seq for op in commit.ops] == [1] and commit.snapshot is None
    assert applier.checkpoint_for(out) is None  # 1 op logged, checkpoints every 1000
    assert rec.journal == []  # nothing happens before the commit is written
    applier.apply(out)
    assert rec.journal == [("resolve", 1, "done"), ("publish", ["k.0"])]


def test_a_due_checkpoint_is_saved_after_the_ops_and_before_the_rest() -> None:
    rep, out = written(2)
    rec = Recorder()
    EffectsApplier(rec, rec, Checkpoints(rep.replica, every_ops=2)).run(out, rec)
    assert rec.journal[:3] == [("append", [1, 2]), ("snapshot", {"a": 2}), ("resolve", 1, "done")]


def test_in_memory_commits_nothing_but_counts() -> None:
    _, out = written(3)
    rec = Recorder()
    applier = EffectsApplier(rec, rec, None)
    assert not applier.durable and applier.commit_for(out) is None and applier.commits == 1
    applier.run(out, rec)
    assert [e[0] for e in rec.journal] == ["resolve"] * 3 + ["publish"]


def test_checkpoint_after_every_ops_and_at_least_the_leaf_count() -> None:
    rep, out = written(5)
    checkpoints = Checkpoints(rep.replica, every_ops=4, logged_ops=0)
    snap = checkpoints.after(out)  # 5 ops logged >= max(4, 5 leaves)
    assert snap is not None and snap.vv == {"a": 5} and checkpoints.since == 0
    assert checkpoints.after(Output(persist=out.persist[:4])) is None  # 4 < 5 leaves
    assert checkpoints.after(Output(persist=out.persist[:1])) is not None
    restarted = Checkpoints(rep.replica, every_ops=4, logged_ops=4)  # the log already holds 4
    assert restarted.after(Output(persist=out.persist[:1])) is not None
    installed = Checkpoints(rep.replica, every_ops=4, logged_ops=4)
    assert installed.after(Output(snapshot=rep.replica.snapshot())) is None and installed.since == 0


def test_an_empty_output_commits_nothing() -> None:
    rep, _ = written(0)
    rec = Recorder()
    applier = EffectsApplier(rec, rec, Checkpoints(rep.replica, every_ops=1))
    assert applier.commit_for(Output(sends=[(1, Ack({}))])) is None
    assert applier.commits == 0


def test_the_applier_imports_no_trio_zmq_clock_or_randomness() -> None:
    """The simulator and the stateful test run it: it must stay pure."""
    tree = ast.parse(Path(_effects.__file__).read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "collections.abc", "typing", "attrs", "statesync.core"}, imported
