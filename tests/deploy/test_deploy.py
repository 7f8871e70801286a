"""deploy/: the files parse, and the node configurations they produce are valid and consistent.

Docker and Kubernetes cannot run here; what is checked is everything short of
that: each container's command goes through the real CLI parser and
configuration loader, exactly as `statesync node` would take it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from statesync.cli import build_parser
from statesync.cli._nodecmd import build_config
from statesync.node import NodeConfig
from statesync.node._service import client_endpoint
from statesync.ports import split_key

DEPLOY = Path(__file__).parents[2] / "deploy"
ROOT = DEPLOY.parent


def node_config(argv: list[str], files: dict[str, Path]) -> NodeConfig:
    """The configuration `statesync <argv>` would run with; ``files`` maps in-container paths to repo files."""
    argv = [str(files.get(a, a)) for a in argv]
    args = build_parser().parse_args(argv)
    assert args.command == "node"
    return build_config(args)


def host(endpoint: str) -> str:
    return split_key(endpoint)[0].split("://", 1)[1].rsplit(":", 1)[0]


def yaml_module() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML is needed to parse the compose and Kubernetes files (pip install pyyaml)")


def test_containerfile_builds_from_files_that_exist() -> None:
    lines = [line.strip() for line in (DEPLOY / "Containerfile").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    for line in lines:
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    assert 'ENTRYPOINT ["statesync"]' in lines
    assert any(line.startswith("HEALTHCHECK") and '"statesync", "status", "--quiet"' in line for line in lines)
    assert "STOPSIGNAL SIGTERM" in lines
    env = next(line for line in lines if line.startswith("ENV STATESYNC_NODE="))
    assert "ipc:///var/lib/statesync/client.sock" in env


def test_compose_nodes_form_one_valid_cluster() -> None:
    yaml = yaml_module()
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert sorted(services) == ["node1", "node2", "node3"]
    configs = {}
    for name, service in services.items():
        assert service["hostname"] == name
        assert service["stop_signal"] == "SIGTERM"
        assert service["healthcheck"]["test"] == ["CMD", "statesync", "status", "--quiet"]
        assert service["build"]["dockerfile"] == "deploy/Containerfile"
        assert (DEPLOY / "compose" / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (DEPLOY / "Containerfile").resolve()
        mounts = dict(v.split(":")[:2] for v in service["volumes"])
        toml = (DEPLOY / "compose" / mounts_key(mounts, "/etc/statesync/node.toml")).resolve()
        config = node_config(service["command"], {"/etc/statesync/node.toml": toml})
        configs[name] = config
        assert config.node_id == name
        assert config.advertise == (f"tcp://{name}:7000",)
        assert mounts[f"{name}-data"] == config.data_dir == "/var/lib/statesync"
        assert f"{name}-data" in compose["volumes"]
        assert client_endpoint(config.node_id, config.data_dir, config.client) == "ipc:///var/lib/statesync/client.sock"
        assert {host(p) for p in config.peers} == set(services)  # every peer is a service of this file
        assert config.listen == ("tcp://0.0.0.0:7000",)
        # no keys: binding 0.0.0.0 is allowed explicitly, and the node warns about it
        assert config.allow_insecure and config.secret_key_file is None
        assert config.insecure_endpoints == ("tcp://0.0.0.0:7000",)
    assert len({c.node_id for c in configs.values()}) == 3


def mounts_key(mounts: dict[str, str], target: str) -> str:
    return next(src for src, dst in mounts.items() if dst == target)


def test_kubernetes_statefulset_pods_form_one_valid_cluster(tmp_path: Path) -> None:
    yaml = yaml_module()
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "statesync.yaml").read_text()) if d}
    assert set(docs) == {"ConfigMap", "Service", "StatefulSet"}
    service, sts, cm = docs["Service"], docs["StatefulSet"], docs["ConfigMap"]
    assert service["spec"]["clusterIP"] == "None" or service["spec"]["clusterIP"] is None
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert sts["spec"]["selector"]["matchLabels"] == service["spec"]["selector"] == sts["spec"]["template"]["metadata"]["labels"]
    replicas = sts["spec"]["replicas"]
    assert replicas == 3
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["exec"]["command"] == ["statesync", "status", "--quiet"]
    env = {e["name"]: e for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] in mounts
    configmap_volume = next(v for v in pod["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"])
    (tmp_path / "node.toml").write_text(cm["data"]["node.toml"])
    files = {f"{mounts[configmap_volume['name']]}/node.toml": tmp_path / "node.toml"}
    name, namespace = sts["metadata"]["name"], "prod"
    pods = [f"{name}-{i}" for i in range(replicas)]
    for pod_name in pods:
        # Kubernetes expands $(VAR) in args from the container's env.
        argv = [a.replace("$(POD_NAME)", pod_name).replace("$(POD_NAMESPACE)", namespace) for a in container["args"]]
        config = node_config(argv, files)
        assert config.node_id == pod_name
        assert config.advertise == (f"tcp://{pod_name}.{service['metadata']['name']}.{namespace}.svc.cluster.local:7000",)
        assert config.data_dir == mounts[claim["metadata"]["name"]]
        assert sorted(host(p) for p in config.peers) == [f"{p}.{service['metadata']['name']}" for p in pods]
        assert {int(p.rsplit(":", 1)[1]) for p in config.peers} == {service["spec"]["ports"][0]["port"]}
        assert client_endpoint(config.node_id, config.data_dir, config.client) == env["STATESYNC_NODE"]["value"]
        for field in ("POD_NAME", "POD_NAMESPACE"):
            assert "fieldRef" in env[field]["valueFrom"]
        assert config.allow_insecure and config.secret_key_file is None  # see the file's Security note


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file: section -> (key, value) pairs in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"a setting outside any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_runs_a_valid_node() -> None:
    unit = parse_unit((DEPLOY / "systemd" / "statesync@.service").read_text())
    assert set(unit) == {"Unit", "Service", "Install"}
    service = dict(unit["Service"])
    assert service["KillSignal"] == "SIGTERM" and service["RestartPreventExitStatus"] == "2"
    argv = shlex.split(service["ExecStart"].replace("%i", "a"))
    assert argv[0] == "/usr/local/bin/statesync"
    config = node_config(argv[1:], {"/etc/statesync/a.toml": DEPLOY / "systemd" / "node.toml"})
    assert config.node_id == "a"
    assert config.data_dir == "/var/lib/" + service["StateDirectory"].replace("%i", "a")
    env = dict(v.split("=", 1) for k, v in unit["Service"] if k == "Environment")
    assert env["STATESYNC_NODE"].replace("%i", "a") == client_endpoint(config.node_id, config.data_dir, config.client)
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"
    # nodes on separate hosts use keys: every peer names its public key; SIGHUP reloads
    assert config.secret_key_file == "/etc/statesync/a.key_secret"
    assert config.authorized_keys_file == "/etc/statesync/authorized_keys"
    assert not config.allow_insecure and all(split_key(p)[1] for p in config.peers)
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
