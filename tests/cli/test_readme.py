"""The README stays true: its two commands, every configuration option, every CLI command."""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from statesync.cli import build_parser
from statesync.node import NodeConfig

README = (Path(__file__).parents[2] / "README.md").read_text()


def block(marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```\n(.*?)\n```\n<!-- /{marker} -->", README, re.S)
    assert found, f"README.md has no {marker} block"
    return found.group(1).strip()


def test_the_two_commands_install_from_scratch() -> None:
    demo = block("demo-command")
    assert demo.startswith("python3 -m venv .venv && .venv/bin/pip install -q -e .")
    assert demo.endswith(".venv/bin/statesync demo")
    test = block("test-command")
    assert test.startswith("python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'")
    assert test.endswith(".venv/bin/python -m pytest -q")


def test_every_configuration_option_is_documented() -> None:
    section = README[README.index("## Configuration reference") : README.index("## Deployment")]
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert rows == {a.name for a in attrs.fields(NodeConfig)}


def test_every_command_is_in_the_tutorial() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    assert commands is not None
    for command in commands:
        assert f"statesync {command}" in README, command


def test_sections_are_in_place() -> None:
    for heading in ("## Try it", "## Run the tests", "## Tutorial: the command line", "## Tutorial: Python",
                    "## Conflict strategies", "## Configuration reference", "## Deployment", "## Securing a cluster",
                    "## Guarantees", "## Benchmarks"):
        assert heading in README
    assert "docs/benchmarks.md" in README[README.index("## Benchmarks") :]
