"""Printing for the CLI: values as JSON, tables, colours, the status report."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from statesync.core import ABSENT

COLORS = ("36", "33", "35", "32", "34", "91", "96", "93", "95", "92")
"""ANSI colours for node prefixes (cyan, yellow, magenta, green, blue, ...)."""


def use_color(stream: TextIO, choice: str = "auto") -> bool:
    """Whether to colour ``stream``: ``always``, ``never``, or ``auto`` (a terminal, and NO_COLOR unset)."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, code: str, on: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if on else text


def plain(value: Any) -> Any:
    """``value`` made JSON-friendly: bytes as ``{"$bytes": "<base64>"}``, ``ABSENT`` (nothing) as null."""
    if value is ABSENT:
        return None
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def to_json(value: Any, *, pretty: bool = False) -> str:
    if pretty:
        return json.dumps(plain(value), indent=2, ensure_ascii=False, sort_keys=False)
    return json.dumps(plain(value), ensure_ascii=False, separators=(", ", ": "))


def parse_value(text: str, *, as_string: bool = False) -> Any:
    """A command-line VALUE: JSON when it parses as JSON, else the text itself."""
    if as_string:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return _unplain(value)


def _unplain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            try:
                return base64.b64decode(value["$bytes"], validate=True)
            except ValueError:
                return value
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "") -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], _visible_len(cell))
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [cell + " " * (w - _visible_len(cell)) for cell, w in zip(row, widths, strict=True)]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _visible_len(text: str) -> int:
    out = 0
    i = 0
    while i < len(text):
        if text[i] == "\x1b":
            end = text.find("m", i)
            i = end + 1 if end >= 0 else len(text)
            continue
        out += 1
        i += 1
    return out


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def transfer(peer: dict[str, Any], progress: Sequence[int] | None) -> str:
    """The TRANSFER column: a snapshot in progress, or catch-up."""
    snap = progress or peer.get("snapshot_in")
    if snap:
        got, total = int(snap[0]), int(snap[1])
        pct = 100 * got // total if total else 0
        return f"snapshot {pct}% ({got:,}/{total:,})"
    lack = int(peer.get("we_lack_ops") or 0)
    if lack and peer.get("connected"):
        return f"catching up ({lack:,} ops)"
    return "-"


def render_status(status: dict[str, Any], *, color: bool = False) -> str:
    """The ``statesync status`` report: the node, then a table of its peers."""
    lines: list[str] = []
    config = status.get("config", {})
    node_id = status.get("node_id", "?")
    lines.append(f"node {paint(str(node_id), '1', color)}  up {duration(float(status.get('uptime_s', 0)))}")
    lines.append(f"  peers on    {', '.join(status.get('endpoints', [])) or '-'}")
    lines.append(f"  clients on  {', '.join(status.get('client_endpoints', [])) or '-'}")
    strategy = config.get("strategy", {})
    strat = ", ".join(f"{k or '(default)'}: {v}" for k, v in strategy.items()) if strategy else "-"
    data_dir = config.get("data_dir") or "(in memory)"
    lines.append(f"  data        {data_dir} ({config.get('durability', '?')} durability)")
    lines.append(f"  strategy    {strat}")
    storage = status.get("storage", {})
    lines.append(
        f"  state       {status.get('leaves', 0):,} leaves, seq {status.get('seq', 0)}, "
        f"log {status.get('log_ops', 0):,} ops, disk {human_bytes(int(storage.get('disk_bytes', 0)))}"
    )
    lines.append(
        f"  writes      {status.get('pending_writes', 0)} waiting for acks, "
        f"{status.get('causal_buffer_ops', 0)} ops in the causal buffer, {status.get('watches', 0)} watches"
    )
    vv = status.get("vv", {})
    lines.append(f"  versions    {' '.join(f'{k}:{v}' for k, v in sorted(vv.items())) or '-'}")
    lines.append(f"  security    {security_line(status.get('security', {}))}")
    peers: dict[str, Any] = status.get("peers", {})
    progress: dict[str, Any] = status.get("snapshot_progress", {})
    lines.append("")
    if not peers:
        lines.append("  no peers known yet")
        return "\n".join(lines)
    rows = []
    for peer, p in sorted(peers.items()):
        link = paint("up", "32", color) if p.get("connected") else paint("down", "31", color)
        rows.append(
            [
                peer,
                link,
                f"{p.get('they_lack_ops', 0):,}",
                f"{p.get('we_lack_ops', 0):,}",
                f"{p.get('unacked_own_ops', 0):,}",
                age(p.get("last_sync_age_s")),
                transfer(p, progress.get(peer)),
            ]
        )
    lines.append(table(["PEER", "LINK", "THEY LACK", "WE LACK", "UNACKED", "LAST SYNC", "TRANSFER"], rows, indent="  "))
    return "\n".join(lines)


def security_line(sec: dict[str, Any]) -> str:
    """CURVE or not, the node's public key, keys per role, refusals (public facts only)."""
    if not sec:
        return "-"
    if not sec.get("curve"):
        insecure = sec.get("insecure_endpoints") or []
        if insecure:
            return f"NO KEYS, reachable from other hosts on {', '.join(insecure)} (allow_insecure)"
        return "no keys (loopback, ipc and inproc only)"
    counts = sec.get("authorized", {})
    return (
        f"CURVE, key {sec.get('public_key')}; authorized {counts.get('peer', 0)} peer, "
        f"{counts.get('read', 0)} read, {counts.get('write', 0)} write; refused "
        f"{sec.get('refused_connections', 0)} connections, {sec.get('refused_requests', 0)} requests"
    )


def clock() -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def err(message: str) -> None:
    sys.stderr.write(f"statesync: {message}\n")
    sys.stderr.flush()
