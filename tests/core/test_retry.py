"""Backoff policy: growth, cap, jitter bounds, and refusal of settings that cannot work."""

from __future__ import annotations

import random

import pytest

from acs_email_core.errors import ConfigError
from acs_email_core.retry import RetryPolicy


def test_delay_doubles_from_initial_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_delay=30, multiplier=2, max_delay=300, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]


def test_jitter_stays_within_bounds_and_spreads_retries() -> None:
    policy = RetryPolicy(initial_delay=10, multiplier=2, max_delay=100, jitter=0.2)
    rng = random.Random(42)
    for attempts in range(1, 8):
        base = min(10 * 2 ** (attempts - 1), 100)
        delays = [policy.delay(attempts, rng) for _ in range(200)]
        assert all(base * 0.8 <= d <= min(base * 1.2, 100) for d in delays)
        assert len({round(d, 6) for d in delays}) > 50  # messages failing together come back spread out


def test_seeded_rng_makes_delays_reproducible() -> None:
    policy = RetryPolicy()
    assert [policy.delay(3, random.Random(7)) for _ in range(3)] == [policy.delay(3, random.Random(7))] * 3


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert RetryPolicy(jitter=0).delay(10_000) == 3600


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": -1},
        {"initial_delay": 100, "max_delay": 10},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"max_attempts": 0},
        {"max_age": 0},
    ],
)
def test_unworkable_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
