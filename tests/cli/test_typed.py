"""The typed-value commands (statesync text|list|counter|awset ...) against real nodes."""

from __future__ import annotations

import json

import pytest

from statesync.cli._errors import EXIT_FAILED, EXIT_USAGE
from tests.cli.test_commands import run
from tests.client.nodes import NodeThread, two_nodes_fixture  # noqa: F401 (the fixture two_nodes)


def get(capsys: pytest.CaptureFixture[str], endpoint: str, path: str) -> object:
    code, out, err = run(capsys, "get", path, "--node", endpoint)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("command", ["text", "list", "counter", "awset"])
def test_every_typed_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "examples:" in out and f"statesync {command}" in out


def test_typed_commands_edit_and_get_reads(two_nodes: NodeThread, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_nodes.endpoints
    code, out, err = run(capsys, "text", "insert", "cli.doc", "0", "hello world", "--node", a)
    assert code == 0, err
    assert out.startswith("text insert cli.doc: write a#")
    assert run(capsys, "text", "delete", "cli.doc", "5", "6", "--node", a)[0] == 0
    assert run(capsys, "text", "insert", "cli.doc", "5", "!", "--ack", "all", "--node", a)[0] == 0
    assert run(capsys, "list", "append", "cli.todo", "milk", "eggs", '{"task": "tea"}', "--node", a)[0] == 0
    assert run(capsys, "list", "insert", "cli.todo", "0", "42", "--string", "--node", a)[0] == 0
    assert run(capsys, "list", "move", "cli.todo", "0", "3", "--node", a)[0] == 0
    assert run(capsys, "list", "delete", "cli.todo", "0", "--node", a)[0] == 0
    assert run(capsys, "counter", "add", "cli.likes", "5", "--node", a)[0] == 0
    code, out, _ = run(capsys, "counter", "add", "cli.likes", "-2", "--json", "--node", a)
    assert code == 0 and json.loads(out)["path"] == "cli.likes"
    assert run(capsys, "awset", "add", "cli.tags", "urgent", "--node", a)[0] == 0
    assert run(capsys, "awset", "add", "cli.tags", "7", "--node", a)[0] == 0
    assert run(capsys, "awset", "remove", "cli.tags", "urgent", "--node", a)[0] == 0
    assert get(capsys, a, "cli") == {
        "doc": "hello!",
        "todo": ["eggs", {"task": "tea"}, "42"],
        "likes": 3,
        "tags": [7],
    }
    assert get(capsys, b, "cli.doc") == "hello!"  # acknowledged by b (--ack all)


def test_bad_typed_commands_say_what_is_wrong_in_one_line(two_nodes: NodeThread, capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = two_nodes.endpoints
    assert run(capsys, "text", "insert", "bad.doc", "0", "abc", "--node", a)[0] == 0
    code, _, err = run(capsys, "text", "insert", "bad.doc", "9", "x", "--node", a)
    assert code == EXIT_FAILED and err.count("\n") == 1 and "bad.doc" in err and "9" in err
    code, _, err = run(capsys, "text", "delete", "bad.doc", "one", "1", "--node", a)
    assert code == EXIT_USAGE and "POS must be an integer" in err
    code, _, err = run(capsys, "list", "move", "bad.doc", "0", "1", "--node", a)
    assert code == EXIT_FAILED and "bad.doc" in err
    assert get(capsys, a, "bad.doc") == "abc"
