from __future__ import annotations

from statesync.core import CausalContext, Op
from statesync.core._oplog import OpLog


def op(origin: str, seq: int, hlc: int) -> Op:
    return Op(origin, seq, hlc, ("k", str(seq)), 0, "v", ())


def size(o: Op) -> int:
    return 10


def test_missing_returns_what_ctx_lacks_in_hlc_order() -> None:
    log = OpLog()
    for s in range(1, 6):
        log.append(op("a", s, s * 10))
        log.append(op("b", s, s * 10 + 5))
    got, more = log.missing(CausalContext({"a": 3, "b": 4}), bytes_max=1000, size=size)
    assert [(o.origin, o.seq) for o in got] == [("a", 4), ("a", 5), ("b", 5)]
    assert not more
    got, more = log.missing(CausalContext({"a": 3}, [("a", 5)]), bytes_max=1000, size=size)
    assert ("a", 5) not in [(o.origin, o.seq) for o in got] and len(got) == 6


def test_missing_is_bounded_in_bytes() -> None:
    log = OpLog()
    for s in range(1, 101):
        log.append(op("a", s, s))
    got, more = log.missing(CausalContext(), bytes_max=95, size=size)
    assert len(got) == 9 and more
    got, more = log.missing(CausalContext(), bytes_max=1, size=size)
    assert len(got) == 1 and more  # always progress


def test_compaction_and_lacking() -> None:
    log = OpLog()
    for s in range(1, 101):
        log.append(op("a", s, s))
    assert log.compact({"a": 60}) == 60
    assert len(log) == 40 and log.low("a") == 60
    assert log.lacking(CausalContext({"a": 59})) == ["a"]
    assert log.lacking(CausalContext({"a": 60})) == []
    assert log.get("a", 60) is None and log.get("a", 61) == op("a", 61, 61)
    got, _ = log.missing(CausalContext({"a": 90}), bytes_max=10**6, size=size)
    assert [o.seq for o in got] == list(range(91, 101))


def test_length_bound_drops_oldest_by_hlc() -> None:
    log = OpLog(ops_max=1000)
    for s in range(1, 2001):
        log.append(op("a" if s % 2 else "b", (s + 1) // 2, s))
    assert len(log) <= 1000
    lows = log.lows()
    # the oldest ops went first, from both origins alike
    assert abs(lows["a"] - lows["b"]) <= 1
