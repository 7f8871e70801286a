"""``check_resolver``: does a custom resolver make replicas converge?

statesync calls a custom resolver with the concurrent versions of a leaf in
canonical order (ascending hlc, node id, seq), so any resolver that is a pure
function of its arguments converges. What breaks convergence is hidden input:
randomness, the wall clock, ``id()``, mutable global state, or mutating the
versions it was given. The check feeds the resolver random version sets and:

1. calls it twice on the same input and compares (determinism);
2. checks it does not raise and returns a storable value;
3. replays the same concurrent writes into replicas in different orders,
   with duplicates, and compares what they read (convergence);
4. with ``strict=True``, also requires the same answer whatever the order of
   the versions and with duplicated versions: for resolvers you also use
   outside statesync, where nobody sorts the input for you.

It raises ResolverCheckFailed with a counterexample on the first failure.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence

from statesync.core import (
    ABSENT,
    InvalidValue,
    Path,
    Replica,
    ResolverCheckFailed,
    Strategies,
    Value,
    Version,
    validate_value,
    values_equal,
)
from statesync.core._strategy import Resolver

_T = 1_700_000_000_000
_POOL: tuple[Value, ...] = (
    None,
    True,
    False,
    0,
    7,
    -3,
    2.5,
    "",
    "a",
    "zz",
    b"\x00\x01",
    [1, 2],
    ["x"],
    {"k": 1},
    {"k": [1, {"n": None}]},
)


def _versions(rng: random.Random, pool: Sequence[Value]) -> tuple[Version, ...]:
    n = rng.randint(2, 5)
    nodes = rng.sample(["n1", "n2", "n3", "n4", "n5", "n6"], n)
    vs = [
        Version(copy.deepcopy(rng.choice(pool)), (_T + rng.randint(0, 3)) << 16, node, rng.randint(1, 9))
        for node in nodes
    ]
    return tuple(sorted(vs, key=lambda v: (v.hlc, v.origin, v.seq)))


def _call(fn: Resolver, path: Path, versions: tuple[Version, ...]) -> Value:
    given = copy.deepcopy(versions)
    try:
        result = fn(path, given)
    except Exception as exc:
        raise ResolverCheckFailed(
            f"the resolver raised {type(exc).__name__}: {exc} for versions {list(versions)}",
            counterexample={"path": path, "versions": versions, "error": repr(exc)},
        ) from exc
    if given != versions:
        raise ResolverCheckFailed(
            "the resolver mutated the versions it was given; treat them as read-only",
            counterexample={"path": path, "versions": versions},
        )
    try:
        validate_value(result)
    except InvalidValue as exc:
        raise ResolverCheckFailed(
            f"the resolver returned something that cannot be stored: {exc}",
            counterexample={"path": path, "versions": versions, "result": result},
        ) from exc
    return result


def check_resolver(
    fn: Resolver,
    *,
    examples: int = 200,
    seed: int = 0,
    values: Sequence[Value] | None = None,
    strict: bool = False,
) -> None:
    """Test a custom resolver; raise ResolverCheckFailed with a counterexample.

    ``values`` replaces the built-in pool of sample values (use values your
    application stores). The check is deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    pool = tuple(values) if values is not None else _POOL
    if not pool:
        raise ValueError("values must hold at least one sample value")
    path: Path = ("app", "key")
    for _ in range(examples):
        versions = _versions(rng, pool)
        first = _call(fn, path, versions)
        second = _call(fn, path, versions)
        if not values_equal(first, second):
            raise ResolverCheckFailed(
                f"the resolver is not deterministic: it returned {first!r}, then {second!r} "
                f"for the same versions {list(versions)}; remove randomness, clocks and global state",
                counterexample={"path": path, "versions": versions, "results": [first, second]},
            )
        if strict:
            shuffled = list(versions)
            rng.shuffle(shuffled)
            duplicated = tuple([*shuffled, *rng.sample(shuffled, 1)])
            for variant, what in ((tuple(shuffled), "a different order"), (duplicated, "a duplicated version")):
                other = _call(fn, path, variant)
                if not values_equal(first, other):
                    raise ResolverCheckFailed(
                        f"the resolver's answer changed with {what}: {first!r} vs {other!r}",
                        counterexample={"path": path, "versions": versions, "variant": variant},
                    )
    _check_replicas(fn, rng, pool, examples=max(10, examples // 10))


def _check_replicas(fn: Resolver, rng: random.Random, pool: Sequence[Value], *, examples: int) -> None:
    """Concurrent writes applied in different orders, with duplicates, must read the same."""
    for _ in range(examples):
        writers = [Replica(f"w{i}") for i in range(rng.randint(2, 4))]
        ops = [w.put(("app", "key"), copy.deepcopy(rng.choice(pool)), _T + rng.randint(0, 2)) for w in writers]
        readers = []
        for _ in range(3):
            order = ops + rng.sample(ops, rng.randint(0, len(ops)))
            rng.shuffle(order)
            reader = Replica("reader", strategies=Strategies(fn))
            for op in order:
                reader.receive(op)
            readers.append(reader)
        try:
            views = [r.get(("app", "key")) for r in readers]
        except Exception as exc:
            raise ResolverCheckFailed(
                f"reading a conflicted key failed: {exc}",
                counterexample={"ops": ops},
            ) from exc
        if any(v is ABSENT for v in views) or not all(values_equal(views[0], v) for v in views[1:]):  # type: ignore[arg-type]
            raise ResolverCheckFailed(
                f"replicas that applied the same concurrent writes in different orders read {views!r}",
                counterexample={"ops": ops, "views": views},
            )
