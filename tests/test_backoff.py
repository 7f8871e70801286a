import random

import pytest

from statesync._backoff import Backoff


def test_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.1, 0.5)
    assert [b.next_s() for _ in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    b.reset()
    assert b.next_s() == pytest.approx(0.1)


def test_jitter_stays_within_half_to_one_and_a_half_and_replays_by_seed() -> None:
    seed = 1234
    first = Backoff(1.0, 1.0, rng=random.Random(seed))
    again = Backoff(1.0, 1.0, rng=random.Random(seed))
    delays = [first.next_s() for _ in range(200)]
    assert delays == [again.next_s() for _ in range(200)], f"seed {seed}"
    assert all(0.5 <= d < 1.5 for d in delays), f"seed {seed}"
    assert len(set(delays)) > 100


def test_refuses_a_nonsense_range() -> None:
    with pytest.raises(ValueError, match="min_s <= max_s"):
        Backoff(2.0, 1.0)
