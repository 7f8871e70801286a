"""The blocking :class:`Client` API: reads, writes, watches, keys, lifetime."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

import trio

from statesync import protocol
from statesync.client._common import (
    ENV_KEY,
    ENV_NODE,
    ENV_SERVER_KEY,
    WRITE_MARGIN_S,
    Call,
    ClientBase,
    found,
    or_default,
)
from statesync.client._lease import PRESENCE_TTL_S, Lease, Presence, close_leases, grant
from statesync.client._loop import Loop
from statesync.client._typed import TypedAccess
from statesync.client._watch import Watch, run_callback
from statesync.core import PathLike, as_path, format_path
from statesync.errors import ClientClosed, TooLarge
from statesync.node._results import Conflict, Receipt
from statesync.node._watch import WatchEvent

__all__ = ["ENV_KEY", "ENV_NODE", "ENV_SERVER_KEY", "WRITE_MARGIN_S", "Client"]

T = TypeVar("T")


class Client(ClientBase, TypedAccess[Receipt, Any]):
    """A blocking, thread-safe client of the node serving clients at ``endpoint``.

    The arguments are described in :class:`statesync.client._common.ClientBase`
    (the asyncio client takes the same): ``endpoint`` (default
    ``$STATESYNC_NODE``), ``timeout_s`` per call, ``connect_timeout_s`` before
    :class:`NodeUnavailable`, ``watch_buffer_max``, ``inflight_max`` (writes
    in flight through :meth:`submit`), and for a node with keys
    ``secret_key_file`` (default ``$STATESYNC_KEY``) and ``server_key``
    (default the endpoint's ``?key=``, else ``$STATESYNC_SERVER_KEY``, else,
    when the key file is the node's own, its public key).
    """

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._loop_obj: Loop | None = None
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()
        self._inflight = threading.BoundedSemaphore(self.settings.inflight_max)
        _live_clients.add(self)

    def __repr__(self) -> str:
        return f"<Client {self.endpoint}{' closed' if self._closed else ''}>"

    def _loop(self) -> Loop:
        with self._lock:
            if self._closed:
                raise ClientClosed(f"the client of {self.endpoint} is closed; make a new Client")
            loop = self._loop_obj
            if loop is None or loop.pid != os.getpid() or not loop.thread.is_alive():
                if loop is not None and loop.pid != os.getpid():
                    self._calls.keys.renew()  # a forked child: its own idempotency keys
                loop = self._loop_obj = Loop(self)
            return loop

    def _do(self, call: Call[T]) -> T:
        loop = self._loop()
        return call.result(loop.run(loop.request, call.request, call.reply, call.timeout_s))

    def _typed_do(self, call: Call[Receipt]) -> Receipt:
        return self._do(call)

    def _typed_read(self, path: tuple[str, ...], empty: Any) -> Any:
        return self.get(path, empty)

    @property
    def node_id(self) -> str:
        """The id of the node this client talks to (connects if needed)."""
        loop = self._loop()
        if loop.node_id is None:
            self.ping()
        return str(loop.node_id)

    # -- reads

    def ping(self) -> dict[str, Any]:
        """Check the node answers: its id, protocol version and endpoints."""
        return self._do(self._calls.ping())

    def get(self, path: PathLike = "", default: Any = None) -> Any:
        """The value at ``path`` (a dict for a subtree), or ``default``."""
        segments = as_path(path)
        try:
            return found(self._do(self._calls.get(segments)), default)
        except TooLarge:
            return or_default(self._stream(segments), default)

    def snapshot(self, prefix: PathLike = "") -> Any:
        """The whole tree (or the subtree at ``prefix``) as one dict, streamed in bounded chunks.

        Returns ``{}`` when there is nothing there.
        """
        return or_default(self._stream(as_path(prefix)), {})

    def _stream(self, prefix: tuple[str, ...]) -> Any:
        loop = self._loop()
        return loop.run(loop.stream_tree, prefix, self.timeout_s)

    def conflicts(self, path: PathLike) -> list[Conflict]:
        """The concurrent versions at ``path`` (none under last-write-wins, or when there is no conflict)."""
        return self._do(self._calls.conflicts(path))

    def status(self) -> dict[str, Any]:
        """The node's status: peers, lag each way, unacknowledged writes, log size, last sync, progress."""
        return self._do(self._calls.status())

    def sync(self, timeout_s: float = 10.0) -> bool:
        """Run an anti-entropy round on the node now; True when every connected peer answered."""
        return self._do(self._calls.sync(timeout_s))

    # -- writes

    def set(self, path: PathLike, value: Any, *, ack: protocol.Ack = "local", timeout_s: float | None = None, lease: Lease | None = None) -> Receipt:
        """Write ``value`` at ``path`` (a dict writes a subtree).

        ``ack``: ``"local"`` returns once durable on the node, ``"all"`` once
        every connected peer acknowledged, ``N`` once N peers did; past
        ``timeout_s`` a WriteConcernError names the peers that did not answer
        (the write stays, and spreads later). With ``lease`` (from
        :meth:`lease`) the key is deleted on every replica when the lease ends.
        """
        return self._do(self._calls.set(path, value, ack, timeout_s, None if lease is None else lease.check()))

    def set_many(self, items: Iterable[tuple[PathLike, Any]], *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> list[Receipt]:
        """Several writes committed together (one transaction, one round of acks)."""
        return self._do(self._calls.set_many(items, ack, timeout_s))

    def delete(self, path: PathLike, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> Receipt:
        """Remove ``path`` and everything beneath it."""
        return self._do(self._calls.delete(path, ack, timeout_s))

    def submit(self, path: PathLike, value: Any, *, ack: protocol.Ack = "local", timeout_s: float | None = None) -> Future[Receipt]:
        """Start ``set(path, value, ...)`` and return at once with a future of its receipt.

        A producer keeps many writes in flight this way (pipelining) instead of
        waiting a round trip for each: ``futures = [client.submit(k, v) for k, v in
        items]``, then ``f.result()`` for each (it raises the write's error). At
        most ``inflight_max`` writes are in flight; past that, ``submit`` blocks
        until one is answered. Writes in flight together may be applied in any
        order: wait for one before a write that must follow it.
        """
        call = self._calls.set(path, value, ack, timeout_s)  # bad arguments raise here, not in the future
        loop = self._loop()
        self._inflight.acquire()
        future: Future[Receipt] = Future()
        future.add_done_callback(self._release)
        try:
            loop.submit(call, future)
        except BaseException:
            self._inflight.release()
            raise
        return future

    def _release(self, _: Future[Receipt]) -> None:
        self._inflight.release()

    # -- leases and presence (statesync.client._lease, docs/leases.md)

    def lease(self, ttl_s: float) -> Lease:
        """A lease on the node, kept alive by this client until revoked, the ``with`` block ends or the client closes."""
        return grant(self, ttl_s)

    def presence(self, prefix: PathLike, state: Any, *, participant: str | None = None, ttl_s: float = PRESENCE_TTL_S) -> Presence:
        """Join ``prefix`` as one participant (``prefix.<participant>`` = ``state``, on a lease of its own)."""
        return Presence(self, prefix, state, participant=participant, ttl_s=ttl_s)

    # -- watches

    def watch(
        self, prefix: PathLike = "", callback: Callable[[WatchEvent], object] | None = None, *, resume: str | None = None
    ) -> Watch:
        """Watch changes under ``prefix``; returns once subscribed.

        Without ``callback``, iterate the returned :class:`Watch` (it blocks).
        With one, ``callback(event)`` runs for each event in a thread of its
        own (one per watch, in order; an exception is logged and the watch goes
        on). Close the watch, or the client, to stop. ``resume``: an event's
        ``resume`` token; the watch delivers exactly the changes after it (a
        ``lagged`` event first if the node no longer holds them; BadResumeToken
        for a garbled or foreign token).
        """
        path = as_path(prefix)
        watch = Watch(self, path, self.watch_buffer_max, resume)
        loop = self._loop()
        loop.run(loop.start_watch, watch, self.connect_timeout_s)
        self._watches.add(watch)
        if callback is not None:
            watch._thread = threading.Thread(target=run_callback, args=(watch, callback), name=f"statesync-watch {format_path(path)}", daemon=True)
            watch._thread.start()
        return watch

    def _close_watch(self, watch: Watch) -> None:
        self._watches.discard(watch)
        loop = self._loop_obj
        if loop is None or loop.token is None or loop.pid != os.getpid():
            return

        def close() -> None:
            resume = watch._resume
            if resume is not None:
                resume.set()
            port = watch._port
            if port is not None:
                port.close()

        with contextlib.suppress(trio.RunFinishedError):
            loop.token.run_sync_soon(close)

    # -- fault injection (demos and tests)

    def cut(self, peer: str) -> None:
        """Fault injection: the node drops all traffic with ``peer`` until :meth:`heal`."""
        self._do(self._calls.cut(peer))

    def heal(self, peer: str | None = None) -> None:
        """Undo :meth:`cut` for ``peer`` (None: for every peer)."""
        self._do(self._calls.heal(peer))

    # -- lifetime

    def close(self) -> None:
        """Revoke its leases, close watches and the connection; the client cannot be used afterwards."""
        if not self._closed:
            close_leases(self)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, self._loop_obj = self._loop_obj, None
        for watch in list(self._watches):
            watch.close()
        if loop is not None and loop.pid == os.getpid():
            loop.stop()
        _live_clients.discard(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for client in list(_live_clients):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            client.close()
