"""`statesync init` and the built-in demo cluster: statesync works when installed, not only when cloned."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from statesync.cli import main
from statesync.cli._init import default_ports, render
from statesync.cli._launch import load_folder

ROOT = Path(__file__).parents[2]


def test_init_writes_the_repository_nodes_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "cluster")]) == 0
    written = sorted(p.name for p in (tmp_path / "cluster").iterdir())
    assert written == ["a.toml", "b.toml", "c.toml"]
    for name in written:
        assert (tmp_path / "cluster" / name).read_text() == (ROOT / "nodes" / name).read_text(), name
    assert "statesync launch" in capsys.readouterr().out
    specs = load_folder(tmp_path / "cluster")
    assert [s.name for s in specs] == ["a", "b", "c"]


def test_rendered_nodes_are_a_full_mesh_on_the_given_ports() -> None:
    files = {k: tomllib.loads(v) for k, v in render([9001, 9002, 9003], [9011, 9012, 9013]).items()}
    assert files["b.toml"]["listen"] == "tcp://127.0.0.1:9002"
    assert files["b.toml"]["client"] == "tcp://127.0.0.1:9012"
    assert files["b.toml"]["peers"] == ["tcp://127.0.0.1:9001", "tcp://127.0.0.1:9003"]
    assert default_ports() == ([7101, 7102, 7103], [7111, 7112, 7113])


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.toml").write_text("# mine\n")
    assert main(["init", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "already holds node files" in err and "--force" in err
    assert (tmp_path / "a.toml").read_text() == "# mine\n"
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "a.toml").read_text() == (ROOT / "nodes" / "a.toml").read_text()


def test_launch_without_a_folder_points_to_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", str(tmp_path / "missing")]) != 0
    assert "statesync init" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.process
def test_installed_package_runs_init_and_the_demo_from_an_empty_folder(tmp_path: Path) -> None:
    """`pip install .` (not editable) into a fresh venv, then both commands from a folder with no nodes/."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    if install.returncode != 0 and "No matching distribution" in install.stderr:
        pytest.skip(f"the package index is not reachable here: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr
    cli = str(venv / "bin" / "statesync")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STATESYNC_NODE")}
    # the installed copy, not this checkout, is what runs
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import statesync; print(statesync.__file__)"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert str(venv) in where, where

    demo = subprocess.run([cli, "demo", "--color", "never"], cwd=empty, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "no nodes/ folder here: running the built-in three-node cluster" in demo.stdout
    assert "demo finished" in demo.stdout
    assert not (empty / "nodes").exists()  # the built-in cluster lived in a temporary folder

    init = subprocess.run([cli, "init"], cwd=empty, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert init.returncode == 0, init.stderr
    for name in ("a.toml", "b.toml", "c.toml"):
        assert (empty / "nodes" / name).read_text() == (ROOT / "nodes" / name).read_text()
    check = subprocess.run([cli, "node", "nodes/a.toml", "--check"], cwd=empty, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stderr
