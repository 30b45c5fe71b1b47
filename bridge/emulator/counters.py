"""Per-route, per-status request counts, so tests can assert e.g. "never answered a 429"."""

from __future__ import annotations

from collections import Counter

DROPPED = 0  # the status recorded when the connection was closed without an answer


class RequestCounters:
    """Counts of (route, status); routes are ``send``, ``status``, ``openid``, ``token``, ``other``."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, int]] = Counter()

    def add(self, route: str, status: int) -> None:
        self._counts[route, status] += 1

    def count(self, route: str | None = None, status: int | None = None) -> int:
        """Requests matching ``route`` and/or ``status`` (None matches any); ``status=0`` = dropped."""
        return sum(
            n for (r, s), n in self._counts.items() if (route is None or r == route) and (status is None or s == status)
        )

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{"send": {"202": 3, "429": 1}, ...}`` (JSON-friendly)."""
        result: dict[str, dict[str, int]] = {}
        for (route, status), n in sorted(self._counts.items()):
            result.setdefault(route, {})[str(status)] = n
        return result

    def clear(self) -> None:
        self._counts.clear()
