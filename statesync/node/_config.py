"""Node configuration: one attrs class, loadable from TOML.

Every option has a default fit for a local cluster. A TOML file holds the same
names (``node_id``, ``listen``, ``peers``...), plus optional tables
``[strategy]`` (prefix -> strategy name, ``"" = default``) and ``[faults]``
(test-only fault injection). Unknown names are errors that say which names
exist, so a typo never passes silently.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs

from statesync.core import ReplicatorConfig, StatesyncError, StrategySpec, ValueLimits
from statesync.core._strategy import Strategies
from statesync.errors import ConfigError as ConfigError  # noqa: PLC0414  (re-exported)
from statesync.ports import InvalidKey, split_key

FRAME_BYTES_LIMIT = 1_000_000
"""Node frames travel as one bytes payload of a port; the wire refuses bytes over 1 MiB."""

_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _endpoints(value: object) -> tuple[str, ...]:
    """Endpoints of other nodes: each may name that node's public key (``?key=<Z85>``)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"an endpoint list must be a string or a list of strings, not {type(value).__name__}")
    out = []
    for item in value:
        if not isinstance(item, str) or "://" not in item:
            raise ConfigError(f"endpoint {item!r} is not of the form tcp://host:port, ipc:///path or inproc://name")
        try:
            address, _ = split_key(item)
        except InvalidKey as exc:
            raise ConfigError(str(exc)) from exc
        scheme = address.split("://", 1)[0]
        if scheme not in ("tcp", "ipc", "inproc"):
            raise ConfigError(f"endpoint {address!r} uses {scheme}://; use tcp://, ipc:// or inproc://")
        out.append(item)
    return tuple(out)


def _own_endpoints(value: object) -> tuple[str, ...]:
    """This node's own endpoints (listen, advertise): its key is added, never written."""
    out = _endpoints(value)
    for item in out:
        address, key = split_key(item)
        if key is not None:
            raise ConfigError(
                f"endpoint {address}?key=...: this node's own endpoints carry its key "
                "automatically (from secret_key_file); drop ?key="
            )
    return out


_LOOPBACK_NAMES = frozenset({"localhost", "lo", "ip6-localhost"})


def is_local_endpoint(endpoint: str) -> bool:
    """Whether binding ``endpoint`` is reachable from this host only (loopback, ipc, inproc)."""
    address, _ = split_key(endpoint)
    scheme, _, rest = address.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name, a host name, or * (every interface)


@attrs.frozen
class FaultConfig:
    """Fault injection in the transport, for tests: driven by ``seed``."""

    seed: int = 0
    drop: float = 0.0
    """Probability that an outgoing frame is dropped."""
    dup: float = 0.0
    """Probability that an outgoing frame is sent twice."""
    delay_ms: tuple[int, int] = (0, 0)
    """Each outgoing frame is held for a uniform delay in this range (reorders them)."""
    cut: tuple[str, ...] = ()
    """Node ids whose links are cut: frames to and from them are dropped."""

    def __attrs_post_init__(self) -> None:
        for name in ("drop", "dup"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"faults.{name} = {v} must be a probability between 0 and 1")
        lo, hi = self.delay_ms
        if not 0 <= lo <= hi:
            raise ConfigError(f"faults.delay_ms = {list(self.delay_ms)} must be [low, high] with 0 <= low <= high")


def parse_listen(value: object) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6; port 0 picks a free one) as (host, port)."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"metrics_listen = {value!r}: write HOST:PORT, for example 127.0.0.1:9464")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"metrics_listen = {value!r}: write HOST:PORT with a port 0-65535, for example 127.0.0.1:9464")
    return host, int(port_text)


