"""The per-run default runtime and the module-level functions that use it.

A :class:`PortRuntime` owns the zmq context, the sockets, the protocol and the
tasks of one trio run. :func:`open_runtime` gives an explicit one whose tasks
live in the caller's ``async with`` block (tests run several in one process);
the module-level ``listen``/``connect``/``MessageChannel()`` use
:func:`current_runtime`, a per-run default kept in a ``trio.lowlevel.RunVar``
and hosted by a ``trio.lowlevel.spawn_system_task``: nothing to set up, one
runtime per run, and at the end of the run trio cancels the system task, whose
``finally`` closes every socket (finite linger) and terminates the context, so
nothing outlives ``trio.run``. A graceful end (relays released, ``Bye``
behind what is queued) is ``await shutdown()`` / ``await rt.aclose()``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import zmq

from statesync.ports._curve import Authorizer
from statesync.ports._link import Listener
from statesync.ports._options import PortOptions
from statesync.ports._port import MessagePort
from statesync.ports._runtime import PortRuntime

logger = logging.getLogger("statesync.ports")

# -- the per-run default runtime ---------------------------------------------------

_CURRENT: trio.lowlevel.RunVar[PortRuntime] = trio.lowlevel.RunVar("statesync_ports_runtime")


async def _host(rt: PortRuntime) -> None:
    try:
        async with trio.open_nursery() as n:
            rt._attach(n)
            await trio.sleep_forever()
    except Exception:
        logger.exception("the port runtime failed; its ports are closed")
    finally:
        rt._teardown()


def current_runtime() -> PortRuntime:
    """The default port runtime of this trio run, created on first use.

    It lives in a trio system task: at the end of ``trio.run`` it closes every
    socket (finite linger) and terminates its zmq context. For a graceful end
    (relays released, Bye sent) await :func:`shutdown` first.
    """
    try:
        rt = _CURRENT.get()
    except LookupError:
        rt = None
    if rt is None or rt.closed:
        rt = PortRuntime()
        _CURRENT.set(rt)
        trio.lowlevel.spawn_system_task(_host, rt, name="statesync.ports runtime")
    return rt


async def shutdown(timeout_s: float = 5.0) -> bool:
    """Gracefully close this run's default runtime (see :meth:`PortRuntime.aclose`)."""
    try:
        rt = _CURRENT.get()
    except LookupError:
        return True
    return await rt.aclose(timeout_s)


@asynccontextmanager
async def open_runtime(
    options: PortOptions | None = None,
    *,
    context: zmq.Context[Any] | None = None,
    authorizer: Authorizer | None = None,
) -> AsyncIterator[PortRuntime]:
    """An explicit port runtime whose tasks live in this block; closed gracefully at exit.

    ``authorizer`` decides which keys CURVE listeners admit (see :class:`AuthRequest`).
    """
    rt = PortRuntime(options, context=context, authorizer=authorizer)
    try:
        async with trio.open_nursery() as n:
            rt._attach(n)
            try:
                yield rt
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(rt.options.linger_s + 5.0):
                    await rt.aclose(timeout_s=2.0)
                n.cancel_scope.cancel()
    finally:
        rt._teardown()


def listen(endpoint: str, options: PortOptions | None = None) -> Listener:
    """Listen on ``endpoint`` (tcp://, ipc://, inproc://) in this run's default runtime.

    ``async for port in listen(...)`` yields each incoming port.
    """
    return current_runtime().listen(endpoint, options)


async def connect(endpoint: str, options: PortOptions | None = None) -> MessagePort:
    """Open a port to the listener at ``endpoint`` (this run's default runtime)."""
    return await current_runtime().connect(endpoint, options)


class MessageChannel:
    """Two entangled ports in this process: ``port1`` and ``port2``.

    Must be created inside ``trio.run`` (the ports belong to that run's default
    port runtime, or to ``runtime``).
    """

    __slots__ = ("port1", "port2")

    def __init__(self, *, runtime: PortRuntime | None = None) -> None:
        rt = runtime if runtime is not None else current_runtime()
        self.port1, self.port2 = rt.new_channel()

    def __repr__(self) -> str:
        return f"<MessageChannel {self.port1!r} {self.port2!r}>"
