"""Helpers for the runtime tests: entry data for the emulator, recipient subentries, bounded waits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import ConfigSubentryData
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from acs_email_bridge.emulator import Emulator
from custom_components.acs_email.const import (
    AUTH_SERVICE_PRINCIPAL,
    CONF_ADDRESSES,
    CONF_AUTH_METHOD,
    CONF_AUTHORITY,
    CONF_CA_FILE,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_ENDPOINT,
    CONF_SENDER,
    CONF_TENANT_ID,
    DOMAIN,
    SUBENTRY_RECIPIENT,
)
from custom_components.acs_email.core.outbox import State

SENDER = "DoNotReply@ha.example.com"
DELIVERY_TIMEOUT = 60  # generous: the machine is shared
MakeEntry = Callable[..., Awaitable[MockConfigEntry]]


def entry_data(emu: Emulator, **changes: Any) -> dict[str, Any]:
    """Service-principal entry data for the emulator (its own authority and CA)."""
    data = {
        CONF_AUTH_METHOD: AUTH_SERVICE_PRINCIPAL,
        CONF_ENDPOINT: emu.endpoint,
        CONF_TENANT_ID: emu.tenant_id,
        CONF_CLIENT_ID: emu.client_id,
        CONF_CLIENT_SECRET: emu.client_secret,
        CONF_AUTHORITY: emu.authority,
        CONF_CA_FILE: str(emu.ca_file),
        CONF_SENDER: SENDER,
    }
    data.update(changes)
    return data


def recipient(title: str, *addresses: str, subentry_id: str | None = None) -> ConfigSubentryData:
    return ConfigSubentryData(
        data={CONF_ADDRESSES: list(addresses)},
        subentry_id=subentry_id or title.lower(),
        subentry_type=SUBENTRY_RECIPIENT,
        title=title,
        unique_id=addresses[0],
    )


async def wait_state(entry: MockConfigEntry, message_id: str) -> State:
    """Wait until the entry's engine has sent (or given up on) a mail."""
    async with asyncio.timeout(DELIVERY_TIMEOUT):
        return await entry.runtime_data.engine.wait_for(message_id)


async def wait_until(predicate: Callable[[], bool], limit: float = DELIVERY_TIMEOUT) -> None:
    """Poll a condition that no event announces (an emulator count), briefly and with a generous bound."""
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.02)


async def fix_issue(hass: HomeAssistant, issue_id: str) -> FlowResult:
    """Open an issue's fix flow as the Repairs dashboard does, and confirm it."""
    assert await async_setup_component(hass, "repairs", {})
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
    assert result["step_id"] == "confirm"
    return await manager.async_configure(result["flow_id"], {})
