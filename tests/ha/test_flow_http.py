"""The flows as the frontend drives them, over HA's HTTP API: every form must serialize (sections, selectors).

The schema-to-JSON conversion differs between HA 2025.4 (voluptuous_serialize) and 2026.9+ (probatio), and
the in-process flow tests never run it.
"""

from __future__ import annotations

from typing import Any

import pytest
from flow_inputs import OWNER, SENDER, principal_input
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

from acs_email_bridge.emulator import Emulator
from custom_components.acs_email.const import DOMAIN

pytestmark = pytest.mark.usefixtures("socket_enabled")  # the emulator and the test HTTP server use 127.0.0.1
FLOWS = "/api/config/config_entries"


def field_names(result: dict[str, Any]) -> list[str]:
    return [field["name"] for field in result["data_schema"]]


async def test_flows_over_http(hass: HomeAssistant, hass_client: Any, make_emulator: Any) -> None:
    emu: Emulator = await make_emulator(senders=[SENDER], retry_after=0)
    assert await async_setup_component(hass, "config", {})
    client = await hass_client()

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(f"{FLOWS}/{path}", json=body)
        assert response.status == 200, await response.text()
        return dict(await response.json())

    result = await post("flow", {"handler": DOMAIN})
    assert result["type"] == "menu"
    result = await post(f"flow/{result['flow_id']}", {"next_step_id": "service_principal"})
    assert field_names(result) == [
        "endpoint",
        "tenant_id",
        "client_id",
        "client_secret",
        "secret_expiry",
        "sender",
        "quota",
        "advanced",
    ]
    advanced = result["data_schema"][-1]
    assert advanced["type"] == "expandable"
    assert [field["name"] for field in advanced["schema"]] == ["authority", "ca_file"]

    result = await post(f"flow/{result['flow_id']}", principal_input(emu))
    assert (result["step_id"], field_names(result)) == ("test_mail", ["sender", "recipient"])
    result = await post(f"flow/{result['flow_id']}", {"sender": SENDER, "recipient": OWNER})
    assert (result["step_id"], result["data_schema"]) == ("test_result", [])
    result = await post(f"flow/{result['flow_id']}", {})
    assert result["type"] == "create_entry"
    entry_id = result["result"]["entry_id"]
    await hass.async_block_till_done()

    result = await post("options/flow", {"handler": entry_id})
    assert "default_recipients" in field_names(result)
    result = await post(f"options/flow/{result['flow_id']}", {"quota": "custom", "per_minute": 10, "per_hour": 50})
    assert result["type"] == "create_entry"

    result = await post("subentries/flow", {"handler": [entry_id, "recipient"]})
    assert field_names(result) == ["name", "addresses"]
    result = await post(f"subentries/flow/{result['flow_id']}", {"name": "Owner", "addresses": [OWNER]})
    assert result["type"] == "create_entry"
    await hass.async_block_till_done()
    assert [mail.recipients() for mail in emu.mails] == [[OWNER]]  # the test mail only
