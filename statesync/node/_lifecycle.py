"""A node's life: ``open_node`` builds its dependencies, runs it, and shuts it down.

In order: the configuration; the security policy (bad key files fail here,
before anything starts); the store, and what it holds (the replica is
rebuilt from it with the garbage collector paused); the port runtime that
carries peer and client links. The :class:`~statesync.node._node.Node` gets
them all at construction, then its tasks start in a nursery; leaving the
``async with`` block flushes what is pending, says goodbye to every peer and
ends every task. An error raised by the caller's block comes back as it was,
not wrapped in the nurseries' exception groups.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from statesync import ports
from statesync.node._config import NodeConfig
from statesync.node._link import port_options
from statesync.node._node import Node
from statesync.node._security import PEER_DOMAIN, NodeSecurity
from statesync.storage import Durability, Loaded, Store, open_store


@asynccontextmanager
async def open_node(config: NodeConfig | None = None, /, **options: Any) -> AsyncIterator[Node]:
    """Start a node; it runs until the ``async with`` block ends.

    Either pass a :class:`NodeConfig` or its fields as keyword arguments::

        async with statesync.open_node(node_id="a", listen="tcp://127.0.0.1:7001",
                                       peers=["tcp://127.0.0.1:7002"], data_dir="data/a") as node:
            await node.set("user.name", "Ada")
    """
    if config is None:
        config = NodeConfig.from_mapping(options, source="open_node()")
    elif options:
        config = attrs.evolve(config, **options)
    durability = Durability(config.durability)
    security = NodeSecurity.load(config)  # bad key files fail here, before anything starts
    store = await trio.to_thread.run_sync(lambda: open_store(config.data_dir, config.node_id, durability=durability))
    body_error: BaseException | None = None
    try:
        loaded = await trio.to_thread.run_sync(store.load)
        authorizer = security.authorize if security.enabled else None
        async with ports.open_runtime(
            security.options(port_options(config), PEER_DOMAIN), authorizer=authorizer
        ) as runtime:
            node = _build_node(config, store, loaded, security, runtime)
            async with trio.open_nursery() as outer:
                await outer.start(node._run)
                try:
                    yield node
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await node._shutdown()
                        outer.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The nurseries wrap whatever the caller's block raised; give it back as it was.
        if body_error is not None and _only(group) is body_error:
            raise body_error from body_error.__cause__  # as it was: its own cause, not the group
        raise
    finally:
        await trio.to_thread.run_sync(store.close)


def _build_node(
    config: NodeConfig, store: Store, loaded: Loaded, security: NodeSecurity, runtime: ports.PortRuntime
) -> Node:
    """Rebuild the replica from what was durable (before any task of the node runs).

    The garbage collector is paused meanwhile: restoring a large tree makes
    millions of long-lived objects, and collecting during that buys nothing
    (twice as fast for a million paths).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return Node(config, store, loaded, security=security, runtime=runtime)
    finally:
        if enabled:
            gc.enable()


def _only(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single leaf exception of a (nested) group, if it holds exactly one."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None
