"""Conflict strategies: how concurrent versions of one leaf are read.

Every strategy stores the same thing: the register of versions that no write
has yet overwritten (observed-remove, add wins). Strategies differ only in how
a register with several concurrent versions is *read* and *reported*, so a
strategy can never make replicas diverge:

- ``vector-clock`` (default): the siblings stay visible. Reads return the
  deterministic winner, the version with the highest ``(hlc, node_id)``;
  ``conflicts(path)`` lists every sibling; the next write that has seen them
  resolves them.
- ``last-write-wins``: a causally newer write always wins (it overwrites what
  it saw); among concurrent writes the highest ``(hlc, node_id)`` wins and the
  losers are dropped from view: reads never show them and ``conflicts`` lists
  none. (They leave the register with the next write that covers them; keeping
  them until then is what lets a concurrent remove that never saw the winner
  behave the same on every replica.)
- ``custom``: ``fn(path, versions) -> value``, given the concurrent versions
  in canonical order (ascending ``(hlc, node_id, seq)``); called only where
  there are at least two. It must be deterministic; ``check_resolver`` tests
  a resolver for that.

A strategy can be chosen per path prefix; the longest configured prefix wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeAlias

from statesync.core._op import Version
from statesync.core._path import Path, PathLike, as_path
from statesync.core._value import Value, validate_value
from statesync.errors import InvalidValue, ResolverError, StatesyncError

Resolver: TypeAlias = Callable[[Path, tuple[Version, ...]], Value]


class Strategy(Protocol):
    """How a register with several concurrent versions is read and reported."""

    name: str

    def resolve(self, path: Path, versions: tuple[Version, ...]) -> Value:
        """The value read at ``path``; ``versions`` are canonical, two or more."""
        ...

    def siblings(self, path: Path, versions: tuple[Version, ...]) -> list[Version]:
        """What ``conflicts(path)`` reports for a register of two or more."""
        ...


class VectorClock:
    """Siblings kept and reported; reads show the highest ``(hlc, node_id)``."""

    name = "vector-clock"

    def resolve(self, path: Path, versions: tuple[Version, ...]) -> Value:
        return versions[-1].value

    def siblings(self, path: Path, versions: tuple[Version, ...]) -> list[Version]:
        return list(versions)

    def __repr__(self) -> str:
        return "VectorClock()"


class LastWriteWins:
    """The highest ``(hlc, node_id)`` wins; losers are never shown."""

    name = "last-write-wins"

    def resolve(self, path: Path, versions: tuple[Version, ...]) -> Value:
        return versions[-1].value

    def siblings(self, path: Path, versions: tuple[Version, ...]) -> list[Version]:
        return []

    def __repr__(self) -> str:
        return "LastWriteWins()"


class Custom:
    """A user function of ``(path, versions)`` picks or merges the value."""

    name = "custom"

    def __init__(self, fn: Resolver, *, name: str | None = None) -> None:
        self.fn = fn
        self.label = name or getattr(fn, "__name__", "resolver")

    def resolve(self, path: Path, versions: tuple[Version, ...]) -> Value:
        try:
            value = self.fn(path, versions)
        except StatesyncError:
            raise
        except Exception as exc:
            raise ResolverError(
                f"custom resolver {self.label!r} raised {type(exc).__name__}: {exc} "
                f"(at {'.'.join(path)}); fix the resolver, it must accept every set of versions"
            ) from exc
        try:
            validate_value(value)
        except InvalidValue as exc:
            raise ResolverError(
                f"custom resolver {self.label!r} returned something that cannot be stored: {exc}"
            ) from exc
        return value

    def siblings(self, path: Path, versions: tuple[Version, ...]) -> list[Version]:
        return list(versions)

    def __repr__(self) -> str:
        return f"Custom({self.label!r})"


StrategySpec: TypeAlias = str | Strategy | Resolver
"""A strategy name, a strategy object, or a resolver function."""

_NAMES: dict[str, Callable[[], Strategy]] = {
    "vector-clock": VectorClock,
    "vc": VectorClock,
    "last-write-wins": LastWriteWins,
    "lww": LastWriteWins,
}


def make_strategy(spec: StrategySpec) -> Strategy:
    """Turn a name (``vector-clock``, ``last-write-wins``), strategy or callable into a Strategy."""
    if isinstance(spec, str):
        try:
            return _NAMES[spec]()
        except KeyError as exc:
            raise StatesyncError(
                f"unknown strategy {spec!r}; use 'vector-clock', 'last-write-wins' or a resolver function"
            ) from exc
    if hasattr(spec, "resolve") and hasattr(spec, "siblings"):
        return spec  # type: ignore[return-value]
    if callable(spec):
        return Custom(spec)
    raise StatesyncError(
        f"a strategy is a name, a Strategy or a function of (path, versions), not {type(spec).__name__}"
    )


class Strategies:
    """The strategy for each path: a default plus per-prefix overrides (longest prefix wins)."""

    __slots__ = ("_by_prefix", "_depths", "default")

    def __init__(
        self,
        default: StrategySpec = "vector-clock",
        prefixes: Mapping[PathLike, StrategySpec] | None = None,
    ) -> None:
        self.default: Strategy = make_strategy(default)
        self._by_prefix: dict[Path, Strategy] = {}
        for prefix, spec in (prefixes or {}).items():
            path = as_path(prefix)
            if not path:
                self.default = make_strategy(spec)
            else:
                self._by_prefix[path] = make_strategy(spec)
        self._depths: Sequence[int] = sorted({len(p) for p in self._by_prefix}, reverse=True)

    @classmethod
    def from_spec(cls, spec: StrategySpec | Mapping[str, StrategySpec] | Strategies | None) -> Strategies:
        """Accept a single spec, a ``{prefix: spec}`` mapping (``""`` or ``"*"`` = default) or Strategies."""
        if spec is None:
            return cls()
        if isinstance(spec, Strategies):
            return spec
        if isinstance(spec, Mapping):
            default: StrategySpec = spec.get("", spec.get("*", "vector-clock"))
            rest: dict[PathLike, StrategySpec] = {k: v for k, v in spec.items() if k not in ("", "*")}
            return cls(default, rest)
        return cls(spec)

    def for_path(self, path: Path) -> Strategy:
        by_prefix = self._by_prefix
        if by_prefix:
            for depth in self._depths:
                if depth <= len(path):
                    found = by_prefix.get(path[:depth])
                    if found is not None:
                        return found
        return self.default

    def resolve(self, path: Path, versions: tuple[Version, ...]) -> Value:
        return self.for_path(path).resolve(path, versions)

    def siblings(self, path: Path, versions: tuple[Version, ...]) -> list[Version]:
        return self.for_path(path).siblings(path, versions)

    def describe(self) -> dict[str, str]:
        out = {"": self.default.name}
        out.update({".".join(p): s.name for p, s in self._by_prefix.items()})
        return out
