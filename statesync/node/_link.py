"""Per-peer link transport: frames to and from one peer's MessagePort.

A link is one port to one peer (opened by this node's dialer: active, or
accepted on a listen endpoint: passive). The :class:`LinkTable` holds them
and runs two tasks per link:

- **read**: decodes each frame (``statesync.wire``), hands its messages to
  the replicator (broadcast messages to the broadcast channels) and asks for
  the output to be flushed; a bad frame is counted, logged and reported to
  the replicator, never raised;
- **send**: drains the link's bounded queue into its port, waiting when the
  port's queue is full, so one slow peer never stalls the others.

Sending (:meth:`LinkTable.send`, what the effects applier calls) packs
messages into frames under ``frame_bytes_max`` and hands a frame to the port
at once when nothing waits before it (no task switch on the latency path);
only a backlog goes through the queue. A peer so far behind that its queue
exceeds ``send_queue_bytes_max`` gets nothing more for now: the replication
protocol recovers what it misses (retransmission, anti-entropy).

Fault injection (``_faults``), when on, decides here per frame: drop, copy,
delay.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import trio

from statesync import ports, wire
from statesync.core import LinkId, Message, Now, Replicator
from statesync.node._broadcast import Broadcast
from statesync.node._config import NodeConfig
from statesync.node._faults import NodeFaults

log = logging.getLogger("statesync.node")


@attrs.define(eq=False)
class Link:
    """One port to one peer, and what is queued for it."""

    id: LinkId
    port: Any
    active: bool
    """This node dialed it (``endpoint`` is where); else a peer dialed in."""
    endpoint: str | None
    queue: deque[tuple[bytes, bool]] = attrs.field(factory=deque)
    queued_bytes: int = 0
    wakeup: trio.Event = attrs.field(factory=trio.Event)
    closed: trio.Event = attrs.field(factory=trio.Event)
    drained: trio.Event = attrs.field(factory=trio.Event)
    peer: str | None = None
    """The peer's node id, once the handshake is done."""
    was_up: bool = False
    close_reason: str = ""
    dropped_frames: int = 0


