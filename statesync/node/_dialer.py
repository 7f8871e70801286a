"""The dialer: which peers to connect to, and the links kept up to them.

One task per peer endpoint (from the configuration, from the peers this node
remembers, and from members learned through gossip, up to ``mesh_max``). It
opens an active link, and when the link closes opens it again after a delay
from one :class:`statesync._backoff.Backoff` (jittered, doubling from
``reconnect_min_s`` to ``reconnect_max_s``, reset once a link got up). It
stays idle while the peer is linked the other way round, and stops for good
on an endpoint that turns out to be this node itself, or one the security
policy does not trust (a key reload that admits it starts it again).

The dialer also keeps the membership facts the links teach: which endpoint
belongs to which peer, and every peer's endpoints (persisted, so that a
restarted node dials them again).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import trio

from statesync import ports
from statesync._backoff import Backoff
from statesync.core import RefuseReason, Replicator
from statesync.node._config import NodeConfig
from statesync.node._link import LinkTable, port_options
from statesync.node._security import PEER_DOMAIN, NodeSecurity

log = logging.getLogger("statesync.node")

Endpoints = dict[str, tuple[str, ...]]


class Dialer:
    """Dials peer endpoints and re-dials them; learns who is where from the links."""

    def __init__(
        self,
        config: NodeConfig,
        security: NodeSecurity,
        runtime: ports.PortRuntime,
        links: LinkTable,
        rep: Replicator,
        *,
        known: Endpoints,
        save_peers: Callable[[Endpoints], None],
    ) -> None:
        self._config, self._security, self._runtime = config, security, runtime
        self._links, self._rep = links, rep
        self.known = known
        """Every peer's endpoints, as far as this node knows (persisted)."""
        self._save_peers = save_peers
        self._dialing: set[str] = set()
        self._endpoint_peer: dict[str, str] = {}
        self._peer_down: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._own: tuple[str, ...] = ()
        self._stopped = False

    @property
    def port_options(self) -> ports.PortOptions:
        """The options of a peer link (CURVE keys included when the node has them)."""
        return self._security.options(port_options(self._config), PEER_DOMAIN)

    def start(self, nursery: trio.Nursery, own_endpoints: tuple[str, ...]) -> None:
        """Dial the configured and the remembered peers; dial in ``nursery`` from now on."""
        self._nursery = nursery
        self._own = own_endpoints
        for endpoint in self._config.peers:
            self.dial(endpoint)
        for peer, endpoints in self.known.items():
            if peer != self._config.node_id and endpoints:
                self.dial(endpoints[0])

    def stop(self) -> None:
        """No new attempt from now on (the node is closing)."""
        self._stopped = True

    def dial(self, endpoint: str) -> None:
        """Keep a link to ``endpoint`` up, unless a task does already."""
        if endpoint in self._dialing or endpoint in self._own or self._nursery is None:
            return
        self._dialing.add(endpoint)
        self._nursery.start_soon(self._keep_linked, endpoint)

    def redial_admitted(self) -> None:
        """After a key reload: dial again the endpoints refused before whose key is now trusted."""
        security = self._security
        for endpoint in list(security.stopped_dials):
            if security.may_dial(endpoint) is None:
                security.stopped_dials.discard(endpoint)
                self.dial(endpoint)

    def on_peers(self, up: list[str], down: list[str], discovered: list[tuple[str, tuple[str, ...]]]) -> None:
        """What the replicator reported: peers linked, peers gone, members learned."""
        node_id = self._config.node_id
        for peer in up:
            state = self._rep.peers.get(peer)
            link = self._links.get(state.link) if state and state.link is not None else None
            if link is not None:
                link.peer = peer
                link.was_up = True
                if link.endpoint is not None:
                    self._endpoint_peer[link.endpoint] = peer
            if state is not None and state.endpoints:
                self.known[peer] = state.endpoints
            self._peer_down.setdefault(peer, trio.Event())
            log.info("%s: linked with %s", node_id, peer)
        for peer in down:
            event = self._peer_down.pop(peer, None)
            if event is not None:
                event.set()
            log.info("%s: link with %s closed", node_id, peer)
        if up:
            self._save_peers(dict(self.known))
        for peer, endpoints in discovered:
            self.known.setdefault(peer, endpoints)
            if len(self._dialing) < self._config.mesh_max:
                for endpoint in endpoints[:1]:
                    self.dial(endpoint)

    async def _keep_linked(self, endpoint: str) -> None:
        cfg = self._config
        security = self._security
        backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s, rng=random.Random())
        while not self._stopped:
            refusal = security.may_dial(endpoint)
            if refusal is not None:
                # A peer gossiped it, or the list changed: never connect to a server this
                # node does not trust. A reload that admits the key starts it again.
                security.refusals.log("%s: not connecting to %s", cfg.node_id, refusal)
                security.stopped_dials.add(endpoint)
                break
            peer = self._endpoint_peer.get(endpoint)
            linked = self._rep.peers.get(peer) if peer is not None else None
            if peer is not None and linked is not None and linked.link is not None:
                # Linked already (perhaps the other way round): wait until that ends.
                await self._peer_down.setdefault(peer, trio.Event()).wait()
                continue
            try:
                with trio.fail_after(cfg.handshake_timeout_s):
                    port = await self._runtime.connect(endpoint, self.port_options)
            except ports.HandshakeFailed as exc:
                security.refusals.log("%s: cannot link with a peer: %s", cfg.node_id, exc)
            except (ports.PortsError, trio.TooSlowError, OSError) as exc:
                log.debug("%s: cannot reach %s: %s", cfg.node_id, endpoint, exc)
            else:
                link = self._links.open(port, active=True, endpoint=endpoint)
                await link.closed.wait()
                if link.close_reason == RefuseReason.SAME_ID:
                    log.info("%s: %s is this node itself; not connecting to it", cfg.node_id, endpoint)
                    return
                if link.was_up:
                    backoff.reset()
            await trio.sleep(backoff.next_s())
        self._dialing.discard(endpoint)
