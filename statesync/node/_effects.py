"""The effects applier: carries out the replicator's ``Output``, in the contract's order.

The replicator (``statesync.core.Replicator``) is a pure state machine: a
write, a message from a peer or a tick leaves its effects in an ``Output``
that someone must carry out. This module is that someone, the only one: the
node, the simulator (``statesync.testing``) and the stateful test of the
replicator all hand their outputs to an :class:`EffectsApplier`, so the order
they are tested in is the order the node runs them in.

The order (the Output contract):

1. **make durable**: an installed snapshot and the new ops
   (:meth:`EffectsApplier.commit_for` says what: a :class:`Commit`; the
   caller writes it, at once or in a worker thread, and only then goes on),
   then, now and then, a checkpoint (:meth:`EffectsApplier.checkpoint_for`,
   asked once the commit is written: a full snapshot, see
   :class:`Checkpoints`). So a write returns, a peer sees an op and an ack
   covers an op only once it is committed;
2. **send** the messages, grouped per link, the urgent ones (acks,
   handshakes, goodbyes) first and apart, so a frame of them never waits
   behind bulk;
3. **close** the links the replicator gave up on;
4. **resolve** the writes whose concern completed or failed;
5. **publish** the changes to watches;
6. membership (peers up and down, members discovered) and notices.

Steps 2 to 6 are :meth:`EffectsApplier.apply`; :meth:`EffectsApplier.run`
does all of it synchronously (the simulator, the tests, an in-memory node).

No trio, zmq, clock or randomness here: the applier only calls three narrow
interfaces, :class:`DurableLog` (a store), :class:`Sender` (the links) and
:class:`Publisher` (waiters, watches, membership), which the node implements
over SQLite, ports and trio, and the simulator over in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from statesync.core import (
    Ack,
    Bye,
    Change,
    Hello,
    LinkId,
    Message,
    Op,
    Output,
    Refuse,
    Replica,
    Snapshot,
    Welcome,
    WriteTicket,
)

URGENT: tuple[type, ...] = (Ack, Hello, Welcome, Refuse, Bye)
"""Messages sent before, and apart from, the bulk of a link's messages."""


class DurableLog(Protocol):
    """Where committed ops and snapshots go (``statesync.storage.Store`` is one)."""

    def append(self, ops: Sequence[Op]) -> None: ...

    def save_snapshot(self, snapshot: Snapshot) -> None: ...


class Sender(Protocol):
    """The links to peers, by id."""

    def send(self, link: LinkId, messages: list[Message], urgent: bool) -> None:
        """Send ``messages`` (in order) on ``link``; a link that is gone drops them."""

    def close(self, link: LinkId, reason: str) -> None:
        """Close ``link`` once what was sent on it went out."""


class Publisher(Protocol):
    """Everyone waiting on the replicator's results."""

    def resolve(self, ticket: WriteTicket) -> None:
        """A write's concern completed or failed (``ticket.status`` says which)."""

    def publish(self, changes: list[Change]) -> None:
        """Changes to the tree, in order, for watches."""

    def peers(self, up: list[str], down: list[str], discovered: list[tuple[str, tuple[str, ...]]]) -> None:
        """Peers linked, peers gone, members learned through gossip (node id, endpoints)."""

    def notice(self, text: str) -> None:
        """A human-readable event worth a log line."""


@attrs.frozen
class Commit:
    """What one output needs made durable, in this order, before anything else of it happens."""

    snapshot: Snapshot | None
    """A snapshot the replica installed: it replaces the durable state."""
    ops: Sequence[Op]

    def write(self, log: DurableLog) -> None:
        if self.snapshot is not None:
            log.save_snapshot(self.snapshot)
        if self.ops:
            log.append(self.ops)


