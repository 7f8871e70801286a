"""A small trio adapter for pyzmq sockets.

pyzmq has no trio support, so this module drives a non-blocking zmq socket from
trio tasks, following ``../shared/notes/trio-and-zeromq.md``:

- ``zmq.FD`` is edge-triggered: it signals that ``zmq.EVENTS`` *may have
  changed*, and any zmq call (send, recv, getsockopt) may consume that signal.
  So every zmq call made here is followed by :meth:`TrioSocket.refresh`, which
  re-reads ``EVENTS`` and wakes the tasks whose condition now holds. A task
  only waits on the fd after a refresh said its condition does not hold.
- Send and receive share one fd and trio lets one task wait on an fd at a
  time. One task (the *fd waiter*) waits on the fd; the others park on a
  :class:`trio.lowlevel.ParkingLot`. A refresh that finds the fd waiter's
  condition true interrupts its wait, so that a zmq call by another task that
  ate the edge cannot strand it. The interrupt is
  ``trio.lowlevel.notify_closing(fd)``, which wakes the waiter with
  ClosedResourceError and drops the fd's epoll registration without closing
  anything (the next wait registers it again): it costs a syscall only when an
  interrupt is needed, where a cancel scope around every wait cost about 8 us.
  When the fd waiter leaves (done, cancelled or failed) it wakes the parked
  tasks so that one of them takes the fd over.
- Drain on wake: :meth:`TrioSocket.drain` and :meth:`TrioSocket.recv_batch`
  take every queued message in one go (about 3 us a message instead of about
  14 us for one message per wake).
- Backpressure without spinning: a send that meets the high-water mark waits
  for ``POLLOUT``; if ``POLLOUT`` is already reported (a ROUTER's POLLOUT is
  socket-wide, not per peer) it backs off on a timer instead of spinning.
- Close: mark closed, ``trio.lowlevel.notify_closing(fd)`` (tasks waiting on
  the fd get :class:`SocketClosed`), wake the parked tasks, then close the zmq
  socket with a finite linger.
- Everything happens in the trio thread; no socket is touched from another
  thread.

The synchronous ``try_*`` methods never block and never yield; the async
methods are trio checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import trio
import zmq

from statesync.errors import SocketClosed

_T = TypeVar("_T")
_S = TypeVar("_S")

# plain ints: IntFlag arithmetic costs about 1 us per operation
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)

#: Back-off when a send meets EAGAIN while POLLOUT is reported (ROUTER, whose
#: POLLOUT is socket-wide): first and largest pause.
SEND_BACKOFF_FIRST_S = 0.0005
SEND_BACKOFF_MAX_S = 0.02


class TrioSocket:
    """A pyzmq socket driven from trio tasks (any number of them, one thread).

    The socket must be non-blocking-safe (any type); the adapter only ever calls
    it with ``NOBLOCK``. It owns the socket: :meth:`close` closes it.
    """

    __slots__ = (
        "_closed",
        "_fd",
        "_fd_interrupted",
        "_fd_waiting",
        "_fd_want",
        "_lot",
        "_lot_want",
        "events",
        "sock",
    )

    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self.sock = sock
        self._fd: int = cast(int, sock.getsockopt(zmq.FD))
        self._closed = False
        self._fd_waiting = False
        self._fd_want = 0
        self._fd_interrupted = False
        self._lot = trio.lowlevel.ParkingLot()
        self._lot_want = 0
        #: ``zmq.EVENTS`` as of the last refresh (the last zmq call on the socket).
        self.events = cast(int, sock.getsockopt(_EVENTS))

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SocketClosed("the zmq socket is closed; open a new connection")

    # -- the edge-triggered fd ---------------------------------------------

    def refresh(self) -> int:
        """Re-read ``zmq.EVENTS`` (required after every zmq call) and wake whoever it concerns."""
        ev = cast(int, self.sock.getsockopt(_EVENTS))
        self.events = ev
        if ev & self._lot_want:
            self._lot_want = 0
            self._lot.unpark_all()
        if ev & self._fd_want and not self._fd_interrupted:
            self._fd_interrupted = True
            trio.lowlevel.notify_closing(self._fd)  # wakes the fd waiter; closes nothing
        return ev

    async def wait_for(self, flag: int) -> bool:
        """Wait until ``EVENTS`` has ``flag`` (``zmq.POLLIN`` or ``zmq.POLLOUT``).

        Returns True if it blocked (and so yielded), False if the condition
        already held. Raises :class:`SocketClosed` if the socket is or gets closed.

        The first check uses ``events`` as of the last refresh: every zmq call
        made through this adapter refreshes it, and anything that changed since
        has left the fd readable, so waiting on the fd cannot miss it.
        """
        self._check_open()
        if self.events & flag:
            return False
        while True:
            if self._fd_waiting:
                self._lot_want |= flag
                await self._lot.park()
            else:
                self._fd_waiting = True
                self._fd_want = flag
                self._fd_interrupted = False
                try:
                    await trio.lowlevel.wait_readable(self._fd)
                except trio.ClosedResourceError as exc:
                    if self._closed or not self._fd_interrupted:
                        raise SocketClosed(
                            "the zmq socket was closed while waiting on it"
                        ) from exc
                finally:
                    self._fd_waiting = False
                    self._fd_want = 0
                    self._fd_interrupted = False
                    # Hand the fd over: a parked task re-checks and one takes the wait.
                    if self._lot:
                        self._lot_want = 0
                        self._lot.unpark_all()
            self._check_open()
            if self.refresh() & flag:
                return True

    # -- non-blocking calls ---------------------------------------------------

    def try_send(self, data: bytes, *, more: bool = False) -> bool:
        """Send one frame without blocking; False if the high-water mark is reached."""
        self._check_open()
        try:
            self.sock.send(data, _NOBLOCK | (_SNDMORE if more else 0), copy=True)
        except zmq.Again:
            return False
        finally:
            self.refresh()
        return True

    def try_send_multipart(self, parts: Sequence[bytes]) -> bool:
        """Send a multipart message without blocking; False at the high-water mark.

        Parts after the first are accepted atomically by libzmq once the first is.
        Other zmq errors (``EHOSTUNREACH`` from a ROUTER with ``ROUTER_MANDATORY``)
        propagate as :class:`zmq.ZMQError`.
        """
        self._check_open()
        try:
            self.sock.send_multipart(parts, _NOBLOCK, copy=True)
        except zmq.Again:
            return False
        finally:
            self.refresh()
        return True

    def drain(self, max_count: int) -> list[bytes]:
        """Receive up to ``max_count`` queued single-part messages without blocking.

        Reads only while ``EVENTS`` (refreshed after each message) says POLLIN:
        an empty socket costs no failed receive.
        """
        return self._drain(self.sock.recv, True, max_count)

    def drain_multipart(self, max_count: int) -> list[list[bytes]]:
        """Receive up to ``max_count`` queued multipart messages without blocking."""
        return self._drain(self.sock.recv_multipart, True, max_count)

    def drain_frames(self, max_count: int) -> list[list[zmq.Frame]]:
        """Like :meth:`drain_multipart`, as ``zmq.Frame`` objects (they carry metadata,
        such as the ``User-Id`` a ZAP handler gave the connection)."""
        return self._drain(self.sock.recv_multipart, False, max_count)

    def _drain(self, recv: Callable[..., Any], copy: bool, max_count: int) -> list[Any]:
        self._check_open()
        out: list[Any] = []
        try:
            while self.events & _POLLIN and len(out) < max_count:
                out.append(recv(_NOBLOCK, copy=copy))
                self.refresh()
        except zmq.Again:
            self.refresh()
        return out

    # -- blocking (async) calls ------------------------------------------------

    async def _wait_writable_after_again(self, backoff_s: float) -> float:
        """Wait for room after an EAGAIN; returns the next back-off to use."""
        if not await self.wait_for(_POLLOUT):
            # POLLOUT is reported yet the send failed (a ROUTER's POLLOUT is
            # socket-wide): back off instead of spinning.
            await trio.sleep(backoff_s)
            return min(backoff_s * 2, SEND_BACKOFF_MAX_S)
        return SEND_BACKOFF_FIRST_S

    async def send(self, data: bytes) -> None:
        """Send one single-part message, waiting at the high-water mark."""
        await self._send_waiting(self.try_send, data)

    async def send_multipart(self, parts: Sequence[bytes]) -> None:
        """Send a multipart message, waiting at the high-water mark."""
        await self._send_waiting(self.try_send_multipart, parts)

    async def _send_waiting(self, try_send: Callable[[_S], bool], message: _S) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        backoff_s = SEND_BACKOFF_FIRST_S
        yielded = False
        while not try_send(message):
            backoff_s = await self._wait_writable_after_again(backoff_s)
            yielded = True
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_batch(self, messages: Sequence[bytes]) -> None:
        """Send single-part messages in order, as many per wake as the HWM allows."""
        await trio.lowlevel.checkpoint_if_cancelled()
        backoff_s = SEND_BACKOFF_FIRST_S
        yielded = False
        i = 0
        n = len(messages)
        send = self.sock.send
        while i < n:
            self._check_open()
            try:
                while i < n:
                    send(messages[i], _NOBLOCK, copy=True)
                    i += 1
            except zmq.Again:
                pass
            finally:
                self.refresh()
            if i < n:
                backoff_s = await self._wait_writable_after_again(backoff_s)
                yielded = True
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def recv(self) -> bytes:
        """Receive one single-part message."""
        batch = await self.recv_batch(1)
        return batch[0]

    async def recv_multipart(self) -> list[bytes]:
        """Receive one multipart message."""
        batch = await self.recv_multipart_batch(1)
        return batch[0]

    async def recv_batch(self, max_count: int = 1024) -> list[bytes]:
        """Wait for at least one single-part message, then drain up to ``max_count``."""
        return await self._recv_drained(self.drain, max_count)

    async def recv_multipart_batch(self, max_count: int = 1024) -> list[list[bytes]]:
        """Wait for at least one multipart message, then drain up to ``max_count``."""
        return await self._recv_drained(self.drain_multipart, max_count)

    async def recv_frames_batch(self, max_count: int = 1024) -> list[list[zmq.Frame]]:
        """Wait for at least one multipart message, then drain up to ``max_count`` (as Frames)."""
        return await self._recv_drained(self.drain_frames, max_count)

    async def _recv_drained(self, drain: Callable[[int], list[_T]], max_count: int) -> list[_T]:
        # Yield (when not about to block anyway), then drain and return without
        # yielding again: whatever the caller does with the batch happens before
        # any other task can receive from this socket, so one consumer's order
        # is the socket's.
        self._check_open()
        if self.events & _POLLIN:
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            out = drain(max_count)
            if out:
                return out
            if not await self.wait_for(_POLLIN):
                await trio.lowlevel.checkpoint()  # never spin, even on a racy EVENTS

    # -- close ----------------------------------------------------------------------

    def close(self, linger_s: float) -> None:
        """Close the socket with a finite linger; waiting tasks get :class:`SocketClosed`.

        Idempotent. Must be called from the trio thread.
        """
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._fd)
        self._lot_want = 0
        self._lot.unpark_all()
        self.sock.close(linger=max(0, int(linger_s * 1000)))
