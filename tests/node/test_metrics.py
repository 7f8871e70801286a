"""Prometheus metrics: scraped over HTTP, parsed with prometheus_client's parser."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from statesync.cli._main import build_parser
from statesync.cli._nodecmd import build_config
from statesync.node import ConfigError, NodeConfig, open_node
from tests.support import FAST, wait_until_async

ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(endpoint: str, path: str = "/metrics") -> httpx.Response:
    return await trio.to_thread.run_sync(lambda: httpx.get(f"http://{endpoint}{path}", timeout=10.0))


async def samples(endpoint: str) -> Samples:
    response = await scrape(endpoint)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def one(got: Samples, name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


async def test_two_nodes_in_one_process_serve_their_own_metrics_and_values_move() -> None:
    opts = {**FAST, "metrics_listen": "127.0.0.1:0", "watch_buffer_max": 4}
    async with open_node(node_id="m0", **opts) as a, open_node(node_id="m1", peers=list(a.endpoints), **opts) as b:
        assert a.metrics_endpoint is not None and b.metrics_endpoint is not None
        assert a.metrics_endpoint != b.metrics_endpoint
        await wait_until_async(lambda: b.status()["peers"].get("m0", {}).get("connected", False), what="the link")
        before_a, before_b = await samples(a.metrics_endpoint), await samples(b.metrics_endpoint)
        assert one(before_a, "statesync_writes_total") == 0
        assert one(before_a, "statesync_ack_latency_seconds_count") == 0
        assert one(before_b, "statesync_link_up", peer="m0") == 1

        async with a.watch("w") as watch:
            for i in range(10):  # more than the watch's buffer: it lags once
                await a.set(("w", str(i)), i, ack="all")
            after_a, after_b = await samples(a.metrics_endpoint), await samples(b.metrics_endpoint)
            assert one(after_a, "statesync_watches") == 1
            assert one(after_a, "statesync_watch_lagged_events_total") == 1
            assert (await watch.__anext__()).kind == "lagged"

        assert one(after_a, "statesync_writes_total") == 10
        assert one(after_a, "statesync_ack_latency_seconds_count") == 10  # ack="all": each waited
        assert one(after_a, "statesync_ack_latency_seconds_bucket", le="+Inf") == 10
        assert one(after_a, "statesync_peer_lacking_ops", peer="m1") == 0  # all acknowledged
        assert one(after_b, "statesync_applied_ops_total") >= 10
        assert one(after_b, "statesync_leaves") == 10
        assert one(after_a, "statesync_frames_total", kind="out") > one(before_a, "statesync_frames_total", kind="out")
        assert one(after_a, "statesync_disk_full_alarm") == 0
        assert one(after_a, "statesync_refusals_total", kind="peer") == 0
        assert one(after_a, "statesync_causal_buffer_ops") == 0
        assert one(after_a, "statesync_log_ops") == 10

        # a node's own registry: b's writes do not show on a's page
        await b.set("x", 1)
        assert one(await samples(a.metrics_endpoint), "statesync_writes_total") == 10
        assert one(await samples(b.metrics_endpoint), "statesync_writes_total") == 1


async def test_peer_lag_shows_while_a_link_is_down() -> None:
    async with open_node(node_id="l0", metrics_listen="127.0.0.1:0", **FAST) as a:
        async with open_node(node_id="l1", peers=list(a.endpoints), **FAST) as b:
            await wait_until_async(lambda: a.status()["peers"].get("l1", {}).get("connected", False), what="the link")
            await b.set("y", 0, ack="all")
        assert a.metrics_endpoint is not None
        await wait_until_async(lambda: not a.status()["peers"]["l1"]["connected"], what="the link to drop")
        lacking = one(await samples(a.metrics_endpoint), "statesync_peer_lacking_ops", peer="l1")
        for i in range(5):
            await a.set(("k", str(i)), i)
        got = await samples(a.metrics_endpoint)
        assert one(got, "statesync_link_up", peer="l1") == 0
        assert one(got, "statesync_peer_lacking_ops", peer="l1") == lacking + 5


async def test_only_get_metrics_is_served() -> None:
    async with open_node(node_id="h0", metrics_listen="127.0.0.1:0") as a:
        assert a.metrics_endpoint is not None
        assert (await scrape(a.metrics_endpoint, "/other")).status_code == 404
        response = await trio.to_thread.run_sync(lambda: httpx.post(f"http://{a.metrics_endpoint}/metrics", timeout=10.0))
        assert response.status_code == 405
        assert (await scrape(a.metrics_endpoint, "/metrics?x=1")).status_code == 200

        # a client that sends a head longer than the bound gets 431, and the node goes on
        async def too_long() -> bytes:
            host, port = str(a.metrics_endpoint).rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(b"GET /metrics HTTP/1.0\r\nX: " + b"a" * 20_000)
                return await stream.receive_some(4096)

        assert (await too_long()).startswith(b"HTTP/1.0 431")
        assert (await scrape(a.metrics_endpoint)).status_code == 200


def test_metrics_listen_is_checked_and_the_flag_sets_it() -> None:
    for bad in ("9464", "127.0.0.1:99999", ":9464", "127.0.0.1:port"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            NodeConfig(node_id="c", metrics_listen=bad)
    assert NodeConfig(node_id="c", metrics_listen="[::1]:9464").metrics_listen == "[::1]:9464"
    args = build_parser().parse_args(["node", "--id", "c", "--metrics", "127.0.0.1:9464"])
    assert isinstance(args, argparse.Namespace)
    assert build_config(args).metrics_listen == "127.0.0.1:9464"
    assert build_config(build_parser().parse_args(["node", "--id", "c"])).metrics_listen is None


async def test_a_busy_metrics_port_is_a_config_error() -> None:
    async with open_node(node_id="p0", metrics_listen="127.0.0.1:0") as a:
        with pytest.raises(BaseException) as info:
            async with open_node(node_id="p1", metrics_listen=a.metrics_endpoint):
                pass
        leaf = info.value
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        assert isinstance(leaf, ConfigError) and "cannot listen there" in str(leaf)


async def test_the_operations_page_example_runs_and_lists_every_metric(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "operations.md").read_text()
    example = tomllib.loads(re.search(r"```toml\n(.*?)```", page, re.S).group(1))  # type: ignore[union-attr]
    assert example["metrics_listen"] == "127.0.0.1:9464"
    # the documented file, on ports and a folder of this test's own
    config = {**example, "listen": ["tcp://127.0.0.1:*"], "data_dir": str(tmp_path / "a"), "metrics_listen": "127.0.0.1:0"}
    documented = set()
    for row in page.splitlines():
        if row.startswith("| `statesync_"):
            documented |= {re.sub(r"\{.*\}", "", n) for n in re.findall(r"`(statesync_[a-z_{}]+)`", row.split("|")[1])}
    async with open_node(NodeConfig.from_mapping(config)) as node:
        await node.set("k", 1)
        assert node.metrics_endpoint is not None
        response = await scrape(node.metrics_endpoint)
    families = text_string_to_metric_families(response.text)
    # (prometheus_client adds a _created gauge next to a histogram: its creation time)
    served = {f.name + ("_total" if f.type == "counter" else "") for f in families if not f.name.endswith("_created")}
    assert documented == served
