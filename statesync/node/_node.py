"""The node: the one place that wires core, wire, ports and storage together.

Tasks (one trio nursery, all ended by leaving ``open_node``):

- accept: every port a peer opens on a listen endpoint becomes a passive link;
- connect, one per peer endpoint: opens an active link, re-opens it with
  backoff when it closes, stays idle while the peer is linked the other way;
- read, one per link: decodes frames and feeds messages to the replicator;
- send, one per link: drains the link's bounded queue into its port, waiting
  when the port's queue is full (one slow peer never stalls the others);
- flush: the only consumer of the replicator's output. It makes ``persist``
  durable first (one transaction for everything that accumulated meanwhile:
  group commit), then sends, closes links, resolves writes and feeds
  watches. So a write returns, a peer sees an op, and an ack covers an op
  only once it is committed;
- timer: ticks the replicator when it asks (sync rounds, retransmission,
  write deadlines, handshake timeouts, log compaction).

Every replicator call happens in the trio thread; the store runs in one
worker thread at a time.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar

import attrs
import trio

from statesync import ports, wire
from statesync.core import (
    ABSENT,
    Ack,
    AckSpec,
    Bye,
    Hello,
    Message,
    Now,
    Output,
    PathLike,
    Refuse,
    RefuseReason,
    Replica,
    ReplicaLimits,
    Replicator,
    Value,
    Welcome,
    WriteStatus,
    WriteTicket,
    as_path,
)
from statesync.errors import NodeClosedError
from statesync.node._config import FaultConfig, NodeConfig
from statesync.node._faults import FaultInjector
from statesync.node._results import Conflict, Receipt
from statesync.node._security import PEER_DOMAIN, NodeSecurity
from statesync.node._service import serve_clients
from statesync.node._watch import Watch, WatchHub
from statesync.storage import Durability, Loaded, Store, open_store

log = logging.getLogger("statesync.node")

T = TypeVar("T")
_PRIORITY = (Ack, Hello, Welcome, Refuse, Bye)


@attrs.frozen
class Broadcast:
    """A BroadcastChannel message between nodes: not stored, not replicated later."""

    TAG: ClassVar[int] = 64
    channel: str
    data: bytes
    origin: str


wire.register_message(Broadcast)


@attrs.define(eq=False)
class _Link:
    id: int
    port: Any
    active: bool
    endpoint: str | None
    queue: deque[tuple[bytes, bool]] = attrs.field(factory=deque)
    queued_bytes: int = 0
    wakeup: trio.Event = attrs.field(factory=trio.Event)
    closed: trio.Event = attrs.field(factory=trio.Event)
    drained: trio.Event = attrs.field(factory=trio.Event)
    peer: str | None = None
    was_up: bool = False
    close_reason: str = ""
    dropped_frames: int = 0


class BroadcastChannel:
    """The web's BroadcastChannel across nodes: messages to every node listening on ``name``.

    Messages are not stored and not replicated later: a node that is not
    connected, or not listening, when one is posted never sees it.
    """

    def __init__(self, node: Node, name: str, buffer_max: int) -> None:
        self.name = name
        self._node = node
        self._buffer: deque[tuple[Value, str]] = deque()
        self._buffer_max = buffer_max
        self._wakeup = trio.Event()
        self._closed = False
        self.dropped = 0

    def post_message(self, data: object) -> None:
        """Send ``data`` (a JSON-like value) to every other listener on this channel."""
        if self._closed:
            raise NodeClosedError(f"broadcast channel {self.name!r} is closed; open a new one")
        payload = wire.encode_payload(data)
        limit = self._node.config.frame_bytes_max // 2
        if len(payload) > limit:
            raise ports.MessageTooLarge(
                f"a broadcast message of {len(payload)} bytes exceeds {limit}; send less, or store it and broadcast its path"
            )
        self._node._broadcast(self, payload)

    def _deliver(self, value: Value, origin: str) -> None:
        if self._closed:
            return
        if len(self._buffer) >= self._buffer_max:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append((value, origin))
        self._wakeup.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._node._channels.get(self.name, set()).discard(self)
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[tuple[Value, str]]:
        return self

    async def __anext__(self) -> tuple[Value, str]:
        """The next (data, origin node id); ends once the channel is closed."""
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = trio.Event()
            await self._wakeup.wait()


class Node:
    """A running node. Make one with :func:`open_node`."""

    def __init__(self, config: NodeConfig, store: Store, loaded: Loaded) -> None:
        self.config = config
        self.node_id = config.node_id
        self._store = store
        self.instance = f"{os.getpid():x}-{random.getrandbits(48):012x}"
        replica = Replica.restore(
            config.node_id,
            loaded.snapshot,
            loaded.ops,
            strategies=config.strategies(),
            max_drift_ms=int(config.max_drift_s * 1000),
            limits=ReplicaLimits(
                log_ops_max=config.log_ops_max,
                pending_ops_max=config.pending_ops_max,
                value=config.value_limits(),
            ),
            hlc=loaded.hlc,
        )
        self._replica = replica
        self._known_endpoints: dict[str, tuple[str, ...]] = dict(loaded.peers)
        self._rep = Replicator(
            replica,
            config=config.replicator_config(),
            rand=random.Random().random,
            known_peers=[p for p in loaded.peers if p != config.node_id],
            instance=self.instance,
            now=self._now(),
        )
        self._faults = FaultInjector(config.faults) if config.faults is not None else None
        self._limits = wire.DecodeLimits(frame_bytes_max=config.frame_bytes_max)
        self._hub = WatchHub(self._replica.tree.get, config.watch_buffer_max)
        self._channels: dict[str, set[BroadcastChannel]] = {}
        self._links: dict[int, _Link] = {}
        self._next_link = 1
        self._dirty = trio.Event()
        self._timer_reset = trio.Event()
        self._timer_deadline = math.inf
        self._waiters: dict[int, trio.Event] = {}
        self._connectors: set[str] = set()
        self._endpoint_peer: dict[str, str] = {}
        self._peer_down: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._busy = False
        self._progress = trio.Event()
        self._ops_since_checkpoint = len(loaded.ops)
        self._durable = config.data_dir is not None
        self.endpoints: tuple[str, ...] = ()
        self._listeners: list[Any] = []
        self.started_at = time.time()
        self.counters = {"frames_in": 0, "frames_out": 0, "bad_frames": 0, "frames_dropped_full": 0, "commits": 0}

    # ----------------------------------------------------------------- time

    def _now(self) -> Now:
        return Now(trio.current_time(), int(time.time() * 1000))

    def _mark_dirty(self) -> None:
        self._dirty.set()
        self._poke_timer()

    def _poke_timer(self) -> None:
        """Wake the timer task only if the replicator now wants a tick sooner than it waits for.

        (Waking it on every write and every frame cost a task switch and a
        cancel scope on the latency path.)"""
        if self._rep.next_tick_s() < self._timer_deadline:
            self._timer_reset.set()

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
    ) -> Receipt:
        """Write ``value`` at ``path`` (a dict writes a subtree).

        Returns once the write's concern is met: ``"local"`` once it is
        durable here, ``"all"`` once every peer connected now acknowledged
        it, ``N`` once N peers did. Raises WriteConcernError after
        ``timeout_s`` (default ``write_timeout_s``) naming the peers that did
        not answer; the write stays and spreads later.
        """
        return await self._write(path, value, False, ack, timeout_s)

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
        self._check_open()
        now = self._now()
        timeout = self.config.write_timeout_s if timeout_s is None else timeout_s
        items = list(items)
        if not items:
            return []
        ticket = self._rep.write_many(items, ack=ack, timeout_s=timeout, now=now)
        await self._await_ticket(ticket)
        acked = tuple(sorted(ticket.acked))
        new = tuple.__new__
        return [new(Receipt, (op.path, op.origin, op.seq, op.hlc, acked)) for op in ticket.ops or [ticket.op]]

    async def _write(
        self, path: PathLike, value: Value, remove: bool, ack: AckSpec, timeout_s: float | None
    ) -> Receipt:
        self._check_open()
        timeout = self.config.write_timeout_s if timeout_s is None else timeout_s
        ticket = self._rep.write(path, value, remove=remove, ack=ack, timeout_s=timeout, now=self._now())
        return await self._await_ticket(ticket)

    def _await_ticket(self, ticket: WriteTicket) -> Awaitable[Receipt]:
        event = self._waiters.setdefault(ticket.id, trio.Event())
        self._flush()

        async def wait() -> Receipt:
            await event.wait()
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

    def conflicts(self, path: PathLike) -> list[Conflict]:
        """Concurrent versions at ``path`` (vector-clock and custom strategies)."""
        return [Conflict.of(v) for v in self._replica.conflicts(path)]

    @asynccontextmanager
    async def watch(self, prefix: PathLike = "") -> AsyncIterator[Watch]:
        """Change records under ``prefix``, in order, while the block runs."""
        watch = self._hub.subscribe(as_path(prefix))
        self._rep.record_changes = True
        try:
            yield watch
        finally:
            watch.close()

    def broadcast_channel(self, name: str, *, buffer_max: int = 1000) -> BroadcastChannel:
        """A channel that delivers to every connected node listening on ``name``."""
        if not name or len(name) > 256:
            raise ValueError("a broadcast channel name is 1 to 256 characters")
        channel = BroadcastChannel(self, name, buffer_max)
        self._channels.setdefault(name, set()).add(channel)
        return channel

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
                    await self._drain()
                    return True
                await self._progress.wait()
        return False

    def status(self) -> dict[str, Any]:
        """Peers, lag each way, unacknowledged writes, log length, last sync, storage."""
        status = self._rep.status(self._now())
        status["endpoints"] = list(self.endpoints)
        status["uptime_s"] = round(time.time() - self.started_at, 3)
        status["watches"] = len(self._hub)
        status["storage"] = self._store.stats()
        status["links"] = len(self._links)
        status["transport"] = dict(self.counters)
        status["snapshot_progress"] = {k: list(v) for k, v in self._rep.snapshot_progress().items()}
        if self._faults is not None:
            status["faults"] = {"dropped": self._faults.dropped, "duplicated": self._faults.duplicated, "cut": sorted(self._faults.cut)}
        status["security"] = self.security.status(self._runtime.refused)
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
        for endpoint in list(self.security.stopped_dials):
            if self.security.may_dial(endpoint) is None:
                self.security.stopped_dials.discard(endpoint)
                self._start_connector(endpoint)
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

    # ---------------------------------------------------------- faults (tests)

    def cut(self, peer: str) -> None:
        """Fault injection: drop all traffic with ``peer`` until :meth:`heal`."""
        if self._faults is None:
            self._faults = FaultInjector(FaultConfig())
        self._faults.cut.add(peer)

    def set_faults(self, faults: FaultConfig | None) -> None:
        """Replace the fault injection settings at run time (None: no faults)."""
        cut = self._faults.cut if self._faults is not None else set()
        self._faults = FaultInjector(faults) if faults is not None else None
        if self._faults is not None:
            self._faults.cut |= cut

    def heal(self, peer: str | None = None) -> None:
        if self._faults is not None:
            if peer is None:
                self._faults.cut.clear()
            else:
                self._faults.cut.discard(peer)

    # ------------------------------------------------------------- links

    def _open_link(self, port: Any, *, active: bool, endpoint: str | None) -> _Link:
        link = _Link(self._next_link, port, active, endpoint)
        self._next_link += 1
        self._links[link.id] = link
        self._rep.connected(link.id, active=active, now=self._now())
        assert self._nursery is not None
        self._nursery.start_soon(self._reader, link)
        self._nursery.start_soon(self._sender, link)
        self._mark_dirty()
        return link

    def _close_link(self, link: _Link, reason: str) -> None:
        if link.closed.is_set():
            return
        link.close_reason = link.close_reason or reason
        link.closed.set()
        link.wakeup.set()
        self._links.pop(link.id, None)
        self._rep.disconnected(link.id, self._now())
        self._mark_dirty()
        with _quietly():
            link.port.close()

    async def _reader(self, link: _Link) -> None:
        try:
            async for event in link.port:
                if event.type != "message":
                    if event.type == "messageerror":
                        self.counters["bad_frames"] += 1
                        self._rep.bad_frame(link.id, str(event.error or "undecodable payload"), self._now())
                        self._mark_dirty()
                    continue
                data = event.data
                if not isinstance(data, bytes):
                    self._rep.bad_frame(link.id, "a frame is bytes", self._now())
                    continue
                if self._faults is not None and not self._faults.accepts_from(link.peer):
                    continue
                self.counters["frames_in"] += 1
                try:
                    frame = wire.decode_frame(data, self._limits)
                except wire.DecodeError as exc:
                    self.counters["bad_frames"] += 1
                    log.warning("%s: dropping a bad frame from %s: %s", self.node_id, link.peer or f"link {link.id}", exc)
                    self._rep.bad_frame(link.id, str(exc), self._now())
                    self._mark_dirty()
                    continue
                now = self._now()
                for msg in frame.messages:
                    if isinstance(msg, Broadcast):
                        self._on_broadcast(msg)
                    else:
                        self._rep.received(link.id, msg, now)
                self._flush()
        except (ports.PortsError, trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            self._close_link(link, "closed by the peer or lost")

    async def _sender(self, link: _Link) -> None:
        port = link.port
        try:
            while not link.closed.is_set():
                while link.queue:
                    frame, priority = link.queue[0]
                    try:
                        port.post_message(frame, priority=priority)
                    except ports.PortQueueFull:
                        await port.wait_writable()
                        continue
                    link.queue.popleft()
                    link.queued_bytes -= len(frame)
                    self.counters["frames_out"] += 1
                link.drained.set()
                link.wakeup = trio.Event()
                if link.closed.is_set():
                    break
                await link.wakeup.wait()
        except (ports.PortsError, trio.ClosedResourceError, trio.BrokenResourceError):
            self._close_link(link, "send failed")

    def _enqueue(self, link: _Link, frame: bytes, priority: bool) -> None:
        if link.closed.is_set():
            return
        if link.queued_bytes + len(frame) > self.config.send_queue_bytes_max:
            # A peer this far behind gets nothing more for now; the protocol
            # recovers what it misses (retransmission, anti-entropy).
            link.dropped_frames += 1
            self.counters["frames_dropped_full"] += 1
            return
        if not link.queue:
            # Nothing waiting: hand the frame to the port now (no task switch on
            # the latency path); the sender task only deals with a backlog.
            try:
                link.port.post_message(frame, priority=priority)
            except ports.PortQueueFull:
                pass
            except ports.PortsError:
                self._close_link(link, "send failed")
                return
            else:
                self.counters["frames_out"] += 1
                return
        link.queue.append((frame, priority))
        link.queued_bytes += len(frame)
        if link.drained.is_set():
            link.drained = trio.Event()
        link.wakeup.set()

    def _send(self, link_id: int, messages: Sequence[Message | Broadcast], priority: bool) -> None:
        link = self._links.get(link_id)
        if link is None:
            return
        for chunk in _chunks(messages, self.config.frame_bytes_max):
            frame = wire.encode_frame(chunk, priority=priority)
            if self._faults is None:
                self._enqueue(link, frame, priority)
                continue
            for delay in self._faults.plan(link.peer):
                if delay <= 0:
                    self._enqueue(link, frame, priority)
                elif self._nursery is not None:
                    self._nursery.start_soon(self._enqueue_later, link, frame, priority, delay)

    async def _enqueue_later(self, link: _Link, frame: bytes, priority: bool, delay: float) -> None:
        await trio.sleep(delay)
        self._enqueue(link, frame, priority)

    # ----------------------------------------------------------- broadcast

    def _broadcast(self, channel: BroadcastChannel, payload: bytes) -> None:
        value = wire.decode_payload(payload)
        for other in self._channels.get(channel.name, ()):
            if other is not channel:
                other._deliver(value, self.node_id)
        msg = Broadcast(channel.name, payload, self.node_id)
        for link in list(self._links.values()):
            if link.peer is not None and any(p.link == link.id for p in self._rep.peers.values()):
                self._send(link.id, [msg], False)

    def _on_broadcast(self, msg: Broadcast) -> None:
        channels = self._channels.get(msg.channel)
        if not channels:
            return
        try:
            value = wire.decode_payload(msg.data, self._limits)
        except wire.DecodeError:
            self.counters["bad_frames"] += 1
            return
        for channel in list(channels):
            channel._deliver(value, msg.origin)

    # --------------------------------------------------------------- tasks

    async def _flusher(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            self._busy = True
            out = self._rep.take_output()
            if out:
                await self._commit(out)
                self._after_commit(out)
            self._busy = False
            self._progress.set()
            self._progress = trio.Event()

    def _flush(self) -> None:
        """Have the replicator's output handled: now if that cannot wait, else by the flusher.

        A node without a data dir commits nothing, so handling its output
        never waits: doing it here, in the task that produced it, spares a
        task switch on every write and every received frame. A durable node
        leaves it to the flusher, which groups commits.
        """
        if self._durable or self._busy:
            self._mark_dirty()
            return
        out = self._rep.take_output()
        if out:
            if out.persist:
                self.counters["commits"] += 1
            self._after_commit(out)
        self._poke_timer()
        self._progress.set()
        self._progress = trio.Event()

    async def _drain(self) -> None:
        """Wait until every output produced so far is committed and handed to the links."""
        while self._dirty.is_set() or self._busy:
            await self._progress.wait()

    async def _commit(self, out: Output) -> None:
        """Make the output's ops (and installed snapshot) durable: one transaction.

        A node without a data dir promises no durability: nothing is written.
        A durable node writes a checkpoint (a full snapshot, after which the
        store drops the logged ops it covers) once the ops logged since the
        last one reach the larger of ``checkpoint_ops`` and the number of
        leaves: the on-disk log stays within about twice the state, and the
        O(state) cost of a snapshot is spread over as many writes.
        """
        if not self._durable:
            if out.persist:
                self.counters["commits"] += 1
            return
        store = self._store
        if out.snapshot is not None:
            await self._in_store(store.save_snapshot, out.snapshot)
            self._ops_since_checkpoint = 0
        if out.persist:
            ops = out.persist
            await self._in_store(store.append, ops)
            self.counters["commits"] += 1
            self._ops_since_checkpoint += len(ops)
        if self._ops_since_checkpoint >= max(self.config.checkpoint_ops, self._replica.tree.leaf_count):
            self._ops_since_checkpoint = 0
            await self._in_store(store.save_snapshot, self._replica.snapshot())

    async def _in_store(self, fn: Callable[..., T], *args: Any) -> T:
        if self._store_threaded:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._store_limiter)
        return fn(*args)

    def _after_commit(self, out: Output) -> None:
        by_link: dict[int, list[Message | Broadcast]] = {}
        for link_id, msg in out.sends:
            by_link.setdefault(link_id, []).append(msg)
        for link_id, msgs in by_link.items():
            urgent = [m for m in msgs if isinstance(m, _PRIORITY)]
            bulk = [m for m in msgs if not isinstance(m, _PRIORITY)]
            if urgent:
                self._send(link_id, urgent, True)
            if bulk:
                self._send(link_id, bulk, False)
        for link_id, reason in out.closes:
            link = self._links.get(link_id)
            if link is not None:
                link.close_reason = reason
                assert self._nursery is not None
                self._nursery.start_soon(self._close_after_send, link, reason)
        for ticket in (*out.completed, *out.failed):
            event = self._waiters.pop(ticket.id, None)
            if event is not None:
                event.set()
        if out.changes:
            self._hub.publish(out.changes)
        self._rep.record_changes = len(self._hub) > 0
        for peer in out.peers_up:
            state = self._rep.peers.get(peer)
            link = self._links.get(state.link) if state and state.link is not None else None
            if link is not None:
                link.peer = peer
                link.was_up = True
                if link.endpoint is not None:
                    self._endpoint_peer[link.endpoint] = peer
            if state is not None and state.endpoints:
                self._known_endpoints[peer] = state.endpoints
            self._peer_down.setdefault(peer, trio.Event())
            log.info("%s: linked with %s", self.node_id, peer)
        for peer in out.peers_down:
            event = self._peer_down.pop(peer, None)
            if event is not None:
                event.set()
            log.info("%s: link with %s closed", self.node_id, peer)
        if out.peers_up:
            self._persist_peers()
        for node_id, endpoints in out.discovered:
            self._known_endpoints.setdefault(node_id, endpoints)
            if len(self._connectors) < self.config.mesh_max:
                for endpoint in endpoints[:1]:
                    self._start_connector(endpoint)
        for notice in out.notices:
            log.info("%s: %s", self.node_id, notice)

    def _persist_peers(self) -> None:
        if self._nursery is not None:
            peers = dict(self._known_endpoints)
            self._nursery.start_soon(self._in_store, self._store.save_peers, peers)

    async def _close_after_send(self, link: _Link, reason: str) -> None:
        """Close a link once what was queued for it (a Refuse, a Bye) went out."""
        with trio.move_on_after(1.0):
            await link.drained.wait()
        self._close_link(link, reason)

    async def _timer(self) -> None:
        while True:
            deadline = self._timer_deadline = self._rep.next_tick_s()
            with trio.move_on_at(deadline):
                await self._timer_reset.wait()
            self._timer_reset = trio.Event()
            if trio.current_time() >= self._rep.next_tick_s():
                self._rep.tick(self._now())
                self._dirty.set()

    async def _gc_task(self) -> None:
        """With ``tune_gc``: young collections every 50,000 allocations, a full one now and then.

        The replica holds millions of long-lived objects; with the default
        thresholds the collector keeps traversing them. Startup's objects are
        frozen (never traversed again); cycles made later are still reclaimed
        by the periodic full collection.
        """
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        while True:
            await trio.sleep(self.config.gc_interval_s)
            gc.collect()

    async def _accept(self, listener: Any) -> None:
        security = self.security
        async for port in listener:
            if self._closing:
                with _quietly():
                    port.close()
                continue
            if security.enabled:
                key = port.remote.public_key if port.remote is not None else None
                grant = security.grant(key)
                if grant is None or grant.role != "peer":  # the list changed since the handshake
                    with _quietly():
                        port.close()
                    continue
            self._open_link(port, active=False, endpoint=None)

    def _start_connector(self, endpoint: str) -> None:
        if endpoint in self._connectors or endpoint in self.endpoints or self._nursery is None:
            return
        self._connectors.add(endpoint)
        self._nursery.start_soon(self._connector, endpoint)

    async def _connector(self, endpoint: str) -> None:
        cfg = self.config
        backoff = cfg.reconnect_min_s
        rng = random.Random()
        while not self._closing:
            refusal = self.security.may_dial(endpoint)
            if refusal is not None:
                # A peer gossiped it, or the list changed: never connect to a server this
                # node does not trust. A reload that admits the key starts it again.
                self.security.refusals.log("%s: not connecting to %s", self.node_id, refusal)
                self.security.stopped_dials.add(endpoint)
                break
            peer = self._endpoint_peer.get(endpoint)
            linked = self._rep.peers.get(peer) if peer is not None else None
            if peer is not None and linked is not None and linked.link is not None:
                # Linked already (perhaps the other way round): wait until that ends.
                await self._peer_down.setdefault(peer, trio.Event()).wait()
                continue
            try:
                with trio.fail_after(cfg.handshake_timeout_s):
                    port = await self._runtime.connect(endpoint, self._port_options)
            except ports.HandshakeFailed as exc:
                self.security.refusals.log("%s: cannot link with a peer: %s", self.node_id, exc)
                await trio.sleep(backoff * (0.5 + rng.random()))
                backoff = min(backoff * 2, cfg.reconnect_max_s)
                continue
            except (ports.PortsError, trio.TooSlowError, OSError) as exc:
                log.debug("%s: cannot reach %s: %s", self.node_id, endpoint, exc)
                await trio.sleep(backoff * (0.5 + rng.random()))
                backoff = min(backoff * 2, cfg.reconnect_max_s)
                continue
            link = self._open_link(port, active=True, endpoint=endpoint)
            await link.closed.wait()
            if link.close_reason == RefuseReason.SAME_ID:
                log.info("%s: %s is this node itself; not connecting to it", self.node_id, endpoint)
                return
            if link.was_up:
                backoff = cfg.reconnect_min_s
            await trio.sleep(backoff * (0.5 + rng.random()))
            backoff = min(backoff * 2, cfg.reconnect_max_s)
        self._connectors.discard(endpoint)

    @property
    def _port_options(self) -> ports.PortOptions:
        return self.security.options(port_options(self.config), PEER_DOMAIN)

    # ------------------------------------------------------------- lifecycle

    _store_threaded = True
    _store_limiter: trio.CapacityLimiter
    _runtime: ports.PortRuntime
    security: NodeSecurity

    async def _run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._store_limiter = trio.CapacityLimiter(1)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
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
            nursery.start_soon(self._flusher)
            nursery.start_soon(self._timer)
            if self.config.tune_gc:
                nursery.start_soon(self._gc_task)
            for endpoint in self.config.peers:
                self._start_connector(endpoint)
            for peer, endpoints_of in self._known_endpoints.items():
                if peer != self.node_id and endpoints_of:
                    self._start_connector(endpoints_of[0])
            self.client_endpoints: tuple[str, ...] = ()
            if self.config.client is not None:
                self.client_endpoints = await nursery.start(serve_clients, self)
            task_status.started()

    async def _shutdown(self) -> None:
        """Flush what is pending, say goodbye to every peer, stop everything."""
        self._closing = True
        with trio.move_on_after(5.0):
            await self._drain()
            self._rep.shutdown(self._now())
            self._mark_dirty()
            await self._drain()
            for link in list(self._links.values()):
                with trio.move_on_after(1.0):
                    await link.drained.wait()
        self._hub.close_all()
        for channels in list(self._channels.values()):
            for channel in list(channels):
                channel.close()
        for link in list(self._links.values()):
            self._close_link(link, RefuseReason.SHUTDOWN)
        for listener in self._listeners:
            with _quietly():
                listener.close()


def _quietly() -> contextlib.suppress:
    """Suppress errors from closing something already broken."""
    return contextlib.suppress(Exception)


def _receipt(ticket: WriteTicket) -> Receipt:
    op = ticket.op
    return Receipt(op.path, op.origin, op.seq, op.hlc, tuple(sorted(ticket.acked)))


def port_options(config: NodeConfig) -> ports.PortOptions:
    """The port options a node uses for its peer links."""
    return ports.PortOptions(
        heartbeat_interval_s=config.heartbeat_interval_s,
        heartbeat_timeout_s=config.heartbeat_timeout_s,
        zmq_heartbeat_interval_s=config.heartbeat_interval_s,
        zmq_heartbeat_timeout_s=config.heartbeat_timeout_s,
        zmq_heartbeat_ttl_s=config.heartbeat_timeout_s,
        connect_timeout_s=config.handshake_timeout_s,
        payload_bytes_max=config.frame_bytes_max + 1024,
        link_queue_bytes_max=config.send_queue_bytes_max,
    )


_BIG = ("ops", "entries")


def _chunks(messages: Sequence[Message | Broadcast], bytes_max: int) -> list[list[Message | Broadcast]]:
    """Split messages so that one frame stays under ``bytes_max``.

    The replicator bounds every message that carries ops or snapshot entries
    at a quarter of a frame (``NodeConfig.replicator_config``), except that
    such a message always holds at least one op or entry, itself at most a
    quarter of a frame (``NodeConfig.value_limits``). So such a message costs
    at most half a frame, and is counted so; any other message is counted at
    1 KiB. No per-op work happens here.
    """
    half = bytes_max // 2
    chunks: list[list[Message | Broadcast]] = [[]]
    size = 0
    for msg in messages:
        if isinstance(msg, Broadcast):
            cost = len(msg.data) + 64
        elif any(hasattr(msg, a) for a in _BIG):
            cost = half
        else:
            cost = 1024
        if chunks[-1] and size + cost > bytes_max:
            chunks.append([])
            size = 0
        chunks[-1].append(msg)
        size += cost
    return chunks


@asynccontextmanager
async def open_node(config: NodeConfig | None = None, /, **options: Any) -> AsyncIterator[Node]:
    """Start a node; it runs until the ``async with`` block ends.

    Either pass a :class:`NodeConfig` or its fields as keyword arguments::

        async with statesync.open_node(node_id="a", listen="tcp://127.0.0.1:7001",
                                       peers=["tcp://127.0.0.1:7002"], data_dir="data/a") as node:
            await node.set("user.name", "Ada")
    """
    if config is None:
        config = NodeConfig.from_mapping(options, source="open_node()")
    elif options:
        config = attrs.evolve(config, **options)
    durability = Durability(config.durability)
    security = NodeSecurity.load(config)  # bad key files fail here, before anything starts
    store = await trio.to_thread.run_sync(lambda: open_store(config.data_dir, config.node_id, durability=durability))
    body_error: BaseException | None = None
    try:
        loaded = await trio.to_thread.run_sync(store.load)
        node = _build_node(config, store, loaded)
        node._store_threaded = config.data_dir is not None
        node.security = security
        authorizer = security.authorize if security.enabled else None
        async with ports.open_runtime(
            security.options(port_options(config), PEER_DOMAIN), authorizer=authorizer
        ) as runtime:
            node._runtime = runtime
            async with trio.open_nursery() as outer:
                await outer.start(node._run)
                try:
                    yield node
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await node._shutdown()
                        outer.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The nurseries wrap whatever the caller's block raised; give it back as it was.
        if body_error is not None and _only(group) is body_error:
            raise body_error from None
        raise
    finally:
        await trio.to_thread.run_sync(store.close)


def _build_node(config: NodeConfig, store: Store, loaded: Loaded) -> Node:
    """Rebuild the replica from what was durable (before any task of the node runs).

    The garbage collector is paused meanwhile: restoring a large tree makes
    millions of long-lived objects, and collecting during that buys nothing
    (twice as fast for a million paths).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return Node(config, store, loaded)
    finally:
        if enabled:
            gc.enable()


def _only(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single leaf exception of a (nested) group, if it holds exactly one."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None
