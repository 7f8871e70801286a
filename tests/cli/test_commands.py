"""The CLI in-process: every client command against real nodes, usage errors, node configuration,
progress lines and the status table."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from statesync.cli import build_parser, main
from statesync.cli._clientcmds import node_endpoint
from statesync.cli._nodecmd import ProgressReporter
from statesync.cli._output import parse_value, render_status
from statesync.testing import faults
from tests.client.nodes import NodeThread

COMMANDS = ["node", "launch", "demo", "get", "set", "delete", "watch", "dump", "conflicts", "status"]


@pytest.fixture(scope="module")
def pair() -> Iterator[NodeThread]:
    nodes = NodeThread([{"node_id": "a", "strategy": {"": "vector-clock", "lww": "last-write-wins"}}, {"node_id": "b"}])
    yield nodes
    nodes.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert "examples:" in out and f"statesync {command}" in out


def test_top_level_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for line in ("exit codes:", "0    success", "3    no node answered", "4    get/dump"):
        assert line in out
    assert run(capsys)[0] == 2  # no command: help on stderr, usage error


def test_client_commands_against_a_node(pair: NodeThread, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair.endpoints
    code, out, _ = run(capsys, "set", "cli.user", '{"name": "Ada", "langs": ["en"]}', "--node", a)
    assert code == 0 and out.startswith("set cli.user: write a#")
    assert run(capsys, "set", "cli.age", "36", "--node", a)[0] == 0
    assert run(capsys, "set", "cli.zip", "01234", "--string", "--node", a)[0] == 0
    assert run(capsys, "set", "cli.word", "hello world", "--node", a)[0] == 0  # not JSON: a string
    code, out, _ = run(capsys, "set", "cli.acked", "true", "--ack", "all", "--json", "--node", a)
    assert code == 0 and json.loads(out)["acked_by"] == ["b"]
    code, out, _ = run(capsys, "get", "cli", "--node", b)
    assert code == 0
    assert json.loads(out) == {"user": {"name": "Ada", "langs": ["en"]}, "age": 36, "zip": "01234", "word": "hello world", "acked": True}
    assert run(capsys, "get", "cli.word", "--raw", "--node", a)[1] == "hello world\n"
    assert run(capsys, "get", "cli.age", "--node", a)[1] == "36\n"
    code, _, err = run(capsys, "get", "cli.nothing", "--node", a)
    assert code == 4 and err == "statesync: no value at cli.nothing\n"
    code, out, _ = run(capsys, "delete", "cli.user", "--node", a)
    assert code == 0 and out.startswith("deleted cli.user")
    code, out, _ = run(capsys, "dump", "--compact", "--node", a)
    assert code == 0 and "user" not in json.loads(out)["cli"]
    assert run(capsys, "dump", "cli.nothing", "--node", a)[0] == 4
    # --node also goes before the command; after it, it wins
    assert run(capsys, "--node", a, "get", "cli.age")[1] == "36\n"
    assert run(capsys, "-n", "tcp://127.0.0.1:9", "get", "cli.age", "--node", a)[1] == "36\n"
    code, _, err = run(capsys, "--node", a, "keygen", "x")
    assert code == 2 and "--node applies to the client commands" in err


def test_bytes_values_print_as_base64_and_parse_back(pair: NodeThread, capsys: pytest.CaptureFixture[str]) -> None:
    a = pair.endpoints[0]
    assert parse_value('{"$bytes": "AP8="}') == b"\x00\xff"
    assert run(capsys, "set", "cli.raw", '{"$bytes": "AP8="}', "--node", a)[0] == 0
    assert json.loads(run(capsys, "get", "cli.raw", "--node", a)[1]) == {"$bytes": "AP8="}


def test_conflicts_and_status(pair: NodeThread, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair.endpoints
    pair.call(lambda nodes: [faults(nodes[0]).cut("b"), faults(nodes[1]).cut("a")])
    try:
        run(capsys, "set", "cli.color", "red", "--node", a)
        run(capsys, "set", "cli.color", "blue", "--node", b)
    finally:
        pair.call(lambda nodes: [faults(n).heal() for n in nodes])
    pair.call(lambda nodes: nodes[0].sync())
    pair.call(lambda nodes: nodes[1].sync())
    code, out, _ = run(capsys, "conflicts", "cli.color", "--node", a)
    assert code == 0 and out.startswith("2 concurrent versions at cli.color")
    assert '"red"' in out and '"blue"' in out
    code, out, _ = run(capsys, "conflicts", "cli.color", "--json", "--node", b)
    assert sorted(v["value"] for v in json.loads(out)) == ["blue", "red"]
    assert run(capsys, "conflicts", "cli.age", "--node", a)[1].startswith("no conflict at cli.age")
    code, out, _ = run(capsys, "status", "--node", a, "--color", "never")
    assert code == 0
    assert out.startswith("node a")
    assert "PEER  LINK  THEY LACK  WE LACK  UNACKED  LAST SYNC  TRANSFER" in out
    assert "\n  b     up " in out
    assert "lww: last-write-wins" in out
    code, out, _ = run(capsys, "status", "--json", "--node", a)
    status = json.loads(out)
    assert status["node_id"] == "a" and status["peers"]["b"]["connected"] is True
    assert status["client_endpoints"] == [a]
    assert run(capsys, "status", "--quiet", "--node", a) == (0, "", "")


def test_unreachable_node_and_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run(capsys, "get", "x", "--node", "ipc:///tmp/statesync-nobody.sock", "--timeout", "0.3")
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and "ipc:///tmp/statesync-nobody.sock" in err and "is running" in err
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATESYNC_NODE", raising=False)
    code, _, err = run(capsys, "get", "x")
    assert code == 2 and err.count("\n") == 1 and "--node" in err and "STATESYNC_NODE" in err
    code, _, err = run(capsys, "set", "x", "1", "--ack", "most", "--node", "ipc:///tmp/x.sock")
    assert code == 2 and "--ack" in err
    code, _, err = run(capsys, "node")
    assert code == 2 and err == "statesync: error: the node needs an id: give a CONFIG.toml with node_id, or --id NAME\n"
    code, _, err = run(capsys, "node", str(tmp_path / "missing.toml"))
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    (tmp_path / "bad.toml").write_text("node_id = 'a'\nlisten = [\n")
    code, _, err = run(capsys, "node", str(tmp_path / "bad.toml"))
    assert code == 2 and "is not valid TOML" in err and err.count("\n") == 1
    (tmp_path / "typo.toml").write_text("node_id = 'a'\nsync_intervall_s = 1\n")
    code, _, err = run(capsys, "node", str(tmp_path / "typo.toml"), "--check")
    assert code == 2 and "unknown option 'sync_intervall_s'" in err and err.count("\n") == 1
    code, _, err = run(capsys, "node", "--id", "a", "--strategy", "nosuchmodule:fn", "--check")
    assert code == 2 and "importing nosuchmodule failed" in err
    code, _, err = run(capsys, "node", "--id", "a", "--client", "carrier-pigeon", "--check")
    assert code == 2 and "not an endpoint" in err
    code, _, err = run(capsys, "launch", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "get")  # argparse: usage on stderr
    assert code == 2 and "usage:" in err


def test_the_default_node_is_the_first_in_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATESYNC_NODE", raising=False)
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "b.toml").write_text('node_id = "b"\nclient = "tcp://127.0.0.1:7999"\n')
    (tmp_path / "nodes" / "a.toml").write_text('node_id = "a"\ndata_dir = "data/a"\n')
    assert node_endpoint(None) == f"ipc://{tmp_path}/nodes/data/a/client.sock"
    monkeypatch.setenv("STATESYNC_NODE", "tcp://127.0.0.1:1234")
    assert node_endpoint(None) == "tcp://127.0.0.1:1234"
    assert node_endpoint("ipc:///x.sock") == "ipc:///x.sock"


def test_node_configuration_from_a_file_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "resolvers.py").write_text(
        textwrap.dedent(
            """
            def longest(path, versions):
                return max((v.value for v in versions), key=lambda x: (len(str(x)), str(x)))
            """
        )
    )
    config = tmp_path / "n.toml"
    config.write_text('node_id = "n1"\ndata_dir = "data/n1"\npeers = ["tcp://10.0.0.2:7000"]\n[strategy]\n"" = "vector-clock"\n"notes" = "resolvers.py:longest"\n')
    code, out, err = run(capsys, "node", str(config), "--check")
    assert code == 0, err
    resolved = json.loads(out)
    assert resolved["data_dir"] == str(tmp_path / "data" / "n1")
    assert resolved["client_endpoint"] == f"ipc://{tmp_path}/data/n1/client.sock"
    assert resolved["strategy"] == {"": "vector-clock", "notes": "custom"}
    code, out, _ = run(
        capsys,
        "node", str(config), "--id", "n9", "--peer", "tcp://10.0.0.3:7000", "--strategy", "lww",
        "--client", "tcp://127.0.0.1:7555", "-o", "sync_interval_s=0.5", "-o", "durability=fsync", "--check",
    )
    resolved = json.loads(out)
    assert (resolved["node_id"], resolved["peers"], resolved["strategy"]) == ("n9", ["tcp://10.0.0.3:7000"], {"": "last-write-wins"})
    assert (resolved["sync_interval_s"], resolved["durability"], resolved["client_endpoint"]) == (0.5, "fsync", "tcp://127.0.0.1:7555")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "node", "--id", "m", "--strategy", "lww", "--strategy", "docs=resolvers:longest", "--client", "none", "--check")
    resolved = json.loads(out)
    assert resolved["strategy"] == {"": "last-write-wins", "docs": "custom"} and resolved["client_endpoint"] is None


def test_progress_lines_for_catch_up_and_snapshots() -> None:
    lines: list[str] = []
    rep = ProgressReporter("c", lines.append)

    def status(lack: int, snapshot: list[int] | None = None) -> dict[str, object]:
        peer = {"connected": True, "we_lack_ops": lack, "snapshot_in": snapshot}
        return {"peers": {"a": peer}, "snapshot_progress": {"a": snapshot} if snapshot else {}}

    rep.sample(status(3), 0.0)  # a small, passing backlog is normal replication delay
    assert lines == []
    rep.sample(status(0), 1.0)
    rep.sample(status(5000), 2.0)
    rep.sample(status(1200), 3.0)
    rep.sample(status(0), 4.5)
    rep.sample(status(0, [400, 1000]), 5.0)
    rep.sample(status(0), 6.0)
    assert lines == [
        "c: catching up from a: 5,000 ops to go",
        "c: catching up from a: 1,200 ops to go",
        "c: caught up with a (5,000+ ops in 2.5 s)",
        "c: snapshot from a: 400/1,000 entries (40%)",
        "c: snapshot from a installed (1.0 s)",
    ]


def test_status_table_shows_lag_and_transfers() -> None:
    status = {
        "node_id": "c",
        "uptime_s": 75,
        "endpoints": ["tcp://127.0.0.1:7103"],
        "client_endpoints": ["tcp://127.0.0.1:7113"],
        "config": {"strategy": {"": "vector-clock"}, "data_dir": "/d", "durability": "fsync"},
        "leaves": 10,
        "seq": 4,
        "log_ops": 12,
        "storage": {"disk_bytes": 4096},
        "vv": {"a": 9, "c": 4},
        "peers": {
            "a": {"connected": True, "they_lack_ops": 0, "we_lack_ops": 250, "unacked_own_ops": 0, "last_sync_age_s": 0.4, "snapshot_in": [20, 80]},
            "b": {"connected": False, "they_lack_ops": 4, "we_lack_ops": 0, "unacked_own_ops": 4, "last_sync_age_s": None, "snapshot_in": None},
            "d": {"connected": True, "they_lack_ops": 0, "we_lack_ops": 7, "unacked_own_ops": 0, "last_sync_age_s": 3.0, "snapshot_in": None},
        },
        "snapshot_progress": {"a": [20, 80]},
    }
    text = render_status(status)
    assert "node c  up 1 min 15 s" in text
    assert "versions    a:9 c:4" in text
    assert "disk 4.0 KiB" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ") and line.split()[0] in "abd"}
    assert rows["a"].split()[1:5] == ["up", "0", "250", "0"] and "snapshot 25% (20/80)" in rows["a"]
    assert rows["b"].split()[1] == "down" and "never" in rows["b"]
    assert rows["d"].endswith("catching up (7 ops)")


def test_parser_builds() -> None:
    parser = build_parser()
    args = parser.parse_args(["set", "a.b", "1", "--ack", "2"])
    assert (args.command, args.path, args.value, args.ack) == ("set", "a.b", "1", "2")
