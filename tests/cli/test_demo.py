"""The README's demo, end to end (on the fixed ports of nodes/), and its refusal when a port is taken."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from statesync.cli._demo import DemoError, check_ports, plan
from statesync.cli._launch import load_folder
from tests.cli.test_processes import alive, children_of

pytestmark = pytest.mark.process

ROOT = Path(__file__).parents[2]
NODES = ROOT / "nodes"


def test_the_demo_runs_from_start_to_finish() -> None:
    try:
        check_ports(plan(load_folder(NODES), Path(tempfile.gettempdir())))
    except DemoError as exc:
        pytest.skip(f"the demo's fixed ports are taken here: {exc}")
    done = subprocess.run(
        [sys.executable, "-m", "statesync.cli", "demo", "--color", "never"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for expected in (
        "[1/6] starting the cluster",
        "a: set demo.greeting = \"hello from a\"",
        "  b saw it after ",
        "  c saw it after ",
        "c: conflicts demo.color -> ",
        "at lww.color (last-write-wins) every node reads ",
        "on every node: demo.color = \"purple\", no conflict left",
        "c killed with SIGKILL",
        "c recovered its log from disk and caught up the 500 writes",
        "all 3 nodes hold the same tree",
        "PEER  LINK  THEY LACK",
        "[6/6] stopping the cluster",
        "demo finished",
    ):
        assert expected in out, f"missing {expected!r} in:\n{out}"
    assert "Traceback" not in out + done.stderr
    status = out[out.index("PEER  LINK"):out.index("[6/6]")]
    assert " down " not in status  # every link is up again in the final status


def test_the_demo_refuses_clearly_when_a_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        for file in sorted(NODES.glob("*.toml")):
            text = file.read_text().replace("tcp://127.0.0.1:7101", f"tcp://127.0.0.1:{port}")
            (tmp_path / file.name).write_text(text)
        done = subprocess.run(
            [sys.executable, "-m", "statesync.cli", "demo", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"port {port} (listen endpoint of node a" in done.stderr and "is in use" in done.stderr


def test_ctrl_c_stops_the_demo_and_every_node() -> None:
    try:
        check_ports(plan(load_folder(NODES), Path(tempfile.gettempdir())))
    except DemoError as exc:
        pytest.skip(f"the demo's fixed ports are taken here: {exc}")
    demo = subprocess.Popen(
        [sys.executable, "-m", "statesync.cli", "demo", "--color", "never"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if line.startswith("[2/6]"):
                break
        kids = children_of(demo.pid)
        assert len(kids) == 3
        demo.send_signal(signal.SIGINT)
        rest = demo.stdout.read()
        assert demo.wait(30) == 130
        assert "interrupted: every node was stopped" in rest
        assert not any(alive(pid) for pid in kids)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
