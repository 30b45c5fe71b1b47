"""Retry policy of the outbox: exponential backoff with jitter, bounded by attempts and by age."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed message again, and when to give up on it.

    Jitter spreads retries of messages that failed together (one outage) so they do not all come back at
    once and trip the quota again.
    """

    initial_delay: float = 30.0
    multiplier: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.2  # fraction of the delay, applied as ±
    max_attempts: int = 10
    max_age: float = 3 * 86400

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ConfigError("retry delays need 0 <= initial_delay <= max_delay")
        if self.multiplier < 1:
            raise ConfigError("retry multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigError("retry jitter is a fraction between 0 and 1")
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if self.max_age <= 0:
            raise ConfigError("max_age must be positive")

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 = first failure).

        The base delay grows geometrically up to ``max_delay``; jitter then moves it by up to ±``jitter``
        of itself, and the result never exceeds ``max_delay``.
        """
        try:
            base = self.initial_delay * self.multiplier ** max(attempts - 1, 0)
        except OverflowError:
            base = self.max_delay
        base = min(base, self.max_delay)
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return min(base * (1 + spread), self.max_delay)
