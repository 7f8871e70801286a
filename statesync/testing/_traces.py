"""Replaying concurrent editing traces (the editing-traces format): which transactions a replica lacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from statesync.core import Op, Replica


def lacking(txns: Sequence[dict[str, Any]], roots: Sequence[int], done: set[int]) -> list[int]:
    """The transactions ``roots`` stand on (themselves included) that are not in ``done``, in trace order.

    Trace order is a causal order (a transaction's parents come before it), so
    applying their ops in this order meets every dependency.
    """
    need: set[int] = set()
    stack = [i for i in roots if i not in done]
    while stack:
        i = stack.pop()
        if i in need or i in done:
            continue
        need.add(i)
        stack.extend(txns[i]["parents"])
    return sorted(need)


def replay_concurrent(
    txns: Sequence[dict[str, Any]],
    replicas: int,
    edit: Callable[[int, list[Any], int], list[Any]],
    deliver: Callable[[int, list[Any]], None],
) -> None:
    """Replay a concurrent trace: before each transaction its agent gets what its parents hold.

    ``edit(agent, patches, index)`` applies a transaction's patches at the
    agent's replica and returns its ops; ``deliver(replica, ops)`` hands a
    replica the ops it lacks, in causal order. At the end every replica has
    been given everything.
    """
    done: list[set[int]] = [set() for _ in range(replicas)]
    made: list[list[Any]] = []

    def bring(r: int, roots: Sequence[int]) -> None:
        need = lacking(txns, roots, done[r])
        ops = [op for i in need for op in made[i]]
        if ops:
            deliver(r, ops)
        done[r].update(need)

    for i, txn in enumerate(txns):
        a = txn["agent"]
        bring(a, txn["parents"])
        made.append(edit(a, txn["patches"], i))
        done[a].add(i)
    for r in range(replicas):
        bring(r, range(len(txns)))


def apply_patches(replica: Replica, path: str, patches: Sequence[Sequence[Any]], wall_ms: int) -> list[Op]:
    """A transaction's ``[pos, n_deleted, inserted]`` patches as text edits at ``path``; the ops made."""
    ops: list[Op] = []
    for pos, ndel, ins in patches:
        if ndel:
            ops.append(replica.text_delete(path, pos, ndel, wall_ms))
        if ins:
            ops.append(replica.text_insert(path, pos, ins, wall_ms))
    return ops
