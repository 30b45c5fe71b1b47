"""Prometheus metrics of the bridge: what became of every event, the broker link, and the outbox.

One registry per service (not prometheus-client's global one), so tests and several services in one process
never share counters. Outbox figures are read from the engine when scraped (``refresh``), so they are never stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from acs_email_core.dispatcher import DispatcherStatus
from acs_email_core.engine import Engine


class _EngineCollector(Collector):
    """Outbox and dispatcher figures from the last ``Metrics.refresh``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        status = self._metrics.status
        if status is None:
            return
        outbox = GaugeMetricFamily("acs_email_outbox_messages", "Mails in the outbox by state", labels=["state"])
        for state, count in (("queued", status.queued), ("sending", status.sending), ("dead", status.dead)):
            outbox.add_metric([state], count)
        yield outbox
        yield CounterMetricFamily("acs_email_sent", "Mails ACS accepted since start", value=status.sent_total)
        yield CounterMetricFamily("acs_email_throttled", "429 answers since start", value=status.throttled_total)
        yield CounterMetricFamily("acs_email_failed_attempts", "Failed send attempts", value=status.failed_total)
        yield CounterMetricFamily("acs_email_dead_letters", "Mails given up since start", value=status.dead_total)
        yield GaugeMetricFamily("acs_email_quota_left", "Sends the quota allows right now", value=status.quota_left)
        yield GaugeMetricFamily(
            "acs_email_oldest_queued_seconds", "Age of the oldest queued mail", value=status.oldest_queued_age or 0.0
        )
        yield GaugeMetricFamily("acs_email_paused", "1 while sending is paused (auth)", value=int(bool(status.paused)))


class Metrics:
    """The bridge's counters; sources call ``event`` once per input, whatever became of it."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.engine = engine
        self.status: DispatcherStatus | None = None
        self.last_error = ""
        self.last_error_at: float | None = None
        self.events = Counter(
            "acs_email_bridge_events",
            "Inputs by source and what became of them (mailed, digested, dropped, ignored, failed)",
            ["source", "disposition", "route", "rule"],
            registry=self.registry,
        )
        self.mails_queued = Counter(
            "acs_email_bridge_mails_queued", "Mails the bridge put in the outbox", ["source"], registry=self.registry
        )
        self.mqtt_connected = Gauge(
            "acs_email_bridge_mqtt_connected", "1 while connected to the MQTT broker", registry=self.registry
        )
        self.mqtt_session_lost = Counter(
            "acs_email_bridge_mqtt_session_lost",
            "Reconnects where the broker had lost the session (messages queued meanwhile are gone)",
            registry=self.registry,
        )
        self.mqtt_qos0 = Counter(
            "acs_email_bridge_mqtt_qos0_events",
            "Events received at QoS 0 (lost while the bridge is down)",
            registry=self.registry,
        )
        self.mqtt_redelivered = Counter(
            "acs_email_bridge_mqtt_redelivered",
            "Messages the broker sent again after a crash or disconnect, recognised as already handled",
            registry=self.registry,
        )
        self.ingest_batches = Counter(
            "acs_email_bridge_ingest_batches", "Outbox commits of MQTT events", registry=self.registry
        )
        self.registry.register(_EngineCollector(self))

    def event(
        self, source: str, disposition: str, route: str | None = None, rule: str | None = None, count: int = 1
    ) -> None:
        """Count inputs (one, or ``count`` with the same outcome)."""
        self.events.labels(source, disposition, route or "", rule or "").inc(count)

    def error(self, message: str) -> None:
        """Remember the latest error for /healthz and the Home Assistant sensor."""
        self.last_error = message
        self.last_error_at = time.time()

    async def refresh(self) -> DispatcherStatus | None:
        """Read the outbox and dispatcher figures now."""
        if self.engine is not None:
            self.status = await self.engine.status()
        return self.status

    def exposition(self) -> bytes:
        """The text format for /metrics."""
        return generate_latest(self.registry)