class Checkpoints:
    """When a durable replica writes a checkpoint.

    Once the ops logged since the last one reach the larger of ``every_ops``
    and the number of leaves: the durable log stays within about twice the
    state, and the O(state) cost of a snapshot is spread over as many writes.
    ``logged_ops`` is what the log already holds (after a restart).
    """

    def __init__(self, replica: Replica, every_ops: int, logged_ops: int = 0) -> None:
        self._replica = replica
        self.every_ops = every_ops
        self.since = logged_ops

    def after(self, out: Output) -> Snapshot | None:
        if out.snapshot is not None:
            self.since = 0
        self.since += len(out.persist)
        if self.since >= max(self.every_ops, self._replica.tree.leaf_count):
            self.since = 0
            return self._replica.snapshot()
        return None

    def snapshot(self) -> Snapshot:
        return self._replica.snapshot()

    def worth_compacting(self) -> bool:
        """Whether the logged ops outnumber the tree's leaves: a checkpoint would shrink the store."""
        return self.since > self._replica.tree.leaf_count


class EffectsApplier:
    """Carries out outputs: :meth:`commit_for`, write the commit, :meth:`checkpoint_for`, :meth:`apply`.

    ``checkpoints`` is None for a replica that keeps nothing durable (an
    in-memory node): :meth:`commit_for` then always returns None.
    """

    def __init__(
        self,
        sender: Sender,
        publisher: Publisher,
        checkpoints: Checkpoints | None,
        urgent: tuple[type, ...] = URGENT,
    ) -> None:
        self._sender = sender
        self._publisher = publisher
        self._checkpoints = checkpoints
        self._urgent = urgent
        self.commits = 0
        """Outputs that carried ops to commit (counted on an in-memory node too)."""

    @property
    def durable(self) -> bool:
        return self._checkpoints is not None

    def commit_for(self, out: Output) -> Commit | None:
        """Step 1: what ``out`` needs made durable (None: nothing), before :meth:`apply`."""
        if out.persist:
            self.commits += 1
        if self._checkpoints is None or (out.snapshot is None and not out.persist):
            return None
        return Commit(out.snapshot, out.persist)

    def checkpoint_for(self, out: Output) -> Snapshot | None:
        """Once ``out``'s commit is written: a checkpoint to save now, if one is due.

        (Asked after the commit, not with it: the snapshot is then taken
        from the replica as it is once the commit's write returned.)
        """
        checkpoints = self._checkpoints
        return None if checkpoints is None else checkpoints.after(out)

    def compaction(self) -> Snapshot | None:
        """A checkpoint to write now if it would shrink the durable log (None: it would not,
        or nothing is durable). It covers every op the replica holds, committed or not."""
        checkpoints = self._checkpoints
        if checkpoints is None or not checkpoints.worth_compacting():
            return None
        return checkpoints.snapshot()

    def compacted(self) -> None:
        """The checkpoint :meth:`compaction` gave was written: count from zero again."""
        if self._checkpoints is not None:
            self._checkpoints.since = 0

    def apply(self, out: Output) -> None:
        """Steps 2 to 6, once what :meth:`commit_for` returned is durable."""
        if out.sends:
            self._send(out.sends)
        sender = self._sender
        for link, reason in out.closes:
            sender.close(link, reason)
        publisher = self._publisher
        for ticket in out.completed:
            publisher.resolve(ticket)
        for ticket in out.failed:
            publisher.resolve(ticket)
        if out.changes:
            publisher.publish(out.changes)
        if out.peers_up or out.peers_down or out.discovered:
            publisher.peers(out.peers_up, out.peers_down, out.discovered)
        for notice in out.notices:
            publisher.notice(notice)

    def run(self, out: Output, log: DurableLog | None) -> None:
        """All of it at once: commit ``out`` to ``log`` (and a checkpoint), then :meth:`apply` it."""
        commit = self.commit_for(out)
        if log is not None:
            if commit is not None:
                commit.write(log)
            checkpoint = self.checkpoint_for(out)
            if checkpoint is not None:
                log.save_snapshot(checkpoint)
        self.apply(out)

    def _send(self, sends: list[tuple[LinkId, Message]]) -> None:
        by_link: dict[LinkId, list[Message]] = {}
        for link, msg in sends:
            msgs = by_link.get(link)
            if msgs is None:
                by_link[link] = [msg]
            else:
                msgs.append(msg)
        urgent_types = self._urgent
        send = self._sender.send
        for link, msgs in by_link.items():
            urgent = [m for m in msgs if isinstance(m, urgent_types)]
            if not urgent:
                send(link, msgs, False)
                continue
            send(link, urgent, True)
            if len(urgent) < len(msgs):
                send(link, [m for m in msgs if not isinstance(m, urgent_types)], False)
