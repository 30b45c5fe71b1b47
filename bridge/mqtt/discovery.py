"""The bridge as a Home Assistant device, through MQTT discovery.

On every connect the bridge publishes retained discovery configs under ``<discovery_prefix>/…/config`` and,
every ``state_interval`` (and at once after a connect), a retained JSON state on ``<base_topic>/state``:
connected (ACS reachable: sending is not paused), queued, sent since start, dead letters, quota left, last error. The
status topic (``online``, or ``offline`` by clean stop or last will) is the availability of every entity.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from acs_email_core.waits import wait_set

from ..sources import BridgeContext
from .config import MqttSettings
from .link import MqttLink

_LOGGER = logging.getLogger(__name__)

# (component, key, name, extra config)
_ENTITIES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("binary_sensor", "connected", "ACS connected", {"device_class": "connectivity", "payload_on": True,
                                                  "payload_off": False, "entity_category": "diagnostic"}),
    ("sensor", "queued", "Queued mails", {"state_class": "measurement", "icon": "mdi:email-fast-outline"}),
    ("sensor", "sent", "Sent mails", {"state_class": "total_increasing", "icon": "mdi:email-check-outline"}),
    ("sensor", "dead", "Dead letters", {"state_class": "measurement", "icon": "mdi:email-alert-outline"}),
    ("sensor", "quota_left", "Quota left", {"state_class": "measurement", "icon": "mdi:speedometer"}),
    ("sensor", "last_error", "Last error", {"entity_category": "diagnostic", "icon": "mdi:alert-circle-outline"}),
)  # fmt: skip


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "acs_email_bridge"


class StatePublisher:
    """Discovery configs and the periodic state message (see the module docstring)."""

    def __init__(self, settings: MqttSettings, link: MqttLink, context: BridgeContext) -> None:
        self.settings = settings
        self._link = link
        self._context = context
        self._node = _slug(settings.client_id)
        self._task: asyncio.Task[None] | None = None
        self._now = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="acs-email-mqtt state")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def connected(self) -> None:
        """Publish the discovery configs (retained) and the state right away."""
        if self.settings.discovery:
            for topic, config in self.discovery_configs():
                self._link.publish(topic, json.dumps(config), qos=1, retain=True)
        self._now.set()

    def discovery_configs(self) -> list[tuple[str, dict[str, Any]]]:
        s = self.settings
        device = {
            "identifiers": [self._node],
            "name": "ACS Email bridge",
            "manufacturer": "acs_email",
            "model": "acs-email-bridge",
            "sw_version": _version(),
        }
        configs = []
        for component, key, name, extra in (*_ENTITIES, *self._context.entities):
            # No object_id: HA 2025.10+ warns about it (and 2026.4 dropped it); the entity id follows the names.
            config: dict[str, Any] = {
                "name": name,
                "unique_id": f"{self._node}_{key}",
                "state_topic": s.state_topic,
                "value_template": f"{{{{ value_json.{key} }}}}",
                "availability_topic": s.status_topic,
                "device": device,
                **extra,
            }
            configs.append((f"{s.discovery_prefix}/{component}/{self._node}/{key}/config", config))
        return configs

    async def state(self) -> dict[str, Any]:
        """The figures Home Assistant shows."""
        metrics = self._context.metrics
        status = await metrics.refresh()
        extra = {key: value for provider in self._context.state.values() for key, value in provider().items()}
        return (
            extra
            | {
                "connected": bool(status is not None and not status.paused),  # sending, not paused by an auth failure
                "queued": status.queued if status else 0,
                "sent": status.sent_total if status else 0,
                "dead": status.dead if status else 0,
                "quota_left": status.quota_left if status else 0,
                "last_error": (metrics.last_error or "none")[:250],
            }
        )

    async def _run(self) -> None:
        while True:
            await wait_set(self._now, self.settings.state_interval)
            self._now.clear()
            if not self._link.connected:
                continue
            try:
                payload = json.dumps(await self.state())
            except Exception:  # the outbox closed under us during a stop, say
                _LOGGER.debug("state not published", exc_info=True)
                continue
            self._link.publish(self.settings.state_topic, payload, qos=0, retain=True)


def _version() -> str:
    try:
        return version("acs-email-bridge")
    except PackageNotFoundError:  # running from a source tree
        return "dev"