class LinkTable:
    """Every link of a node: opens, reads, sends, closes. Also the effects applier's ``Sender``."""

    def __init__(
        self,
        config: NodeConfig,
        rep: Replicator,
        faults: NodeFaults,
        *,
        now: Callable[[], Now],
        flush: Callable[[], None],
        mark_dirty: Callable[[], None],
        on_broadcast: Callable[[Broadcast], bool],
    ) -> None:
        self._config, self._rep, self._faults = config, rep, faults
        self._now, self._flush, self._mark_dirty = now, flush, mark_dirty
        self._on_broadcast = on_broadcast
        self._limits = wire.DecodeLimits(frame_bytes_max=config.frame_bytes_max)
        self._links: dict[LinkId, Link] = {}
        self._next_id = 1
        self._nursery: trio.Nursery | None = None
        self.counters = {"frames_in": 0, "frames_out": 0, "bad_frames": 0, "frames_dropped_full": 0, "frames_dropped_alarm": 0}
        self.paused = False
        """The disk-full alarm is on: frames from peers are not handed to the replicator (their
        ops stay unacknowledged, and the peers send them again); broadcast messages still go."""

    def start(self, nursery: trio.Nursery) -> None:
        """Run the links' tasks in ``nursery`` (the node's) from now on."""
        self._nursery = nursery

    def __len__(self) -> int:
        return len(self._links)

    def __iter__(self) -> Iterator[Link]:
        return iter(list(self._links.values()))

    def get(self, link: LinkId) -> Link | None:
        return self._links.get(link)

    # ------------------------------------------------------------ open, close

    def open(self, port: Any, *, active: bool, endpoint: str | None) -> Link:
        link = Link(self._next_id, port, active, endpoint)
        self._next_id += 1
        self._links[link.id] = link
        self._rep.connected(link.id, active=active, now=self._now())
        assert self._nursery is not None
        self._nursery.start_soon(self._reader, link)
        self._nursery.start_soon(self._sender, link)
        self._mark_dirty()
        return link

    def close_link(self, link: Link, reason: str) -> None:
        """Close ``link`` now (what is still queued is dropped)."""
        if link.closed.is_set():
            return
        link.close_reason = link.close_reason or reason
        link.closed.set()
        link.wakeup.set()
        self._links.pop(link.id, None)
        self._rep.disconnected(link.id, self._now())
        self._mark_dirty()
        with quietly():
            link.port.close()

    def close(self, link: LinkId, reason: str) -> None:
        """Close a link once what was queued for it (a Refuse, a Bye) went out."""
        found = self._links.get(link)
        if found is not None:
            found.close_reason = reason
            assert self._nursery is not None
            self._nursery.start_soon(self._close_after_send, found, reason)

    async def _close_after_send(self, link: Link, reason: str) -> None:
        with trio.move_on_after(1.0):
            await link.drained.wait()
        self.close_link(link, reason)

    async def wait_drained(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s`` per link) until every link's queue went out."""
        for link in list(self._links.values()):
            with trio.move_on_after(timeout_s):
                await link.drained.wait()

    def close_all(self, reason: str) -> None:
        for link in list(self._links.values()):
            self.close_link(link, reason)

    # ----------------------------------------------------------------- read

    async def _reader(self, link: Link) -> None:
        rep = self._rep
        counters = self.counters
        faults = self._faults
        try:
            async for event in link.port:
                if event.type != "message":
                    if event.type == "messageerror":
                        counters["bad_frames"] += 1
                        rep.bad_frame(link.id, str(event.error or "undecodable payload"), self._now())
                        self._mark_dirty()
                    continue
                data = event.data
                if not isinstance(data, bytes):
                    rep.bad_frame(link.id, "a frame is bytes", self._now())
                    continue
                injector = faults.injector
                if injector is not None and not injector.accepts_from(link.peer):
                    continue
                counters["frames_in"] += 1
                try:
                    frame = wire.decode_frame(data, self._limits)
                except wire.DecodeError as exc:
                    counters["bad_frames"] += 1
                    log.warning("%s: dropping a bad frame from %s: %s", self._config.node_id, link.peer or f"link {link.id}", exc)
                    rep.bad_frame(link.id, str(exc), self._now())
                    self._mark_dirty()
                    continue
                now = self._now()
                paused = self.paused
                if paused:
                    counters["frames_dropped_alarm"] += 1
                for msg in frame.messages:
                    if isinstance(msg, Broadcast):
                        if not self._on_broadcast(msg):
                            counters["bad_frames"] += 1
                    elif not paused:
                        rep.received(link.id, msg, now)
                self._flush()
        except (ports.PortsError, trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            self.close_link(link, "closed by the peer or lost")

    # ----------------------------------------------------------------- send

    async def _sender(self, link: Link) -> None:
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
            self.close_link(link, "send failed")

    def send(self, link: LinkId, messages: Sequence[Message | Broadcast], urgent: bool) -> None:
        """Frame ``messages`` and queue them on ``link`` (gone: dropped)."""
        found = self._links.get(link)
        if found is None:
            return
        injector = self._faults.injector
        for chunk in _chunks(messages, self._config.frame_bytes_max):
            frame = wire.encode_frame(chunk, priority=urgent)
            if injector is None:
                self._enqueue(found, frame, urgent)
                continue
            for delay in injector.plan(found.peer):
                if delay <= 0:
                    self._enqueue(found, frame, urgent)
                elif self._nursery is not None:
                    self._nursery.start_soon(self._enqueue_later, found, frame, urgent, delay)

    def broadcast(self, msg: Broadcast) -> None:
        """Send a broadcast message to every peer linked now."""
        linked = {p.link for p in self._rep.peers.values()}
        for link in list(self._links.values()):
            if link.peer is not None and link.id in linked:
                self.send(link.id, [msg], False)

    async def _enqueue_later(self, link: Link, frame: bytes, priority: bool, delay: float) -> None:
        await trio.sleep(delay)
        self._enqueue(link, frame, priority)

    def _enqueue(self, link: Link, frame: bytes, priority: bool) -> None:
        if link.closed.is_set():
            return
        if link.queued_bytes + len(frame) > self._config.send_queue_bytes_max:
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
                self.close_link(link, "send failed")
                return
            else:
                self.counters["frames_out"] += 1
                return
        link.queue.append((frame, priority))
        link.queued_bytes += len(frame)
        if link.drained.is_set():
            link.drained = trio.Event()
        link.wakeup.set()


def quietly() -> contextlib.suppress:
    """Suppress errors from closing something already broken."""
    return contextlib.suppress(Exception)


def port_options(config: NodeConfig) -> ports.PortOptions:
    """The port options a node uses for its peer links."""
    beat, silence = config.heartbeat_interval_s, config.heartbeat_timeout_s
    return ports.PortOptions(
        # the ports' own heartbeats and ZeroMQ's, on the node's timing
        heartbeat_interval_s=beat,
        heartbeat_timeout_s=silence,
        zmq_heartbeat_interval_s=beat,
        zmq_heartbeat_timeout_s=silence,
        zmq_heartbeat_ttl_s=silence,
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
