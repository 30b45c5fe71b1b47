"""Request counts by route and by answer, so tests can assert e.g. "never answered a 429"."""

from __future__ import annotations

from collections import Counter

DROPPED = "dropped"  # the answer recorded when the connection was closed without one


class RequestCounters(Counter[str]):
    """A ``Counter`` with three keys per request: the route, the status, and both.

    Routes are ``send``, ``status``, ``openid``, ``token`` and ``other``; statuses are strings
    (``"202"``, ``"429"``) or ``"dropped"``. So ``requests["429"]`` is every 429 answered,
    ``requests["send"]`` every send received and ``requests["status 200"]`` every successful poll.
    """

    def record(self, route: str, status: int | None) -> None:
        answer = DROPPED if status is None else str(status)
        self.update((route, answer, f"{route} {answer}"))
