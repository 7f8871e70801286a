from __future__ import annotations

from pathlib import Path

import pytest

from statesync.node._config import ConfigError, FaultConfig, NodeConfig


def test_defaults_need_only_a_node_id() -> None:
    c = NodeConfig(node_id="a")
    assert c.listen == ("tcp://127.0.0.1:*",) and c.peers == () and c.data_dir is None
    assert c.replicator_config().sync_interval_s == c.sync_interval_s


def test_from_toml_with_relative_data_dir_and_tables(tmp_path: Path) -> None:
    f = tmp_path / "a.toml"
    f.write_text(
        'node_id = "a"\nlisten = "tcp://127.0.0.1:7001"\npeers = ["tcp://127.0.0.1:7002"]\n'
        'data_dir = "data/a"\n[strategy]\n"" = "vector-clock"\n"app" = "last-write-wins"\n'
        "[faults]\nseed = 3\ndrop = 0.1\ndelay_ms = [0, 5]\n"
    )
    c = NodeConfig.from_toml(f)
    assert c.listen == ("tcp://127.0.0.1:7001",)
    assert c.data_dir == str(tmp_path / "data" / "a")
    assert c.strategies().describe() == {"": "vector-clock", "app": "last-write-wins"}
    assert c.faults == FaultConfig(seed=3, drop=0.1, delay_ms=(0, 5))
    assert NodeConfig.from_toml(f, node_id="b").node_id == "b"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('node_id = "a"\nlistne = "tcp://x:1"', "unknown option 'listne'"),
        ('listen = "tcp://127.0.0.1:1"', "node_id is missing"),
        ('node_id = "a b"', "node_id 'a b' must be"),
        ('node_id = "a"\npeers = ["127.0.0.1:7002"]', "not of the form"),
        ('node_id = "a"\npeers = ["udp://x:1"]', "use tcp://"),
        ('node_id = "a"\ndurability = "always"', "use 'process' or 'fsync'"),
        ('node_id = "a"\nsync_interval_s = -1', "positive number of seconds"),
        ('node_id = "a"\nstrategy = "newest"', "unknown strategy"),
        ('node_id = "a"\n[faults]\ndrop = 2.0', "between 0 and 1"),
        ('node_id = "a"\n[faults]\nflip = 1', "unknown option faults.flip"),
        ("node_id = ", "not valid TOML"),
    ],
)
def test_bad_config_says_what_to_fix(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "n.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        NodeConfig.from_toml(f)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        NodeConfig.from_toml("/nonexistent/x.toml")


def test_to_mapping_round_trips() -> None:
    c = NodeConfig(node_id="a", peers=("tcp://127.0.0.1:1",), faults=FaultConfig(seed=1))
    assert NodeConfig.from_mapping(c.to_mapping()) == c
