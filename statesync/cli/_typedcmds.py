"""The typed-value commands: ``statesync text|list|counter|awset ACTION PATH ...``.

Each edit is one client request (``Client.text(path).insert(...)`` and its
kin) with the usual ``--ack``, ``--ack-timeout`` and ``--json``; reading is
the ordinary ``statesync get PATH``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from statesync.cli._clientcmds import ack_of, open_client, receipt_json, receipt_line
from statesync.cli._errors import EXIT_OK, UsageError
from statesync.cli._output import parse_value
from statesync.node import Receipt

Command = Callable[[str, str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]
Options = Callable[[argparse.ArgumentParser], None]

# (type, action): (positional arguments after PATH, what it does, example)
_ACTIONS: dict[str, dict[str, tuple[tuple[str, ...], str, str]]] = {
    "text": {
        "insert": (("POS", "STRING"), "insert STRING at code point POS", "statesync text insert doc.body 0 'Hello'"),
        "delete": (("POS", "N"), "delete N code points from POS", "statesync text delete doc.body 0 2"),
    },
    "list": {
        "insert": (("POS", "VALUE..."), "insert the VALUEs (JSON, else text) so the first lands at POS", "statesync list insert todo 0 milk"),
        "append": (("VALUE...",), "insert the VALUEs at the end", "statesync list append todo eggs '{\"task\": \"tea\"}'"),
        "delete": (("POS", "[N]"), "delete N items (default 1) from POS", "statesync list delete todo 1"),
        "move": (("SRC", "DST"), "move the item at SRC so that it lands at DST", "statesync list move todo 0 2"),
    },
    "counter": {
        "add": (("N",), "add N (negative allowed; concurrent adds sum)", "statesync counter add likes 1"),
    },
    "awset": {
        "add": (("ELEMENT",), "add ELEMENT (a JSON scalar, else text)", "statesync awset add tags urgent"),
        "remove": (("ELEMENT",), "remove ELEMENT (a concurrent add keeps it)", "statesync awset remove tags urgent"),
    },
}

_HELP = {
    "text": "edit the shared text at PATH (read it with get)",
    "list": "edit the list at PATH: insert, append, delete, move (read it with get)",
    "counter": "add to the counter at PATH (read it with get)",
    "awset": "add to or remove from the add-wins set at PATH (read it with get)",
}


def add_typed_commands(command: Command, write_options: Options, client_options: Options) -> None:
    """Add ``text``, ``list``, ``counter`` and ``awset`` with their actions to the parser."""
    for type_name, actions in _ACTIONS.items():
        examples = "\n".join(f"  {ex}" for _, _, ex in actions.values()) + f"\n  statesync get {_example_path(type_name)}"
        p = command(type_name, _HELP[type_name], examples, cmd_typed)
        sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
        for action, (params, help_text, example) in actions.items():
            a = sub.add_parser(action, help=help_text, description=help_text, epilog=f"example:\n  {example}")
            a.add_argument("path", metavar="PATH")
            for param in params:
                name = param.strip("[].").lower()
                if param.endswith("..."):
                    a.add_argument(name, metavar=param.rstrip("."), nargs="+")
                elif param.startswith("["):
                    a.add_argument(name, metavar=param.strip("[]"), nargs="?", default="1")
                else:
                    a.add_argument(name, metavar=param)
            if type_name in ("list", "awset"):
                a.add_argument("--string", action="store_true", help="take values as text even if they parse as JSON")
            write_options(a)
            client_options(a)


def _example_path(type_name: str) -> str:
    return {"text": "doc.body", "list": "todo", "counter": "likes", "awset": "tags"}[type_name]


def _int(args: argparse.Namespace, name: str) -> int:
    text = str(getattr(args, name))
    try:
        return int(text)
    except ValueError as exc:
        raise UsageError(f"{args.command} {args.action}: {name.upper()} must be an integer, not {text!r}") from exc


def _value(args: argparse.Namespace, text: str) -> Any:
    return parse_value(text, as_string=args.string)


def cmd_typed(args: argparse.Namespace) -> int:
    t, action = args.command, args.action
    ack = ack_of(args.ack)
    concern: dict[str, Any] = {"ack": ack, "timeout_s": args.ack_timeout}
    with open_client(args) as client:
        r: Receipt
        if t == "text":
            text = client.text(args.path)
            if action == "insert":
                r = text.insert(_int(args, "pos"), args.string, **concern)
            else:
                r = text.delete(_int(args, "pos"), _int(args, "n"), **concern)
        elif t == "list":
            items = client.list(args.path)
            if action == "insert":
                r = items.insert(_int(args, "pos"), *(_value(args, v) for v in args.value), **concern)
            elif action == "append":
                r = items.append(*(_value(args, v) for v in args.value), **concern)
            elif action == "delete":
                r = items.delete(_int(args, "pos"), _int(args, "n"), **concern)
            else:
                r = items.move(_int(args, "src"), _int(args, "dst"), **concern)
        elif t == "counter":
            r = client.counter(args.path).add(_int(args, "n"), **concern)
        else:
            awset = client.awset(args.path)
            element = _value(args, args.element)
            r = awset.add(element, **concern) if action == "add" else awset.remove(element, **concern)
    print(receipt_json(r) if args.json else receipt_line(f"{t} {action}", r))
    return EXIT_OK
