"""The pure ports protocol: in-order delivery, credit, close, requests, heartbeat verdicts."""

from __future__ import annotations

import ast
import itertools
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import statesync.ports
from statesync.ports._envelope import (
    CLOSE_NOW,
    KIND_MESSAGE,
    KIND_RESPONSE,
    Close,
    Credit,
    Msg,
    Msgs,
    Open,
)
from statesync.ports._liveness import Liveness, Verdict
from statesync.ports._outbox import Conn, UserMsg
from statesync.ports._protocol import PortsProtocol, Response
from statesync.ports._requests import Deadlines
from statesync.ports._sequencing import CLOSE_ITEM, Item, PortEnd


def make(window: int = 64) -> tuple[PortsProtocol, Conn, PortEnd]:
    """A protocol with one connection and one port whose partner lives beyond it."""
    ids = itertools.count(1)
    proto = PortsProtocol("rt-a", lambda: next(ids))
    conn = Conn(queue_max=1000, queue_bytes_max=1 << 20, window=window)
    conn.remote_id = "rt-b"
    proto.link_up(conn, 0.0)
    port = proto.connect(conn, window, 0.0)
    assert isinstance(conn.prio.popleft(), Open)
    proto.out.kicks.clear()
    return proto, conn, port


def queued(port: PortEnd) -> list[tuple[bool, int]]:
    out = []
    for entry in port.queue:
        if isinstance(entry, Item):
            out.append((entry.prio, int(entry.payload)))
        elif isinstance(entry, bytes):
            out.append((False, int(entry)))
    return out


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[tuple[bool, int]], int, int]:
    """Sequence numbers of both streams, shuffled, some twice."""
    n_normal = draw(st.integers(0, 40))
    n_prio = draw(st.integers(0, 10))
    items = [(False, s) for s in range(1, n_normal + 1)] + [(True, s) for s in range(1, n_prio + 1)]
    dups = draw(st.lists(st.sampled_from(items), max_size=10)) if items else []
    seed = draw(st.integers(0, 2**32 - 1))
    order = items + dups
    random.Random(seed).shuffle(order)
    return order, n_normal, n_prio


@settings(max_examples=200, deadline=None)
@given(arrivals(), st.booleans())
def test_any_arrival_order_is_delivered_in_order_once(
    case: tuple[list[tuple[bool, int]], int, int], batched: bool
) -> None:
    order, n_normal, n_prio = case
    proto, conn, port = make()
    for prio, seq in order:
        payload = str(seq).encode()
        if batched and not prio:
            m: object = Msgs(port.id, seq, (payload,))
        else:
            m = Msg(port.id, seq, prio, KIND_MESSAGE, 0, payload)
        assert proto.receive(conn, m, 0.0)
    got = queued(port)
    assert [s for p, s in got if not p] == list(range(1, n_normal + 1))
    assert [s for p, s in got if p] == list(range(1, n_prio + 1))
    assert not port.reorder
    assert not proto.out.violations


def test_a_reorder_buffer_beyond_its_bound_closes_the_port() -> None:
    proto, conn, port = make(window=4)
    for seq in range(2, 2 + 4 * 2 + 1):  # message 1 never comes
        proto.receive(conn, Msgs(port.id, seq, (b"x",)), 0.0)
    assert [v.reason for v in proto.out.violations] == ["too many messages arrived out of order"]
    assert port.done and port.id not in proto.entries
    # the partner is told
    close = conn.normal[-1]
    assert isinstance(close, Close) and close.dst == port.partner


def test_window_and_credit() -> None:
    proto, conn, port = make(window=4)
    for i in range(4):
        assert proto.room(port, 1)
        assert proto.post_plain(port, b"%d" % i, lambda: 0.0) is conn
    assert not proto.room(port, 1)
    assert [e for e in conn.normal] == [(port.partner, s, b"%d" % (s - 1)) for s in range(1, 5)]
    proto.receive(conn, Credit(port.id, 2), 0.0)
    assert port in proto.out.writable and proto.room(port, 1)
    # the receiving direction: credit every window // 4 messages taken
    proto.receive(conn, Msgs(port.id, 1, (b"a", b"b")), 0.0)
    port.queue.clear()
    proto.consumed(port)
    assert conn.prio[-1] == Credit(port.partner, 1)


