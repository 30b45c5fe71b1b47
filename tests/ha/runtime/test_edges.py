"""Edges: impossible settings, an unusable outbox, a full outbox, unreadable files, odd entries and repairs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from unittest.mock import patch

import pytest
from emulated import MakeEntry, fix_issue, recipient
from homeassistant.config_entries import ConfigEntryState, ConfigSubentryData
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from acs_email_bridge.emulator import Emulator
from custom_components.acs_email import notify
from custom_components.acs_email.compose import Mail
from custom_components.acs_email.const import CONF_QUOTA, CONF_SECRET_EXPIRY, DOMAIN, QUOTA_CUSTOM
from custom_components.acs_email.core.outbox import Outbox
from custom_components.acs_email.issues import FIX_RETRY, SENDER_NOT_LINKED


async def _send(hass: HomeAssistant, entry_id: str, **data: object) -> None:
    await hass.services.async_call(
        DOMAIN,
        "send_message",
        {"config_entry_id": entry_id, "to": "a@example.com", "message": "x", **data},
        blocking=True,
    )


async def test_impossible_settings_fail_setup_without_retry(hass: HomeAssistant, make_entry: MakeEntry) -> None:
    entry = await make_entry(setup=False)
    hass.config_entries.async_update_entry(entry, options={CONF_QUOTA: QUOTA_CUSTOM, "per_minute": 0})
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR


async def test_unusable_outbox_retries_setup(hass: HomeAssistant, make_entry: MakeEntry) -> None:
    entry = await make_entry(setup=False)
    Path(hass.config.path(DOMAIN, f"{entry.entry_id}.db")).mkdir(parents=True)  # not a database
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_full_outbox_refuses_and_says_so(hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator) -> None:
    from custom_components import acs_email

    real = acs_email.engine_settings
    with patch.object(acs_email, "engine_settings", lambda h, e: dataclasses.replace(real(h, e), max_messages=1)):
        entry = await make_entry()
    await emu.stop()
    await _send(hass, entry.entry_id)
    with pytest.raises(HomeAssistantError) as err:
        await _send(hass, entry.entry_id)
    assert err.value.translation_key == "outbox_full"
    assert len(await entry.runtime_data.engine.outbox.list()) == 1


async def test_directory_is_not_an_attachment(hass: HomeAssistant, make_entry: MakeEntry, tmp_path: Path) -> None:
    entry = await make_entry()
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    with pytest.raises(ServiceValidationError) as err:
        await _send(hass, entry.entry_id, attachments=[str(tmp_path)])
    assert err.value.translation_key == "file_unreadable"


async def test_media_source_without_a_file_is_refused(hass: HomeAssistant, make_entry: MakeEntry) -> None:
    entry = await make_entry()
    assert await async_setup_component(hass, "media_source", {})
    play = type("PlayMedia", (), {"url": "https://example.com/a.mp3", "mime_type": "audio/mpeg"})()
    with (
        patch("homeassistant.components.media_source.async_resolve_media", return_value=play),
        pytest.raises(ServiceValidationError) as err,
    ):
        await _send(hass, entry.entry_id, attachments=["media-source://radio_browser/station"])
    assert err.value.translation_key == "media_source_not_supported"


async def test_unknown_image_entity_is_refused(hass: HomeAssistant, make_entry: MakeEntry) -> None:
    entry = await make_entry()
    assert await async_setup_component(hass, "image", {})
    with pytest.raises(ServiceValidationError) as err:
        await _send(hass, entry.entry_id, attachments=["media-source://image/image.nothing"])
    assert err.value.translation_key == "snapshot_failed"


async def test_odd_entries(hass: HomeAssistant, make_entry: MakeEntry) -> None:
    other_kind = ConfigSubentryData(data={}, subentry_id="x", subentry_type="something_else", title="X", unique_id="x")
    entry = await make_entry(
        subentries=[recipient("Alice", "alice@example.com"), other_kind], **{CONF_SECRET_EXPIRY: "soon"}
    )
    assert hass.states.get("notify.alice") is not None
    assert hass.states.get("notify.x") is None  # only recipient subentries become notify entities
    assert not [i for i in ir.async_get(hass).issues.values() if i.domain == DOMAIN]  # unreadable date: no issue

    entry.runtime_data.track(["00000000-0000-4000-8000-000000000000"])  # a mail deleted by someone else
    await hass.async_block_till_done()

    assert await notify.async_get_service(hass, {}, None) is None  # no YAML platform
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await notify.async_get_service(hass, {}, {"entry_id": entry.entry_id}) is None  # unloaded meanwhile


async def test_issues_go_with_the_entry_and_repairs_of_unloaded_entries_abort(
    hass: HomeAssistant, make_entry: MakeEntry
) -> None:
    entry = await make_entry()
    issue_id = f"{SENDER_NOT_LINKED}_{entry.entry_id}"
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=True,
        severity=ir.IssueSeverity.ERROR,
        translation_key=SENDER_NOT_LINKED,
        translation_placeholders={"title": "t", "reason": "r", "sender": "s"},
        data={"entry_id": entry.entry_id, "fix": FIX_RETRY},
    )
    assert await hass.config_entries.async_unload(entry.entry_id)
    result = await fix_issue(hass, issue_id)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_not_loaded"

    assert await hass.config_entries.async_remove(entry.entry_id)
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_repair_of_a_removed_entry_aborts(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    ir.async_create_issue(
        hass,
        DOMAIN,
        "sending_paused_gone",
        is_fixable=True,
        severity=ir.IssueSeverity.ERROR,
        translation_key="sending_paused",
        translation_placeholders={"title": "t", "reason": "r"},
        data={"entry_id": "gone", "fix": "reauth"},
    )
    result = await fix_issue(hass, "sending_paused_gone")
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_removed"


async def test_mail_for_an_unloading_entry_is_refused_not_lost_silently(
    hass: HomeAssistant, make_entry: MakeEntry
) -> None:
    entry = await make_entry()
    runtime = entry.runtime_data
    assert await hass.config_entries.async_unload(entry.entry_id)
    with pytest.raises(HomeAssistantError) as err:
        await runtime.async_send(Mail(to=["a@example.com"], subject="late", text="x"), source="test")
    assert err.value.translation_key == "entry_not_loaded"


async def test_diagnostics_of_an_entry_that_is_not_loaded(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, make_entry: MakeEntry, emu: Emulator
) -> None:
    assert await async_setup_component(hass, "diagnostics", {})
    await async_setup_component(hass, DOMAIN, {})
    entry = await make_entry(setup=False)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["state"] == "not_loaded"
    assert "engine" not in diagnostics
    assert emu.client_secret not in json.dumps(diagnostics)


async def test_oversized_file_is_refused_without_reading_it(
    hass: HomeAssistant, make_entry: MakeEntry, tmp_path: Path
) -> None:
    entry = await make_entry()
    big = tmp_path / "video.mp4"
    with big.open("wb") as file:
        file.truncate(11 * 1024 * 1024)  # sparse: no disk used, but over ACS's 10 MB per request
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    with pytest.raises(ServiceValidationError) as err:
        await _send(hass, entry.entry_id, attachments=[str(big)])
    assert err.value.translation_key == "file_too_large"
    assert err.value.translation_placeholders["limit"] == "10 MB"


async def test_failed_setup_releases_the_outbox(hass: HomeAssistant, make_entry: MakeEntry) -> None:
    entry = await make_entry(setup=False)
    with patch.object(hass.config_entries, "async_forward_entry_setups", side_effect=RuntimeError("platform broke")):
        assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    await hass.config_entries.async_remove(entry.entry_id)
    # The outbox lock was released: another process (here a fresh outbox) can deliver from the file.
    async with Outbox(hass.config.path(DOMAIN, f"{entry.entry_id}.db")) as outbox:
        assert outbox.owner
