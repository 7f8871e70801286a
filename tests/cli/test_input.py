"""`statesync set PATH -` and `--file F`: values from stdin or a file, not only the command line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from statesync.cli import main
from tests.client.nodes import NodeThread


@pytest.fixture(scope="module")
def node() -> Iterator[NodeThread]:
    nodes = NodeThread([{"node_id": "a"}])
    yield nodes
    nodes.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def get(capsys: pytest.CaptureFixture[str], endpoint: str, path: str) -> object:
    code, out, err = run(capsys, "get", path, "--node", endpoint)
    assert code == 0, err
    return json.loads(out)


def feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_value_from_stdin_is_json_or_text_as_it_is(node: NodeThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    a = node.endpoints[0]
    feed_stdin(monkeypatch, b'{"beta": true, "limit": 3}\n')
    assert run(capsys, "set", "in.flags", "-", "--node", a)[0] == 0
    assert get(capsys, a, "in.flags") == {"beta": True, "limit": 3}
    feed_stdin(monkeypatch, b"line one\nline two\n")
    assert run(capsys, "set", "in.note", "-", "--node", a)[0] == 0
    assert get(capsys, a, "in.note") == "line one\nline two\n"  # nothing stripped
    feed_stdin(monkeypatch, b"36")
    assert run(capsys, "set", "in.age", "-", "--string", "--node", a)[0] == 0
    assert get(capsys, a, "in.age") == "36"


def test_value_from_a_file_larger_than_a_command_line_allows(
    node: NodeThread, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a = node.endpoints[0]
    text = "x" * 200_000  # a shell refuses an argument list this long on many systems
    (tmp_path / "big.txt").write_text(text)
    assert run(capsys, "set", "in.big", "--file", str(tmp_path / "big.txt"), "--node", a)[0] == 0
    code, out, _ = run(capsys, "get", "in.big", "--raw", "--node", a)
    assert code == 0 and out == text + "\n"


def test_a_file_that_is_not_utf8_is_stored_as_bytes(node: NodeThread, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = node.endpoints[0]
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"
    (tmp_path / "avatar.png").write_bytes(png)
    assert run(capsys, "set", "in.avatar", "-f", str(tmp_path / "avatar.png"), "--node", a)[0] == 0
    assert get(capsys, a, "in.avatar") == {"$bytes": "iVBORw0KGgoAAAANSUhEUv/+"}
    (tmp_path / "hello.txt").write_text("hello")
    assert run(capsys, "set", "in.hello", "-f", str(tmp_path / "hello.txt"), "--bytes", "--node", a)[0] == 0
    assert get(capsys, a, "in.hello") == {"$bytes": "aGVsbG8="}


def test_input_mistakes_are_one_line_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    endpoint = "ipc:///tmp/statesync-nobody.sock"
    code, _, err = run(capsys, "set", "x", "--node", endpoint)
    assert code == 2 and err.count("\n") == 1 and "--file" in err and "stdin" in err
    code, _, err = run(capsys, "set", "x", "1", "--file", str(tmp_path / "f"), "--node", endpoint)
    assert code == 2 and err.count("\n") == 1 and "not both" in err
    code, _, err = run(capsys, "set", "x", "--file", str(tmp_path / "missing.json"), "--node", endpoint)
    assert code == 2 and err.count("\n") == 1 and "missing.json" in err
