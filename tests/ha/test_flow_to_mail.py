"""A new user's path, unpatched: config flow → entry loads → add a recipient → notify → the mail reaches ACS.

Proves that what the flow saves is what the runtime needs (``settings.py``), that adding a recipient and
changing options reload the entry through its update listener, and that the outbox lands in the config dir.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from flow_inputs import OWNER, SENDER, configure, principal_input, start
from homeassistant.components.notify import DOMAIN as NOTIFY_DOMAIN
from homeassistant.components.notify import SERVICE_SEND_MESSAGE
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er

from acs_email_bridge.emulator import Emulator
from custom_components.acs_email.const import AUTH_SERVICE_PRINCIPAL, DOMAIN
from custom_components.acs_email.core.quota import PRESETS

pytestmark = pytest.mark.usefixtures("socket_enabled")  # the emulator listens on 127.0.0.1


async def wait_for_mails(emu: Emulator, count: int) -> None:
    async with asyncio.timeout(60):  # generous: the machine is shared
        while len(emu.mails) < count:
            await asyncio.sleep(0.02)


async def test_flow_then_recipient_then_mail(hass: HomeAssistant, make_emulator: Any) -> None:
    emu: Emulator = await make_emulator(senders=[SENDER], retry_after=0)
    result = await start(hass, AUTH_SERVICE_PRINCIPAL)
    result = await configure(hass, result, principal_input(emu))
    result = await configure(hass, result, {"sender": SENDER})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert Path(hass.config.path(DOMAIN, f"{entry.entry_id}.db")).is_file()

    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "recipient"), context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "Owner", "addresses": [OWNER]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()  # the update listener reloads the entry with its new recipient
    assert entry.state is ConfigEntryState.LOADED
    (subentry_id,) = entry.subentries
    (notify_entity,) = [
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.domain == NOTIFY_DOMAIN and e.config_subentry_id == subentry_id
    ]

    await hass.services.async_call(
        NOTIFY_DOMAIN,
        SERVICE_SEND_MESSAGE,
        {"entity_id": notify_entity, "title": "Front door", "message": "The front door opened."},
        blocking=True,
    )
    await wait_for_mails(emu, 1)
    (mail,) = emu.mails
    assert (mail.sender, mail.subject, mail.recipients()) == (SENDER, "Front door", [OWNER])

    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], {"quota": "azure_managed"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.engine.settings.quota == PRESETS["azure_managed"]
