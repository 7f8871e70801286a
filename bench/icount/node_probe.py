"""A fixed node workload for instruction counting (see bench/icount/run.sh).

A writer node here, a peer node in a child process, tcp loopback, in-memory.
``many N``: ``set_many`` in calls of 1,000; ``single N``: one ``await node.set``
per write; then one ``ack="all"`` write, so the peer holds them all (delivery is
causal). Uses only the public node API, so it runs against older trees too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import trio

from statesync.node import NodeConfig, open_node


async def peer() -> None:
    async with open_node(NodeConfig.from_mapping({"node_id": "b", "listen": ["tcp://127.0.0.1:*"]})) as node:
        print(json.dumps(list(node.endpoints)), flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(0))
        await stdin.receive_some(1)  # until the writer closes our stdin


async def writer(kind: str, n: int) -> None:
    child = subprocess.Popen([sys.executable, __file__, "peer"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    endpoints = json.loads(child.stdout.readline())
    async with open_node(NodeConfig.from_mapping({"node_id": "a", "peers": endpoints})) as node:
        await node.set("warmup", 1, ack="all", timeout_s=60)
        if kind == "many":
            for start in range(0, n, 1000):
                await node.set_many([(("bench", f"k{i}"), "v") for i in range(start, min(n, start + 1000))])
        else:
            for i in range(n):
                await node.set(("bench", f"k{i}"), "v")
        await node.set("last", 1, ack="all", timeout_s=120)
    child.stdin.close()
    child.wait()


if __name__ == "__main__":
    if sys.argv[1] == "peer":
        trio.run(peer)
    else:
        trio.run(writer, sys.argv[1], int(sys.argv[2]))
