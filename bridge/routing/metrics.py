"""Per-route figures for ``/metrics``: every event each route saw and what it did with it, and what is held."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .router import Router


class RouteCollector(Collector):
    """Reads the router's counters when scraped; a route's dropped events carry the rule that dropped them."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        events = CounterMetricFamily(
            "acs_email_route_events",
            "Events per route: mailed, digested, stored (companion), dropped (by rule) or failed",
            labels=["route", "outcome", "rule"],
        )
        for (route, outcome, rule), count in sorted(self._router.counters().items()):
            events.add_metric([route, outcome, rule], count)
        yield events
        yield GaugeMetricFamily(
            "acs_email_route_held_events", "Events waiting for a digest or a collapsed mail", value=self._router.held()
        )
        yield GaugeMetricFamily(
            "acs_email_route_quota_short",
            "1 while routes collect digests because the ACS quota is short",
            value=int(self._router.quota_short),
        )
