"""Setup, outages, shutdown, reload and re-authentication: mail waits on disk and goes out exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from unittest.mock import patch

import pytest
from emulated import DELIVERY_TIMEOUT, SENDER, MakeEntry, fix_issue, wait_state, wait_until
from homeassistant import loader
from homeassistant.components.notify import DOMAIN as NOTIFY_DOMAIN
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_test_home_assistant,
)

from acs_email_bridge.emulator import Emulator, Fault
from custom_components.acs_email.const import CONF_CLIENT_SECRET, DOMAIN
from custom_components.acs_email.core.outbox import Outbox, State
from custom_components.acs_email.issues import fixable_kind


async def _notify(hass: HomeAssistant, subject: str = "UPS on battery") -> None:
    await hass.services.async_call(
        NOTIFY_DOMAIN,
        DOMAIN,
        {"title": subject, "message": "Mains lost.", "target": "owner@example.com"},
        blocking=True,
    )


async def _only_id(entry: object) -> str:
    (item,) = await entry.runtime_data.engine.outbox.list()  # type: ignore[attr-defined]
    return item.id


async def test_setup_with_acs_down_queues_and_delivers_once_when_back(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    port = int(emu.endpoint.rsplit(":", 1)[1])
    entry = await make_entry(setup=False)
    await emu.stop()  # Azure (or the network) is away while HA starts

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    await _notify(hass)  # accepted while ACS is down
    message_id = await _only_id(entry)
    coordinator = entry.runtime_data.coordinator
    async with asyncio.timeout(DELIVERY_TIMEOUT):
        while coordinator.data.last_error is None:  # the outage shows on the "last error" sensor
            await asyncio.sleep(0.05)
            await coordinator.async_refresh()
    assert "Cannot connect" in coordinator.data.last_error
    assert coordinator.data.dispatcher.queued + coordinator.data.dispatcher.sending == 1
    assert (await entry.runtime_data.engine.outbox.get(message_id)).state in (State.QUEUED, State.SENDING)

    await emu.start(port=port)
    assert await wait_state(entry, message_id) is State.SENT
    (mail,) = emu.mails
    assert mail.operation_id == message_id
    assert emu.duplicates == 0


async def test_shutdown_mid_send_then_restart_delivers_exactly_once(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    entry = await make_entry()
    engine = entry.runtime_data.engine
    emu.add_fault(Fault.delay(30, after=True))  # ACS accepts the mail, then HA stops before the answer
    with patch("custom_components.acs_email.STOP_GRACE", 0.1):
        await _notify(hass)
        await wait_until(lambda: len(emu.mails) == 1)
        hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
        await hass.async_block_till_done()
    # The engine is stopped and the mail is still on disk, marked for a status check before any resend.
    async with Outbox(engine.settings.outbox_path) as outbox:
        (item,) = await outbox.list()
    assert item.state is State.QUEUED
    assert item.verify

    # "Restart": a new engine on the same outbox (the entry is loaded again).
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.engine is not engine
    assert await wait_state(entry, item.id) is State.SENT
    assert len(emu.mails) == 1
    assert emu.duplicates == 0


async def test_unload_and_reload_keep_queued_mail(hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator) -> None:
    port = int(emu.endpoint.rsplit(":", 1)[1])
    entry = await make_entry()
    await emu.stop()
    await _notify(hass, "first")
    await _notify(hass, "second")

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert not hass.services.has_service(NOTIFY_DOMAIN, DOMAIN)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    sent = async_capture_events(hass, "acs_email_sent")

    await emu.start(port=port)
    await wait_until(lambda: len(sent) == 2)  # mail from before the reload is still followed and reported
    assert sorted(mail.subject for mail in emu.mails) == ["first", "second"]
    assert emu.duplicates == 0


async def test_auth_failure_pauses_sending_and_reauth_resumes_without_losing_mail(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    entry = await make_entry(**{CONF_CLIENT_SECRET: "expired-client-secret"})  # Entra refuses it (invalid_client)
    await _notify(hass)
    message_id = await _only_id(entry)

    issue_id = f"sending_paused_{entry.entry_id}"
    await wait_until(lambda: ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None)
    await hass.async_block_till_done()
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == SOURCE_REAUTH
    assert entry.runtime_data.engine.dispatcher.paused
    assert (await entry.runtime_data.engine.outbox.get(message_id)).state is State.QUEUED
    assert not emu.mails

    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {CONF_CLIENT_SECRET: emu.client_secret})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await wait_state(entry, message_id) is State.SENT
    assert [mail.operation_id for mail in emu.mails] == [message_id]
    await entry.runtime_data.coordinator.async_refresh()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_refused_mail_fires_failed_event_raises_repair_and_retry_sends_it(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    entry = await make_entry()
    failed = async_capture_events(hass, "acs_email_failed")
    emu.add_fault(Fault.error(400, code="DomainNotLinked", message="The specified sender domain has not been linked."))
    await _notify(hass)
    await wait_until(lambda: len(failed) == 1)
    assert "DomainNotLinked" in failed[0].data["reason"]
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"sender_not_linked_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_placeholders["sender"] == SENDER

    # The user links the domain in Azure, then confirms the repair: the dead letter goes out.
    sent = async_capture_events(hass, "acs_email_sent")
    result = await fix_issue(hass, issue.issue_id)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await wait_until(lambda: len(sent) == 1)
    assert len(emu.mails) == 1
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue.issue_id) is None


async def test_missing_role_pauses_with_its_own_repair_and_the_fix_resumes(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    """A 403 (no role on the resource) pauses sending: the mail waits, no reauth is asked, the repair says why."""
    entry = await make_entry()
    failed = async_capture_events(hass, "acs_email_failed")
    sent = async_capture_events(hass, "acs_email_sent")
    emu.add_fault(Fault.error(403, code="AuthorizationFailed", message="The client does not have authorization."))
    await _notify(hass)
    registry = ir.async_get(hass)
    issue_key = f"permission_denied_{entry.entry_id}"
    await wait_until(lambda: registry.async_get_issue(DOMAIN, issue_key) is not None)
    issue = registry.async_get_issue(DOMAIN, issue_key)
    assert issue is not None
    assert "AuthorizationFailed" in issue.translation_placeholders["reason"]
    assert registry.async_get_issue(DOMAIN, f"sender_not_linked_{entry.entry_id}") is None
    assert registry.async_get_issue(DOMAIN, f"sending_paused_{entry.entry_id}") is None
    assert not [
        flow for flow in hass.config_entries.flow.async_progress() if flow["context"]["source"] == SOURCE_REAUTH
    ]
    assert failed == [] and emu.mails == []

    # The role is granted in Azure (the fault was used up); confirming the repair sends the waiting mail now.
    result = await fix_issue(hass, issue.issue_id)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await wait_until(lambda: len(sent) == 1)
    assert len(emu.mails) == 1 and failed == []


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("HTTP 400 DomainNotLinked: The specified sender domain has not been linked.", "sender_not_linked"),
        ("HTTP 400 InvalidSenderUserName: The specified sender username is not configured.", "sender_not_linked"),
        ("gave up after 10 attempts: HTTP 403 SubscriptionBlocked: All requests are blocked", None),
        ("HTTP 403 SubscriptionBlocked: All requests from this subscription are blocked", "permission_denied"),
        ("HTTP 400 BadRequest: Request body validation error.", None),
        ("expired after 3.0 days: ServiceRequestError: Cannot connect", None),
    ],
)
def test_which_refusals_the_user_can_fix(reason: str, kind: str | None) -> None:
    assert fixable_kind(reason) == kind


async def test_home_assistant_restart_delivers_queued_mail_once(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    """A real restart: this Home Assistant stops with mail queued, a new one starts on the same config dir."""
    port = int(emu.endpoint.rsplit(":", 1)[1])
    entry = await make_entry()
    await emu.stop()
    await _notify(hass, "before the restart")
    message_id = await _only_id(entry)
    await hass.async_stop()

    async with async_test_home_assistant(config_dir=hass.config.config_dir) as restarted:
        restarted.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)  # what enable_custom_integrations does
        again = MockConfigEntry(
            domain=DOMAIN, entry_id=entry.entry_id, title=entry.title, data=dict(entry.data), unique_id=entry.unique_id
        )
        again.add_to_hass(restarted)
        assert await restarted.config_entries.async_setup(again.entry_id)
        sent = async_capture_events(restarted, "acs_email_sent")
        await emu.start(port=port)
        assert await wait_state(again, message_id) is State.SENT
        await wait_until(lambda: len(sent) == 1)  # reported by the new run
        assert [mail.operation_id for mail in emu.mails] == [message_id]
        assert emu.duplicates == 0
        await restarted.config_entries.async_unload(again.entry_id)
        await restarted.async_stop(force=True)


async def test_outbox_shared_with_a_running_bridge(hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator) -> None:
    """The bridge delivers from HA's outbox file: HA queues into it and takes over when the bridge stops."""
    entry = await make_entry(setup=False)
    path = Path(hass.config.path(DOMAIN, f"{entry.entry_id}.db"))
    bridge = Outbox(path)
    await bridge.open()  # holds the owner lock, as a running bridge would
    try:
        assert bridge.owner
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await _notify(hass, "queued next to the bridge")
        message_id = await _only_id(entry)
        assert not entry.runtime_data.engine.outbox.owner
        assert not emu.mails
    finally:
        await bridge.close()  # the bridge stops: Home Assistant takes over delivery
    assert await wait_state(entry, message_id) is State.SENT
    assert [mail.operation_id for mail in emu.mails] == [message_id]
