"""The node: the one place that wires core, wire, ports and storage together.

:class:`Node` is the public API (writes, reads, watches, broadcast channels,
sync, status) over one :class:`~statesync.core.Replicator`. The pieces it
wires, each in its own module:

- ``_link``: the links to peers (frames to and from each peer's port: a read
  and a send task per link);
- ``_dialer``: which peers to dial, re-dialing with one backoff;
- ``_effects``: the effects applier, which carries out the replicator's
  output in the contract's order (commit, then send, close, resolve,
  publish); the simulator and the stateful test run the same one;
- ``_flusher``: hands the output to the applier from trio (group commit in
  the store's thread on a durable node; at once on an in-memory one), and
  ``_timers``: the replicator's tick;
- ``_broadcast``: broadcast channels; ``_watch``: watches; ``_service``: the
  client endpoint; ``_faults``: fault injection (a testing handle);
- ``_lifecycle``: ``open_node``, which builds the dependencies (security,
  store, port runtime), runs the node's tasks and shuts it down.

Tasks (one trio nursery, all ended by leaving ``open_node``): accept (every
port a peer opens on a listen endpoint becomes a passive link), one dialer
task per peer endpoint, a read and a send task per link, the flusher, the
timer, and the client service.

Every replicator call happens in the trio thread; the store runs in one
worker thread at a time.
"""

from __future__ import annotations

import builtins
import inspect
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import attrs
import trio

from statesync import ports, wire
from statesync.core import (
    ABSENT,
    AckSpec,
    Change,
    Now,
    Op,
    Path,
    PathLike,
    RefuseReason,
    Replica,
    ReplicaLimits,
    Replicator,
    Value,
    WriteStatus,
    WriteTicket,
    as_path,
    op_size,
)
from statesync.errors import BadResumeToken, NodeClosedError
from statesync.node._broadcast import Broadcast, BroadcastChannel, Channels
from statesync.node._config import NodeConfig
from statesync.node._dialer import Dialer, Endpoints
from statesync.node._effects import Checkpoints, EffectsApplier
from statesync.node._faults import NodeFaults
from statesync.node._flusher import Flusher
from statesync.node._leases import Lease, LeaseManager, LeaseOpening, Presence
from statesync.node._link import LinkTable, quietly
from statesync.node._metrics import NodeMetrics, serve_metrics
from statesync.node._results import Conflict, Receipt
from statesync.node._resume import DATA_ID_META, Journal, new_data_id
from statesync.node._security import NodeSecurity
from statesync.node._service import serve_clients
from statesync.node._timers import tune_gc
from statesync.node._typedapi import AWSetHandle, CounterHandle, ListHandle, TextHandle, edit_of
from statesync.node._watch import Watch, WatchHub
from statesync.storage import Loaded, Store

T = TypeVar("T")

log = logging.getLogger("statesync.node")

# The node speaks one message the replicator does not know: broadcast channels' frames.
wire.register_message(Broadcast)


@attrs.define(eq=False)
class _Outlets:
    """The node's side of the effects applier's ``Publisher``: waiters, watches, membership."""

    node_id: str
    rep: Replicator
    hub: WatchHub
    dialer: Dialer
    journal: Journal | None
    waiters: dict[int, trio.Event] = attrs.field(factory=dict)

    def resolve(self, ticket: WriteTicket) -> None:
        event = self.waiters.pop(ticket.id, None)
        if event is not None:
            event.set()

    def publish(self, changes: list[Change]) -> None:
        if self.journal is None:
            self.hub.publish(changes)
            self.rep.record_changes = len(self.hub) > 0
        else:
            self.hub.publish(changes, self.journal.record(changes))

    def peers(self, up: list[str], down: list[str], discovered: list[tuple[str, tuple[str, ...]]]) -> None:
        self.dialer.on_peers(up, down, discovered)

    def notice(self, text: str) -> None:
        log.info("%s: %s", self.node_id, text)

    def wake_all(self) -> None:
        """Wake every waiting writer without resolving it (the disk-full alarm went on)."""
        for event in self.waiters.values():
            event.set()