@attrs.frozen
class NodeConfig:
    """Everything a node needs. Only ``node_id`` is required."""

    node_id: str
    listen: tuple[str, ...] = attrs.field(default=("tcp://127.0.0.1:*",), converter=_own_endpoints)
    """Endpoints to accept peers on. ``*`` or ``0`` as a port picks a free one."""
    peers: tuple[str, ...] = attrs.field(default=(), converter=_endpoints)
    """Endpoints of nodes to connect to; more are learned from them. With keys, each
    names that node's public key: ``tcp://10.0.0.2:7000?key=<Z85>``."""
    advertise: tuple[str, ...] = attrs.field(default=(), converter=_own_endpoints)
    """Endpoints other nodes should use to reach this one (default: the bound ``listen`` ones)."""
    data_dir: str | None = None
    """Where the op log and snapshots live; ``None`` keeps everything in memory."""
    durability: str = "process"
    """``process``: survives a crash of the process; ``fsync``: also survives power loss."""
    strategy: Any = "vector-clock"
    """A strategy name, a resolver function, or ``{prefix: strategy}``."""
    client: str | None = None
    """Endpoint serving local clients (the CLI and ``statesync.Client``); None: none."""
    write_timeout_s: float = 10.0
    """Default deadline of a write's concern when ``ack`` is not ``local``."""
    sync_interval_s: float = 2.0
    retransmit_timeout_s: float = 1.0
    handshake_timeout_s: float = 5.0
    max_drift_s: float = 60.0
    heartbeat_interval_s: float = 0.5
    heartbeat_timeout_s: float = 3.0
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    log_ops_max: int = 1_000_000
    """Ops kept in memory for peers that lag; past it, they get a snapshot."""
    checkpoint_ops: int = 200_000
    """A full snapshot is written, and the on-disk log truncated, once this many ops
    (or as many as the tree has leaves, if more) were logged since the last one."""
    pending_ops_max: int = 100_000
    watch_buffer_max: int = 10_000
    watch_resume_events_max: int = 100_000
    """Changes kept for watches that resume from a token (0: none, no resume)."""
    watch_resume_bytes_max: int = 64 << 20
    """Bound on the values those changes hold (a typed text's change holds the whole text);
    the oldest go first, and a watcher resuming from before them gets ``lagged``."""
    mesh_max: int = 64
    frame_bytes_max: int = 1_000_000
    """Largest frame between nodes (at most 1,000,000: the transport's payload bound).
    Messages carrying ops or snapshot entries are bounded at a quarter of it,
    and so is one value (a few concurrent versions of a leaf fit in one frame)."""
    send_queue_bytes_max: int = 256 << 20
    coalesce_ops_max: int = 1024
    """Local writes that may join one frame to a peer. The first write of a
    scheduling turn goes at once (an idle link never holds a write); the ones
    that follow while the writer runs on join the next frame, which goes when
    the writer yields, or at once when this many ops, ``coalesce_bytes_max`` or
    ``coalesce_hold_max_s`` are reached (the writer then yields)."""
    coalesce_bytes_max: int = 256 << 10
    """Estimated bytes of held writes that send the frame at once."""
    coalesce_hold_max_s: float = 0.002
    """The longest a local write waits to join a frame."""
    commit_inline_ops_max: int = 64
    """With ``durability="process"``, a write of at most this many ops (and
    nothing else pending) is committed in the writer's task, at once, rather
    than in the store's worker thread (one trip and two task switches)."""
    ack_delay_s: float = 0.005
    """A peer acknowledges ops it received at most this late (one cumulative ACK
    for every frame in between); at once when a writer waits on ``ack``."""
    ack_ops_max: int = 1024
    """Ops received since the last ACK that make the next ACK go at once."""
    tune_gc: bool = False
    """Tune Python's garbage collector for a process that runs this node (and
    little else): freeze what startup loaded, collect the youngest generation
    every 50,000 allocations instead of 700, and run a full collection every
    ``gc_interval_s``. Worth about 30 % of write throughput on large trees.
    Off by default because it changes a process-wide setting; ``statesync
    node`` turns it on."""
    gc_interval_s: float = 60.0
    secret_key_file: str | None = None
    """This node's CURVE key pair (``statesync keygen NAME`` writes ``NAME.key_secret``).
    With it, every peer and client connection is encrypted and authenticated."""
    authorized_keys_file: str | None = None
    """Which public keys may connect, and as what (``peer``, ``read``, ``write``); reloaded
    on SIGHUP (``Node.reload_keys()``). Required with ``secret_key_file``."""
    allow_insecure: bool = False
    """Without keys a node binds only loopback, ipc:// and inproc:// endpoints; this lets it
    bind other addresses unauthenticated and unencrypted (it logs a warning at start)."""
    faults: FaultConfig | None = None
    leases_max: int = 10_000
    """Leases one node holds at once (granted here, not yet ended); more are refused."""
    leases_per_client_max: int = 1_000
    """Leases one client (by the client id its grants name) holds on one node at once."""
    lease_keys_max: int = 10_000
    """Keys tied to one lease."""
    metrics_listen: str | None = None
    """``HOST:PORT`` serving Prometheus metrics at ``/metrics`` (``statesync node
    --metrics``), for example ``127.0.0.1:9464``; port 0 picks a free one; None: off."""
    disk_probe_interval_s: float = 5.0
    """While the disk-full alarm is on, how often the node retries its held commit
    (it also retries at once after a checkpoint compacted the log)."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not _NODE_ID.match(self.node_id):
            raise ConfigError(
                f"node_id {self.node_id!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        if self.durability not in ("process", "fsync"):
            raise ConfigError(f"durability = {self.durability!r}; use 'process' or 'fsync'")
        for name in (
            "write_timeout_s",
            "sync_interval_s",
            "retransmit_timeout_s",
            "handshake_timeout_s",
            "max_drift_s",
            "heartbeat_interval_s",
            "heartbeat_timeout_s",
            "reconnect_min_s",
            "reconnect_max_s",
            "gc_interval_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} = {value!r} must be a positive number of seconds")
        for name in ("coalesce_hold_max_s", "ack_delay_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{name} = {value!r} must be a number of seconds >= 0")
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ConfigError("heartbeat_timeout_s must be larger than heartbeat_interval_s")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ConfigError(
                f"reconnect_min_s = {self.reconnect_min_s} exceeds reconnect_max_s = {self.reconnect_max_s}; "
                "the reconnect backoff grows from the first to the second"
            )
        for name in (
            "log_ops_max",
            "checkpoint_ops",
            "pending_ops_max",
            "watch_buffer_max",
            "mesh_max",
            "frame_bytes_max",
            "send_queue_bytes_max",
            "coalesce_ops_max",
            "coalesce_bytes_max",
            "ack_ops_max",
            "commit_inline_ops_max",
            "leases_max",
            "leases_per_client_max",
            "lease_keys_max",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} = {value!r} must be a positive integer")
        if not isinstance(self.watch_resume_bytes_max, int) or self.watch_resume_bytes_max <= 0:
            raise ConfigError(f"watch_resume_bytes_max = {self.watch_resume_bytes_max!r} must be a positive integer (bytes)")
        if not isinstance(self.watch_resume_events_max, int) or self.watch_resume_events_max < 0:
            raise ConfigError(
                f"watch_resume_events_max = {self.watch_resume_events_max!r} must be an integer >= 0 (0: no watch resume)"
            )
        if self.frame_bytes_max > FRAME_BYTES_LIMIT or self.frame_bytes_max < 16_384:
            raise ConfigError(
                f"frame_bytes_max = {self.frame_bytes_max} must be between 16384 and {FRAME_BYTES_LIMIT} (the transport's payload bound)"
            )
        if not self.listen:
            raise ConfigError("listen must name at least one endpoint, for example tcp://127.0.0.1:7001")
        self._check_security()
        if self.metrics_listen is not None:
            parse_listen(self.metrics_listen)
        if not isinstance(self.disk_probe_interval_s, int | float) or self.disk_probe_interval_s <= 0:
            raise ConfigError(f"disk_probe_interval_s = {self.disk_probe_interval_s!r} must be a positive number of seconds")
        try:
            Strategies.from_spec(self.strategy)
        except StatesyncError as exc:
            raise ConfigError(f"strategy: {exc}") from exc

    def _check_security(self) -> None:
        for name in ("secret_key_file", "authorized_keys_file"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{name} must be the path of a file")
        if not isinstance(self.allow_insecure, bool):
            raise ConfigError(f"allow_insecure = {self.allow_insecure!r} must be true or false")
        if (self.secret_key_file is None) != (self.authorized_keys_file is None):
            raise ConfigError(
                "set both secret_key_file (this node's key pair) and authorized_keys_file "
                "(the keys it admits), or neither"
            )
        if self.secret_key_file is not None:
            for peer in self.peers:
                address, key = split_key(peer)
                if key is None:
                    raise ConfigError(
                        f"peer {address} has no key: with keys configured, write each peer as "
                        f"{address}?key=<that node's public key>"
                    )
            return
        for peer in self.peers:
            address, key = split_key(peer)
            if key is not None:
                raise ConfigError(
                    f"peer {address} names a key but this node has none: set secret_key_file "
                    "and authorized_keys_file, or drop ?key="
                )
        if self.allow_insecure:
            return
        client = self.client.strip() if isinstance(self.client, str) else None
        client_ep = client if client is not None and "://" in client else None
        for endpoint in (*self.listen, *([client_ep] if client_ep else [])):
            if not is_local_endpoint(endpoint):
                raise ConfigError(
                    f"{endpoint} is reachable from other hosts and this node has no keys: anyone "
                    "could read and write its tree; set secret_key_file and authorized_keys_file "
                    "(README: Securing a cluster), or allow_insecure = true (statesync node "
                    "--insecure) on a network you trust"
                )

    @property
    def insecure_endpoints(self) -> tuple[str, ...]:
        """Endpoints this node binds that other hosts can reach without keys (warned about)."""
        if self.secret_key_file is not None:
            return ()
        client = self.client.strip() if isinstance(self.client, str) else ""
        bound = (*self.listen, *([client] if "://" in client else []))
        return tuple(e for e in bound if not is_local_endpoint(e))

    # ------------------------------------------------------------------ derived

    def strategies(self) -> Strategies:
        return Strategies.from_spec(self.strategy)

    def replicator_config(self) -> ReplicatorConfig:
        quarter = self.frame_bytes_max // 4
        return ReplicatorConfig(
            sync_interval_s=self.sync_interval_s,
            retransmit_timeout_s=self.retransmit_timeout_s,
            handshake_timeout_s=self.handshake_timeout_s,
            max_drift_s=self.max_drift_s,
            members_max=self.mesh_max,
            ack_delay_s=self.ack_delay_s,
            ack_ops_max=self.ack_ops_max,
            ops_message_bytes_max=quarter,
            sync_chunk_bytes_max=quarter,
            snapshot_chunk_bytes_max=quarter,
            persists=self.data_dir is not None,
        )

    def value_limits(self) -> ValueLimits:
        """One value is at most a quarter of a frame, so that it always travels."""
        quarter = self.frame_bytes_max // 4
        return ValueLimits(value_bytes_max=quarter, str_chars_max=quarter)

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "configuration") -> NodeConfig:
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown option {unknown[0]!r}; known options are {', '.join(sorted(known))}"
            )
        if "node_id" not in data:
            raise ConfigError(f"{source}: node_id is missing; every node needs a unique node_id")
        values = dict(data)
        faults = values.get("faults")
        if isinstance(faults, Mapping):
            fault_known = {a.name for a in attrs.fields(FaultConfig)}
            bad = sorted(set(faults) - fault_known)
            if bad:
                raise ConfigError(f"{source}: unknown option faults.{bad[0]}; known: {', '.join(sorted(fault_known))}")
            f = dict(faults)
            if "delay_ms" in f:
                f["delay_ms"] = tuple(f["delay_ms"])
            if "cut" in f:
                f["cut"] = tuple(f["cut"])
            values["faults"] = FaultConfig(**f)
        strategy = values.get("strategy")
        if isinstance(strategy, Mapping):
            values["strategy"] = dict(strategy)
        if "data_dir" in values and values["data_dir"] is not None:
            values["data_dir"] = os.fspath(values["data_dir"])
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> NodeConfig:
        """Load a TOML file; relative ``data_dir`` paths are taken from the file's folder.

        ``overrides`` (for example from command-line flags) replace file values.
        """
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist; check the path") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        data.update({k: v for k, v in overrides.items() if v is not None})
        base = os.path.dirname(os.path.abspath(path))
        for name in RELATIVE_PATHS:
            if isinstance(data.get(name), str) and not os.path.isabs(data[name]):
                data[name] = os.path.join(base, data[name])
        return cls.from_mapping(data, source=path)

    def to_mapping(self) -> dict[str, Any]:
        """Plain data (TOML-friendly where the strategy is a name)."""
        out: dict[str, Any] = {}
        for a in attrs.fields(NodeConfig):
            value = getattr(self, a.name)
            if isinstance(value, tuple):
                value = list(value)
            if isinstance(value, FaultConfig):
                value = attrs.asdict(value)
            out[a.name] = value
        return out


StrategyConfig = StrategySpec | Mapping[str, StrategySpec]

RELATIVE_PATHS = ("data_dir", "secret_key_file", "authorized_keys_file")
"""Options holding paths; relative ones in a TOML file are taken from the file's folder."""
