"""Notify: a ``NotifyEntity`` per recipient subentry, and the legacy ``notify.<name>`` service.

``notify.acs_email`` is a supported interface (automations and the MFA notify module call it), not a
deprecated one. Its ``target`` takes any addresses, and all of them receive ONE mail; ``data`` adds html,
cc/bcc, reply_to, images (inline with html), attachments and priority.
"""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from homeassistant.components.notify import NotifyEntity, NotifyEntityFeature
from homeassistant.components.notify.const import ATTR_DATA, ATTR_TARGET, ATTR_TITLE
from homeassistant.components.notify.legacy import BaseNotificationService
from homeassistant.config_entries import ConfigEntryState, ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import ConfigType, DiscoveryInfoType

from .compose import PRIORITIES, AttachmentSpec, Mail, addresses, async_resolve_attachments, invalid
from .const import CONF_ADDRESSES, SUBENTRY_RECIPIENT
from .entity import recipient_device_info
from .runtime import AcsEmailConfigEntry
from .settings import default_recipients

PARALLEL_UPDATES = 0  # sending only writes to the local outbox; the engine paces ACS
DEFAULT_SUBJECT = "Home Assistant"

ATTACHMENT_SCHEMA = vol.Any(
    cv.string,
    vol.Schema(
        {
            vol.Exclusive("media_source", "source"): cv.string,
            vol.Exclusive("path", "source"): cv.string,
            vol.Optional("filename"): cv.string,
            vol.Optional("content_id"): cv.string,
        }
    ),
)
_ADDRESS_LIST = vol.Any(cv.string, [cv.string])
NOTIFY_DATA_SCHEMA = vol.Schema(
    {
        vol.Optional("html"): cv.string,
        vol.Optional("cc"): _ADDRESS_LIST,
        vol.Optional("bcc"): _ADDRESS_LIST,
        vol.Optional("reply_to"): _ADDRESS_LIST,
        vol.Optional("images"): vol.All(cv.ensure_list, [ATTACHMENT_SCHEMA]),
        vol.Optional("attachments"): vol.All(cv.ensure_list, [ATTACHMENT_SCHEMA]),
        vol.Optional("priority"): vol.In(PRIORITIES),
    }
)


async def async_get_service(
    hass: HomeAssistant, config: ConfigType, discovery_info: DiscoveryInfoType | None = None
) -> AcsEmailNotificationService | None:
    """The legacy service of one entry (loaded by discovery from ``async_setup_entry``; no YAML platform)."""
    if discovery_info is None:
        return None
    entry: AcsEmailConfigEntry | None = hass.config_entries.async_get_entry(discovery_info["entry_id"])
    if entry is None or entry.state not in (ConfigEntryState.LOADED, ConfigEntryState.SETUP_IN_PROGRESS):
        return None  # unloaded before discovery ran
    service = AcsEmailNotificationService(entry)
    entry.async_on_unload(service.async_unregister_services)
    return service


class AcsEmailNotificationService(BaseNotificationService):
    """``notify.<name>``: one mail to every target (or the default recipients)."""

    def __init__(self, entry: AcsEmailConfigEntry) -> None:
        self._entry = entry

    async def async_send_message(self, message: str = "", **kwargs: Any) -> None:
        """Queue the mail; returns once it is on disk."""
        try:
            data = NOTIFY_DATA_SCHEMA(kwargs.get(ATTR_DATA) or {})
        except vol.Invalid as err:
            raise invalid("invalid_notify_data", error=str(err)) from err
        to = addresses(kwargs.get(ATTR_TARGET)) or default_recipients(self._entry)
        if not to:
            raise invalid("no_recipients")
        html = data.get("html")
        images = [AttachmentSpec.parse(item) for item in data.get("images", [])]
        files = [AttachmentSpec.parse(item) for item in data.get("attachments", [])]
        attachments = await async_resolve_attachments(self.hass, images, inline=html is not None)
        attachments += await async_resolve_attachments(self.hass, files)
        mail = Mail(
            to=to,
            subject=kwargs.get(ATTR_TITLE) or DEFAULT_SUBJECT,
            text=message,
            html=html,
            cc=addresses(data.get("cc")),
            bcc=addresses(data.get("bcc")),
            reply_to=addresses(data.get("reply_to")),
            attachments=attachments,
            priority=data.get("priority", "normal"),
        )
        await self._entry.runtime_data.async_send(mail, source="notify")


async def async_setup_entry(
    hass: HomeAssistant, entry: AcsEmailConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """One notify entity per recipient subentry, on its own device."""
    for subentry_id, subentry in entry.subentries.items():
        if subentry.subentry_type != SUBENTRY_RECIPIENT:
            continue
        async_add_entities([AcsEmailRecipient(entry, subentry)], config_subentry_id=subentry_id)


class AcsEmailRecipient(NotifyEntity):
    """``notify.send_message`` to one recipient (a subentry: a name and one or more addresses)."""

    _attr_has_entity_name = True
    _attr_name = None
    _attr_supported_features = NotifyEntityFeature.TITLE
    _attr_translation_key = "recipient"

    def __init__(self, entry: AcsEmailConfigEntry, subentry: ConfigSubentry) -> None:
        self._entry = entry
        self._subentry_id = subentry.subentry_id
        self.addresses: list[str] = list(subentry.data.get(CONF_ADDRESSES) or [])
        self._attr_unique_id = f"{entry.entry_id}_{subentry.subentry_id}"
        self._attr_device_info = recipient_device_info(entry, subentry)

    async def async_added_to_hass(self) -> None:
        """Let ``acs_email.send_message`` find this entity (to record its last notification)."""
        await super().async_added_to_hass()
        self._entry.runtime_data.recipient_entities[self._subentry_id] = self

    async def async_will_remove_from_hass(self) -> None:
        """Forget it again."""
        self._entry.runtime_data.recipient_entities.pop(self._subentry_id, None)

    async def async_send_message(self, message: str, title: str | None = None) -> None:
        """Queue a plain-text mail to this recipient; returns once it is on disk."""
        mail = Mail(to=self.addresses, subject=title or DEFAULT_SUBJECT, text=message)
        await self._entry.runtime_data.async_send(mail, source="notify.send_message")

    def record_notification(self) -> None:
        """After ``acs_email.send_message`` reached this recipient (HA 2026.4+ records only what integrations say)."""
        if (record := getattr(self, "_async_record_notification", None)) is not None:
            record()
