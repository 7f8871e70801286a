"""The half of the runtime that hosts ports: drives the protocol, delivers to user code.

:class:`PortHosting` owns the :class:`~statesync.ports._protocol.PortsProtocol`
of a runtime and carries out its outputs (:meth:`PortHosting._apply`): kicks
links, wakes writers and iterators, schedules ``message`` listeners, finishes
requests. It implements :class:`~statesync.ports._host.PortHost`, the narrow
interface a :class:`~statesync.ports.MessagePort` talks to. Receiving drains
every queued frame per wake-up and runs ``message`` listeners inline from the
receive task (in-process posts are dispatched by a dispatcher task instead,
never from inside ``post_message``). Requests wait in
``wait_task_rescheduled``, woken by their response, a failure, or the timer
task at their deadline (:class:`~statesync.ports._requests.Deadlines`).
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Final

import trio

from statesync.errors import PortClosedError, PortsError, RuntimeMismatch
from statesync.ports import _codec
from statesync.ports._envelope import KIND_ERROR, KIND_REQUEST, KIND_RESPONSE
from statesync.ports._host import PortState
from statesync.ports._options import PortOptions
from statesync.ports._outbox import Conn
from statesync.ports._protocol import PortsProtocol
from statesync.ports._requests import Deadlines
from statesync.ports._sequencing import CLOSE_ITEM, Item, PortEnd
from statesync.wire import DecodeError

if TYPE_CHECKING:
    from statesync.ports._port import MessagePort

from statesync.ports import _port

logger = logging.getLogger("statesync.ports")

RUN_READY_ITEMS_MAX: Final = 4096
"""Messages dispatched to listeners per turn before yielding to other tasks."""


class _Pending:
    """A request waiting for its response (woken by ``finish``)."""

    __slots__ = ("done", "error", "kind", "payload", "task", "timed_out")

    def __init__(self) -> None:
        self.kind = KIND_RESPONSE
        self.payload = b""
        self.error: PortsError | None = None
        self.done = False
        self.timed_out = False
        self.task: trio.lowlevel.Task | None = None

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        """Until finished (cancellable: an outer cancel scope still applies)."""
        if self.done:
            await trio.lowlevel.checkpoint()
            return
        self.task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


def _pending_done(p: _Pending) -> bool:
    return p.done




class PortHosting:
    """Protocol driver and port host; :class:`~statesync.ports.PortRuntime` adds sockets."""

    def __init__(self, options: PortOptions, runtime_id: str, new_id: Callable[[], int]) -> None:
        self.options = options
        self.id = runtime_id
        self._token = trio.lowlevel.current_trio_token()
        #: the thread of that run: a cheap first check on the hot paths
        self.thread_id = threading.get_ident()
        self.payload_bytes_max = options.payload_bytes_max
        self.closed = False
        self.bad_frames = 0
        self.proto = PortsProtocol(
            runtime_id, new_id, new_end=lambda i, p, w, m: PortState(self, i, p, w, m)
        )
        self._nursery: trio.Nursery | None = None
        self._pending_spawn: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] = []
        self._ready: dict[PortState, None] = {}
        self._dispatch_lot = trio.lowlevel.ParkingLot()
        self._dispatch_parked = False
        self._relays_changed = trio.Event()
        self._deadlines: Deadlines[_Pending] = Deadlines(_pending_done)
        self._timer_scope: trio.CancelScope | None = None

    # -- tasks ------------------------------------------------------------------------

    def _spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        if self._nursery is None:
            self._pending_spawn.append((fn, args))
        else:
            self._nursery.start_soon(fn, *args)

    def check_run(self) -> None:
        """Raise unless called from the trio run (and thread) that owns this runtime."""
        if self.closed:
            raise PortClosedError("the port runtime is closed")
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError as exc:
            raise RuntimeMismatch(
                "ports are used from outside trio.run; call them from trio tasks"
            ) from exc
        if token is not self._token:
            raise RuntimeMismatch(
                "this port belongs to another trio run; ports cannot move between runs"
            )

    def _dial(self, runtime_id: str, endpoints: tuple[str, ...]) -> None:
        raise NotImplementedError

    # -- carrying out the protocol's output ---------------------------------------------

    def _apply(self, *, receiving: bool = False) -> None:
        """Carry out what the protocol asked for (``receiving``: the caller runs the
        ready ports right after, so the dispatcher need not wake)."""
        out = self.proto.out
        # ``while out``, written out (the most frequent first): this runs per frame batch
        while (
            out.delivered
            or out.kicks
            or out.responses
            or out.writable
            or out.scheduled
            or out.retired
            or out.failed
            or out.close_soon
            or out.incoming
            or out.dials
            or out.violations
        ):
            if out.responses:
                responses, out.responses = out.responses, []
                for r in responses:
                    p = r.waiter
                    assert isinstance(p, _Pending)
                    p.kind = r.kind
                    p.payload = r.payload
                    p.finish()
            if out.failed:
                failed, out.failed = out.failed, []
                for f in failed:
                    p = f.waiter
                    assert isinstance(p, _Pending)
                    if not p.done:
                        p.error = f.error
                        p.finish()
            if out.close_soon:
                soon, out.close_soon = out.close_soon, []
                for st in soon:
                    assert isinstance(st, PortState)
                    self._fire_close_soon(st)
            if out.retired:
                retired, out.retired = out.retired, []
                for r2 in retired:
                    st = r2.port
                    assert isinstance(st, PortState)
                    st.lot.unpark_all()
                    st.writers.unpark_all()
                    self._ready.pop(st, None)
                    if st.handle is not None:
                        st.handle._detach(r2.error)
                        st.handle = None
            # (no callback runs in these loops: nothing is added to them meanwhile)
            if out.writable:
                for st in out.writable:
                    assert isinstance(st, PortState)
                    st.writers.unpark_all()
                out.writable.clear()
            if out.scheduled:
                for st in out.scheduled:
                    assert isinstance(st, PortState)
                    st.lot.unpark_all()
                    self._ready[st] = None
                out.scheduled.clear()
            if out.delivered:
                for st in out.delivered:
                    assert isinstance(st, PortState)
                    if st.iterating:
                        st.lot.unpark_all()
                    elif st.started or st.partner_gone:
                        self._ready[st] = None
                out.delivered.clear()
            if out.incoming:
                incoming, out.incoming = out.incoming, []
                for inc in incoming:
                    self._incoming(inc.conn, inc.port)
            if out.dials:
                dials, out.dials = out.dials, []
                for d in dials:
                    self._dial(d.runtime_id, d.endpoints)
            if out.violations:
                violations, out.violations = out.violations, []
                for v in violations:
                    logger.warning("closing %r: %s", v.port, v.reason)
                    self.bad_frames += 1
            kicks = out.kicks
            while kicks:
                link = next(iter(kicks))
                del kicks[link]
                link.kick()
        if out.relays_changed:
            out.relays_changed = False
            self._relays_changed.set()
        if self._ready and not receiving and self._dispatch_parked:
            self._dispatch_parked = False
            self._dispatch_lot.unpark_all()

    def wake_writers(self, ports: Iterable[object]) -> None:
        for st in ports:
            assert isinstance(st, PortState)
            st.writers.unpark_all()

    def apply(self) -> None:
        """Carry out what the protocol asked for (from a port's hot path)."""
        self._apply()

    def _incoming(self, conn: Conn, st: PortEnd) -> None:
        listener = getattr(conn, "listener", None)
        assert isinstance(st, PortState)
        if listener is None or not listener.offer(st):
            reason = "the listener's backlog is full"
            self.proto.close(st, reason)

    def relay_count(self) -> int:
        """Relays through which other runtimes' ports may still talk (see :meth:`aclose`)."""
        return self.proto.relay_count()

    def _fire_close_soon(self, st: PortState) -> None:
        handle = st.handle
        if handle is None:
            return
        st.close_fired = True
        reason = st.close_reason

        async def fire() -> None:
            handle._fire_close(reason)

        self._spawn(fire)

    # -- dispatch to listeners ------------------------------------------------------------

    async def _dispatch_task(self) -> None:
        while True:
            if not self._ready:
                self._dispatch_parked = True
                await self._dispatch_lot.park()
                continue
            self._run_ready()
            await trio.lowlevel.checkpoint()

    def _schedule(self, st: PortState) -> None:
        self._ready[st] = None
        if self._dispatch_parked:
            self._dispatch_parked = False
            self._dispatch_lot.unpark_all()

    def _run_ready(self) -> None:
        budget = RUN_READY_ITEMS_MAX
        ready = self._ready
        while ready and budget > 0:
            st = next(iter(ready))
            del ready[st]
            budget -= self._drain_to_listeners(st, budget)
        if self.proto.out.kicks or self.proto.out.writable:  # what taking messages makes
            self._apply(receiving=True)
        if ready and self._dispatch_parked:
            self._dispatch_parked = False
            self._dispatch_lot.unpark_all()

    def _drain_to_listeners(self, st: PortState, budget: int) -> int:
        handle = st.handle
        n = 0
        if st.done or handle is None:
            return 0
        queue = st.queue
        if not st.started or st.iterating:
            if st.partner_gone and not st.close_fired and queue and queue[-1] is CLOSE_ITEM:
                self._fire_close(st)
            return 0
        fire = handle._fire_message
        grant = self.proto.grant
        popleft = queue.popleft
        step = st.grant_step
        while queue and n < budget:
            entry = queue[0]
            if type(entry) is bytes:
                popleft()
                n += 1
                # PortsProtocol.consumed, written out: this is the receiving hot path
                st.consumed += 1
                if st.consumed - st.granted >= step:
                    grant(st)
                fire(entry, ())
                if st.done or not st.started or st.iterating:  # PortEnd.halted, written out
                    break  # type: ignore[unreachable]  # (fire() may have changed them)
                continue
            if entry is CLOSE_ITEM:
                popleft()
                self._fire_close(st)
                break
            assert isinstance(entry, Item)
            if entry.kind == KIND_REQUEST:
                if not self._start_request(st, entry):
                    break
                popleft()
                n += 1
                continue
            popleft()
            n += 1
            self.proto.consumed(st)
            fire(entry.payload, self._handles(entry))
            if st.halted:
                break
        if queue and n >= budget:
            self._ready[st] = None
        return n

    def _handles(self, item: Item) -> tuple[MessagePort, ...]:
        out = []
        for p in item.ports:
            assert isinstance(p, PortState)
            out.append(self.handle_for(p))
        return tuple(out)

    def _fire_close(self, st: PortState) -> None:
        if st.close_fired:
            return
        st.close_fired = True
        if st.handle is not None:
            st.handle._fire_close(st.close_reason)

    def handle_for(self, st: PortState) -> MessagePort:
        h = _port.MessagePort._from_state(st)
        st.handle = h
        return h

    # -- PortHost: what ports call ---------------------------------------------------------

    def room(self, st: PortState, size: int) -> trio.lowlevel.ParkingLot | None:
        return None if self.proto.room(st, size) else st.writers

    def post(  # noqa: PLR0917
        self,
        st: PortState,
        kind: int,
        req_id: int,
        payload: bytes,
        ports: tuple[PortState, ...],
        prio: bool,
    ) -> None:
        try:
            self.proto.post(st, kind, req_id, payload, ports, prio, trio.current_time())
        finally:
            self._apply()

    def start(self, st: PortState) -> None:
        if st.started:
            return
        st.started = True
        if st.queue:
            self._schedule(st)

    def close_port(self, st: PortState, reason: str, *, local: str) -> None:
        self.proto.close(st, reason, local=local)
        self._apply()

    def consumed(self, st: PortState) -> None:
        st.consumed += 1
        if st.consumed - st.granted >= st.grant_step:  # PortsProtocol.consumed, written out
            self.proto.grant(st)
            self._apply()

    def next_event(self, st: PortState) -> object:
        """For ``async for``: the next event, False to wait, True at the end."""
        q = st.queue
        while q:
            entry = q[0]
            if type(entry) is bytes:
                q.popleft()
                self.consumed(st)
                assert st.handle is not None
                return st.handle._fire_message(entry, ())
            if entry is CLOSE_ITEM:
                q.popleft()
                self._fire_close(st)
                return True
            assert isinstance(entry, Item)
            if entry.kind == KIND_REQUEST:
                if not self._start_request(st, entry):
                    return False
                q.popleft()
                continue
            q.popleft()
            self.consumed(st)
            assert st.handle is not None
            return st.handle._fire_message(entry.payload, self._handles(entry))
        return False

    def iteration_ended(self, st: PortState) -> None:
        st.iterating -= 1
        if st.started and st.queue and not st.iterating and not st.done:
            self._schedule(st)

    async def request(
        self,
        st: PortState,
        payload: bytes,
        ports: tuple[PortState, ...],
        prio: bool,
        deadline: float,
    ) -> tuple[int, bytes] | None:
        pending = _Pending()
        try:
            req_id = self.proto.request(st, payload, ports, prio, pending, trio.current_time())
        finally:
            self._apply()
        try:
            if (
                deadline != math.inf
                and self._deadlines.add(deadline, pending)
                and self._timer_scope is not None
            ):
                self._timer_scope.cancel()  # re-arm earlier (rare: timeouts mostly grow)
            await pending.wait()
        finally:
            pending.done = True  # the timer forgets it
            self.proto.forget_request(st, req_id)
        if pending.timed_out:
            return None
        if pending.error is not None:
            raise type(pending.error)(str(pending.error)) from pending.error
        return pending.kind, pending.payload

    async def _timer_task(self) -> None:
        while True:
            for pending in self._deadlines.expire(trio.current_time()):
                pending.timed_out = True
                pending.finish()
            with trio.CancelScope(deadline=self._deadlines.next_deadline) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None

    # -- answering requests ------------------------------------------------------------------

    def _start_request(self, st: PortState, item: Item) -> bool:
        handler = st.handler
        if handler is not None and st.handler_busy >= self.options.request_concurrency_max:
            return False
        self.consumed(st)
        req_id = item.req_id
        if handler is None:
            self._respond(st, req_id, KIND_ERROR, _codec.encode("the port has no request handler"))
            return True
        try:
            data = _codec.decode(item.payload)
        except DecodeError as e:
            self._respond(
                st, req_id, KIND_ERROR, _codec.encode(f"the request does not decode: {e}")
            )
            return True
        try:
            result = handler(data)
        except Exception as e:
            logger.exception("request handler of %r failed", st)
            self._respond(st, req_id, KIND_ERROR, _codec.encode(f"{type(e).__name__}: {e}"))
            return True
        if inspect.isawaitable(result):
            st.handler_busy += 1
            self._spawn(self._finish_request, st, req_id, result)
        else:
            self._respond_value(st, req_id, result)
        return True

    async def _finish_request(self, st: PortState, req_id: int, result: Awaitable[object]) -> None:
        try:
            value = await result
        except Exception as e:
            logger.exception("request handler of %r failed", st)
            self._respond(st, req_id, KIND_ERROR, _codec.encode(f"{type(e).__name__}: {e}"))
        else:
            self._respond_value(st, req_id, value)
        finally:
            st.handler_busy -= 1
            if st.iterating:
                st.lot.unpark_all()
            elif st.queue and st.started and not st.done:
                self._schedule(st)

    def _respond_value(self, st: PortState, req_id: int, value: object) -> None:
        try:
            payload = _codec.encode(value)
        except PortsError as e:
            self._respond(st, req_id, KIND_ERROR, _codec.encode(f"the handler's answer: {e}"))
            return
        except Exception as e:  # DataCloneError and friends
            self._respond(
                st, req_id, KIND_ERROR, _codec.encode(f"the handler's answer cannot be sent: {e}")
            )
            return
        self._respond(st, req_id, KIND_RESPONSE, payload)

    def _respond(self, st: PortState, req_id: int, kind: int, payload: bytes) -> None:
        self.proto.respond(st, req_id, kind, payload, trio.current_time())
        self._apply()
