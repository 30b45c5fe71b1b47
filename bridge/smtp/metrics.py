"""Per-device counters: Prometheus metrics for ``/metrics`` and a plain snapshot for the HA discovery state."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter

UNKNOWN = "unknown"  # the device label of refusals before a device is known (bad login, foreign network)


@dataclass
class DeviceCounters:
    accepted: int = 0
    refused: int = 0
    bytes: int = 0
    auth_failures: int = 0
    last_seen: float | None = None  # epoch seconds of the last accepted mail or login


class RelayMetrics:
    """One set per relay; pass a private registry in tests (names are unique per registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = REGISTRY if registry is None else registry
        self.accepted = Counter("acs_email_smtp_accepted", "Mails the SMTP relay queued", ["device"], registry=registry)
        self.bytes = Counter(
            "acs_email_smtp_received_bytes", "Size of the mails the SMTP relay queued", ["device"], registry=registry
        )
        self.refused = Counter(
            "acs_email_smtp_refused", "SMTP commands refused, by reason", ["device", "reason"], registry=registry
        )
        self.auth_failures = Counter(
            "acs_email_smtp_auth_failures", "Failed SMTP logins", ["device"], registry=registry
        )
        self.devices: dict[str, DeviceCounters] = {}

    def _device(self, name: str) -> DeviceCounters:
        return self.devices.setdefault(name, DeviceCounters())

    def on_accepted(self, device: str, size: int) -> None:
        self.accepted.labels(device).inc()
        self.bytes.labels(device).inc(size)
        counters = self._device(device)
        counters.accepted += 1
        counters.bytes += size
        counters.last_seen = time.time()

    def on_login(self, device: str) -> None:
        self._device(device).last_seen = time.time()

    def on_refused(self, device: str, reason: str) -> None:
        self.refused.labels(device, reason).inc()
        self._device(device).refused += 1

    def on_auth_failure(self, device: str) -> None:
        self.auth_failures.labels(device).inc()
        self._device(device).auth_failures += 1

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{device: {accepted, refused, bytes, auth_failures, last_seen}}`` for the HA state topic."""
        return {name: asdict(c) for name, c in sorted(self.devices.items())}
