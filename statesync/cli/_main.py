"""The ``statesync`` command: argument parsing, dispatch, errors and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from statesync import __version__
from statesync.cli import _clientcmds, _demo, _init, _keygen, _launch, _nodecmd
from statesync.cli._errors import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    NotFound,
    UsageError,
)
from statesync.cli._output import err, use_color
from statesync.cli._typedcmds import add_typed_commands
from statesync.client import ClientError, NodeUnavailable
from statesync.core import StatesyncError
from statesync.node import ConfigError
from statesync.ports import InvalidKey
from statesync.security import KeyFileError

Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
statesync: a replicated, path-addressed state tree. Every node accepts writes
at once (offline too) and all nodes converge.

Run nodes with `statesync node` or `statesync launch`; talk to a running node
with get / set / delete / watch / dump / conflicts / status."""

EXAMPLES = """\
examples:
  statesync demo                              # the three-node demo, start to finish
  statesync launch                            # run the cluster defined in nodes/
  statesync set user.name '"Ada"'             # JSON value (here a string)
  statesync set user '{"name": "Ada", "age": 36}'
  statesync get user
  statesync watch user                        # stream changes until Ctrl-C
  statesync status --node tcp://127.0.0.1:7112
  statesync keygen keys/ops                   # a key pair; prints the public key

The node a command talks to: --node ENDPOINT, else $STATESYNC_NODE, else the
first node defined in ./nodes/*.toml. A node with keys also needs --key FILE
(or $STATESYNC_KEY) and its public key: --node ENDPOINT?key=KEY, --server-key,
or $STATESYNC_SERVER_KEY.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=min(100, max(60, _columns())))


def _columns() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 100


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--node",
        "-n",
        metavar="ENDPOINT",
        help="the node's client endpoint, e.g. tcp://127.0.0.1:7111 or ipc:///var/lib/statesync/client.sock "
        "(default: $STATESYNC_NODE, else the first node in ./nodes/)",
    )
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="give up after S seconds (default 10)")
    p.add_argument(
        "--key",
        metavar="FILE",
        help="this client's secret key file (NAME.key_secret), for a node with keys (default: $STATESYNC_KEY)",
    )
    p.add_argument(
        "--server-key",
        metavar="KEY",
        help="the node's public key, or its NAME.key file (default: the endpoint's ?key=, else "
        "$STATESYNC_SERVER_KEY, else the public half of --key when it is the node's own key)",
    )


def _write_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ack",
        default="local",
        metavar="local|all|N",
        help="return once durable on the node (local, the default), once every connected peer has it (all), or N peers",
    )
    p.add_argument("--ack-timeout", type=float, default=None, metavar="S", help="how long --ack all|N may wait (default: the node's write_timeout_s)")
    p.add_argument("--json", action="store_true", help="print the write's receipt as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statesync",
        description=DESCRIPTION,
        epilog=EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"statesync {__version__}")
    parser.add_argument(
        "--node",
        "-n",
        dest="global_node",
        metavar="ENDPOINT",
        help="the node a client command talks to; the same as --node after the command",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, examples: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog="examples:\n" + examples, formatter_class=_Formatter)
        p.set_defaults(func=handler)
        return p

    # -- node
    p = command(
        "node",
        "run one node until Ctrl-C or SIGTERM (it then flushes its log and says BYE to its peers)",
        """\
  statesync node nodes/a.toml
  statesync node --id a --listen tcp://127.0.0.1:7001 --data-dir data/a
  statesync node --id b --listen tcp://127.0.0.1:7002 --peer tcp://127.0.0.1:7001 --data-dir data/b
  statesync node nodes/a.toml --strategy lww --strategy carts=mymodule:merge_carts
  statesync node nodes/a.toml -o sync_interval_s=0.5 --check   # print the resolved configuration

Flags replace the file's values. The node serves clients (the CLI,
statesync.Client) on its client endpoint: --client auto (the default) is
ipc://DATA_DIR/client.sock; its log says where.

