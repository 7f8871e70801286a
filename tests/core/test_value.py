from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statesync.core import InvalidValue, ValueLimits, iter_leaves, validate_value, values_equal

json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False), st.text(), st.binary()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_like)
def test_json_like_values_are_valid(value: object) -> None:
    assert validate_value(value) > 0


@pytest.mark.parametrize(
    ("value", "type_name", "where"),
    [
        (lambda: 1, "function", "$"),
        ({"a": [1, {"b": {1, 2}}]}, "set", "$['a'][1]['b']"),
        ([1, (2, 3)], "tuple", "$[1]"),
        ({1: "x"}, "int", "$"),
        ({"s": socket.socket}, "type", "$['s']"),
        (bytearray(b"x"), "bytearray", "$"),
        (2**64, "int", "$"),
        ({"deep": [2**70]}, "int", "$['deep'][0]"),
    ],
)
def test_invalid_values_name_type_and_place(value: object, type_name: str, where: str) -> None:
    with pytest.raises(InvalidValue) as info:
        validate_value(value)
    assert info.value.type_name == type_name
    assert info.value.where == where
    assert type_name in str(info.value)


def test_limits() -> None:
    limits = ValueLimits(value_bytes_max=100, depth_max=3, str_chars_max=10, container_items_max=5)
    with pytest.raises(InvalidValue, match="limit"):
        validate_value("x" * 11, limits)
    with pytest.raises(InvalidValue, match="deeper"):
        validate_value([[[[1]]]], limits)
    with pytest.raises(InvalidValue, match="6 items"):
        validate_value([1] * 6, limits)
    with pytest.raises(InvalidValue, match="bytes"):
        validate_value([["1234567890"] * 5] * 2, limits)


def test_leaves_of_a_subtree_write() -> None:
    assert sorted(iter_leaves({"a": {"b": 1, "c": {}}, "d": [1]})) == [
        (("a", "b"), 1),
        (("a", "c"), {}),
        (("d",), [1]),
    ]
    assert list(iter_leaves(5, ("x",))) == [(("x",), 5)]


def test_values_equal_tells_types_apart() -> None:
    assert values_equal({"a": [1, 2.0]}, {"a": [1, 2.0]})
    assert not values_equal(1, True)
    assert not values_equal(1, 1.0)
    assert not values_equal([1], [True])
