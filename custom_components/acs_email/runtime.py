"""What a loaded entry keeps at runtime: its engine, a status coordinator and the delivery tracker.

One core :class:`Engine` per config entry. Actions hand mail to :meth:`AcsEmailRuntime.async_submit`,
which returns once the outbox has it on disk; delivery, retries and the quota are the engine's business.
The tracker follows each mail to its end to fire ``acs_email_sent`` / ``acs_email_failed`` and to raise a
repair issue when ACS refuses mail for a reason the user can fix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, TypeAlias

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator

from .compose import Mail, async_build_message, outbox_full
from .const import DOMAIN
from .core.dispatcher import DispatcherStatus
from .core.engine import Engine
from .core.errors import AcsEmailError, OutboxFullError
from .core.message import EmailMessage
from .core.outbox import State
from .issues import async_mail_refused, async_sending_paused

_LOGGER = logging.getLogger(__name__)
EVENT_SENT = "acs_email_sent"
EVENT_FAILED = "acs_email_failed"
STATUS_INTERVAL = 30  # seconds between sensor refreshes (and after every submit or settled mail)
TRACK_LIMIT = 1000  # mails followed for events at once; beyond that they are still delivered, just not reported


class RecipientEntity(Protocol):
    """A recipient's notify entity, as the send action sees it."""

    def record_notification(self) -> None:
        """Stamp the entity's state: a mail to this recipient was queued."""


@dataclass(frozen=True)
class AcsEmailStatus:
    """What the diagnostic sensors show."""

    dispatcher: DispatcherStatus
    last_error: str | None


class StatusCoordinator(DataUpdateCoordinator[AcsEmailStatus]):
    """Reads the engine's counters (one SQLite read off the loop) for the diagnostic sensors."""

    def __init__(self, hass: HomeAssistant, entry: AcsEmailConfigEntry, engine: Engine) -> None:
        super().__init__(
            hass,
            _LOGGER,
            config_entry=entry,
            name=f"acs_email {entry.title}",
            update_interval=timedelta(seconds=STATUS_INTERVAL),
        )
        self._engine = engine
        self.last_dead_reason: str | None = None

    async def _async_update_data(self) -> AcsEmailStatus:
        status = await self._engine.status()
        last_error = status.paused
        if last_error is None and status.queued:
            oldest = await self._engine.outbox.list(State.QUEUED, limit=1)
            last_error = oldest[0].last_error if oldest else None
        if self.config_entry is not None:
            async_sending_paused(self.hass, self.config_entry, status.paused)
        return AcsEmailStatus(status, last_error or self.last_dead_reason)


@dataclass
class AcsEmailRuntime:
    """``entry.runtime_data`` of a loaded ACS Email entry."""

    hass: HomeAssistant
    entry: AcsEmailConfigEntry
    engine: Engine
    coordinator: StatusCoordinator
    notify_service_name: str | None = None
    recipient_entities: dict[str, RecipientEntity] = field(default_factory=dict)  # by subentry id
    _tracked: set[str] = field(default_factory=set)

    @property
    def sender(self) -> str:
        """The MailFrom address every mail of this entry is sent from."""
        return self.engine.settings.sender

    async def async_send(self, mail: Mail, *, source: str) -> str:
        """Validate and queue one mail; returns its id once it is on disk (translated errors, nothing queued)."""
        message = await async_build_message(self.hass, mail, sender=self.sender, limits=self.engine.settings.limits)
        return await self.async_submit(message, source=source)

    async def async_submit(self, message: EmailMessage, *, source: str) -> str:
        """Store a validated mail durably and follow it."""
        try:
            message_id = await self.engine.submit(message, source=source)
        except OutboxFullError as err:
            raise outbox_full(err) from err
        except AcsEmailError as err:  # the entry is being unloaded: its outbox no longer takes mail
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="entry_not_loaded",
                translation_placeholders={"title": self.entry.title},
            ) from err
        self.track([message_id])
        self._refresh_soon()
        return message_id

    @callback
    def _refresh_soon(self) -> None:
        """Update the sensors without making the caller wait for it."""
        self.entry.async_create_background_task(
            self.hass, self.coordinator.async_request_refresh(), "acs_email status refresh"
        )

    @callback
    def track(self, message_ids: Iterable[str]) -> None:
        """Follow mails until they are sent or dead, to fire events and raise repairs.

        Only while this engine delivers: when another process (a bridge sharing the outbox file) does, the
        outcome could only be learnt by polling the file for every mail, so that mail is not reported here.
        """
        if not self.engine.outbox.owner:
            return
        for message_id in message_ids:
            if message_id in self._tracked or len(self._tracked) >= TRACK_LIMIT:
                continue
            self._tracked.add(message_id)
            self.entry.async_create_background_task(
                self.hass, self._follow(message_id), f"acs_email follow {message_id}"
            )

    async def async_track_pending(self) -> None:
        """After a restart: follow what earlier runs left queued (it is delivered by this run)."""
        pending = await self.engine.outbox.list(State.QUEUED, limit=TRACK_LIMIT)
        pending += await self.engine.outbox.list(State.SENDING, limit=TRACK_LIMIT)
        self.track(entry.id for entry in pending)

    async def _follow(self, message_id: str) -> None:
        try:
            state = await self.engine.wait_for(message_id)
            entry = await self.engine.outbox.get(message_id)
        except KeyError:  # deleted meanwhile (by the bridge CLI on the same outbox, say)
            return
        finally:
            self._tracked.discard(message_id)
        if entry is None:  # pragma: no cover - purge between the two reads
            return
        data = {
            "config_entry_id": self.entry.entry_id,
            "message_id": message_id,
            "subject": entry.subject,
            "recipients": entry.recipients,
            "source": entry.source,
        }
        if state is State.SENT:
            self.hass.bus.async_fire(EVENT_SENT, data)
        else:
            reason = entry.last_error or "unknown"
            self.coordinator.last_dead_reason = reason
            self.hass.bus.async_fire(EVENT_FAILED, {**data, "reason": reason})
            async_mail_refused(self.hass, self.entry, reason)
        self._refresh_soon()


AcsEmailConfigEntry: TypeAlias = ConfigEntry[AcsEmailRuntime]
