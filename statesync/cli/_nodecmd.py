"""``statesync node``: build a NodeConfig from a TOML file and flags, run the node until a signal."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from statesync.cli._errors import UsageError
from statesync.core import StatesyncError
from statesync.node import Node, NodeConfig, open_node
from statesync.node._config import RELATIVE_PATHS
from statesync.node._service import client_endpoint

log = logging.getLogger("statesync.cli")

ENV_PARENT = "STATESYNC_PARENT_PID"
"""Set by the launcher: the child node dies with it (PR_SET_PDEATHSIG), even when it is SIGKILLed."""
STRATEGY_NAMES = frozenset({"vector-clock", "vc", "last-write-wins", "lww"})
PROGRESS_INTERVAL_S = 1.0
CATCH_UP_REPORT_OPS = 1000
"""A backlog this large is reported at once; a smaller one when it lasts two samples."""


# --------------------------------------------------------------------- configuration


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise UsageError(f"config file {path} does not exist; check the path") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{path} is a folder; give a node's TOML file (statesync launch takes a folder)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc


def load_resolver(spec: str, base: Path | None = None) -> Callable[..., Any]:
    """Import a custom resolver named ``module:function`` or ``path/to/file.py:function``."""
    target, _, name = spec.rpartition(":")
    if not target or not name.isidentifier():
        raise UsageError(f"strategy {spec!r}: a custom resolver is named module:function or file.py:function")
    try:
        if target.endswith(".py"):
            file = Path(target)
            if not file.is_absolute() and base is not None and (base / file).exists():
                file = base / file
            if not file.exists():
                raise UsageError(f"strategy {spec!r}: {file} does not exist")
            mod_name = f"statesync_resolver_{abs(hash(str(file.resolve())))}"
            module = sys.modules.get(mod_name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(mod_name, file)
                if loader_spec is None or loader_spec.loader is None:
                    raise UsageError(f"strategy {spec!r}: cannot load {file}")
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[mod_name] = module
                loader_spec.loader.exec_module(module)
        else:
            for folder in (base, Path.cwd()):
                if folder is not None and str(folder) not in sys.path:
                    sys.path.append(str(folder))
            module = importlib.import_module(target)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"strategy {spec!r}: importing {target} failed: {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UsageError(f"strategy {spec!r}: {target} has no function {name!r}")
    return fn  # type: ignore[no-any-return]


def resolve_strategy(spec: Any, base: Path | None = None) -> Any:
    """Names stay names; ``module:function`` entries become the functions they name."""
    if isinstance(spec, str) and spec not in STRATEGY_NAMES and ":" in spec:
        return load_resolver(spec, base)
    if isinstance(spec, dict):
        return {k: resolve_strategy(v, base) for k, v in spec.items()}
    return spec


def parse_strategy_flags(items: list[str]) -> Any:
    """``--strategy NAME`` (default) and ``--strategy PREFIX=NAME`` (per prefix), repeatable."""
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    out: dict[str, str] = {}
    for item in items:
        prefix, sep, name = item.partition("=")
        if not sep:
            prefix, name = "", item
        out[prefix.strip()] = name.strip()
    return out


def parse_option(item: str) -> tuple[str, Any]:
    """``-o NAME=VALUE``: VALUE in TOML syntax (a bare word is taken as a string)."""
    name, sep, text = item.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"-o {item!r}: write -o NAME=VALUE, for example -o sync_interval_s=0.5")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return name, value


def build_config(args: argparse.Namespace) -> NodeConfig:
    """The node configuration from ``CONFIG.toml`` (if given) with flags on top."""
    data: dict[str, Any] = {}
    base: Path | None = None
    source = "command line"
    if args.config:
        path = Path(args.config)
        data = read_toml(path)
        base = path.resolve().parent
        source = str(path)
        for name in RELATIVE_PATHS:  # data_dir, key files: relative to the file's folder
            if isinstance(data.get(name), str) and not os.path.isabs(data[name]):
                data[name] = str(base / data[name])
    flags: dict[str, Any] = {
        "node_id": args.id,
        "listen": args.listen or None,
        "peers": args.peer or None,
        "advertise": args.advertise or None,
        "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
        "durability": args.durability,
        "client": args.client,
        "strategy": parse_strategy_flags(args.strategy) if args.strategy else None,
        "sync_interval_s": args.sync_interval,
        "secret_key_file": os.path.abspath(args.key) if getattr(args, "key", None) else None,
        "authorized_keys_file": os.path.abspath(args.authorized_keys) if getattr(args, "authorized_keys", None) else None,
        "allow_insecure": True if getattr(args, "insecure", False) else None,
        "metrics_listen": getattr(args, "metrics", None),
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    for item in args.option or ():
        name, value = parse_option(item)
        data[name] = value
    if "node_id" not in data:
        raise UsageError("the node needs an id: give a CONFIG.toml with node_id, or --id NAME")
    data.setdefault("client", "auto")
    data.setdefault("tune_gc", True)  # a node process: tune its collector (see NodeConfig.tune_gc)
    if "strategy" in data:
        data["strategy"] = resolve_strategy(data["strategy"], base)
    return NodeConfig.from_mapping(data, source=source)


def describe_config(config: NodeConfig) -> dict[str, Any]:
    out = config.to_mapping()
    out["strategy"] = config.strategies().describe()
    out["client_endpoint"] = client_endpoint(config.node_id, config.data_dir, config.client)
    return out


# --------------------------------------------------------------------- process


def die_with_parent() -> None:
    """Under the launcher: ask the kernel to SIGTERM this process when the launcher dies."""
    parent = os.environ.get(ENV_PARENT)
    if not parent or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError, ValueError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != int(parent):
            # The launcher died before the request took effect.
            sys.stderr.write("statesync: the launcher that started this node is gone; exiting\n")
            os._exit(0)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-5s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)
    if numeric > logging.DEBUG:
        # The ports layer logs every connection it closes at INFO, with raw ids.
        logging.getLogger("statesync.ports").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.check:
        print(json.dumps(describe_config(config), indent=2, default=repr))
        return 0
    client_endpoint(config.node_id, config.data_dir, config.client)  # one-line error for a bad value, now
    die_with_parent()
    configure_logging(args.log_level)
    return trio.run(_serve, config)


async def _serve(config: NodeConfig) -> int:
    node_id = config.node_id
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with open_node(config) as node:
            clients = ", ".join(getattr(node, "client_endpoints", ())) or "none"
            data = config.data_dir or "memory only"
            log.info(
                "%s: up; peers on %s; clients on %s; data in %s (%s durability); strategy %s",
                node_id,
                ", ".join(node.endpoints),
                clients,
                data,
                config.durability,
                ", ".join(f"{k or 'default'}={v}" for k, v in config.strategies().describe().items()),
            )
            if config.peers:
                log.info("%s: connecting to %s", node_id, ", ".join(config.peers))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_progress, node)
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        _reload_keys(node)
                        continue
                    log.info("%s: %s: stopping (flushing the log, saying BYE to peers)", node_id, signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()
        # Signals that arrive while the node stops are absorbed by the receiver.
    log.info("%s: stopped", node_id)
    return 0


def _reload_keys(node: Node) -> None:
    """SIGHUP: re-read the authorized keys; a bad file keeps the old list (and says why)."""
    if not node.security.enabled:
        log.warning("%s: SIGHUP: this node has no keys to reload (set secret_key_file and authorized_keys_file)", node.node_id)
        return
    try:
        node.reload_keys()  # logs what it did
    except StatesyncError as exc:
        log.error("%s: SIGHUP: the authorized keys were NOT reloaded, the old list stays: %s", node.node_id, exc)


class ProgressReporter:
    """Turns successive status reports into log lines about catch-up and snapshot transfers."""

    def __init__(self, node_id: str, emit: Callable[[str], None]) -> None:
        self.node_id = node_id
        self.emit = emit
        self.lagging: dict[str, tuple[float, int]] = {}
        self.snapshots: dict[str, float] = {}
        self._seen_once: set[str] = set()

    def sample(self, status: dict[str, Any], now: float) -> None:
        progress = status.get("snapshot_progress", {})
        me = self.node_id
        for peer, p in status.get("peers", {}).items():
            snap = progress.get(peer) or p.get("snapshot_in")
            if snap:
                got, total = int(snap[0]), int(snap[1])
                self.snapshots.setdefault(peer, now)
                pct = 100 * got // total if total else 0
                self.emit(f"{me}: snapshot from {peer}: {got:,}/{total:,} entries ({pct}%)")
                continue
            if peer in self.snapshots:
                took = now - self.snapshots.pop(peer)
                self.emit(f"{me}: snapshot from {peer} installed ({took:.1f} s)")
            lack = int(p.get("we_lack_ops") or 0) if p.get("connected") else 0
            if lack > 0:
                if peer not in self.lagging and lack < CATCH_UP_REPORT_OPS and peer not in self._seen_once:
                    self._seen_once.add(peer)  # a short backlog is normal replication delay
                    continue
                self.lagging.setdefault(peer, (now, lack))
                self.emit(f"{me}: catching up from {peer}: {lack:,} ops to go")
            elif peer in self.lagging:
                start, first = self.lagging.pop(peer)
                self.emit(f"{me}: caught up with {peer} ({first:,}+ ops in {now - start:.1f} s)")
            self._seen_once.discard(peer)


async def _progress(node: Node) -> None:
    reporter = ProgressReporter(node.node_id, log.info)
    while True:
        await trio.sleep(PROGRESS_INTERVAL_S)
        try:
            reporter.sample(node.status(), time.monotonic())
        except StatesyncError:
            return
