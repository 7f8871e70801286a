from __future__ import annotations

import itertools
import random

import pytest

from statesync.core import ResolverCheckFailed, Version
from statesync.testing import check_resolver


def longest_str(path: tuple[str, ...], versions: tuple[Version, ...]) -> object:
    return max((repr(v.value) for v in versions), key=lambda s: (len(s), s))


def newest(path: tuple[str, ...], versions: tuple[Version, ...]) -> object:
    return versions[-1].value


def test_good_resolvers_pass() -> None:
    check_resolver(longest_str, strict=True)
    check_resolver(newest)  # order-dependent, but statesync always sorts: fine


def test_order_dependent_resolver_fails_strict_mode() -> None:
    with pytest.raises(ResolverCheckFailed, match="order") as info:
        check_resolver(newest, strict=True)
    assert "variant" in info.value.counterexample  # type: ignore[operator]


def test_random_resolver_is_caught() -> None:
    rng = random.Random(1)

    def coin(path: tuple[str, ...], versions: tuple[Version, ...]) -> object:
        return rng.choice(versions).value

    with pytest.raises(ResolverCheckFailed, match="not deterministic"):
        check_resolver(coin)


def test_stateful_resolver_is_caught() -> None:
    counter = itertools.count()

    def counting(path: tuple[str, ...], versions: tuple[Version, ...]) -> object:
        return next(counter)

    with pytest.raises(ResolverCheckFailed, match="not deterministic"):
        check_resolver(counting)


def test_raising_or_unstorable_resolvers_are_caught() -> None:
    def boom(path: tuple[str, ...], versions: tuple[Version, ...]) -> object:
        raise KeyError("x")

    with pytest.raises(ResolverCheckFailed, match="raised KeyError"):
        check_resolver(boom)

    def returns_set(path: tuple[str, ...], versions: tuple[Version, ...]) -> object:
        return {1, 2}

    with pytest.raises(ResolverCheckFailed, match="cannot be stored"):
        check_resolver(returns_set)


def test_mutating_resolver_is_caught() -> None:
    def mutate(path: tuple[str, ...], versions: tuple[Version, ...]) -> object:
        for v in versions:
            if isinstance(v.value, list):
                v.value.append(0)
        return None

    with pytest.raises(ResolverCheckFailed, match="mutated"):
        check_resolver(mutate, values=[[1], [2]])