class Node:
    """A running node. Make one with :func:`open_node`."""

    def __init__(
        self,
        config: NodeConfig,
        store: Store,
        loaded: Loaded,
        *,
        security: NodeSecurity,
        runtime: ports.PortRuntime,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.security = security
        self._runtime = runtime
        self._store = store
        self.instance = f"{os.getpid():x}-{random.getrandbits(48):012x}"
        replica = Replica.restore(
            config.node_id,
            loaded.snapshot,
            (),
            strategies=config.strategies(),
            max_drift_ms=int(config.max_drift_s * 1000),
            limits=ReplicaLimits(
                log_ops_max=config.log_ops_max,
                pending_ops_max=config.pending_ops_max,
                value=config.value_limits(),
            ),
            hlc=loaded.hlc,
        )
        self._journal = self._open_journal(replica, store, loaded)
        self._replica = replica
        self._rep = rep = Replicator(
            replica,
            config=config.replicator_config(),
            rand=random.Random().random,
            known_peers=[p for p in loaded.peers if p != config.node_id],
            instance=self.instance,
            now=self._now(),
        )
        self._faults = NodeFaults(config.faults)
        journal = self._journal
        tree = replica.tree
        self._hub = WatchHub(
            tree.get,
            config.watch_buffer_max,
            token=None if journal is None else journal.token,
            position=str if journal is None else journal.position,
            typed=lambda p: p in tree.typed_paths and replica.typed_value(p) is not None,
        )
        rep.record_changes = journal is not None
        self._links = LinkTable(
            config,
            rep,
            self._faults,
            now=self._now,
            flush=self._flush,
            mark_dirty=self._mark_dirty,
            on_broadcast=self._on_broadcast,
        )
        self._channels = Channels(config.node_id, config.frame_bytes_max, self._links.broadcast)
        self._dialer = Dialer(
            config, security, runtime, self._links, rep, known=dict(loaded.peers), save_peers=self._save_peers
        )
        self._outlets = _Outlets(config.node_id, rep, self._hub, self._dialer, journal)
        durable = config.data_dir is not None
        checkpoints = Checkpoints(replica, config.checkpoint_ops, len(loaded.ops)) if durable else None
        self._effects = EffectsApplier(self._links, self._outlets, checkpoints)
        self._flusher = Flusher(rep, self._effects, store, self._now, config, on_alarm=self._on_alarm)
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self.endpoints: tuple[str, ...] = ()
        self.client_endpoints: tuple[str, ...] = ()
        self._listeners: list[Any] = []
        self.started_at = time.time()
        self._leases = LeaseManager(self)
        self.metrics = NodeMetrics(config.node_id, self.status)
        """This node's Prometheus registry (served on ``metrics_listen``)."""
        self.metrics_endpoint: str | None = None
        """HOST:PORT the metrics are served on (None: not served)."""

    def _open_journal(self, replica: Replica, store: Store, loaded: Loaded) -> Journal | None:
        """Replay the logged ops over the snapshot (the restore), keeping their changes in the
        watch-resume journal (None when ``watch_resume_events_max`` is 0)."""
        events_max = self.config.watch_resume_events_max
        if events_max <= 0:
            for op in loaded.ops:
                replica.receive(op)
            return None
        data_id = loaded.meta.get(DATA_ID_META)
        if data_id is None:
            data_id = new_data_id()
            store.set_meta(DATA_ID_META, data_id)
        journal = Journal(data_id, self.node_id, events_max, replica.vv, self.config.watch_resume_bytes_max)
        changes: list[Change] = []
        for op in loaded.ops:
            replica.receive(op, changes)
            if len(changes) >= 4096:
                journal.record(changes)
                changes = []
        journal.record(changes)
        return journal

    # ----------------------------------------------------------------- wiring

    def _now(self) -> Now:
        return Now(trio.current_time(), int(time.time() * 1000))

    def _mark_dirty(self) -> None:
        self._flusher.mark_dirty()

    def _flush(self) -> None:
        self._flusher.flush()

    def _on_broadcast(self, msg: Broadcast) -> bool:
        return self._channels.receive(msg)

    def _on_alarm(self, on: bool) -> None:
        self._links.paused = on  # peers' frames are not taken in: their ops stay theirs
        if on:
            self._outlets.wake_all()

    def _save_peers(self, peers: Endpoints) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._flusher.save_unless_full, "the peer list", self._store.save_peers, peers)

    def _check_open(self) -> None:
        if self._closing:
            raise NodeClosedError(f"node {self.node_id} is closing; writes are no longer accepted")

    # ------------------------------------------------------------ writes

    async def set(
        self,
        path: PathLike,
        value: Value,
        *,
        ack: AckSpec = "local",
        timeout_s: float | None = None,
        lease: Lease | None = None,
    ) -> Receipt:
        """Write ``value`` at ``path`` (a dict writes a subtree).

        Returns once the write's concern is met: ``"local"`` once it is
        durable here, ``"all"`` once every peer connected now acknowledged
        it, ``N`` once N peers did. Raises WriteConcernError after
        ``timeout_s`` (default ``write_timeout_s``) naming the peers that did
        not answer; the write stays and spreads later. With ``lease`` (from
        :meth:`lease`) the key is deleted everywhere when the lease ends.
        """
        if lease is not None:
            return await self._leases.set(path, value, lease.id, lease.token, ack=ack, timeout_s=timeout_s)
        return await self._write(path, value, False, ack, timeout_s)

    def lease(self, ttl_s: float) -> LeaseOpening:
        """A lease this node holds: ``async with node.lease(ttl_s=5) as lease`` (or ``await``).

        Keys written with it (``set(..., lease=lease)``) are deleted on every
        replica when it ends: revoked, its block left, this node closed, or,
        if this node dies, ``ttl_s`` plus the heartbeat timeout after the
        other nodes lost it. See ``docs/leases.md``.
        """
        self._check_open()
        return LeaseOpening(self._leases, ttl_s)

    def presence(self, prefix: PathLike, state: Value, *, participant: str | None = None, ttl_s: float = 10.0) -> Presence:
        """Join ``prefix`` as one participant (``prefix.<participant>`` = ``state`` on a lease of its
        own) while the ``async with`` block runs; ``update(state)``, ``members()``."""
        self._check_open()
        return Presence(self._leases, prefix, state, participant, ttl_s)

    async def delete(
        self, path: PathLike, *, ack: AckSpec = "local", timeout_s: float | None = None
    ) -> Receipt:
        """Remove ``path`` and everything beneath it."""
        return await self._write(path, None, True, ack, timeout_s)

    async def set_many(
        self,
        items: Iterable[tuple[PathLike, Value]],
        *,
        ack: AckSpec = "local",
        timeout_s: float | None = None,
    ) -> list[Receipt]:
        """Several writes committed together (one transaction, one round of acks)."""
        return await _settled(*self._write_many_now(items, ack, timeout_s))

    def _write_many_now(
        self,
        items: Iterable[tuple[PathLike, Value]],
        ack: AckSpec,
        timeout_s: float | None,
        on_ops: Callable[[Sequence[Op]], None] | None = None,
    ) -> tuple[list[Receipt] | Awaitable[list[Receipt]], bool]:
        """``set_many`` without waiting where it need not: the receipts (and whether the
        flusher wants a turn), or an awaitable of them when the concern takes time."""
        self._check_open()
        self._flusher.check_writable()
        now = self._now()
        timeout = self.config.write_timeout_s if timeout_s is None else timeout_s
        items = list(items)
        if not items:
            return [], False
        ticket = self._rep.write_many(items, ack=ack, timeout_s=timeout, now=now)
        ops = ticket.ops or [ticket.op]
        if on_ops is not None:
            on_ops(ops)  # before the commit: a client key joins the ops' transaction

        def receipts() -> list[Receipt]:
            acked = tuple(sorted(ticket.acked))
            new = tuple.__new__
            return [new(Receipt, (op.path, op.origin, op.seq, op.hlc, acked)) for op in ops]

        if ticket.status is WriteStatus.DONE and not self._effects.durable:
            # in-memory, concern met: no waiting; the ops join the next frame
            return receipts(), self._flusher.wrote(len(ops), sum(map(op_size, ops)), now.mono_s)
        if ticket.status is WriteStatus.DONE and self._flusher.commit_now(len(ops)):
            return receipts(), False
        waiting = self._await_ticket(ticket)

        async def wait() -> list[Receipt]:
            await waiting
            return receipts()

        return wait(), False

    async def _write(self, path: PathLike, value: Value, remove: bool, ack: AckSpec, timeout_s: float | None) -> Receipt:
        return await _settled(*self._write_now(path, value, remove, ack, timeout_s))

    def _write_now(
        self,
        path: PathLike,
        value: Value,
        remove: bool,
        ack: AckSpec,
        timeout_s: float | None,
        *,
        on_ops: Callable[[Sequence[Op]], None] | None = None,
    ) -> tuple[Receipt | Awaitable[Receipt], bool]:
        """A write without waiting where it need not: its receipt (and whether the flusher
        wants a turn), or an awaitable of it when the concern takes time."""
        self._check_open()
        self._flusher.check_writable()
        timeout = self.config.write_timeout_s if timeout_s is None else timeout_s
        now = self._now()
        ticket = self._rep.write(path, value, remove=remove, ack=ack, timeout_s=timeout, now=now)
        return self._ticket_now(ticket, now, on_ops)

    def _ticket_now(
        self, ticket: WriteTicket, now: Now, on_ops: Callable[[Sequence[Op]], None] | None
    ) -> tuple[Receipt | Awaitable[Receipt], bool]:
        """One op's ticket as ``_write_now`` answers it (the receipt now, or an awaitable of it)."""
        if on_ops is not None:
            on_ops([ticket.op])  # before the commit: a client key joins the op's transaction
        if ticket.status is WriteStatus.DONE:
            if not self._effects.durable:
                # In-memory, concern met (ack="local"): done without a task round trip;
                # the op goes to the peers at once or joins the next frame (Flusher.wrote).
                return _receipt(ticket), self._flusher.wrote(1, op_size(ticket.op), now.mono_s)
            if self._flusher.commit_now(1):  # durable now, in this task
                return _receipt(ticket), False
        return self._await_ticket(ticket), False

    # ------------------------------------------------------------ typed values

    def text(self, path: PathLike) -> TextHandle:
        """The shared text at ``path``: ``await insert(pos, s)``, ``await delete(pos, n)``, ``value()``."""
        return TextHandle(self, path)

    def list(self, path: PathLike) -> ListHandle:
        """The list at ``path``: ``insert``, ``append``, ``delete``, ``move`` (awaited), ``value()``."""
        return ListHandle(self, path)

    def counter(self, path: PathLike) -> CounterHandle:
        """The counter at ``path``: ``await add(n)``, ``value()``."""
        return CounterHandle(self, path)

    def awset(self, path: PathLike) -> AWSetHandle:
        """The add-wins set at ``path``: ``await add(x)``, ``await remove(x)``, ``value()``."""
        return AWSetHandle(self, path)

    async def _typed(  # noqa: PLR0917 (the edit and its concern)
        self, path: Path, type_name: str, action: str, args: tuple[Any, ...], ack: AckSpec, timeout_s: float | None
    ) -> Receipt:
        return await _settled(*self._typed_now(path, type_name, action, args, ack, timeout_s))

    def _typed_now(  # noqa: PLR0917 (the edit and its concern)
        self,
        path: Path,
        type_name: str,
        action: str,
        args: tuple[Any, ...],
        ack: AckSpec,
        timeout_s: float | None,
        on_ops: Callable[[Sequence[Op]], None] | None = None,
    ) -> tuple[Receipt | Awaitable[Receipt], bool]:
        """A typed edit (see ``_typedapi.edit_of``) as ``_write_now`` carries out a write."""
        self._check_open()
        timeout = self.config.write_timeout_s if timeout_s is None else timeout_s
        now = self._now()
        edit = edit_of(self._replica, path, type_name, action, args)
        ticket = self._rep.write_typed(edit, ack=ack, timeout_s=timeout, now=now)
        return self._ticket_now(ticket, now, on_ops)

    def _await_ticket(self, ticket: WriteTicket) -> Awaitable[Receipt]:
        event = self._outlets.waiters.setdefault(ticket.id, trio.Event())
        self._flusher.flush()
        start_s = trio.current_time()

        async def wait() -> Receipt:
            woken = event
            await woken.wait()
            waiters = self._outlets.waiters
            while waiters.get(ticket.id) is woken:  # woken by the disk-full alarm, not resolved
                if self._flusher.alarm is not None:
                    del waiters[ticket.id]
                    raise self._flusher.held_error(ticket.ops or [ticket.op])
                woken = waiters[ticket.id] = trio.Event()  # the alarm is over already: wait on
                await woken.wait()
            self.metrics.ack_latency.observe(trio.current_time() - start_s)
            if ticket.status is WriteStatus.FAILED:
                assert ticket.error is not None
                raise ticket.error
            return _receipt(ticket)

        return wait()

    # ------------------------------------------------------------- reads

    def get(self, path: PathLike = "", default: Any = None) -> Any:
        """The value at ``path`` (a dict for a subtree), or ``default``."""
        value = self._replica.get(path)
        return default if value is ABSENT else value

    def conflicts(self, path: PathLike) -> builtins.list[Conflict]:
        """Concurrent versions at ``path`` (vector-clock and custom strategies)."""
        return [Conflict.of(v) for v in self._replica.conflicts(path)]

    @asynccontextmanager
    async def watch(self, prefix: PathLike = "", *, resume: str | None = None) -> AsyncIterator[Watch]:
        """Change records under ``prefix``, in order, while the block runs.

        Each event's ``resume`` is a token; ``resume=token`` delivers exactly the
        changes after that event (from the node's journal, also after a restart),
        then the live ones; when the journal no longer holds them, one ``lagged``
        event with the current subtree first. BadResumeToken for a garbled token,
        or one from another cluster, node or data folder.
        """
        path = as_path(prefix)
        backlog = None
        if resume is not None:
            journal = self._journal
            if journal is None:
                raise BadResumeToken(
                    f"node {self.node_id} keeps no watch journal (watch_resume_events_max = 0); watch without resume"
                )
            backlog = journal.after(resume, path, self._replica.vv)
        watch = self._hub.subscribe(path)
        if resume is not None:
            watch._resume_from(backlog)
        self._rep.record_changes = True
        try:
            yield watch
        finally:
            watch.close()

    def broadcast_channel(self, name: str, *, buffer_max: int = 1000) -> BroadcastChannel:
        """A channel that delivers to every connected node listening on ``name``."""
        return self._channels.open(name, buffer_max)

    async def sync(self, *, timeout_s: float = 10.0) -> bool:
        """Run an anti-entropy round with every connected peer now and wait for their answers.

        Returns True when every connected peer answered within ``timeout_s``.
        """
        self._check_open()
        start = trio.current_time()
        self._rep.sync_now(self._now())
        self._mark_dirty()
        with trio.move_on_after(timeout_s):
            while True:
                peers = [p for p in self._rep.peers.values() if p.link is not None]
                if all(p.last_sync_s is not None and p.last_sync_s >= start for p in peers):
                    await self._flusher.drain()
                    return True
                await self._flusher.progress.wait()
        return False

    @property
    def counters(self) -> dict[str, int]:
        """Frames in, out, bad and dropped (a full queue), commits, and local writes coalesced."""
        return {**self._links.counters, "commits": self._effects.commits, **self._flusher.counters}

    def status(self) -> dict[str, Any]:
        """Peers, lag each way, unacknowledged writes, log length, last sync, storage."""
        status = self._rep.status(self._now())
        status["endpoints"] = list(self.endpoints)
        status["uptime_s"] = round(time.time() - self.started_at, 3)
        status["watches"] = len(self._hub)
        status["watch"] = self._hub.stats()
        status["alarm"] = self._flusher.alarm_status()
        status["storage"] = self._store.stats()
        status["links"] = len(self._links)
        status["transport"] = self.counters
        status["snapshot_progress"] = {k: list(v) for k, v in self._rep.snapshot_progress().items()}
        faults = self._faults.status()
        if faults is not None:
            status["faults"] = faults
        status["security"] = self.security.status(self._runtime.refused)
        status["leases"] = self._leases.status()
        return status

    def reload_keys(self) -> dict[str, Any]:
        """Re-read the authorized-keys file (what SIGHUP does to ``statesync node``).

        Connections whose key lost its access are closed at once (peers and
        clients alike); from now on every handshake and every client request is
        checked against the new list. On an error (KeyFileError, one line
        naming file:line) the old list stays in force. Returns the keys per
        role and how many connections were closed.
        """
        authorized = self.security.reload()
        closed = self._runtime.recheck_links()
        for info, reason in closed:
            log.warning("%s: closed the connection of key %s: %s", self.node_id, info.public_key, reason)
        # a peer key added by this reload makes an endpoint refused before worth trying
        self._dialer.redial_admitted()
        counts = authorized.counts()
        log.info(
            "%s: reloaded %s: %d peer, %d read, %d write keys; closed %d connections",
            self.node_id,
            self.config.authorized_keys_file,
            counts["peer"],
            counts["read"],
            counts["write"],
            len(closed),
        )
        return {"authorized": counts, "closed": len(closed)}

    @property
    def replica(self) -> Replica:
        return self._replica

    @property
    def _port_options(self) -> ports.PortOptions:
        return self._dialer.port_options

    # ------------------------------------------------------------- lifecycle

    async def _run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._links.start(nursery)
            endpoints: list[str] = []
            for endpoint in self.config.listen:
                listener = self._runtime.listen(endpoint, self._port_options)
                self._listeners.append(listener)
                endpoints.extend(listener.endpoints)
                nursery.start_soon(self._accept, listener)
            self.endpoints = tuple(endpoints)
            self._rep.endpoints = self.security.advertised(self.config.advertise) or self.endpoints
            for endpoint in self.config.insecure_endpoints:
                log.warning(
                    "%s: listening on %s WITHOUT keys (allow_insecure): anyone who can reach it can "
                    "read and write the tree; see README, Securing a cluster",
                    self.node_id,
                    endpoint,
                )
            nursery.start_soon(self._flusher.run)
            nursery.start_soon(self._flusher.ticker.run)
            nursery.start_soon(self._leases.run)
            if self.config.tune_gc:
                nursery.start_soon(tune_gc, self.config.gc_interval_s)
            self._dialer.start(nursery, self.endpoints)
            if self.config.client is not None:
                self.client_endpoints = await nursery.start(serve_clients, self)
            if self.config.metrics_listen is not None:
                self.metrics_endpoint = await nursery.start(serve_metrics, self.metrics, self.config.metrics_listen)
            task_status.started()

    async def _accept(self, listener: Any) -> None:
        security = self.security
        async for port in listener:
            if self._closing:
                with quietly():
                    port.close()
                continue
            if security.enabled:
                key = port.remote.public_key if port.remote is not None else None
                grant = security.grant(key)
                if grant is None or grant.role != "peer":  # the list changed since the handshake
                    with quietly():
                        port.close()
                    continue
            self._links.open(port, active=False, endpoint=None)

    async def _shutdown(self) -> None:
        """Flush what is pending, say goodbye to every peer, stop everything."""
        with trio.move_on_after(2.0):
            await self._leases.close()  # the leases this node holds itself end with it
        self._closing = True
        self._dialer.stop()
        flusher = self._flusher
        with trio.move_on_after(5.0):
            await flusher.drain()
            self._rep.shutdown(self._now())
            self._mark_dirty()
            await flusher.drain()
            await self._links.wait_drained(1.0)
        self._hub.close_all()
        self._channels.close_all()
        self._links.close_all(RefuseReason.SHUTDOWN)
        for listener in self._listeners:
            with quietly():
                listener.close()


async def _settled(result: T | Awaitable[T], turn: bool) -> T:
    """A ``_write_now`` result, waited for; a done one yields first if the flusher wants a turn."""
    if inspect.isawaitable(result):
        return await result
    if turn:
        await trio.lowlevel.checkpoint()
    return result


def _receipt(ticket: WriteTicket) -> Receipt:
    op = ticket.op
    return Receipt(op.path, op.origin, op.seq, op.hlc, tuple(sorted(ticket.acked)))
