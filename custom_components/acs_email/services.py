"""Actions: ``acs_email.send_message`` (recipient entities and/or free addresses, one mail), dead-letter care.

Registered once in ``async_setup`` (quality rule action-setup): they exist while no entry is loaded and say
so with a translated error. Every action returns as soon as the mail is on disk in the entry's outbox.
"""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse, callback
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import entity_registry as er

from .compose import PRIORITIES, AttachmentSpec, Mail, addresses, async_resolve_attachments, invalid
from .const import CONF_ADDRESSES, DOMAIN
from .core.outbox import State
from .issues import async_clear_refused
from .notify import ATTACHMENT_SCHEMA, DEFAULT_SUBJECT
from .runtime import AcsEmailConfigEntry
from .settings import default_recipients

SERVICE_SEND_MESSAGE = "send_message"
SERVICE_RETRY_DEAD_LETTERS = "retry_dead_letters"
SERVICE_PURGE_DEAD_LETTERS = "purge_dead_letters"
ATTR_CONFIG_ENTRY_ID = "config_entry_id"  # homeassistant.const has it only from 2025.x on
DEAD_LETTER_LIMIT = 100_000

_ADDRESSES = vol.Any(cv.string, [cv.string])
SEND_MESSAGE_SCHEMA = vol.Schema(
    {
        vol.Optional("entity_id"): cv.entity_ids,
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Optional("to"): _ADDRESSES,
        vol.Optional("cc"): _ADDRESSES,
        vol.Optional("bcc"): _ADDRESSES,
        vol.Optional("reply_to"): _ADDRESSES,
        vol.Optional("subject", default=DEFAULT_SUBJECT): cv.string,
        vol.Optional("message"): cv.string,
        vol.Optional("html"): cv.string,
        vol.Optional("attachments"): vol.All(cv.ensure_list, [ATTACHMENT_SCHEMA]),
        vol.Optional("priority", default="normal"): vol.In(PRIORITIES),
    }
)
ENTRY_SCHEMA = vol.Schema({vol.Required(ATTR_CONFIG_ENTRY_ID): cv.string})


def loaded_entry(hass: HomeAssistant, entry_id: str) -> AcsEmailConfigEntry:
    """The loaded ACS Email entry ``entry_id``, or a translated error saying why not."""
    entry: AcsEmailConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise invalid("entry_not_found", entry_id=entry_id)
    if entry.state is not ConfigEntryState.LOADED:
        raise invalid("entry_not_loaded", title=entry.title)
    return entry


def _recipients_of(hass: HomeAssistant, entity_ids: list[str]) -> tuple[set[str], list[str], dict[str, str]]:
    """Entry ids, addresses and ``{subentry_id: entity_id}`` of the targeted recipient entities."""
    registry = er.async_get(hass)
    entry_ids: set[str] = set()
    to: list[str] = []
    subentries: dict[str, str] = {}
    for entity_id in entity_ids:
        reg = registry.async_get(entity_id)
        entry = (
            None
            if reg is None or reg.config_entry_id is None
            else hass.config_entries.async_get_entry(reg.config_entry_id)
        )
        subentry = None if entry is None or reg is None else entry.subentries.get(reg.config_subentry_id or "")
        if reg is None or reg.platform != DOMAIN or entry is None or subentry is None:
            raise invalid("not_a_recipient", entity_id=entity_id)
        entry_ids.add(entry.entry_id)
        to += subentry.data.get(CONF_ADDRESSES) or []
        subentries[subentry.subentry_id] = entity_id
    return entry_ids, to, subentries


async def _async_send_message(call: ServiceCall) -> ServiceResponse:
    hass = call.hass
    data = call.data
    entry_ids, to, subentries = _recipients_of(hass, data.get("entity_id", []))
    if ATTR_CONFIG_ENTRY_ID in data:
        entry_ids.add(data[ATTR_CONFIG_ENTRY_ID])
    if not entry_ids:
        raise invalid("no_target")
    if len(entry_ids) > 1:
        raise invalid("several_accounts")
    entry = loaded_entry(hass, entry_ids.pop())
    if "message" not in data and "html" not in data:
        raise invalid("no_body")
    to = list(dict.fromkeys([*to, *addresses(data.get("to"))]))
    cc, bcc = addresses(data.get("cc")), addresses(data.get("bcc"))
    if not to and not subentries and not cc and not bcc:
        to = default_recipients(entry)
    specs = [AttachmentSpec.parse(item) for item in data.get("attachments", [])]
    runtime = entry.runtime_data
    mail = Mail(
        to=to,
        subject=data["subject"],
        text=data.get("message"),
        html=data.get("html"),
        cc=cc,
        bcc=bcc,
        reply_to=addresses(data.get("reply_to")),
        attachments=await async_resolve_attachments(hass, specs),
        priority=data["priority"],
    )
    message_id = await runtime.async_send(mail, source="action")
    for subentry_id in subentries:
        if (entity := runtime.recipient_entities.get(subentry_id)) is not None:
            entity.record_notification()
    if not call.return_response:
        return None
    return {"message_id": message_id, "state": str(State.QUEUED)}


async def _async_retry_dead_letters(call: ServiceCall) -> ServiceResponse:
    entry = loaded_entry(call.hass, call.data[ATTR_CONFIG_ENTRY_ID])
    count = await async_retry_dead_letters(call.hass, entry)
    return {"requeued": count} if call.return_response else None


async def async_retry_dead_letters(hass: HomeAssistant, entry: AcsEmailConfigEntry) -> int:
    """Dead letters back to the queue (after the user fixed their cause); also used by the repair flow."""
    runtime = entry.runtime_data
    dead = await runtime.engine.outbox.list(State.DEAD, limit=DEAD_LETTER_LIMIT)
    count = await runtime.engine.outbox.requeue([item.id for item in dead])
    runtime.track(item.id for item in dead)
    runtime.coordinator.last_dead_reason = None
    async_clear_refused(hass, entry)
    await runtime.coordinator.async_request_refresh()
    return count


async def _async_purge_dead_letters(call: ServiceCall) -> ServiceResponse:
    entry = loaded_entry(call.hass, call.data[ATTR_CONFIG_ENTRY_ID])
    runtime = entry.runtime_data
    count = await runtime.engine.outbox.purge()
    runtime.coordinator.last_dead_reason = None
    async_clear_refused(call.hass, entry)
    await runtime.coordinator.async_request_refresh()
    return {"purged": count} if call.return_response else None


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions."""
    handlers: dict[str, tuple[Any, vol.Schema]] = {
        SERVICE_SEND_MESSAGE: (_async_send_message, SEND_MESSAGE_SCHEMA),
        SERVICE_RETRY_DEAD_LETTERS: (_async_retry_dead_letters, ENTRY_SCHEMA),
        SERVICE_PURGE_DEAD_LETTERS: (_async_purge_dead_letters, ENTRY_SCHEMA),
    }
    for name, (handler, schema) in handlers.items():
        hass.services.async_register(DOMAIN, name, handler, schema=schema, supports_response=SupportsResponse.OPTIONAL)
