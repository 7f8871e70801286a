"""The client protocol: a node serving local clients over a MessagePort endpoint.

A node whose ``config.client`` is set listens there (``ipc://`` by default,
``tcp://`` optional) for the CLI and :class:`statesync.Client`. Every port a
client opens is either a *request port* or a *stream port*.

Request port: ``await port.request({"op": ..., ...})``, answered with
``{"ok": True, ...}`` or ``{"ok": False, "type": <error class>, "error":
<one line>}``. Paths travel in text form (``a.b\\.c``).

============  =====================================  ===================================
op            request fields                         answer fields
============  =====================================  ===================================
hello         protocol                               node_id, protocol, endpoints, client_endpoints
get           path                                   found, value (``TooLarge``: use a snapshot stream)
set           path, value, ack, timeout_s            receipt {path, origin, seq, hlc, acked_by}
set_many      items [[path, value]...], ack, ...     receipts [...]
delete        path, ack, timeout_s                   receipt
conflicts     path                                   value, versions [{value, origin, seq, hlc}]
status        -                                      status (the node's ``status()`` plus config)
sync          timeout_s                              answered
cut / heal    peer (heal: optional)                  - (fault injection, for demos and tests)
============  =====================================  ===================================

Stream port: the client posts one message, ``{"op": "watch", "prefix": p,
"initial": bool}`` or ``{"op": "snapshot", "prefix": p}``, and the node answers
with a stream of messages on that port:

- a subtree (the initial value, a ``lagged`` event's value, a snapshot) is sent
  inline when small, else as ``{"kind": "leaves", "leaves": [[segments,
  value], ...]}`` chunks followed by the closing message with ``"chunked":
  True``; the client rebuilds the tree from the leaves;
- watch: ``{"kind": "ready", "found", "value"}`` once subscribed (the value is
  read at the moment of subscription, so nothing falls between it and the
  events), then one message per change (``WatchEvent.to_plain()``: kind
  put/delete, path, value, old, origin, seq), ``{"kind": "lagged", ...}`` when
  the client fell ``watch_buffer_max`` changes behind (the whole current
  subtree), and ``{"kind": "closed"}`` when the node stops;
- snapshot: the tree, closed by ``{"kind": "end", "found", "value"}``.

The client closes a stream port to end it. Sending waits for the client to
take messages (the port's window), so a slow watcher fills the node's bounded
watch buffer and then gets a ``lagged`` event: memory stays bounded.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from statesync import ports, wire
from statesync.core import (
    ABSENT,
    AbsentType,
    AckSpec,
    InvalidPath,
    Path,
    StatesyncError,
    Value,
    WriteConcernError,
    as_path,
    iter_leaves,
    validate_value,
)
from statesync.node._config import ConfigError
from statesync.node._security import CLIENT_DOMAIN, WRITE_OPS

if TYPE_CHECKING:
    from statesync.node._node import Node, Receipt

log = logging.getLogger("statesync.node.clients")

PROTOCOL: Final = 1
"""Version of the client protocol; ``hello`` checks it."""
STREAMS_MAX: Final = 1024
"""Watch and snapshot streams one node serves at once; more are refused."""
MESSAGE_BYTES_MAX: Final = 1_000_000
"""Largest message sent to a client: under the wire's 1 MiB limit on one payload
(``bin_bytes_max``), which the ports layer applies when it builds a frame."""
INLINE_BYTES_MAX: Final = 256 << 10
"""A subtree larger than this (estimated, four bytes per character) travels as leaf chunks."""
CHUNK_BYTES: Final = 128 << 10
CHUNK_LEAVES_MAX: Final = 4096
EXACT_ABOVE: Final = 64 << 10
"""Messages estimated above this are encoded once to learn their exact size."""
IPC_PATH_MAX: Final = 100
"""Unix socket paths are limited to about 107 bytes; keep a margin."""
DISABLED: Final = frozenset({"", "none", "off", "false", "no"})


class ClientProtocolError(StatesyncError):
    """A client sent a request the node cannot make sense of."""


class TooLarge(StatesyncError):
    """An answer is too large to send in one message; the client reads it as a stream."""


def client_endpoint(node_id: str, data_dir: str | None, client: str | None) -> str | None:
    """The endpoint a node with these settings serves clients on (None: it serves none).

    ``client`` is an endpoint (``ipc:///path``, ``tcp://host:port``,
    ``inproc://name``), ``"auto"`` (``ipc://<data_dir>/client.sock``, or a
    socket under the temporary folder when there is no data_dir or that path
    is too long), or ``"none"`` / ``"off"``.
    """
    if client is None:
        return None
    text = client.strip()
    if text.lower() in DISABLED:
        return None
    if text.lower() == "auto":
        if data_dir is not None:
            path = os.path.join(os.path.abspath(data_dir), "client.sock")
            if len(path.encode()) <= IPC_PATH_MAX:
                return f"ipc://{path}"
        folder = os.path.join(tempfile.gettempdir(), f"statesync-{os.getuid()}")
        return f"ipc://{os.path.join(folder, f'{node_id}-{os.getpid()}.sock')}"
    if "://" not in text:
        raise ConfigError(
            f"client = {client!r} is not an endpoint; use 'auto', 'none', ipc:///path/to/socket or tcp://127.0.0.1:PORT"
        )
    scheme, rest = text.split("://", 1)
    if scheme not in ("ipc", "tcp", "inproc"):
        raise ConfigError(f"client = {client!r} uses {scheme}://; use ipc://, tcp:// or inproc://")
    if scheme == "ipc" and len(rest.encode()) > IPC_PATH_MAX:
        raise ConfigError(
            f"client = {client!r}: the socket path is {len(rest.encode())} bytes, over the limit of {IPC_PATH_MAX}; "
            "use a shorter path"
        )
    return text


def _ack(value: object) -> AckSpec:
    if value == "local":
        return "local"
    if value == "all":
        return "all"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ClientProtocolError(f"ack = {value!r}; use 'local', 'all' or a number of peers")


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ClientProtocolError(f"timeout_s = {value!r} must be a positive number of seconds")


def _receipt(r: Receipt) -> dict[str, Value]:
    return {"path": r.path, "origin": r.origin, "seq": r.seq, "hlc": r.hlc, "acked_by": list(r.acked_by)}


def _path(data: dict[str, Any], key: str = "path") -> Path:
    value = data.get(key, "")
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, str | tuple):
        raise InvalidPath(f"{key} must be a text path like 'a.b.c', not {type(value).__name__}")
    return as_path(value)


def estimate(value: Value) -> int:
    """A bound on the encoded size of a value: four bytes per character (UTF-8)."""
    return 4 * validate_value(value) + 16


def tree_size(value: Value, limit: int) -> int:
    """The estimated encoded size of a subtree, counting up to just past ``limit``."""
    total = 0
    for path, leaf in iter_leaves(value):
        total += sum(4 * len(s) + 2 for s in path) + estimate(leaf)
        if total > limit:
            break
    return total


def fits(msg: dict[str, Value], estimated: int) -> bool:
    """Whether ``msg`` encodes within MESSAGE_BYTES_MAX (checked exactly when the estimate is large)."""
    if estimated <= EXACT_ABOVE:
        return True
    try:
        return len(wire.encode_payload(msg)) <= MESSAGE_BYTES_MAX
    except wire.DataCloneError:
        return False


def shrink_event(msg: dict[str, Value]) -> dict[str, Value]:
    """A change record that fits in one message: without ``old``, then without ``value``, if need be."""
    if fits(msg, estimate(msg.get("value")) + estimate(msg.get("old"))):
        return msg
    msg = {**msg, "old": None, "old_omitted": True}
    if fits(msg, estimate(msg.get("value"))):
        return msg
    return {**msg, "value": None, "value_omitted": True}


class ClientService:
    """Serves one node's clients; runs in the node's nursery until the node stops."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.streams = 0
        self.requests = 0
        self._nursery: trio.Nursery | None = None
        self._ops: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Value]]]] = {
            "hello": self._hello,
            "get": self._get,
            "set": self._set,
            "set_many": self._set_many,
            "delete": self._delete,
            "conflicts": self._conflicts,
            "status": self._status,
            "sync": self._sync,
            "cut": self._cut,
            "heal": self._heal,
        }

    async def run(self, endpoint: str, *, task_status: trio.TaskStatus[tuple[str, ...]] = trio.TASK_STATUS_IGNORED) -> None:
        node = self.node
        if endpoint.startswith("ipc://"):
            folder = os.path.dirname(endpoint[len("ipc://") :])
            if folder:
                os.makedirs(folder, exist_ok=True)
        options = node.security.options(node._port_options, CLIENT_DOMAIN)
        listener = node._runtime.listen(endpoint, options)
        node._listeners.append(listener)  # the node closes its listeners when it stops
        log.info("%s: serving clients on %s", node.node_id, ", ".join(listener.endpoints))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(listener.endpoints)
            async for port in listener:
                # the client's key, authenticated by CURVE (None without keys)
                key = port.remote.public_key if port.remote is not None else None
                port.set_request_handler(functools.partial(self._handle, key=key))
                port.on_message = self._stream_opener(port, key)

    # ------------------------------------------------------------ requests

    async def _handle(self, data: Value, key: str | None = None) -> dict[str, Value]:
        self.requests += 1
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            return {"ok": False, "type": "ClientProtocolError", "error": "a request is a dict with an 'op'"}
        op = str(data["op"])
        fn = self._ops.get(op)
        if fn is None:
            return {
                "ok": False,
                "type": "ClientProtocolError",
                "error": f"unknown request {op!r}; known: {', '.join(sorted(self._ops))}",
            }
        try:
            if self.node.security.enabled:
                self._permit(key, op, data)
            return {"ok": True, **(await fn(data))}
        except WriteConcernError as exc:
            return {
                "ok": False,
                "type": "WriteConcernError",
                "error": str(exc),
                "missing": list(exc.missing),
                "dot": [exc.dot[0], exc.dot[1]],
            }
        except StatesyncError as exc:
            return {"ok": False, "type": type(exc).__name__, "error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "type": "ClientProtocolError", "error": f"bad {op} request: {exc!r}"}

    def _permit(self, key: str | None, op: str, data: dict[str, Any]) -> None:
        """Raise AccessDenied unless the client's key may do this request now."""
        touched: list[tuple[Path, bool]] = []
        if op in WRITE_OPS:
            if op == "set_many":
                items = data.get("items")
                if not isinstance(items, list):
                    raise ClientProtocolError("items must be a list of [path, value] pairs")
                for item in items:
                    if not isinstance(item, list) or len(item) != 2:
                        raise ClientProtocolError("items must be a list of [path, value] pairs")
                    touched.append((_path({"path": item[0]}), True))
            else:
                touched.append((_path(data), op == "set"))
        node = self.node

        def leaf_at(path: Path) -> bool:
            value = node.get(path, ABSENT)
            return value is not ABSENT and not isinstance(value, dict)

        node.security.check_request(key, op, touched, leaf_at)

    async def _hello(self, data: dict[str, Any]) -> dict[str, Value]:
        node = self.node
        return {
            "node_id": node.node_id,
            "protocol": PROTOCOL,
            "endpoints": list(node.endpoints),
            "client_endpoints": list(getattr(node, "client_endpoints", ())),
        }

    async def _get(self, data: dict[str, Any]) -> dict[str, Value]:
        value = self.node.get(_path(data), ABSENT)
        if value is ABSENT:
            return {"found": False, "value": None}
        if isinstance(value, dict) and tree_size(value, INLINE_BYTES_MAX) > INLINE_BYTES_MAX:
            raise TooLarge("the subtree is too large for one answer; read it with a snapshot stream")
        if not fits({"value": value}, estimate(value)):
            raise TooLarge(f"the value at {data.get('path')!r} is over the client protocol's limit of {MESSAGE_BYTES_MAX:,} bytes per message")
        return {"found": True, "value": value}

    async def _set(self, data: dict[str, Any]) -> dict[str, Value]:
        r = await self.node.set(_path(data), data["value"], ack=_ack(data.get("ack", "local")), timeout_s=_timeout(data.get("timeout_s")))
        return {"receipt": _receipt(r)}

    async def _set_many(self, data: dict[str, Any]) -> dict[str, Value]:
        items = data["items"]
        if not isinstance(items, list):
            raise ClientProtocolError("items must be a list of [path, value] pairs")
        pairs = []
        for item in items:
            if not isinstance(item, list) or len(item) != 2:
                raise ClientProtocolError("items must be a list of [path, value] pairs")
            pairs.append((_path({"path": item[0]}), item[1]))
        rs = await self.node.set_many(pairs, ack=_ack(data.get("ack", "local")), timeout_s=_timeout(data.get("timeout_s")))
        return {"receipts": [_receipt(r) for r in rs]}

    async def _delete(self, data: dict[str, Any]) -> dict[str, Value]:
        r = await self.node.delete(_path(data), ack=_ack(data.get("ack", "local")), timeout_s=_timeout(data.get("timeout_s")))
        return {"receipt": _receipt(r)}

    async def _conflicts(self, data: dict[str, Any]) -> dict[str, Value]:
        path = _path(data)
        versions: list[Value] = []
        budget = MESSAGE_BYTES_MAX // 2
        for c in self.node.conflicts(path):
            size = estimate(c.value)
            shown = c.value if size <= budget and fits({"v": c.value}, size) else None
            budget -= 0 if shown is None else size
            versions.append({"value": shown, "origin": c.origin, "seq": c.seq, "hlc": c.hlc, "omitted": shown is None and c.value is not None})
        value = self.node.get(path, ABSENT)
        found = value is not ABSENT
        if isinstance(value, dict) or value is ABSENT or estimate(value) > budget:
            value = None  # conflicts are per leaf; a subtree is not shown here
        return {"versions": versions, "found": found, "value": value}

    async def _status(self, data: dict[str, Any]) -> dict[str, Value]:
        node = self.node
        status: dict[str, Any] = node.status()
        config = node.config
        status["client_endpoints"] = list(getattr(node, "client_endpoints", ()))
        status["clients"] = {"streams": self.streams, "requests": self.requests}
        status["config"] = {
            "strategy": config.strategies().describe(),
            "data_dir": config.data_dir,
            "durability": config.durability,
            "sync_interval_s": config.sync_interval_s,
            "peers": list(config.peers),
        }
        return {"status": status}

    async def _sync(self, data: dict[str, Any]) -> dict[str, Value]:
        timeout = _timeout(data.get("timeout_s")) or 10.0
        return {"answered": await self.node.sync(timeout_s=timeout)}

    async def _cut(self, data: dict[str, Any]) -> dict[str, Value]:
        peer = data["peer"]
        if not isinstance(peer, str):
            raise ClientProtocolError("peer must be a node id")
        self.node._faults.cut(peer)
        return {}

    async def _heal(self, data: dict[str, Any]) -> dict[str, Value]:
        peer = data.get("peer")
        if peer is not None and not isinstance(peer, str):
            raise ClientProtocolError("peer must be a node id")
        self.node._faults.heal(peer)
        return {}

    # ------------------------------------------------------------- streams

    def _stream_opener(self, port: ports.MessagePort, key: str | None) -> Callable[[ports.MessageEvent], None]:
        def opened(event: ports.MessageEvent) -> None:
            self._on_message(port, event, key)

        return opened

    def _on_message(self, port: ports.MessagePort, event: ports.MessageEvent, key: str | None = None) -> None:
        data = event.data
        port.on_message = None  # a stream port takes one opening message
        if not isinstance(data, dict) or data.get("op") not in ("watch", "snapshot"):
            self._refuse(port, "a stream opens with {'op': 'watch' | 'snapshot', 'prefix': ...}")
            return
        if self.node.security.enabled:
            try:
                self.node.security.check_request(key, str(data["op"]), (), lambda _: False)
            except StatesyncError as exc:
                self._refuse(port, str(exc), type(exc).__name__)
                return
        if self.streams >= STREAMS_MAX or self._nursery is None:
            self._refuse(port, f"the node serves at most {STREAMS_MAX} watches and snapshots at once; close some")
            return
        try:
            prefix = _path(data, "prefix")
        except InvalidPath as exc:
            self._refuse(port, str(exc), "InvalidPath")
            return
        self.streams += 1
        if data["op"] == "watch":
            self._nursery.start_soon(self._watch, port, prefix, bool(data.get("initial", True)))
        else:
            self._nursery.start_soon(self._snapshot, port, prefix)

    def _refuse(self, port: ports.MessagePort, error: str, type_name: str = "ClientProtocolError") -> None:
        with contextlib.suppress(ports.PortsError):
            port.post_message({"kind": "error", "type": type_name, "error": error})
        port.close()

    async def _watch(self, port: ports.MessagePort, prefix: Path, initial: bool) -> None:
        node = self.node
        try:
            async with node.watch(prefix) as watch:
                # Subscribed and read in one step (no checkpoint in between).
                value = node.get(prefix, ABSENT) if initial else ABSENT
                port.on_close = lambda _event: watch.close()
                if port.closed:
                    return
                await self._send_tree(port, value, {"kind": "ready"})
                async for event in watch:
                    if event.kind == "lagged":
                        await self._send_tree(port, event.value, {"kind": "lagged", "path": event.key})
                    else:
                        await port.send(shrink_event(event.to_plain()))  # type: ignore[arg-type]
                if not port.closed:
                    await port.send({"kind": "closed", "reason": f"node {node.node_id} is stopping"})
        except (ports.PortsError, StatesyncError):
            pass  # the client went away, or the node is stopping
        finally:
            self.streams -= 1
            port.close()

    async def _snapshot(self, port: ports.MessagePort, prefix: Path) -> None:
        try:
            await self._send_tree(port, self.node.get(prefix, ABSENT), {"kind": "end"})
        except (ports.PortsError, StatesyncError):
            pass
        finally:
            self.streams -= 1
            port.close()

    async def _send_tree(self, port: ports.MessagePort, value: Value | AbsentType, tail: dict[str, Value]) -> None:
        """Send ``tail`` carrying ``value``: inline when small, else after leaf chunks."""
        if value is ABSENT:
            await port.send({**tail, "found": False, "value": None})
            return
        if isinstance(value, dict):
            small = tree_size(value, INLINE_BYTES_MAX) <= INLINE_BYTES_MAX
        else:
            small = fits({"value": value}, estimate(value))
        if small:
            await port.send({**tail, "found": True, "value": value})
            return
        chunk: list[Value] = []
        size = 0
        omitted: list[Value] = []
        for path, leaf in iter_leaves(value):
            cost = sum(4 * len(s) + 2 for s in path) + estimate(leaf)
            if cost > CHUNK_BYTES and not fits({"leaves": [[list(path), leaf]]}, cost):
                omitted.append(list(path))  # one leaf over the message limit: cannot travel
                continue
            if chunk and (size + cost > CHUNK_BYTES or len(chunk) >= CHUNK_LEAVES_MAX):
                await port.send({"kind": "leaves", "leaves": chunk})
                chunk, size = [], 0
            chunk.append([list(path), leaf])
            size += cost
        if chunk:
            await port.send({"kind": "leaves", "leaves": chunk})
        await port.send({**tail, "found": True, "value": None, "chunked": True, "omitted": omitted[:100], "omitted_count": len(omitted)})


async def serve_clients(node: Node, *, task_status: trio.TaskStatus[tuple[str, ...]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``node``'s clients on ``node.config.client``; reports the bound endpoints."""
    config = node.config
    endpoint = client_endpoint(config.node_id, config.data_dir, config.client)
    if endpoint is None:
        task_status.started(())
        return
    await ClientService(node).run(endpoint, task_status=task_status)

