"""A node's security: safe defaults in the configuration, grants, refusals, gossip that
cannot steer a node to an untrusted server, reload that closes revoked links."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from statesync import ports
from statesync.node import ConfigError, NodeConfig, open_node
from statesync.node._config import is_local_endpoint
from statesync.node._security import CLIENT_DOMAIN, PEER_DOMAIN, AccessDenied, NodeSecurity
from statesync.ports import AuthRequest, CurveKeys
from statesync.security import write_keypair
from tests.support import FAST, wait_until_async


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:7000", True),
        ("tcp://127.0.0.2:*", True),
        ("tcp://localhost:7000", True),
        ("tcp://[::1]:7000", True),
        ("tcp://lo:7000", True),
        ("ipc:///tmp/x.sock", True),
        ("inproc://x", True),
        ("tcp://0.0.0.0:7000", False),
        ("tcp://*:7000", False),
        ("tcp://10.0.0.1:7000", False),
        ("tcp://eth0:7000", False),
        ("tcp://node1:7000", False),
        ("tcp://[::]:7000", False),
    ],
)
def test_what_counts_as_local(endpoint: str, local: bool) -> None:
    assert is_local_endpoint(endpoint) is local


def test_config_safe_defaults() -> None:
    key = CurveKeys.generate().public
    with pytest.raises(ConfigError, match=r"tcp://0.0.0.0:7000 is reachable from other hosts and this node has no keys"):
        NodeConfig(node_id="a", listen=("tcp://0.0.0.0:7000",))
    with pytest.raises(ConfigError, match=r"tcp://10.0.0.1:7111 is reachable"):
        NodeConfig(node_id="a", client="tcp://10.0.0.1:7111")
    insecure = NodeConfig(node_id="a", listen=("tcp://0.0.0.0:7000",), allow_insecure=True)
    assert insecure.insecure_endpoints == ("tcp://0.0.0.0:7000",)
    assert NodeConfig(node_id="a", client="auto").insecure_endpoints == ()
    keyed = NodeConfig(
        node_id="a",
        listen=("tcp://0.0.0.0:7000",),
        peers=(f"tcp://10.0.0.2:7000?key={key}",),
        secret_key_file="a.key_secret",
        authorized_keys_file="auth",
    )
    assert keyed.insecure_endpoints == ()
    with pytest.raises(ConfigError, match="set both secret_key_file"):
        NodeConfig(node_id="a", secret_key_file="a.key_secret")
    with pytest.raises(ConfigError, match=r"peer tcp://10.0.0.2:7000 has no key: .*\?key=<that node's public key>"):
        NodeConfig(node_id="a", peers=("tcp://10.0.0.2:7000",), secret_key_file="k", authorized_keys_file="a")
    with pytest.raises(ConfigError, match="names a key but this node has none"):
        NodeConfig(node_id="a", peers=(f"tcp://127.0.0.1:7000?key={key}",))
    with pytest.raises(ConfigError, match="carry its key automatically"):
        NodeConfig(node_id="a", listen=(f"tcp://127.0.0.1:7000?key={key}",))
    with pytest.raises(ConfigError, match="not a CURVE key"):
        NodeConfig(node_id="a", peers=("tcp://127.0.0.1:7000?key=nope",))
    assert "secret" not in repr(keyed).replace("secret_key_file='a.key_secret'", "")


def make_security(tmp_path: Path, auth: str, peers: tuple[str, ...] = ()) -> tuple[NodeSecurity, CurveKeys]:
    own, _, secret = write_keypair(tmp_path / "node")
    (tmp_path / "auth").write_text(auth)
    config = NodeConfig(
        node_id="n", peers=peers, secret_key_file=str(secret), authorized_keys_file=str(tmp_path / "auth")
    )
    return NodeSecurity.load(config), own


def test_grants_apply_to_requests(tmp_path: Path) -> None:
    reader, writer, peer = (CurveKeys.generate() for _ in range(3))
    sec, own = make_security(
        tmp_path, f"read {reader.public}\nwrite {writer.public} app.x.* cfg.*  # scoped\npeer {peer.public}\n"
    )
    leaves = {("app",): True}

    def check(key: CurveKeys, op: str, *paths: tuple[tuple[str, ...], bool]) -> None:
        sec.check_request(key.public, op, paths, lambda p: leaves.get(p, False))

    check(reader, "get")
    check(reader, "watch")
    with pytest.raises(AccessDenied, match="read-only"):
        check(reader, "set", (("cfg", "a"), True))
    with pytest.raises(AccessDenied, match="read-only key may not start a sync"):
        check(reader, "sync")
    check(writer, "set", (("cfg", "a", "b"), True))
    check(writer, "delete", (("app", "x"), False))
    with pytest.raises(AccessDenied, match=r"may not write secrets.x: it may write app.x.\* cfg.\* only"):
        check(writer, "set", (("cfg", "a"), True), (("secrets", "x"), True))
    with pytest.raises(AccessDenied, match="would replace the value at app, outside what this key may write"):
        check(writer, "set", (("app", "x", "y"), True))  # a leaf at app would be replaced
    leaves.clear()
    check(writer, "set", (("app", "x", "y"), True))
    with pytest.raises(AccessDenied, match="cut needs a peer key or a write key without prefixes"):
        check(writer, "cut")
    check(peer, "cut")
    check(own, "set", (("anything",), True))  # the node's own key: a peer
    with pytest.raises(AccessDenied, match="no longer admits this key"):
        check(CurveKeys.generate(), "get")


def test_authorize_per_listener_and_rate_limited_refusals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reader, peer, stranger = (CurveKeys.generate() for _ in range(3))
    sec, own = make_security(tmp_path, f"read {reader.public}\npeer {peer.public}\n")

    def ask(domain: str, key: CurveKeys) -> str | None:
        return sec.authorize(AuthRequest(domain, key.public, "10.0.0.9", "handshake"))

    assert ask(PEER_DOMAIN, peer) is None and ask(CLIENT_DOMAIN, peer) is None
    assert ask(CLIENT_DOMAIN, reader) is None
    assert ask(PEER_DOMAIN, reader) == "a read key may not join as a peer"
    assert ask(PEER_DOMAIN, own) is None and ask(CLIENT_DOMAIN, own) is None
    caplog.set_level(logging.WARNING, "statesync.node.security")
    caplog.clear()
    now = [0.0]
    sec.refusals._clock = lambda: now[0]
    sec.refusals._window_start = -1e9
    for _ in range(500):
        assert ask(CLIENT_DOMAIN, stranger) == "not on the authorized list"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == sec.refusals.burst  # a flood is bounded
    assert f"refused key {stranger.public} from 10.0.0.9 on the client endpoint: not on the authorized list" in lines[0]
    now[0] += 60
    ask(CLIENT_DOMAIN, stranger)
    assert any("490 more refused connections" in r.getMessage() for r in caplog.records)


def test_may_dial_only_peer_keys(tmp_path: Path) -> None:
    reader, peer = CurveKeys.generate(), CurveKeys.generate()
    sec, _ = make_security(tmp_path, f"read {reader.public}\npeer {peer.public}\n")
    assert sec.may_dial(f"tcp://10.0.0.2:7000?key={peer.public}") is None
    assert "is not a peer key" in str(sec.may_dial(f"tcp://10.0.0.3:7000?key={reader.public}"))
    assert "names no key" in str(sec.may_dial("tcp://10.0.0.3:7000"))
    plain = NodeSecurity.load(NodeConfig(node_id="p"))
    assert plain.may_dial("tcp://127.0.0.1:7000") is None
    assert "names a key and this node has none" in str(plain.may_dial(f"tcp://127.0.0.1:7000?key={peer.public}"))
    (tmp_path / "x").mkdir()
    with pytest.raises(ConfigError, match="add a line 'peer <that key>'"):
        make_security(tmp_path / "x", "", (f"tcp://10.0.0.3:7000?key={reader.public}",))


async def test_gossip_cannot_steer_a_node_and_reload_closes_revoked_links(tmp_path: Path) -> None:
    """a trusts b and c; c trusts a only. a tells c where b is (gossip): c does not dial
    b. Then a drops b from its list and reloads: their link closes."""
    keys = {n: write_keypair(tmp_path / n)[0] for n in "abc"}
    for n, trusted in {"a": "abc", "b": "abc", "c": "ac"}.items():
        (tmp_path / f"auth-{n}").write_text("".join(f"peer {keys[t].public}\n" for t in trusted))

    def config(name: str, peers: list[str]) -> dict[str, Any]:
        return {
            **FAST,
            "node_id": name,
            "peers": peers,
            "secret_key_file": str(tmp_path / f"{name}.key_secret"),
            "authorized_keys_file": str(tmp_path / f"auth-{name}"),
        }

    def linked(node: Any) -> set[str]:
        return {p for p, v in node.status()["peers"].items() if v["connected"]}

    async with (
        open_node(**config("a", [])) as a,
        open_node(**config("b", list(a.endpoints))) as b,
        open_node(**config("c", list(a.endpoints))) as c,
    ):
        await wait_until_async(
            lambda: linked(a) == {"b", "c"} and b.endpoints[0] in c.security.stopped_dials,
            timeout_s=15,
            what="a to link b and c, and c to refuse dialing b",
        )
        assert linked(c) == {"a"} and linked(b) == {"a"}
        await a.set("shared", 1, ack="all", timeout_s=5)
        assert b.get("shared") == 1 and c.get("shared") == 1  # through a, encrypted
        (tmp_path / "auth-a").write_text(f"peer {keys['c'].public}\n")
        result = a.reload_keys()
        assert result["closed"] >= 1 and result["authorized"] == {"peer": 1, "read": 0, "write": 0}
        await wait_until_async(lambda: "b" not in linked(a) and "a" not in linked(b), what="the revoked link to close")
        await a.set("after", 2)
        await a.sync(timeout_s=2)
        assert b.get("after") is None
        assert a.status()["security"]["public_key"] == keys["a"].public
        assert ports.split_key(a.endpoints[0])[1] == keys["a"].public
