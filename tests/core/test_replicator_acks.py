"""Delayed, cumulative acknowledgements: the pure replicator, driven by hand.

A receiver acknowledges ``ack_delay_s`` after the first op it has not yet
acknowledged, or after ``ack_ops_max`` ops, with one ACK covering every frame
in between; at once when the OPS says a writer waits (``ack_now``), for a
retransmission and for a sync response.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from statesync import wire
from statesync.core import Ack, Ops
from statesync.core._replication import ReplicatorConfig, WriteStatus
from tests.core.test_replicator import Net

DELAY = ReplicatorConfig(ack_delay_s=0.005, ack_ops_max=50, sync_interval_s=1000)


def _linked(config: ReplicatorConfig = DELAY) -> Net:
    net = Net("a", "b", config=config)
    net.connect("a", "b")
    net.pump()
    net.sent.clear()
    return net


def _acks_from(net: Net, node: str) -> list[Ack]:
    return [m for n, m in net.sent_of(Ack) if n == node]  # type: ignore[misc]


def test_frames_inside_the_delay_share_one_cumulative_ack() -> None:
    net = _linked()
    for i in range(5):  # five frames, 1 ms apart: within the 5 ms delay
        net.reps["a"].write(("k", str(i)), i, now=net.now("a"))
        net.pump()
        net.tick(0.001)
    frames = [m for n, m in net.sent_of(Ops) if n == "a"]
    assert len(frames) == 5 and not any(f.ack_now for f in frames)  # type: ignore[attr-defined]
    net.tick(0.005)
    net.pump()
    acks = _acks_from(net, "b")
    assert len(acks) == 1 and acks[0].vv["a"] == 5  # one ACK, covering all five
    assert net.reps["a"].peers["b"].acked["a"] == 5
    assert net.reps["a"].peers["b"].retransmit_at_s is None


def test_the_ack_timer_is_a_tick_wish() -> None:
    net = _linked()
    b = net.reps["b"]
    before = b.next_tick_s()
    net.reps["a"].write("k", 1, now=net.now("a"))
    net.pump()
    assert not _acks_from(net, "b")
    assert b.next_tick_s() == net.t + DELAY.ack_delay_s < before
    net.tick(DELAY.ack_delay_s / 2)
    net.pump()
    assert not _acks_from(net, "b")  # not due yet
    net.tick(DELAY.ack_delay_s / 2)
    net.pump()
    assert len(_acks_from(net, "b")) == 1
    assert b.next_tick_s() == before  # nothing owed: no ack wish left


def test_ack_ops_max_sends_the_ack_at_once() -> None:
    net = _linked()
    net.reps["a"].write_many([(("k", str(i)), i) for i in range(DELAY.ack_ops_max)], now=net.now("a"))
    net.pump()
    acks = _acks_from(net, "b")
    assert len(acks) == 1 and acks[0].vv["a"] == DELAY.ack_ops_max


def test_a_writer_waiting_on_its_concern_gets_the_ack_at_once() -> None:
    net = _linked()
    ticket = net.reps["a"].write("k", 1, ack="all", timeout_s=5, now=net.now("a"))
    net.pump()  # no time passes: the ack must not wait for the delay
    frames = [m for n, m in net.sent_of(Ops) if n == "a"]
    assert frames and frames[-1].ack_now  # type: ignore[attr-defined]
    assert ticket.status is WriteStatus.DONE and ticket.acked == {"b"}


def test_only_frames_holding_a_waited_write_ask_for_an_ack() -> None:
    net = _linked()
    net.reps["a"].write("k", 1, ack=1, timeout_s=5, now=net.now("a"))
    net.pump()
    net.reps["a"].write("j", 2, now=net.now("a"))  # nobody waits on this one
    net.pump()
    frames = [m for n, m in net.sent_of(Ops) if n == "a"]
    assert [f.ack_now for f in frames] == [True, False]  # type: ignore[attr-defined]


def test_a_retransmission_asks_for_an_ack_at_once() -> None:
    cfg = ReplicatorConfig(ack_delay_s=0.005, retransmit_timeout_s=1.0, sync_interval_s=1000)
    net = _linked(cfg)
    net.reps["a"].write("k", 1, now=net.now("a"))
    net.pump(drop=lambda src, m: isinstance(m, Ops))
    net.sent.clear()
    net.tick(1.0)
    net.pump()
    frames = [m for n, m in net.sent_of(Ops) if n == "a"]
    assert len(frames) == 1 and frames[0].ack_now  # type: ignore[attr-defined]
    assert net.reps["a"].peers["b"].acked["a"] == 1


def test_ack_delay_zero_acks_every_frame() -> None:
    net = _linked(ReplicatorConfig(ack_delay_s=0.0, sync_interval_s=1000))
    for i in range(4):
        net.reps["a"].write(("k", str(i)), i, now=net.now("a"))
        net.pump()
    assert len(_acks_from(net, "b")) == 4


def test_ack_now_travels_and_old_ops_bytes_are_unchanged() -> None:
    net = _linked()
    net.reps["a"].write("k", 1, now=net.now("a"))
    op = net.reps["a"].replica.log.get("a", 1)
    assert op is not None
    plain, asking = Ops((op,)), Ops((op,), True)
    assert wire.decode_message(wire.encode_message(asking)) == asking
    assert wire.decode_message(wire.encode_message(plain)) == plain
    assert len(wire.encode_message(asking)) == len(wire.encode_message(plain)) + 1  # one msgpack True


@settings(max_examples=40, deadline=None)
@given(gaps_ms=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=40))
def test_every_op_is_acknowledged_within_the_delay_and_acks_never_outnumber_frames(gaps_ms: list[int]) -> None:
    net = _linked()
    for i, gap in enumerate(gaps_ms):
        net.reps["a"].write(("k", str(i % 7)), i, now=net.now("a"))
        net.pump()
        net.tick(gap / 1000)
        net.pump()
    net.tick(DELAY.ack_delay_s)
    net.pump()
    assert net.reps["a"].peers["b"].acked["a"] == len(gaps_ms)
    assert len(_acks_from(net, "b")) <= len(gaps_ms)
    # within one delay window there is at most one ack
    assert len(_acks_from(net, "b")) <= 1 + sum(gaps_ms) // int(DELAY.ack_delay_s * 1000)
