"""A node's security: its key pair, its authorized keys, and what each key may do.

With ``secret_key_file`` and ``authorized_keys_file`` set, every connection of
the node uses CURVE. Its two listeners have their own ZAP domain, and the
port runtime asks :meth:`NodeSecurity.authorize` about each key:

- the peer listener (``statesync.peer``) admits ``peer`` keys only;
- the client listener (``statesync.client``) admits ``read``, ``write`` and
  ``peer`` keys (a peer key can already write anything through replication, so
  it gains nothing there; it lets an operator use a node's own key, or any peer
  key, for administration on that host).

The node's own key is admitted on both, with the rights of a peer: whoever can
read its secret key file can be this node anyway.

Before the node connects to a peer endpoint (from its configuration or learned
from gossip) it checks that the key the endpoint names is a ``peer`` key on its
own list: a peer cannot steer it to a server it does not trust.

ZAP runs only at the handshake; :meth:`reload` re-reads the authorized keys and
the node then closes the connections whose key lost its access
(``PortRuntime.recheck_links``), and every client request is checked against
the current list (:meth:`check_request`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

import attrs

from statesync import ports
from statesync._ratelimit import RateLimitedLog
from statesync.core import Path, format_path
from statesync.errors import AccessDenied as AccessDenied  # noqa: PLC0414  (re-exported)
from statesync.node._config import ConfigError, NodeConfig
from statesync.protocol import ADMIN_OPS, READ_OPS, WRITE_OPS, Sync
from statesync.security import (
    OWN_KEY_GRANT,
    AuthorizedKeys,
    Grant,
    load_secret_key_file,
)

log = logging.getLogger("statesync.node.security")

PEER_DOMAIN: Final = "statesync.peer"
CLIENT_DOMAIN: Final = "statesync.client"
CLIENT_ROLES: Final = frozenset({"read", "write", "peer"})


class NodeSecurity:
    """Keys and grants of one node (no keys: everything is allowed, as on loopback)."""

    def __init__(self, config: NodeConfig, keys: ports.CurveKeys | None, authorized: AuthorizedKeys | None) -> None:
        self.config = config
        self.node_id = config.node_id
        self.keys = keys
        self.authorized = authorized
        self.refusals = RateLimitedLog(log, logging.WARNING, what="refused connections")
        self.denials = RateLimitedLog(log, logging.WARNING, what="refused requests")
        self.reloads = 0
        #: peer endpoints this node stopped dialing because their key was not a peer key
        self.stopped_dials: set[str] = set()

    @classmethod
    def load(cls, config: NodeConfig) -> NodeSecurity:
        """Read the key files named by ``config`` (KeyFileError if one is wrong)."""
        if config.secret_key_file is None or config.authorized_keys_file is None:
            return cls(config, None, None)
        keys = load_secret_key_file(config.secret_key_file)
        authorized = AuthorizedKeys.load(config.authorized_keys_file, secrets=[keys.secret])
        security = cls(config, keys, authorized)
        for peer in config.peers:
            if ports.split_key(peer)[1] == keys.secret:
                raise ConfigError(
                    "peers: an endpoint's ?key= is this node's SECRET key; name the peer's public "
                    "key there, and make a new key pair (the secret one was exposed)"
                )
            refusal = security.may_dial(peer)
            if refusal is not None:
                raise ConfigError(
                    f"peers: {refusal}; add a line 'peer <that key>' to {config.authorized_keys_file}"
                )
        return security

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    @property
    def public_key(self) -> str | None:
        return None if self.keys is None else self.keys.public

    # -- port options --------------------------------------------------------------

    def options(self, base: ports.PortOptions, domain: str) -> ports.PortOptions:
        """``base`` with this node's key pair and ``domain`` (unchanged without keys)."""
        if self.keys is None:
            return base
        return attrs.evolve(base, curve=self.keys, zap_domain=domain)

    def advertised(self, endpoints: Iterable[str]) -> tuple[str, ...]:
        """``endpoints`` carrying this node's public key (unchanged without keys)."""
        return tuple(ports.with_key(e, self.public_key) for e in endpoints)

    # -- who may connect -----------------------------------------------------------

    def grant(self, key: str | None) -> Grant | None:
        """What ``key`` may do now (None: nothing; without keys there is no key)."""
        if key is None or self.authorized is None:
            return None
        if self.keys is not None and key == self.keys.public:
            return OWN_KEY_GRANT
        return self.authorized.get(key)

    def _refusal(self, domain: str, key: str) -> str | None:
        grant = self.grant(key)
        if grant is None:
            return "not on the authorized list"
        if domain == PEER_DOMAIN:
            return None if grant.role == "peer" else f"a {grant.role} key may not join as a peer"
        if domain == CLIENT_DOMAIN:
            return None if grant.role in CLIENT_ROLES else f"role {grant.role} is not a client role"
        return f"unknown listener domain {domain!r}"

    def authorize(self, request: ports.AuthRequest) -> str | None:
        """The port runtime's authorizer: None admits, a reason refuses (and is logged)."""
        reason = self._refusal(request.domain, request.public_key)
        if reason is not None and request.stage != "recheck":
            listener = "peer" if request.domain == PEER_DOMAIN else "client"
            self.refusals.log(
                "%s: refused key %s from %s on the %s endpoint: %s",
                self.node_id,
                request.public_key,
                request.address or "an unknown address",
                listener,
                reason,
            )
        return reason

    def may_dial(self, endpoint: str) -> str | None:
        """None if this node may connect to ``endpoint`` as a peer, else why not."""
        address, key = ports.split_key(endpoint)
        if self.keys is None:
            # (an endpoint remembered from a run with keys)
            return None if key is None else f"{address} names a key and this node has none"
        if key is None:
            return f"{address} names no key (peers of a node with keys are written address?key=<public key>)"
        grant = self.grant(key)
        if grant is None or grant.role != "peer":
            return f"the key of {address} ({key}) is not a peer key on the authorized list"
        return None

    # -- what a client may do ------------------------------------------------------

    def check_request(self, key: str | None, op: str, paths: Iterable[tuple[Path, bool]], existing_leaf: Any) -> None:
        """Raise AccessDenied unless the client with ``key`` may do ``op`` now.

        ``paths`` are the (path, is_put) pairs a write touches; ``existing_leaf``
        is ``fn(path) -> bool``: whether a leaf value sits at that path (a put
        beneath a leaf replaces it, so a scoped key may not put beneath a leaf
        that lies outside its scope).
        """
        if self.keys is None:
            return
        grant = self.grant(key)
        if grant is None:
            self._deny(key, op, f"the node {self.node_id} no longer admits this key")
        assert grant is not None
        if op in READ_OPS:
            return
        if op in WRITE_OPS:
            if grant.role == "read":
                self._deny(
                    key,
                    op,
                    f"this key is read-only on node {self.node_id}: it may read and watch, not write "
                    "(ask the node's operator for a write key)",
                )
            for path, is_put in paths:
                if not grant.covers(path):
                    self._deny(
                        key,
                        op,
                        f"this key may not write {format_path(path) or '(the root)'}: it may write "
                        f"{grant.scope()} only",
                    )
                if is_put and not grant.unrestricted:
                    for i in range(len(path) - 1, -1, -1):
                        ancestor = path[:i]
                        if not grant.covers(ancestor) and existing_leaf(ancestor):
                            self._deny(
                                key,
                                op,
                                f"writing {format_path(path)} would replace the value at "
                                f"{format_path(ancestor) or '(the root)'}, outside what this key may "
                                f"write ({grant.scope()})",
                            )
            return
        if op == Sync.OP:
            if not grant.may_write:
                self._deny(key, op, "a read-only key may not start a sync round")
            return
        if op in ADMIN_OPS:
            if not grant.unrestricted:
                self._deny(key, op, f"{op} needs a peer key or a write key without prefixes")
            return
        self._deny(key, op, f"unknown request {op!r}")

    def _deny(self, key: str | None, op: str, message: str) -> None:
        grant = self.grant(key)
        who = grant.describe(key) if grant is not None and key is not None else str(key)
        self.denials.log("%s: refused a %s request from key %s: %s", self.node_id, op, who, message)
        raise AccessDenied(message)

    # -- reload and status ---------------------------------------------------------

    def reload(self) -> AuthorizedKeys:
        """Re-read the authorized-keys file; on an error the old list stays (KeyFileError)."""
        if self.keys is None or self.config.authorized_keys_file is None:
            raise ConfigError(
                f"node {self.node_id} has no keys to reload; set secret_key_file and authorized_keys_file"
            )
        authorized = AuthorizedKeys.load(self.config.authorized_keys_file, secrets=[self.keys.secret])
        self.authorized = authorized
        self.reloads += 1
        return authorized

    def status(self, refused_connections: int) -> dict[str, Any]:
        """Public facts only: the public key, counts per role, refusals (never a secret)."""
        if self.keys is None or self.authorized is None:
            return {
                "curve": False,
                "insecure_endpoints": list(self.config.insecure_endpoints),
            }
        return {
            "curve": True,
            "public_key": self.keys.public,
            "authorized_keys_file": self.config.authorized_keys_file,
            "authorized": self.authorized.counts(),
            "reloads": self.reloads,
            "refused_connections": refused_connections,
            "refused_requests": self.denials.total,
        }
