"""Process plumbing shared by the peer benchmarks: children that print one JSON line, then end."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

RUN = __file__.replace("_common.py", "run.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(role: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    """A child running ``run.py --role ROLE``; it reads its spec from argv and ends when stdin closes."""
    return subprocess.Popen(
        [sys.executable, RUN, "--role", role, "--spec", json.dumps(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )


def read_json(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"a benchmark child ended early (exit {child.wait()})")
    result: dict[str, Any] = json.loads(line)
    return result


def reap(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wait_stdin_closed() -> None:
    sys.stdin.read()


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]
