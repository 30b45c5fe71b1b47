"""The relay as a source of ``acs-email-bridge run``: built from the ``smtp:`` section, with or without MQTT."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from ..config import BridgeConfig
from ..sources import BridgeContext
from .config import SmtpSettings, smtp_settings

if TYPE_CHECKING:
    from .relay import SmtpRelay

_LOGGER = logging.getLogger(__name__)
SOURCE = "smtp"


def settings_of(config: BridgeConfig) -> SmtpSettings | None:
    section = config.sections.get(SOURCE)
    return None if section is None else smtp_settings(section, config.engine, config.base_dir)


def _key(device: str, figure: str) -> str:
    return f"smtp_{re.sub(r'[^a-z0-9]+', '_', device.lower()).strip('_')}_{figure}"


class SmtpSource:
    """Starts and stops the relay with the service; a reload applies devices and policies at once."""

    name = SOURCE

    def __init__(self, settings: SmtpSettings, context: BridgeContext) -> None:
        from .relay import SmtpRelay  # noqa: PLC0415 - aiosmtpd and cryptography only for a bridge that relays

        queued = context.metrics.mails_queued.labels(SOURCE)
        self.relay: SmtpRelay = SmtpRelay(
            settings, context.engine, registry=context.metrics.registry, on_accepted=lambda _device: queued.inc()
        )
        context.state[SOURCE] = self.state
        context.health[SOURCE] = self._health
        context.entities.extend(self._entities(settings))

    @staticmethod
    def _entities(settings: SmtpSettings) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Two Home Assistant sensors per configured device: mails queued and commands refused."""
        entities = []
        for device in settings.devices:
            for figure, label, icon in (("accepted", "mails", "mdi:printer"), ("refused", "refusals", "mdi:cancel")):
                extra = {"state_class": "total_increasing", "icon": icon}
                entities.append(("sensor", _key(device, figure), f"SMTP {device} {label}", extra))
        return entities

    def state(self) -> dict[str, Any]:
        """Flat per-device figures for the bridge's HA state message (keys match ``_entities``)."""
        result: dict[str, Any] = {}
        for device, figures in self.relay.device_stats().items():
            result[_key(device, "accepted")] = figures["accepted"]
            result[_key(device, "refused")] = figures["refused"]
        return result

    def _health(self) -> str | None:
        return None if self.relay.ports else "the SMTP relay is not listening"

    async def start(self) -> None:
        await self.relay.start()

    async def stop(self) -> None:
        await self.relay.stop()

    async def reload(self, config: BridgeConfig) -> None:
        settings = settings_of(config)
        if settings is None:
            _LOGGER.warning("the smtp section was removed; the relay stops at the next restart")
            return
        await self.relay.reload(settings)


def create_smtp_source(config: BridgeConfig, context: BridgeContext) -> SmtpSource | None:
    """The relay, when the config has an ``smtp`` section."""
    settings = settings_of(config)
    return None if settings is None else SmtpSource(settings, context)
