"""A node process driven by JSON lines on stdin, answering on stdout.

Used by the process tests: ``python tests/node/harness.py '<config json>'``.
It ends when stdin closes (so it never outlives its test) or after
``lifetime_s`` seconds, whichever comes first.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import trio

from statesync.core import StatesyncError, Version, WriteConcernError
from statesync.node import FaultConfig, NodeConfig, open_node
from statesync.testing import faults


def longest(path: tuple[str, ...], versions: tuple[Version, ...]) -> object:
    return max((v.value for v in versions), key=lambda x: (len(repr(x)), repr(x)))


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(spec: dict[str, Any]) -> None:
    config = dict(spec["config"])
    if config.get("strategy") == "custom":
        config["strategy"] = longest
    lifetime_s = spec.get("lifetime_s", 240)
    with trio.move_on_after(lifetime_s):
        async with open_node(NodeConfig.from_mapping(config)) as node:
            reply({"ready": True, "endpoints": list(node.endpoints)})
            stdin = trio.lowlevel.FdStream(os.dup(0))
            buf = b""
            async with trio.open_nursery() as nursery:
                while True:
                    data = await stdin.receive_some(65536)
                    if not data:
                        nursery.cancel_scope.cancel()
                        return
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        nursery.start_soon(handle, node, json.loads(line))


async def handle(node: Any, cmd: dict[str, Any]) -> None:
    op = cmd["cmd"]
    tag = cmd.get("tag")
    try:
        if op == "set":
            r = await node.set(cmd["path"], cmd["value"], ack=cmd.get("ack", "local"), timeout_s=cmd.get("timeout_s"))
            out: dict[str, Any] = {"seq": r.seq, "acked_by": list(r.acked_by)}
        elif op == "stream":
            # distinct keys, one at a time; each acknowledged write is reported at once
            for i in range(cmd["n"]):
                r = await node.set((cmd["prefix"], str(i)), i, ack=cmd.get("ack", "local"), timeout_s=cmd.get("timeout_s"))
                reply({"tag": tag, "acked": [r.origin, r.seq], "i": i})
            out = {"done": True}
        elif op == "set_many":
            rs = await node.set_many([(p, v) for p, v in cmd["items"]], ack=cmd.get("ack", "local"))
            out = {"seqs": [r.seq for r in rs]}
        elif op == "delete":
            r = await node.delete(cmd["path"], ack=cmd.get("ack", "local"))
            out = {"seq": r.seq}
        elif op == "get":
            out = {"value": node.get(cmd["path"])}
        elif op == "state":
            st = node.status()
            out = {
                "digest": node.replica.digest(),
                "vv": node.replica.vv,
                "view": node.get(""),
                "connected": sorted(p for p, v in st["peers"].items() if v["connected"]),
                "pending": node.replica.pending_count,
                "log_ops": st["log_ops"],
            }
        elif op == "faults":
            f = cmd.get("faults")
            faults(node).configure(FaultConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in f.items()}) if f else None)
            out = {}
        elif op == "cut":
            faults(node).cut(cmd["peer"])
            out = {}
        elif op == "heal":
            faults(node).heal(cmd.get("peer"))
            out = {}
        elif op == "sync":
            out = {"answered": await node.sync(timeout_s=cmd.get("timeout_s", 5))}
        else:
            out = {"error": f"unknown command {op}"}
        reply({"tag": tag, "ok": True, **out})
    except WriteConcernError as exc:
        reply({"tag": tag, "ok": False, "type": "WriteConcernError", "error": str(exc), "missing": list(exc.missing), "seq": exc.dot[1]})
    except StatesyncError as exc:
        reply({"tag": tag, "ok": False, "type": type(exc).__name__, "error": str(exc)})


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
