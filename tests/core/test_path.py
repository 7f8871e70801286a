from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.core import (
    InvalidPath,
    ancestors,
    as_path,
    format_path,
    is_ancestor,
    is_descendant,
    is_related,
    parse_path,
)

segments = st.text(min_size=1, max_size=12)


def test_parse_simple() -> None:
    assert parse_path("a.b.c") == ("a", "b", "c")
    assert parse_path("") == ()
    assert parse_path("user") == ("user",)


def test_escapes() -> None:
    assert parse_path(r"a\.b.c") == ("a.b", "c")
    assert parse_path(r"a\\.b") == ("a\\", "b")
    assert format_path(("a.b", "c")) == r"a\.b.c"
    assert format_path(("a\\", "b")) == r"a\\.b"


@pytest.mark.parametrize("bad", ["a..b", ".a", "a.", ".", "a\\", r"a\x"])
def test_malformed_text_is_invalid_path(bad: str) -> None:
    with pytest.raises(InvalidPath):
        parse_path(bad)


def test_limits() -> None:
    with pytest.raises(InvalidPath, match="deep"):
        parse_path(".".join(["x"] * 33))
    with pytest.raises(InvalidPath, match="longer"):
        parse_path("a" * 257)
    assert len(parse_path(".".join(["x"] * 32))) == 32
    with pytest.raises(InvalidPath, match="deep"):
        parse_path("a.b.c", depth_max=2)


def test_tuple_form_accepted_and_checked() -> None:
    assert as_path(("a", "b")) == ("a", "b")
    assert as_path(["a", "b"]) == ("a", "b")
    assert as_path("a.b") == ("a", "b")
    with pytest.raises(InvalidPath):
        as_path(("a", ""))
    with pytest.raises(InvalidPath):
        as_path(("a", 3))  # type: ignore[arg-type]
    with pytest.raises(InvalidPath):
        as_path(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidPath):
        as_path(b"a.b")  # type: ignore[arg-type]


@given(st.lists(segments, max_size=8))
def test_format_parse_round_trip(path: list[str]) -> None:
    p = tuple(path)
    assert parse_path(format_path(p)) == p


def test_relations() -> None:
    assert is_ancestor((), ("a",))
    assert is_ancestor(("a",), ("a", "b"))
    assert not is_ancestor(("a",), ("a",))
    assert not is_ancestor(("a",), ("ab",))
    assert is_descendant(("a", "b"), ("a",))
    assert is_related(("a",), ("a", "b")) and is_related(("a", "b"), ("a",))
    assert not is_related(("a", "c"), ("a", "b"))
    assert list(ancestors(("a", "b", "c"))) == [(), ("a",), ("a", "b")]
