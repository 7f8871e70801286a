"""Prometheus metrics of one node, served over HTTP from the node's trio world.

Each node has its own :class:`prometheus_client.CollectorRegistry` (several
nodes in one process never share a metric). Almost every figure is read at
scrape time from what the node already keeps (``Node.status()``: counters,
peers, the log, the store, watches, the alarm), so the write path pays
nothing for metrics; the one thing measured on the way is the ack latency
histogram (one ``observe`` per write that waited for its concern).

The page is served by a small HTTP/1.0 responder on ``trio`` (``GET
/metrics``; one request per connection), not by prometheus_client's own
server: that one runs in a thread, and collecting there would read the
replicator's dicts while the trio thread changes them. Here rendering runs in
the trio thread between two steps of the node, so it always sees one
consistent state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from statesync.errors import ConfigError
from statesync.node._config import parse_listen

log = logging.getLogger("statesync.node")

REQUEST_BYTES_MAX = 8192
"""The longest request head the responder reads; longer gets 431."""
REQUEST_TIMEOUT_S = 5.0
"""A client that has not sent its request head by then is dropped."""
CONNECTIONS_MAX = 16
"""Scrapes served at once; past it a connection gets 503 at once."""
ACK_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeMetrics:
    """The metrics of one node: its registry, the ack latency histogram, and a collector
    that turns ``status()`` (a callable returning ``Node.status()``) into metric families."""

    def __init__(self, node_id: str, status: Callable[[], Mapping[str, Any]]) -> None:
        self.node_id = node_id
        self.registry = CollectorRegistry(auto_describe=False)
        self.ack_latency = Histogram(
            "statesync_ack_latency_seconds",
            "Time from a local write to its write concern met, for writes that waited",
            registry=self.registry,
            buckets=ACK_BUCKETS_S,
        )
        self.registry.register(_StatusCollector(status))

    def render(self) -> bytes:
        """The page in Prometheus text format."""
        return generate_latest(self.registry)


class _StatusCollector(Collector):
    def __init__(self, status: Callable[[], Mapping[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        s = self._status()
        for family, name, doc, section, key in _SIMPLE:
            where: Mapping[str, Any] = s if section is None else s.get(section, {})
            value = where.get(key, 0)
            yield family(name, doc, value=float(value))
        transport: Mapping[str, int] = s.get("transport", {})
        frames = CounterMetricFamily("statesync_frames", "Frames between nodes, by what happened to them", labels=["kind"])
        for kind in ("frames_in", "frames_out", "bad_frames", "frames_dropped_full", "frames_dropped_alarm"):
            frames.add_metric([kind.replace("frames_", "").replace("_frames", "")], transport.get(kind, 0))
        yield frames
        yield from self._peers(s.get("peers", {}))
        yield from self._refusals(s)

    def _peers(self, peers: Mapping[str, Mapping[str, Any]]) -> Iterable[Metric]:
        lacking = GaugeMetricFamily("statesync_peer_lacking_ops", "Ops this node has that the peer has not acknowledged", labels=["peer"])
        behind = GaugeMetricFamily("statesync_peer_ahead_ops", "Ops the peer acknowledged having that this node lacks", labels=["peer"])
        up = GaugeMetricFamily("statesync_link_up", "1 while the link to the peer is up", labels=["peer"])
        for peer, p in peers.items():
            lacking.add_metric([peer], p.get("they_lack_ops", 0))
            behind.add_metric([peer], p.get("we_lack_ops", 0))
            up.add_metric([peer], 1 if p.get("connected") else 0)
        return (lacking, behind, up)

    def _refusals(self, s: Mapping[str, Any]) -> Iterable[Metric]:
        refusals = CounterMetricFamily("statesync_refusals", "Refusals: peers refused by the protocol, connections and requests by keys", labels=["kind"])
        counters: Mapping[str, int] = s.get("counters", {})
        security: Mapping[str, Any] = s.get("security", {})
        refusals.add_metric(["peer"], counters.get("refused", 0))
        refusals.add_metric(["connection"], security.get("refused_connections", 0))
        refusals.add_metric(["request"], security.get("refused_requests", 0))
        return (refusals,)


_C, _G = CounterMetricFamily, GaugeMetricFamily
_SIMPLE: tuple[tuple[type[CounterMetricFamily] | type[GaugeMetricFamily], str, str, str | None, str], ...] = (
    # (family, name, help, section of Node.status() or None for the top, key)
    (_C, "statesync_writes", "Ops written on this node (its own sequence number)", None, "seq"),
    (_C, "statesync_applied_ops", "Ops received from peers and handed to the replica", "counters", "ops_received"),
    (_C, "statesync_sent_ops", "Ops sent to peers (retransmissions included)", "counters", "ops_sent"),
    (_C, "statesync_retransmitted_ops", "Ops sent again because no ack came", "counters", "ops_retransmitted"),
    (_C, "statesync_snapshots_installed", "Snapshots from peers installed", "counters", "snapshots_installed"),
    (_G, "statesync_links", "Links to peers open now (handshake done or not)", None, "links"),
    (_G, "statesync_causal_buffer_ops", "Ops received ahead of their causal past, held until it arrives", None, "causal_buffer_ops"),
    (_G, "statesync_pending_writes", "Local writes waiting for their write concern", None, "pending_writes"),
    (_G, "statesync_log_ops", "Ops kept in memory for peers that lag", None, "log_ops"),
    (_G, "statesync_leaves", "Leaves in the tree", None, "leaves"),
    (_G, "statesync_store_log_ops", "Ops in the durable log since the last checkpoint", "storage", "log_ops"),
    (_G, "statesync_disk_bytes", "Bytes of the store's files", "storage", "disk_bytes"),
    (_G, "statesync_watches", "Watches open now", None, "watches"),
    (_G, "statesync_watch_lag_events", "Events buffered for the slowest watcher", "watch", "backlog_max"),
    (_C, "statesync_watch_lagged_events", "Times a watcher fell behind its buffer and got a lagged event", "watch", "lagged_events"),
    (_G, "statesync_disk_full_alarm", "1 while the disk-full alarm is on: local writes fail, peers' ops are not acknowledged", "alarm", "disk_full"),
    (_C, "statesync_disk_full_alarms", "Times the disk-full alarm went on", "alarm", "raised"),
    (_C, "statesync_writes_refused_full", "Local writes refused with StorageFull", "alarm", "writes_refused"),
)


# ---------------------------------------------------------------- the responder


async def serve_metrics(
    metrics: NodeMetrics, listen: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``metrics`` on ``listen`` (HOST:PORT) until cancelled; started with the bound HOST:PORT."""
    host, port = parse_listen(listen)
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ConfigError(f"metrics_listen = {listen!r}: cannot listen there ({exc.strerror}); choose a free HOST:PORT") from exc
    sockname = listeners[0].socket.getsockname()
    bound = f"[{sockname[0]}]:{sockname[1]}" if ":" in sockname[0] else f"{sockname[0]}:{sockname[1]}"
    log.info("%s: metrics on http://%s/metrics", metrics.node_id, bound)
    limiter = trio.CapacityLimiter(CONNECTIONS_MAX)

    async def answer(stream: trio.SocketStream) -> None:
        await _answer(stream, metrics, limiter)

    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(answer, listeners, handler_nursery=nursery)


