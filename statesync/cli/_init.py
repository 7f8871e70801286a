"""``statesync init``: write a three-node cluster definition to start from.

The files it writes are the ones the repository keeps in ``nodes/`` (a test
checks that they are identical), so an installed statesync has the same
starting point as a checkout. ``statesync demo`` with no ``nodes/`` folder
writes the same cluster into a temporary folder and runs it there.
"""

from __future__ import annotations

import socket
from pathlib import Path

from statesync.cli._errors import UsageError

NAMES = ("a", "b", "c")
LISTEN_PORT_BASE = 7101
CLIENT_PORT_BASE = 7111

_TEMPLATE = """\
# Node "{name}" of the local demo cluster. `statesync launch` (or `statesync launch nodes/`)
# starts every node of this folder; `statesync demo` runs the demo with them.
# Every option is described in the README's configuration reference.

node_id = "{name}"
listen = "tcp://127.0.0.1:{listen}"                       # peers connect here
peers = [{peers}]
client = "tcp://127.0.0.1:{client}"                       # the CLI and statesync.Client connect here
data_dir = "data/{name}"                                   # relative to this file: nodes/data/{name} (git-ignored)

# Quick reactions for a local demo (the defaults suit real networks).
sync_interval_s = 1.0
heartbeat_interval_s = 0.25
heartbeat_timeout_s = 1.5
reconnect_max_s = 1.0

# Conflict strategies: vector-clock keeps concurrent writes as siblings,
# last-write-wins keeps only the latest; one strategy per subtree.
[strategy]
"" = "vector-clock"
"lww" = "last-write-wins"
"""


def default_ports() -> tuple[list[int], list[int]]:
    """The documented ports: listen 7101-7103, client 7111-7113."""
    n = len(NAMES)
    return [LISTEN_PORT_BASE + i for i in range(n)], [CLIENT_PORT_BASE + i for i in range(n)]


def render(listen_ports: list[int], client_ports: list[int]) -> dict[str, str]:
    """The TOML text of each node file, by file name."""
    files = {}
    for i, name in enumerate(NAMES):
        peers = ", ".join(f'"tcp://127.0.0.1:{p}"' for j, p in enumerate(listen_ports) if j != i)
        files[f"{name}.toml"] = _TEMPLATE.format(name=name, listen=listen_ports[i], client=client_ports[i], peers=peers)
    return files


def write_cluster(folder: Path, listen_ports: list[int], client_ports: list[int], *, force: bool = False) -> list[Path]:
    """Write the cluster's node files into ``folder`` (made if missing); the paths written."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file; give a folder to write the node files into")
    if not force and folder.is_dir() and any(folder.glob("*.toml")):
        raise UsageError(f"{folder} already holds node files; give another folder, or --force to replace a.toml, b.toml and c.toml")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in render(listen_ports, client_ports).items():
        path = folder / file_name
        path.write_text(text)
        written.append(path)
    return written


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ does
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_free_ports(count: int) -> list[int]:
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def demo_ports() -> tuple[list[int], list[int], bool]:
    """Ports for a built-in demo cluster: the documented ones when all are free, else free ones.

    The third item says whether the documented ports were used.
    """
    listen, client = default_ports()
    if all(_free(p) for p in [*listen, *client]):
        return listen, client, True
    ports = _any_free_ports(len(listen) + len(client))
    return ports[: len(listen)], ports[len(listen) :], False


def run(folder: Path, *, force: bool = False) -> int:
    listen, client = default_ports()
    written = write_cluster(folder, listen, client, force=force)
    print(f"wrote {', '.join(str(p) for p in written)}")
    where = "" if folder == Path("nodes") else f" {folder}"
    print(f"start the cluster with `statesync launch{where}`, or run the demo with `statesync demo{where}`")
    return 0
