from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.core import ClockSkewError, HybridClock, hlc_counter, hlc_pack, hlc_wall_ms

T = 1_700_000_000_000


def test_send_follows_physical_time_and_counts_within_a_millisecond() -> None:
    c = HybridClock()
    a = c.send(T)
    b = c.send(T)
    assert hlc_wall_ms(a) == T and hlc_counter(a) == 0
    assert b == a + 1
    assert hlc_wall_ms(c.send(T + 5)) == T + 5


def test_send_never_goes_backwards_when_physical_time_does() -> None:
    c = HybridClock()
    a = c.send(T + 1000)
    assert c.send(T) > a


def test_receive_moves_past_remote() -> None:
    c = HybridClock()
    remote = hlc_pack(T + 500, 7)
    got = c.receive(remote, T)
    assert got > remote
    assert c.send(T) > got


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10_000)), max_size=50))
def test_monotonic(events: list[tuple[bool, int]]) -> None:
    c = HybridClock()
    last = 0
    for is_receive, offset in events:
        stamp = c.receive(hlc_pack(T + offset, 3), T) if is_receive else c.send(T + offset)
        assert stamp > last
        last = stamp


def test_skew_is_reported_not_applied() -> None:
    c = HybridClock(max_drift_ms=1000)
    c.check(T + 999, T)
    with pytest.raises(ClockSkewError, match="ahead") as info:
        c.check(T + 5000, T, peer="b")
    assert info.value.skew_s == 5.0
    with pytest.raises(ClockSkewError, match="behind"):
        c.check(T - 5000, T)
    # receiving a far-future stamp still advances the clock: ops are never dropped for time
    assert c.receive(hlc_pack(T + 10_000), T) > hlc_pack(T + 10_000)