Without keys a node binds only loopback, ipc:// and inproc:// endpoints;
--insecure lifts that (with a warning). With --key and --authorized-keys
every connection is encrypted and authenticated; SIGHUP re-reads the
authorized keys (removed keys lose access at once).""",
        _nodecmd.run,
    )
    p.add_argument("config", nargs="?", metavar="CONFIG.toml", help="the node's TOML file (every option of the configuration reference)")
    p.add_argument("--id", metavar="NAME", help="node id, unique in the cluster")
    p.add_argument("--listen", action="append", metavar="ENDPOINT", help="accept peers here, e.g. tcp://0.0.0.0:7000 (repeatable)")
    p.add_argument("--peer", action="append", metavar="ENDPOINT", help="connect to this node (repeatable); more are learned from them")
    p.add_argument("--advertise", action="append", metavar="ENDPOINT", help="the endpoint other nodes should use to reach this one (repeatable)")
    p.add_argument("--data-dir", metavar="DIR", help="where the op log and snapshots live (default: memory only)")
    p.add_argument("--durability", choices=["process", "fsync"], help="process: survives a crash; fsync: also power loss")
    p.add_argument(
        "--strategy",
        action="append",
        metavar="[PREFIX=]NAME",
        help="conflict strategy: vector-clock, last-write-wins, or module:function / file.py:function "
        "for a custom resolver; PREFIX= sets it for one subtree (repeatable)",
    )
    p.add_argument("--client", metavar="ENDPOINT", help="client endpoint: auto (default), ipc:///path, tcp://127.0.0.1:PORT, or none")
    p.add_argument("--key", metavar="FILE", help="this node's secret key file (secret_key_file): CURVE on every connection")
    p.add_argument("--authorized-keys", metavar="FILE", help="the keys it admits, one 'ROLE KEY [PREFIX...]' a line (authorized_keys_file)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding non-loopback addresses without keys (allow_insecure): anyone who reaches them can read and write",
    )
    p.add_argument("--sync-interval", type=float, metavar="S", help="seconds between anti-entropy rounds")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics at http://HOST:PORT/metrics (metrics_listen), e.g. 127.0.0.1:9464")
    p.add_argument("-o", "--option", action="append", metavar="NAME=VALUE", help="any other configuration option, VALUE in TOML syntax (repeatable)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default: info")
    p.add_argument("--check", action="store_true", help="print the resolved configuration as JSON and exit")

    # -- keygen
    p = command(
        "keygen",
        "make a CURVE key pair: NAME.key_secret (secret, mode 0600) and NAME.key (public); prints the public key",
        """\
  statesync keygen keys/a                 # a node's key pair: keys/a.key_secret, keys/a.key
  statesync keygen ops                    # a client's (CLI, statesync.Client)
  PUB=$(statesync keygen keys/b)          # the public key alone goes to stdout

Give a node its secret file (secret_key_file, or --key) and list public keys
with their role in its authorized_keys_file. An existing pair is never
replaced unless --force (everything using it would lose access).""",
        _keygen.run,
    )
    p.add_argument("name", metavar="NAME", help="a name or path; the files are NAME.key_secret and NAME.key")
    p.add_argument("--force", action="store_true", help="replace an existing key pair")

    # -- launch
    p = command(
        "launch",
        "run every node defined in a folder as supervised child processes",
        """\
  statesync launch                 # nodes/*.toml
  statesync launch deploy/local/ --color never

Each line a node prints is prefixed with its id. A node that exits on its own
is restarted (backoff 0.5 s doubling to 10 s; after --restarts-max quick
failures in a row it is given up). Ctrl-C stops them all; no node outlives
the launcher, even if the launcher is killed.""",
        _run_launch,
    )
    p.add_argument("folder", nargs="?", default="nodes", metavar="FOLDER", help="a folder of node TOML files (default: nodes/)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="colour the prefixes (default: auto)")
    p.add_argument("--restarts-max", type=int, default=5, metavar="N", help="quick failures in a row before a node is given up (default 5)")

    # -- init
    p = command(
        "init",
        "write a three-node cluster definition (a.toml, b.toml, c.toml) to start from",
        """\
  statesync init                   # into ./nodes/
  statesync init mycluster/ && statesync launch mycluster/

The files are the local demo cluster (loopback ports 7101-7103 for peers,
7111-7113 for clients); edit them, then `statesync launch FOLDER`.""",
        _run_init,
    )
    p.add_argument("folder", nargs="?", default="nodes", metavar="FOLDER", help="where to write the node files (default: nodes/)")
    p.add_argument("--force", action="store_true", help="replace node files already there")

    # -- demo
    p = command(
        "demo",
        "launch the nodes/ cluster and show replication, a conflict, a crash and catch-up, then stop",
        """\
  statesync demo
  statesync demo --verbose         # also show the nodes' own log lines