def test_close_waits_for_the_messages_before_it() -> None:
    proto, conn, port = make()
    proto.receive(conn, Close(port.id, 3, 1, "bye"), 0.0)
    assert not port.partner_gone
    proto.receive(conn, Msgs(port.id, 2, (b"2",)), 0.0)
    assert not port.partner_gone
    proto.receive(conn, Msgs(port.id, 1, (b"1",)), 0.0)
    assert port.partner_gone and port.close_reason == "bye"
    assert list(port.queue) == [b"1", b"2", CLOSE_ITEM]
    assert port.id not in proto.entries and port.partner not in proto.entries


def test_a_closed_connection_closes_its_ports_at_once() -> None:
    proto, conn, port = make()
    proto.link_down(conn, "gone")
    assert port.partner_gone and port.close_reason == "gone"
    assert not proto.entries


def test_local_close_says_so_and_frees_every_entry() -> None:
    proto, conn, port = make()
    proto.close(port, "the partner closed the port", local="close() was called on this port")
    (retired,) = proto.out.retired
    assert "close() was called" in str(retired.error)
    assert not proto.entries
    assert conn.normal[-1] == Close(port.partner, 1, 1, "the partner closed the port")
    # a Close from a dead path closes at once
    proto2, conn2, port2 = make()
    proto2.receive(conn2, Close(port2.id, CLOSE_NOW, CLOSE_NOW, "path gone"), 0.0)
    assert port2.partner_gone


def test_request_correlation_and_late_answers() -> None:
    proto, conn, port = make()
    waiter = object()
    req_id = proto.request(port, b"q", (), False, waiter, 0.0)
    sent = conn.normal[-1]
    assert isinstance(sent, UserMsg) and sent.msg.req_id == req_id
    proto.receive(conn, Msg(port.id, 1, False, KIND_RESPONSE, req_id, b"a"), 0.0)
    assert proto.out.responses == [Response(waiter, KIND_RESPONSE, b"a")]
    assert not port.pending and not port.queue
    # a late answer (the request was forgotten) is dropped
    req2 = proto.request(port, b"q", (), False, object(), 0.0)
    proto.forget_request(port, req2)
    proto.receive(conn, Msg(port.id, 2, False, KIND_RESPONSE, req2, b"late"), 0.0)
    assert len(proto.out.responses) == 1 and not port.queue


def test_deadlines_expire_in_order_and_skip_finished_waiters() -> None:
    done: set[str] = set()
    d: Deadlines[str] = Deadlines(lambda w: w in done)
    assert d.add(3.0, "c")
    assert d.add(1.0, "a")
    assert not d.add(2.0, "b")
    done.add("a")
    assert d.next_deadline == 1.0
    assert d.expire(2.5) == ["b"]
    assert d.expire(10.0) == ["c"]
    assert d.next_deadline == float("inf")


def test_heartbeat_verdicts() -> None:
    live = Liveness(created=0.0, last_recv=0.0, last_send=0.0, ping_interval_s=1.0)
    assert live.verdict(0.5, False, 5.0, 2.0, lambda: False) is Verdict.OK
    assert live.verdict(2.5, False, 5.0, 2.0, lambda: False) is Verdict.HANDSHAKE_TIMEOUT
    assert live.verdict(1.0, True, 5.0, 2.0, lambda: False) is Verdict.PING
    live.last_send = 1.0
    assert live.verdict(1.5, True, 5.0, 2.0, lambda: False) is Verdict.OK
    # silent too long: put off once when input waits, then dead
    assert live.verdict(6.0, True, 5.0, 2.0, lambda: True) is Verdict.DEFER
    assert live.verdict(6.1, True, 5.0, 2.0, lambda: True) is Verdict.SILENT
    live.peer_timeout(400, 1.0)
    assert live.ping_interval_s == 0.1


PURE = ("_protocol", "_routing", "_sequencing", "_outbox", "_outputs", "_requests", "_liveness")
IMPURE = {"trio", "zmq", "time", "random", "secrets", "socket", "threading", "asyncio"}


def test_the_protocol_modules_import_no_io_no_clock_no_randomness() -> None:
    root = Path(statesync.ports.__file__).parent
    allowed_local = {f"statesync.ports.{m}" for m in PURE} | {
        "statesync.ports._envelope",
        "statesync.ports._errors",
    }
    for name in PURE:
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] not in IMPURE, f"{name} imports {mod}"
                if mod.startswith("statesync.ports"):
                    assert mod in allowed_local, f"{name} imports {mod}"
