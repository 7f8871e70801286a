"""The web-like API: MessageChannel, MessagePort, MessageEvent."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from threading import get_ident
from time import perf_counter
from typing import TYPE_CHECKING, Final, NamedTuple, overload

import trio

from statesync.core import Value
from statesync.errors import (
    MessageTooLarge,
    PortClosedError,
    PortsError,
    RequestFailed,
    RequestTimeout,
    RuntimeMismatch,
)
from statesync.ports import _codec
from statesync.ports._envelope import KIND_ERROR, KIND_MESSAGE
from statesync.ports._host import PortHost, PortState, RequestHandler
from statesync.ports._outbox import RemoteInfo
from statesync.wire import DataCloneError, DecodeError

if TYPE_CHECKING:
    from typing import Self

logger = logging.getLogger("statesync.ports")

EventType = str
Listener = Callable[["MessageEvent"], object]

#: An ``async for`` over a port yields to other tasks at least every this many
#: messages, and whenever this long has passed since it last yielded (a consumer
#: that spends milliseconds on each message must not starve the heartbeats).
_ITER_YIELD_EVERY: Final = 64
_ITER_YIELD_AFTER_S: Final = 0.005


class MessageEvent(NamedTuple):
    """What a port delivers (immutable; a named tuple, which is cheap to make).

    ``type`` is ``"message"`` (``data`` is the decoded payload, ``ports`` the
    ports transferred with it), ``"messageerror"`` (the payload could not be
    decoded: ``data`` is None, ``error`` says why; ``ports`` still arrive) or
    ``"close"`` (the partner closed or became unreachable; ``reason`` says which).
    ``target`` is the port that delivered it.
    """

    type: str
    data: Value = None
    ports: tuple[MessagePort, ...] = ()
    target: MessagePort | None = None
    error: DecodeError | None = None
    reason: str = ""


class _Handler:
    """A ``port.on_*`` attribute: a listener or None, kept in the slot ``_on_*``."""

    def __init__(self, *, starts: bool = False) -> None:
        self.starts = starts
        self.slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Handler: ...
    @overload
    def __get__(self, obj: MessagePort, owner: type | None = None) -> Listener | None: ...
    def __get__(self, obj: MessagePort | None, owner: type | None = None) -> _Handler | Listener | None:
        if obj is None:
            return self
        fn: Listener | None = getattr(obj, self.slot)
        return fn

    def __set__(self, obj: MessagePort, fn: Listener | None) -> None:
        setattr(obj, self.slot, fn)
        if self.starts and fn is not None and obj._state is not None:
            obj.start()


class MessagePort:
    """One end of an entangled pair (the web's MessagePort, trio-native).

    Made by :class:`MessageChannel`, :func:`~statesync.ports.connect` and
    :func:`~statesync.ports.listen`, or received in ``event.ports``. Methods
    must be called from the trio run that owns the port.
    """

    __slots__ = (
        "__weakref__",
        "_error",
        "_listeners",
        "_on_close",
        "_on_message",
        "_on_messageerror",
        "_state",
    )

    _state: PortState | None
    _error: PortsError | None
    _listeners: dict[str, list[Listener]]
    _on_message: Listener | None
    _on_messageerror: Listener | None
    _on_close: Listener | None

    def __init__(self) -> None:
        raise TypeError("MessagePort objects come from MessageChannel(), connect() or a listener")

    @classmethod
    def _from_state(cls, st: PortState) -> MessagePort:
        h = cls.__new__(cls)
        h._state = st
        h._error = None
        h._listeners = {}
        h._on_message = None
        h._on_messageerror = None
        h._on_close = None
        return h

    def __repr__(self) -> str:
        st = self._state
        if st is None:
            return f"<MessagePort ({self._error})>"
        return f"<MessagePort {st.id:#x}{' closed' if self.closed else ''}>"

    # -- state ----------------------------------------------------------------------

    def _detach(self, err: PortsError) -> None:
        self._state = None
        self._error = err

    def _live(self) -> PortState:
        st = self._state
        if st is None:
            err = self._error
            assert err is not None
            raise type(err)(str(err)) from err
        st.runtime.check_run()
        return st

    def _open(self) -> PortState:
        st = self._live()
        if st.partner_gone:
            raise PortClosedError(f"the port is closed: {st.close_reason}")
        return st

    @property
    def closed(self) -> bool:
        """True once closed here, transferred, or its partner is gone."""
        st = self._state
        return st is None or st.done or st.partner_gone

    @property
    def remote(self) -> RemoteInfo | None:
        """The runtime on the other side when the partner lives in another process."""
        st = self._state
        return None if st is None else st.remote

    @property
    def runtime(self) -> PortHost:
        """The port runtime that hosts this port."""
        return self._live().runtime

    @property
    def writable(self) -> bool:
        """Whether ``post_message`` would accept a message now."""
        st = self._state
        if st is None or st.partner_gone:
            return False
        return st.runtime.room(st, 0) is None

    # -- sending --------------------------------------------------------------------

    def _transfer_states(
        self, st: PortState, transfer: Iterable[MessagePort]
    ) -> tuple[PortState, ...]:
        states: list[PortState] = []
        for p in transfer:
            if not isinstance(p, MessagePort):
                raise DataCloneError(
                    f"transfer holds a {type(p).__qualname__}; only MessagePort objects can be transferred",
                    type_name=type(p).__qualname__,
                )
            ps = p._state
            if ps is None:
                raise DataCloneError(
                    "a port in transfer was already transferred or closed", type_name="MessagePort"
                )
            if ps is st:
                raise DataCloneError("a port cannot transfer itself", type_name="MessagePort")
            if ps.id == st.partner:
                raise DataCloneError(
                    "a port cannot transfer its own partner through itself", type_name="MessagePort"
                )
            if ps.runtime is not st.runtime:
                raise RuntimeMismatch("a port in transfer belongs to another port runtime")
            if ps in states:
                raise DataCloneError("a port appears twice in transfer", type_name="MessagePort")
            states.append(ps)
        return tuple(states)

    def _prepare(self, st: PortState, data: object) -> bytes:
        payload = _codec.encode(data)
        limit = st.runtime.options.payload_bytes_max
        if len(payload) > limit:
            raise MessageTooLarge(
                f"the payload encodes to {len(payload)} bytes; payload_bytes_max is {limit}; send it in parts"
            )
        return payload

    def post_message(
        self, data: object, transfer: Iterable[MessagePort] = (), *, priority: bool = False
    ) -> None:
        """Send a copy of ``data`` to the partner; ports in ``transfer`` move with it.

        Raises DataCloneError (at the call, nothing sent) for what cannot be
        encoded or transferred, PortClosedError / PortTransferredError for a
        port that cannot send, and PortQueueFull when the partner has
        ``window`` messages it has not taken or the connection's queue is full
        (nothing is sent; ``await wait_writable()`` then retry, or use
        :meth:`send`). ``priority=True`` messages skip the batching queue and
        may overtake normal ones; they stay in order among themselves.
        """
        st = self._state
        if (
            st is None
            or st.partner_gone
            or st.runtime.thread_id != get_ident()
            or st.runtime.closed
        ):
            st = self._open()  # raises what is wrong (or passes: another trio run's check)
        payload = _codec.encode(data)
        rt = st.runtime
        if len(payload) > rt.payload_bytes_max:
            self._prepare(st, data)  # raises MessageTooLarge
        if transfer or priority:
            ports = self._transfer_states(st, transfer) if transfer else ()
            rt.post(st, KIND_MESSAGE, 0, payload, ports, priority)
        else:
            # the hot path: straight to the protocol, then the connection it queued on
            link = rt.proto.post_plain(st, payload, trio.current_time)
            if link is not None:
                link.kick()
            else:
                rt.apply()

    async def send(
        self, data: object, transfer: Iterable[MessagePort] = (), *, priority: bool = False
    ) -> None:
        """Like :meth:`post_message`, but waits for room instead of raising PortQueueFull."""
        st = self._open()
        payload = self._prepare(st, data)
        transfer = tuple(transfer)
        ports = self._transfer_states(st, transfer) if transfer else ()
        while True:
            lot = st.runtime.room(st, len(payload))
            if lot is None:
                break
            await lot.park()
            st = self._open()
            if transfer:
                ports = self._transfer_states(st, transfer)
        await trio.lowlevel.checkpoint_if_cancelled()
        st.runtime.post(st, KIND_MESSAGE, 0, payload, ports, priority)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_writable(self) -> None:
        """Wait until :meth:`post_message` has room (PortClosedError if the port closes)."""
        while True:
            st = self._open()
            lot = st.runtime.room(st, 0)
            if lot is None:
                await trio.lowlevel.checkpoint()
                return
            await lot.park()

    # -- requests -----------------------------------------------------------------

    async def request(
        self,
        data: object,
        *,
        timeout_s: float | None = 30.0,
        transfer: Iterable[MessagePort] = (),
        priority: bool = False,
    ) -> Value:
        """Send ``data`` as a request and wait for the partner's handler to answer.

        Raises RequestTimeout when no answer arrives within ``timeout_s`` (the
        wait for room in the queues included; a late answer is dropped),
        RequestFailed when the handler raised or the partner has no handler,
        PortClosedError when the port closes meanwhile.
        """
        st = self._open()
        payload = self._prepare(st, data)
        transfer = tuple(transfer)
        rt = st.runtime
        deadline = trio.current_time() + timeout_s if timeout_s is not None else math.inf
        if rt.room(st, len(payload)) is not None:
            with trio.move_on_at(deadline):
                while (lot := rt.room(st, len(payload))) is not None:
                    await lot.park()
                    st = self._open()
            if rt.room(st, len(payload)) is not None:
                raise RequestTimeout(
                    f"no room to send the request within {timeout_s} s; the partner does not take messages"
                )
        ports = self._transfer_states(st, transfer) if transfer else ()
        answer = await rt.request(st, payload, ports, priority, deadline)
        if answer is None:
            raise RequestTimeout(
                f"no response within {timeout_s} s; the partner is slow or gone (a late answer is dropped)"
            )
        kind, answer_payload = answer
        if kind == KIND_ERROR:
            try:
                text = str(_codec.decode(answer_payload))
            except DecodeError:
                text = "(undecodable error)"
            raise RequestFailed(f"the request failed on the other side: {text}", remote_error=text)
        try:
            return _codec.decode(answer_payload)
        except DecodeError as e:
            raise RequestFailed(f"the response does not decode: {e}", remote_error="") from e

    def set_request_handler(self, handler: RequestHandler | None) -> None:
        """Answer requests with ``handler(data)`` (a value, or an awaitable of one); starts the port.

        An exception in the handler is sent back as RequestFailed. Async
        handlers run concurrently, at most ``request_concurrency_max`` per port.
        """
        st = self._live()
        st.handler = handler
        if handler is not None:
            self.start()

    # -- receiving ------------------------------------------------------------------

    on_message = _Handler(starts=True)
    """The listener of ``message`` events; setting a callable starts the port (like the
    web's ``onmessage``)."""
    on_messageerror = _Handler()
    """The listener of ``messageerror`` events (a payload that does not decode)."""
    on_close = _Handler()
    """The listener of the ``close`` event."""

    def add_event_listener(self, type: EventType, fn: Listener) -> None:
        """Call ``fn(event)`` for ``"message"``, ``"messageerror"`` or ``"close"``; does not start the port."""
        lst = self._listeners.setdefault(type, [])
        if fn not in lst:
            lst.append(fn)

    def remove_event_listener(self, type: EventType, fn: Listener) -> None:
        lst = self._listeners.get(type)
        if lst and fn in lst:
            lst.remove(fn)

    def start(self) -> None:
        """Start delivering queued and future messages to the listeners."""
        st = self._state
        if st is not None:
            st.runtime.start(st)

    def close(self) -> None:
        """Disentangle: the partner gets a ``close`` event; this port delivers nothing more."""
        st = self._state
        if st is None:
            return
        st.runtime.close_port(st, "the partner closed the port", local="close() was called on this port")

    def _call(self, fn: Listener, ev: MessageEvent) -> None:
        try:
            fn(ev)
        except Exception:
            logger.exception("a %s listener of %r raised", ev.type, self)

    def _fire_message(self, payload: bytes, ports: tuple[MessagePort, ...]) -> MessageEvent:
        try:
            ev = MessageEvent("message", _codec.decode(payload), ports, self)
            fn = self._on_message
        except DecodeError as e:
            ev = MessageEvent("messageerror", None, ports, self, e)
            fn = self._on_messageerror
        if fn is not None:
            try:
                fn(ev)
            except Exception:
                logger.exception("a %s listener of %r raised", ev.type, self)
        if self._listeners:
            lst = self._listeners.get(ev.type)
            if lst:
                for f in tuple(lst):
                    self._call(f, ev)
        return ev

    def _fire_close(self, reason: str) -> None:
        ev = MessageEvent("close", None, (), self, reason=reason)
        if self._on_close is not None:
            self._call(self._on_close, ev)
        lst = self._listeners.get("close")
        if lst:
            for f in tuple(lst):
                self._call(f, ev)

    def __aiter__(self) -> _PortIterator:
        """``async for event in port``: starts the port; ends after ``close``."""
        return _PortIterator(self)


class _PortIterator:
    __slots__ = ("_count", "_port", "_st", "_yielded_at")

    def __init__(self, port: MessagePort) -> None:
        self._port = port
        self._st: PortState | None = None
        self._count = 0
        self._yielded_at = perf_counter()

    def __aiter__(self) -> Self:
        return self

    def _unregister(self) -> None:
        st = self._st
        if st is not None:
            self._st = None
            st.runtime.iteration_ended(st)

    def __del__(self) -> None:
        self._unregister()

    async def aclose(self) -> None:
        self._unregister()

    async def __anext__(self) -> MessageEvent:
        port = self._port
        self._count += 1
        if self._count % _ITER_YIELD_EVERY == 0 or perf_counter() - self._yielded_at > _ITER_YIELD_AFTER_S:
            await trio.lowlevel.checkpoint()
            self._yielded_at = perf_counter()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            st = port._state
            if st is None or st.done:
                self._unregister()
                raise StopAsyncIteration
            if self._st is None:
                self._st = st
                st.iterating += 1
                st.started = True
            got = st.runtime.next_event(st)
            if got is True:
                self._unregister()
                raise StopAsyncIteration
            if isinstance(got, MessageEvent):
                return got
            await st.lot.park()
