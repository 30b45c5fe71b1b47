"""What the user sees: diagnostic sensors, secret-expiry repairs, and diagnostics without any secret."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

import pytest
from emulated import DELIVERY_TIMEOUT, SENDER, MakeEntry, fix_issue, recipient, wait_until
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_capture_events, async_fire_time_changed
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from acs_email_bridge.emulator import Emulator, Fault
from custom_components.acs_email.const import (
    AUTH_CONNECTION_STRING,
    CONF_AUTH_METHOD,
    CONF_CLIENT_SECRET,
    CONF_CONNECTION_STRING,
    CONF_DEFAULT_RECIPIENTS,
    CONF_SECRET_EXPIRY,
    DOMAIN,
)
from custom_components.acs_email.issues import expiry_stage


def _state(hass: HomeAssistant, key: str) -> str:
    state = hass.states.get(f"sensor.acs_email_{key}")
    assert state is not None, key
    return state.state


async def test_secondary_sensors_are_disabled_by_default(hass: HomeAssistant, make_entry: MakeEntry) -> None:
    """Sent mail and the oldest mail's age are in the registry, off until the user turns them on."""
    await make_entry()
    registry = er.async_get(hass)
    for key in ("sent_mail", "oldest_queued_mail_age"):
        entry = registry.async_get(f"sensor.acs_email_{key}")
        assert entry is not None and entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION, key
        assert hass.states.get(f"sensor.acs_email_{key}") is None
    for key in ("queued_mail", "dead_letters", "send_quota_left", "last_error"):
        assert hass.states.get(f"sensor.acs_email_{key}") is not None, key


@pytest.mark.usefixtures("all_sensors_enabled")
async def test_sensors_follow_the_outbox(hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator) -> None:
    port = int(emu.endpoint.rsplit(":", 1)[1])
    entry = await make_entry()
    coordinator = entry.runtime_data.coordinator
    assert _state(hass, "queued_mail") == "0"
    assert _state(hass, "sent_mail") == "0"
    assert _state(hass, "dead_letters") == "0"
    assert _state(hass, "send_quota_left") == "30"
    assert _state(hass, "last_error") == "unknown"

    await emu.stop()
    await hass.services.async_call(
        DOMAIN,
        "send_message",
        {"config_entry_id": entry.entry_id, "to": "a@example.com", "message": "x"},
        blocking=True,
    )
    async with asyncio.timeout(DELIVERY_TIMEOUT):
        while coordinator.data.last_error is None:
            await asyncio.sleep(0.05)
            await coordinator.async_refresh()
    assert _state(hass, "queued_mail") == "1"
    assert float(_state(hass, "oldest_queued_mail_age")) >= 0
    assert "Cannot connect" in _state(hass, "last_error")

    sent = async_capture_events(hass, "acs_email_sent")
    await emu.start(port=port)
    await wait_until(lambda: len(sent) == 1)
    await coordinator.async_refresh()
    assert _state(hass, "queued_mail") == "0"
    assert _state(hass, "sent_mail") == "1"
    assert int(_state(hass, "send_quota_left")) < 30  # every request counts, the attempts during the outage too
    assert _state(hass, "last_error") == "unknown"


async def test_secret_expiry_issues_at_30_and_7_days_then_reauth_clears_them(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator, freezer: FrozenDateTimeFactory
) -> None:
    today = dt_util.now().date()
    expiry = today + timedelta(days=40)
    entry = await make_entry(**{CONF_SECRET_EXPIRY: expiry.isoformat()})
    issues = ir.async_get(hass)

    def current() -> set[str]:
        return {
            i.translation_key for i in issues.issues.values() if i.domain == DOMAIN and entry.entry_id in i.issue_id
        }

    assert current() == set()

    freezer.tick(timedelta(days=10, hours=1))  # 29 or 30 days left
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert current() == {"secret_expiring"}
    issue = issues.async_get_issue(DOMAIN, f"secret_expiring_{entry.entry_id}")
    assert issue.severity is ir.IssueSeverity.WARNING
    assert issue.translation_placeholders["date"] == expiry.isoformat()
    issues.async_ignore(DOMAIN, issue.issue_id, True)  # the user dismisses the 30-day warning...

    freezer.tick(timedelta(days=23))  # 6 or 7 days left: ...the 7-day one shows anyway
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert current() == {"secret_expiring_soon"}
    soon = issues.async_get_issue(DOMAIN, f"secret_expiring_soon_{entry.entry_id}")
    assert soon.severity is ir.IssueSeverity.ERROR
    assert soon.dismissed_version is None

    freezer.tick(timedelta(days=8))  # a day or two past the date, whatever the hour the test starts at
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert current() == {"secret_expired"}

    # Fixing the issue starts re-authentication; the new secret's date clears it.
    result = await fix_issue(hass, f"secret_expired_{entry.entry_id}")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == SOURCE_REAUTH
    new_expiry = (dt_util.now().date() + timedelta(days=700)).isoformat()
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_CLIENT_SECRET: emu.client_secret, CONF_SECRET_EXPIRY: new_expiry}
    )
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_SECRET_EXPIRY] == new_expiry
    assert current() == set()


async def test_diagnostics_redact_every_secret(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, make_entry: MakeEntry, emu: Emulator
) -> None:
    assert await async_setup_component(hass, "diagnostics", {})
    entry = await make_entry(
        subentries=[recipient("Alice", "alice@example.com")],
        options={CONF_DEFAULT_RECIPIENTS: ["owner@example.com"]},
    )
    failed = async_capture_events(hass, "acs_email_failed")
    # ACS quotes the sender and the client id back in its error: the stored reason must not leak them either.
    emu.add_fault(Fault.error(400, code="DomainNotLinked", message=f"{SENDER} not linked for app {emu.client_id}"))
    await hass.services.async_call(DOMAIN, "send_message", {"entity_id": "notify.alice", "message": "x"}, blocking=True)
    await wait_until(lambda: len(failed) == 1)

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    text = json.dumps(diagnostics)
    for secret in (
        emu.client_secret,
        emu.client_id,
        emu.tenant_id,
        SENDER,
        "alice@example.com",
        "owner@example.com",
        str(emu.ca_file),
        "127.0.0.1",
    ):
        assert secret not in text, secret
    assert diagnostics["engine"]["status"]["dead"] == 1
    assert "DomainNotLinked" in diagnostics["outbox"]["dead"][0]["last_error"]
    assert diagnostics["engine"]["auth_method"] == "service_principal"


async def test_diagnostics_redact_connection_string(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, make_entry: MakeEntry, emu: Emulator
) -> None:
    assert await async_setup_component(hass, "diagnostics", {})
    entry = await make_entry(
        **{CONF_AUTH_METHOD: AUTH_CONNECTION_STRING, CONF_CONNECTION_STRING: emu.connection_string}
    )
    text = json.dumps(await get_diagnostics_for_config_entry(hass, hass_client, entry))
    assert emu.access_key not in text
    assert emu.connection_string not in text
    assert '"auth_method": "connection_string"' in text


@pytest.mark.parametrize(
    ("days_left", "stage"),
    [
        (31, None),
        (30, "secret_expiring"),
        (8, "secret_expiring"),
        (7, "secret_expiring_soon"),
        (0, "secret_expiring_soon"),
        (-1, "secret_expired"),
    ],
)
def test_secret_expiry_stage_on_the_exact_day_boundaries(days_left: int, stage: str | None) -> None:
    today = date(2026, 12, 2)
    assert expiry_stage(today + timedelta(days=days_left), today) == stage
