"""Config-flow input and entry data for the ACS emulator, shared by the flow tests."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.data_entry_flow import _BaseFlowManagerView  # the HTTP API's serializer
from homeassistant.util import dt as dt_util

from acs_email_bridge.emulator import Emulator
from custom_components.acs_email.const import (
    AUTH_CONNECTION_STRING,
    AUTH_SERVICE_PRINCIPAL,
    CONF_AUTH_METHOD,
    CONF_AUTHORITY,
    CONF_CA_FILE,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_CONNECTION_STRING,
    CONF_ENDPOINT,
    CONF_QUOTA,
    CONF_SENDER,
    CONF_TENANT_ID,
    DOMAIN,
)

STRINGS = json.loads(
    (Path(__file__).resolve().parents[2] / "custom_components/acs_email/strings.json").read_text(encoding="utf-8")
)
SENDER = "DoNotReply@ha.example.com"
OTHER_SENDER = "alerts@ha.example.com"
UNLINKED_SENDER = "DoNotReply@elsewhere.example.org"
OWNER = "owner@example.com"


def future_date(days: int = 365) -> str:
    return (dt_util.now().date() + timedelta(days=days)).isoformat()


def principal_input(emu: Emulator, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        CONF_ENDPOINT: emu.endpoint + "/",
        CONF_TENANT_ID: emu.tenant_id,
        CONF_CLIENT_ID: emu.client_id,
        CONF_CLIENT_SECRET: emu.client_secret,
        CONF_SENDER: SENDER,
        CONF_QUOTA: "custom_domain",
        "advanced": {CONF_AUTHORITY: emu.authority, CONF_CA_FILE: str(emu.ca_file)},
    }
    values.update(changes)
    return values


def connection_input(emu: Emulator, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        CONF_CONNECTION_STRING: emu.connection_string,
        CONF_SENDER: SENDER,
        CONF_QUOTA: "custom_domain",
        "advanced": {CONF_CA_FILE: str(emu.ca_file)},
    }
    values.update(changes)
    return values


def principal_data(emu: Emulator, **changes: Any) -> dict[str, Any]:
    """Entry data as the flow saves it for a service principal."""
    data: dict[str, Any] = {
        CONF_AUTH_METHOD: AUTH_SERVICE_PRINCIPAL,
        CONF_ENDPOINT: emu.endpoint,
        CONF_TENANT_ID: emu.tenant_id,
        CONF_CLIENT_ID: emu.client_id,
        CONF_CLIENT_SECRET: emu.client_secret,
        CONF_SENDER: SENDER,
        CONF_AUTHORITY: emu.authority,
        CONF_CA_FILE: str(emu.ca_file),
    }
    data.update(changes)
    return data


def connection_data(emu: Emulator, **changes: Any) -> dict[str, Any]:
    """Entry data as the flow saves it for a connection string."""
    data: dict[str, Any] = {
        CONF_AUTH_METHOD: AUTH_CONNECTION_STRING,
        CONF_CONNECTION_STRING: emu.connection_string,
        CONF_ENDPOINT: emu.endpoint,
        CONF_SENDER: SENDER,
        CONF_CA_FILE: str(emu.ca_file),
    }
    data.update(changes)
    return data


def unique_id(emu: Emulator, sender: str = SENDER) -> str:
    return f"{emu.endpoint.lower()}|{sender.lower()}"


def placeholders_in(texts: Any) -> set[str]:
    """``{names}`` used anywhere in a (nested) translation entry."""
    if isinstance(texts, dict):
        return set().union(*(placeholders_in(value) for value in texts.values()))
    return set(re.findall(r"\{(\w+)\}", texts))


def check_form(hass: HomeAssistant, result: dict[str, Any]) -> None:
    """What the frontend needs of a config-flow form: it serializes, and every placeholder its texts use is given."""
    json.dumps(_BaseFlowManagerView(hass.config_entries.flow)._prepare_result_json(result))
    config = STRINGS["config"]
    used = placeholders_in(config["step"][result["step_id"]])
    used |= placeholders_in({error: config["error"][error] for error in (result["errors"] or {}).values()})
    assert used <= set(result["description_placeholders"] or {}), result["step_id"]


async def start(hass: HomeAssistant, method: str) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == [AUTH_SERVICE_PRINCIPAL, AUTH_CONNECTION_STRING]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": method})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == method
    check_form(hass, result)
    return result


async def configure(hass: HomeAssistant, result: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Submit a step; a form that comes back is checked as the frontend would use it."""
    result = await hass.config_entries.flow.async_configure(result["flow_id"], values)
    if result["type"] is FlowResultType.FORM:
        check_form(hass, result)
    return result
