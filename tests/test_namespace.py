"""The curated top-level namespace: pinned, documented, and free of internals."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import statesync
from statesync import client, core, node, ports, testing

DOCS = Path(__file__).parents[1]

PUBLIC = [
    "ABSENT",
    "BroadcastChannel",
    "Client",
    "Conflict",
    "MessageChannel",
    "MessageEvent",
    "MessagePort",
    "Node",
    "NodeConfig",
    "PortPool",
    "Receipt",
    "StatesyncError",
    "Watch",
    "WatchEvent",
    "__version__",
    "check_resolver",
    "format_path",
    "open_node",
    "parse_path",
]


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert statesync.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(statesync, name) is not None
    assert not any(name.endswith("Error") for name in PUBLIC if name != "StatesyncError")  # errors: statesync.errors


def test_every_exported_name_is_documented() -> None:
    text = (DOCS / "README.md").read_text() + "".join(p.read_text() for p in sorted((DOCS / "docs").glob("*.md")))
    missing = [name for name in PUBLIC if not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)]
    assert not missing, f"exported but not in README.md or docs/*.md: {missing}"


def test_internals_are_not_exported() -> None:
    for name in ("Replica", "CausalContext", "Strategies", "Version", "WriteResult", "InvalidPath"):
        assert name not in statesync.__all__ and not hasattr(statesync, name)


def test_the_exports_are_the_subpackages_own_objects() -> None:
    assert statesync.Client is client.Client and statesync.ABSENT is core.ABSENT
    assert statesync.Receipt is node.Receipt is client.Receipt
    assert statesync.WatchEvent is node.WatchEvent is client.WatchEvent
    assert statesync.Conflict is node.Conflict is client.Conflict
    assert statesync.MessagePort is ports.MessagePort and statesync.check_resolver is testing.check_resolver


def test_importing_the_package_loads_nothing_heavy_until_used() -> None:
    code = "import statesync, sys; assert 'zmq' not in sys.modules and 'trio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
