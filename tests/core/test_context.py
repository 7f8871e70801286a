from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from statesync.core import CausalContext, Ordering, context_from_dots, vv_compare, vv_merge

dots = st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 12)), max_size=30)


def test_add_compacts_contiguous_dots() -> None:
    c = CausalContext()
    c.add(("a", 2))
    c.add(("a", 3))
    assert c.vv == {} and c.cloud == {("a", 2), ("a", 3)}
    c.add(("a", 1))
    assert c.vv == {"a": 3} and c.cloud == set()
    assert c.covers(("a", 3)) and not c.covers(("a", 4))


@given(dots, dots)
def test_merge_is_union(xs: list[tuple[str, int]], ys: list[tuple[str, int]]) -> None:
    a, b = CausalContext(cloud=xs), CausalContext(cloud=ys)
    a.merge(b)
    assert set(a.dots()) == set(xs) | set(ys)
    for node, n in a.vv.items():
        assert (node, n + 1) not in a.cloud  # fully compacted
    assert all(not a.vv.get(node, 0) >= seq for node, seq in a.cloud)


@given(dots, dots)
def test_compare_matches_set_inclusion(xs: list[tuple[str, int]], ys: list[tuple[str, int]]) -> None:
    a, b = CausalContext(cloud=xs), CausalContext(cloud=ys)
    sa, sb = set(xs), set(ys)
    expected = (
        Ordering.EQUAL
        if sa == sb
        else Ordering.BEFORE
        if sa < sb
        else Ordering.AFTER
        if sa > sb
        else Ordering.CONCURRENT
    )
    assert a.compare(b) == expected


def test_version_vector_helpers() -> None:
    v = {"a": 1}
    vv_merge(v, {"a": 3, "b": 1})
    assert v == {"a": 3, "b": 1}
    assert vv_compare({"a": 1}, {"a": 2}) == Ordering.BEFORE
    assert vv_compare({"a": 2}, {"b": 1}) == Ordering.CONCURRENT
    assert vv_compare({"a": 2, "b": 0}, {"a": 2}) == Ordering.EQUAL
    assert context_from_dots([("b", 2), ("a", 5), ("b", 7)]) == (("a", 5), ("b", 7))


def test_plain_round_trip() -> None:
    c = CausalContext({"a": 2}, [("b", 5)])
    assert CausalContext.from_plain(*c.to_plain()) == c
