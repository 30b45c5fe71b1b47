"""Quota as ACS enforces it: per subscription, every request counted, refused ones included (reference §4).

Several emulators (ACS resources) may share one :class:`Subscription`, as resources of one Azure
subscription share its limits. Sends and status polls have their own windows.
"""

from __future__ import annotations

import math
import time

from acs_email_core.limiter import SlidingWindowLimiter
from acs_email_core.quota import Quota

from .faults import Route
from .responses import ServiceError

_WHAT = {Route.SEND: "email send", Route.STATUS: "email status"}


class Subscription:
    """The request windows of one subscription; :meth:`admit` counts a request and may refuse it with 429."""

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self._limiters: dict[Route, SlidingWindowLimiter] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every counted request."""
        self._limiters = {
            Route.SEND: SlidingWindowLimiter(self.quota.send, clock=time.monotonic),
            Route.STATUS: SlidingWindowLimiter(self.quota.poll, clock=time.monotonic),
        }

    def remaining(self, route: Route) -> int:
        """Requests of ``route`` that would be admitted now."""
        return self._limiters[route].remaining(time.monotonic())

    def admit(self, route: Route) -> None:
        """Count one request of ``route`` received now; raise the 429 (with Retry-After) when over the limit.

        The refused request counts too ("all requests, including retries"), so a client that ignores
        Retry-After stays throttled; Retry-After is the wait after which the next request fits.
        """
        limiter = self._limiters.get(route)
        if limiter is None:
            return
        now = time.monotonic()
        refused = limiter.delay(now) != 0
        limiter.finish(limiter.start(), now)
        if not refused:
            return
        retry_after = max(1, math.ceil(limiter.delay(now) or 0))
        raise ServiceError(
            429,
            "TooManyRequests",
            f"The {_WHAT[route]} rate limit of this subscription was exceeded. Retry after {retry_after} seconds.",
            retry_after=retry_after,
        )