The demo uses the ports of nodes/*.toml and a fresh temporary data folder,
which it removes at the end. Where there is no nodes/ folder (statesync
installed, run from any folder) it runs the built-in three-node cluster that
`statesync init` writes, on ports 7101-7103/7111-7113 or free ones.""",
        _run_demo,
    )
    p.add_argument("folder", nargs="?", default=None, metavar="FOLDER", help="the cluster to run (default: nodes/, else the built-in cluster)")
    p.add_argument("--verbose", "-v", action="store_true", help="show the nodes' log lines too")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")

    # -- get
    p = command(
        "get",
        "print the value at PATH (a subtree prints as a JSON object)",
        """\
  statesync get user.name
  statesync get user --compact
  statesync get flags.theme --raw    # a string without quotes, for shell scripts""",
        _clientcmds.cmd_get,
    )
    p.add_argument("path", metavar="PATH", help="a dotted path (write \\. for a dot inside a segment); '' is the root")
    p.add_argument("--raw", action="store_true", help="print a string value without JSON quotes")
    p.add_argument("--compact", action="store_true", help="one line of JSON")
    _client_options(p)

    # -- set
    p = command(
        "set",
        "write VALUE at PATH (JSON when VALUE parses as JSON, else the text as a string)",
        """\
  statesync set user.name Ada                     # the string "Ada"
  statesync set user.age 36                       # the number 36
  statesync set user.age 36 --string              # the string "36"
  statesync set user '{"name": "Ada", "langs": ["en", "fr"]}'   # a subtree
  statesync set flags.beta true --ack all         # wait until every connected peer has it
  statesync set config.flags - < flags.json       # the value from stdin
  statesync set users.ada.avatar --file ada.png   # a file (not UTF-8: stored as bytes)""",
        _clientcmds.cmd_set,
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("value", metavar="VALUE", nargs="?", help="the value; - reads it from stdin")
    p.add_argument("--file", "-f", metavar="FILE", help="read the value from FILE")
    p.add_argument("--string", action="store_true", help="store the value as a string even if it parses as JSON")
    p.add_argument("--bytes", action="store_true", help="store the value as bytes, as it is")
    _write_options(p)
    _client_options(p)

    # -- delete
    p = command(
        "delete",
        "remove PATH and everything beneath it",
        """\
  statesync delete user.age
  statesync delete user --ack all""",
        _clientcmds.cmd_delete,
    )
    p.add_argument("path", metavar="PATH")
    _write_options(p)
    _client_options(p)

    add_typed_commands(command, _write_options, _client_options)

    # -- watch
    p = command(
        "watch",
        "print every change under PATH as it happens, until Ctrl-C",
        """\
  statesync watch user
  statesync watch '' --json          # everything, one JSON object per line
  statesync watch flags --initial    # start with the current value""",
        _clientcmds.cmd_watch,
    )
    p.add_argument("path", nargs="?", default="", metavar="PATH", help="the prefix to watch (default: everything)")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.add_argument("--initial", action="store_true", help="print the current value first")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    _client_options(p)

    # -- dump
    p = command(
        "dump",
        "print the whole tree (or the subtree at PATH) as JSON",
        """\
  statesync dump
  statesync dump user --compact > user.json""",
        _clientcmds.cmd_dump,
    )
    p.add_argument("path", nargs="?", default="", metavar="PATH")
    p.add_argument("--compact", action="store_true", help="one line of JSON")
    _client_options(p)

    # -- conflicts
    p = command(
        "conflicts",
        "list the concurrent versions kept at PATH (vector-clock and custom strategies)",
        """\
  statesync conflicts demo.color
  statesync conflicts demo.color --json""",
        _clientcmds.cmd_conflicts,
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="the versions as a JSON list")
    _client_options(p)

    # -- status
    p = command(
        "status",
        "show the node: peers, lag each way, unacknowledged writes, log size, last sync, transfers",
        """\
  statesync status
  statesync status --json | jq .peers
  statesync status --quiet --node ipc:///var/lib/statesync/client.sock   # readiness probe: exit code only""",
        _clientcmds.cmd_status,
    )
    p.add_argument("--json", action="store_true", help="the full status as JSON, for scripts")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing; exit 0 when the node answers, 3 when not")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    _client_options(p)
    return parser


def _run_launch(args: argparse.Namespace) -> int:
    specs = _launch.load_folder(Path(args.folder))
    return trio.run(lambda: _launch.launch(specs, color=use_color(sys.stdout, args.color), restarts_max=args.restarts_max))


def _run_demo(args: argparse.Namespace) -> int:
    folder = None if args.folder is None else Path(args.folder)
    return _demo.run(folder, verbose=args.verbose, color=use_color(sys.stdout, args.color))


def _run_init(args: argparse.Namespace) -> int:
    return _init.run(Path(args.folder), force=args.force)


def _leaf(exc: BaseException) -> BaseException:
    """The one interesting exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        found = [e for e in exc.exceptions if isinstance(e, StatesyncError | BaseExceptionGroup)]
        exc = found[0] if found else exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    """The ``statesync`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.global_node is not None:
        if not hasattr(args, "node"):
            err(f"error: --node applies to the client commands, not to {args.command}; leave it out")
            return EXIT_USAGE
        if args.node is None:
            args.node = args.global_node
    try:
        try:
            code: int = args.func(args)
            return code
        except BaseExceptionGroup as group:
            raise _leaf(group) from group
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (statesync dump | head): not an error of ours.
        _silence_stdout()
        return 0
    except NotFound as exc:
        err(str(exc))
        return EXIT_NOT_FOUND
    except (UsageError, ConfigError, KeyFileError, InvalidKey) as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except NodeUnavailable as exc:
        err(f"error: {exc}")
        return EXIT_UNREACHABLE
    except (ClientError, StatesyncError) as exc:
        err(f"error: {exc}")
        return EXIT_FAILED


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's exit-time flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
