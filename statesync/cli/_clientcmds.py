"""The commands that talk to a running node: get, set, delete, watch, dump, conflicts, status."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from statesync.cli._errors import EXIT_OK, NotFound, UsageError
from statesync.cli._nodecmd import read_toml
from statesync.cli._output import (
    clock,
    paint,
    parse_value,
    plain,
    render_status,
    to_json,
    use_color,
)
from statesync.client import Client
from statesync.errors import StatesyncError
from statesync.node import Receipt
from statesync.node._service import client_endpoint
from statesync.protocol import Ack, check_ack

ENV_NODE = "STATESYNC_NODE"
NODES_DIR = "nodes"
_MISSING = object()


def first_node_endpoint(folder: Path) -> str | None:
    """The client endpoint of the first node defined in ``folder`` (``*.toml``, by name)."""
    for file in sorted(folder.glob("*.toml")):
        data = read_toml(file)
        node_id = data.get("node_id")
        if not isinstance(node_id, str):
            continue
        data_dir = data.get("data_dir")
        if isinstance(data_dir, str) and not os.path.isabs(data_dir):
            data_dir = str(file.resolve().parent / data_dir)
        client = data.get("client", "auto")
        return client_endpoint(node_id, data_dir if isinstance(data_dir, str) else None, str(client))
    return None


def node_endpoint(flag: str | None) -> str:
    """``--node``, else ``$STATESYNC_NODE``, else the first node of ``./nodes/``."""
    if flag:
        return flag
    env = os.environ.get(ENV_NODE)
    if env:
        return env
    folder = Path(NODES_DIR)
    if folder.is_dir():
        endpoint = first_node_endpoint(folder)
        if endpoint:
            return endpoint
    raise UsageError(
        f"which node? pass --node ENDPOINT (for example tcp://127.0.0.1:7111), set {ENV_NODE}, "
        f"or run from a folder holding {NODES_DIR}/*.toml"
    )


def open_client(args: argparse.Namespace) -> Client:
    timeout = float(args.timeout)
    return Client(
        node_endpoint(args.node),
        timeout_s=timeout,
        connect_timeout_s=min(timeout, 3.0),
        secret_key_file=getattr(args, "key", None),
        server_key=getattr(args, "server_key", None),
    )


def _ack(text: str) -> Ack:
    try:
        return check_ack(int(text) if text.isdigit() else text)
    except StatesyncError as exc:
        raise UsageError(f"--ack {text!r}: use local, all or a number of peers") from exc


def _receipt_json(r: Receipt) -> str:
    return to_json({"path": r.path, "origin": r.origin, "seq": r.seq, "hlc": r.hlc, "acked_by": list(r.acked_by)})


def _receipt_line(verb: str, r: Receipt) -> str:
    acked = f", acknowledged by {', '.join(r.acked_by)}" if r.acked_by else ""
    return f"{verb} {r.path or '(root)'}: write {r.origin}#{r.seq}{acked}"


def cmd_get(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        value = client.get(args.path, _MISSING)
    if value is _MISSING:
        raise NotFound(f"no value at {args.path or '(root)'}")
    if args.raw and isinstance(value, str):
        print(value)
    else:
        print(to_json(value, pretty=isinstance(value, dict) and not args.compact))
    return EXIT_OK


def read_input_value(args: argparse.Namespace) -> Any:
    """SET's value: VALUE itself, all of stdin for ``-``, or the file of ``--file``.

    Input from stdin or a file is taken as it is (no newline stripped): as
    text when it is UTF-8 (then JSON when it parses as JSON, unless
    ``--string``), else as bytes; ``--bytes`` stores it as bytes either way.
    """
    file: str | None = args.file
    if file is not None and args.value is not None:
        raise UsageError(f"give the value either as VALUE ({args.value!r}) or with --file, not both")
    if file is None and args.value is None:
        raise UsageError("give a VALUE, - to read it from stdin, or --file FILE")
    if file is None and args.value != "-":
        if args.bytes:
            return os.fsencode(args.value)
        return parse_value(args.value, as_string=args.string)
    if file is None:
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --file {file}: {exc.strerror}") from exc
    if args.bytes:
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return parse_value(text, as_string=args.string)


def cmd_set(args: argparse.Namespace) -> int:
    value = read_input_value(args)
    with open_client(args) as client:
        r = client.set(args.path, value, ack=_ack(args.ack), timeout_s=args.ack_timeout)
    print(_receipt_json(r) if args.json else _receipt_line("set", r))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        r = client.delete(args.path, ack=_ack(args.ack), timeout_s=args.ack_timeout)
    print(_receipt_json(r) if args.json else _receipt_line("deleted", r))
    return EXIT_OK


def cmd_dump(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        tree = client.snapshot(args.path)
    if args.path and tree == {}:
        raise NotFound(f"no value at {args.path}")
    print(to_json(tree, pretty=not args.compact))
    return EXIT_OK


def cmd_conflicts(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        versions = client.conflicts(args.path)
        value = client.get(args.path, _MISSING) if versions or not args.json else None
    if args.json:
        print(to_json([{"value": v.value, "origin": v.origin, "seq": v.seq, "hlc": v.hlc} for v in versions]))
        return EXIT_OK
    if not versions:
        shown = "no value" if value is _MISSING else f"value {to_json(value)}"
        print(f"no conflict at {args.path} ({shown})")
        return EXIT_OK
    print(f"{len(versions)} concurrent versions at {args.path}; reads return {to_json(value)}:")
    for v in versions:
        print(f"  {to_json(v.value)}  (write {v.origin}#{v.seq}, hlc {v.hlc})")
    print("a write to this path from a node that has seen them all replaces them")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        status = client.status()
    if args.quiet:
        return EXIT_OK
    if args.json:
        print(to_json(status, pretty=True))
    else:
        print(render_status(status, color=use_color(sys.stdout, args.color)))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    color = use_color(sys.stdout, args.color)
    with open_client(args) as client:
        watch = client.watch(args.path)
        try:
            sys.stderr.write(f"watching {args.path or '(everything)'} on {client.endpoint}; Ctrl-C to stop\n")
            sys.stderr.flush()
            if args.initial:
                _print_event(args, color, {"kind": "initial", "path": args.path, "value": watch.initial, "origin": "", "seq": 0})
            while True:
                event = watch.get(timeout=0.5)
                if event is None:
                    if watch.closed:
                        break
                    continue
                _print_event(args, color, event.to_plain())
        except KeyboardInterrupt:
            pass
        finally:
            watch.close()
    return EXIT_OK


def _print_event(args: argparse.Namespace, color: bool, event: dict[str, Any]) -> None:
    if args.json:
        print(to_json(plain(event)), flush=True)
        return
    kind = str(event["kind"])
    path = event["path"] or "(root)"
    origin = f"  ({event['origin']}#{event['seq']})" if event.get("origin") else ""
    if kind == "put":
        text = f"{paint('put', '32', color)}    {path} = {to_json(event['value'])}{origin}"
    elif kind == "delete":
        text = f"{paint('delete', '31', color)} {path}{origin}"
    elif kind == "lagged":
        text = f"{paint('resync', '33', color)} {path} = {to_json(event['value'])}  (changes were skipped; this is the whole current value)"
    else:
        text = f"{paint(kind, '36', color)} {path} = {to_json(event['value'])}"
    print(f"{clock()} {text}", flush=True)


# shared with the typed-value commands (_typedcmds)
ack_of = _ack
receipt_json = _receipt_json
receipt_line = _receipt_line