async def _answer(stream: trio.SocketStream, metrics: NodeMetrics, limiter: trio.CapacityLimiter) -> None:
    try:
        async with stream:
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                await _reply(stream, 503, b"too many scrapes at once\n")
                return
            try:
                head = await _read_head(stream)
                if head is None:
                    await _reply(stream, 431, b"request head too long\n")
                    return
                parts = head.split(b"\r\n", 1)[0].split()
                if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
                    await _reply(stream, 405, b"only GET /metrics\n")
                elif parts[1].split(b"?", 1)[0] not in (b"/metrics", b"/"):
                    await _reply(stream, 404, b"the metrics are at /metrics\n")
                else:
                    body = metrics.render()
                    await _reply(stream, 200, b"" if parts[0] == b"HEAD" else body, CONTENT_TYPE_LATEST, len(body))
            finally:
                limiter.release()
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
        pass  # the scraper went away: nothing to tell it


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    data = b""
    with trio.fail_after(REQUEST_TIMEOUT_S):
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            if len(data) > REQUEST_BYTES_MAX:
                return None
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    return data


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


async def _reply(
    stream: trio.SocketStream, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8", length: int | None = None
) -> None:
    head = (
        f"HTTP/1.0 {code} {_REASONS[code]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n"
    )
    await stream.send_all(head.encode("ascii") + body)
