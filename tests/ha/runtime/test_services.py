"""acs_email.send_message (entities and/or addresses in one mail, media attachments, response data) and dead letters."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import pytest
from emulated import MakeEntry, recipient, wait_until
from homeassistant.components.camera import Image
from homeassistant.components.notify import NotifyEntity
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers.selector import ObjectSelectorConfig, validate_selector
from homeassistant.helpers.service import async_get_all_descriptions
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from acs_email_bridge.emulator import Emulator, Fault
from custom_components.acs_email.const import CONF_DEFAULT_RECIPIENTS, DOMAIN
from custom_components.acs_email.services import ENTRY_SCHEMA, SEND_MESSAGE_SCHEMA

SCHEMAS = {"send_message": SEND_MESSAGE_SCHEMA, "retry_dead_letters": ENTRY_SCHEMA, "purge_dead_letters": ENTRY_SCHEMA}

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def _send(hass: HomeAssistant, **data: object) -> dict[str, object] | None:
    return await hass.services.async_call(DOMAIN, "send_message", data, blocking=True, return_response=True)


async def test_entities_and_addresses_get_one_mail_and_the_response_names_it(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    entry = await make_entry(
        subentries=[recipient("Alice", "alice@example.com"), recipient("Family", "mum@example.com", "dad@example.com")]
    )
    before = hass.states.get("notify.alice").state
    response = await _send(
        hass,
        entity_id=["notify.alice", "notify.family"],
        to="guest@example.com",
        cc=["cc@example.com"],
        subject="Leak detected",
        message="Water under the sink.",
        html="<p>Water under the <b>sink</b>.</p>",
        priority="low",
    )
    assert response is not None
    assert response["state"] == "queued"
    item = await entry.runtime_data.engine.outbox.get(response["message_id"])
    assert item is not None  # durable before the action returned
    await wait_until(lambda: len(emu.mails) == 1)
    (mail,) = emu.mails
    assert mail.operation_id == response["message_id"]
    assert mail.recipients("to") == ["alice@example.com", "mum@example.com", "dad@example.com", "guest@example.com"]
    assert mail.recipients("cc") == ["cc@example.com"]
    assert mail.payload["content"]["html"] == "<p>Water under the <b>sink</b>.</p>"
    assert mail.payload["headers"]["X-Priority"] == "5"
    # HA 2026.4+ lets integrations record a notification on the entity; 2025.4 only stamps notify.send_message.
    recorded = hasattr(NotifyEntity, "_async_record_notification")
    assert (hass.states.get("notify.alice").state != before) is recorded


async def test_account_target_uses_default_recipients_without_response(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    entry = await make_entry(options={CONF_DEFAULT_RECIPIENTS: ["owner@example.com"]})
    result = await hass.services.async_call(
        DOMAIN, "send_message", {"config_entry_id": entry.entry_id, "message": "Hi"}, blocking=True
    )
    assert result is None
    await wait_until(lambda: len(emu.mails) == 1)
    assert emu.mails[0].recipients("to") == ["owner@example.com"]
    assert emu.mails[0].subject == "Home Assistant"


async def test_camera_snapshot_inline_and_local_media_attachment(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator, tmp_path: Path
) -> None:
    entry = await make_entry()
    media = tmp_path / "media"
    media.mkdir()
    (media / "plan.pdf").write_bytes(b"%PDF-1.4 plan")
    hass.config.media_dirs = {"local": str(media)}
    assert await async_setup_component(hass, "media_source", {})

    with patch("homeassistant.components.camera.async_get_image", return_value=Image("image/jpeg", JPEG)) as get_image:
        await _send(
            hass,
            config_entry_id=entry.entry_id,
            to="owner@example.com",
            subject="Person at the gate",
            html='<img src="cid:gate">',
            attachments=[
                {"media_source": "media-source://camera/camera.gate", "content_id": "gate"},
                {"media_source": "media-source://media_source/local/plan.pdf", "filename": "site plan.pdf"},
            ],
        )
    get_image.assert_awaited_once_with(hass, "camera.gate")
    await wait_until(lambda: len(emu.mails) == 1)
    snapshot, plan = emu.mails[0].attachments()
    assert (snapshot.name, snapshot.content_type, snapshot.content, snapshot.content_id) == (
        "gate.jpg",
        "image/jpeg",
        JPEG,
        "gate",
    )
    assert (plan.name, plan.content_type, plan.content, plan.content_id) == (
        "site plan.pdf",
        "application/pdf",
        b"%PDF-1.4 plan",
        None,
    )


async def test_image_entity_snapshot(hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator) -> None:
    entry = await make_entry()

    class FakeImage:
        content_type = "image/png"

        async def async_image(self) -> bytes:
            return PNG

    assert await async_setup_component(hass, "image", {})
    from homeassistant.components.image.const import DATA_COMPONENT

    with patch.object(hass.data[DATA_COMPONENT], "get_entity", return_value=FakeImage()):
        await _send(
            hass,
            config_entry_id=entry.entry_id,
            to="owner@example.com",
            message="Doorbell",
            attachments=["media-source://image/image.doorbell"],
        )
    await wait_until(lambda: len(emu.mails) == 1)
    (attachment,) = emu.mails[0].attachments()
    assert (attachment.name, attachment.content_type, attachment.content) == ("doorbell.png", "image/png", PNG)


async def test_bad_input_is_refused_with_nothing_queued(
    hass: HomeAssistant, make_entry: MakeEntry, tmp_path: Path
) -> None:
    entry = await make_entry(subentries=[recipient("Alice", "alice@example.com")])
    other = MockConfigEntry(domain=DOMAIN, title="Other", data={}, unique_id="other")
    other.add_to_hass(hass)
    secret = tmp_path / "secrets.yaml"
    secret.write_text("password: hunter2")
    hass.config.media_dirs = {"local": str(tmp_path)}
    assert await async_setup_component(hass, "media_source", {})
    eid = entry.entry_id
    cases = [
        ({"message": "x", "to": "a@example.com"}, "no_target"),
        ({"entity_id": "notify.alice", "config_entry_id": other.entry_id, "message": "x"}, "several_accounts"),
        ({"config_entry_id": "nope", "message": "x", "to": "a@example.com"}, "entry_not_found"),
        ({"config_entry_id": other.entry_id, "message": "x", "to": "a@example.com"}, "entry_not_loaded"),
        ({"entity_id": "notify.nobody", "message": "x"}, "not_a_recipient"),
        ({"config_entry_id": eid, "to": "a@example.com"}, "no_body"),
        ({"config_entry_id": eid, "message": "x"}, "no_recipients"),
        ({"config_entry_id": eid, "message": "x", "to": "a@example.com\nBcc: x@evil.example"}, "invalid_message"),
        (
            {"config_entry_id": eid, "message": "x", "to": "a@example.com", "attachments": [str(secret)]},
            "remote_path_not_allowed",
        ),
        (
            {
                "config_entry_id": eid,
                "message": "x",
                "to": "a@example.com",
                "attachments": ["media-source://media_source/local/none.jpg"],
            },
            "file_not_found",
        ),
        (
            {
                "config_entry_id": eid,
                "message": "x",
                "to": "a@example.com",
                "attachments": ["media-source://media_source/local/../secrets.yaml"],
            },
            "media_source_not_found",
        ),
        (
            {
                "config_entry_id": eid,
                "message": "x",
                "to": "a@example.com",
                "attachments": [{"media_source": "media-source://media_source/local/secrets.yaml"}],
            },
            "invalid_attachment",
        ),
    ]
    for data, key in cases:
        with pytest.raises(ServiceValidationError) as err:
            await _send(hass, **data)
        assert err.value.translation_key == key, data
    assert await entry.runtime_data.engine.outbox.list() == []
    assert other.state is ConfigEntryState.NOT_LOADED


async def test_snapshot_failure_is_refused(hass: HomeAssistant, make_entry: MakeEntry) -> None:
    entry = await make_entry()
    with (
        patch("homeassistant.components.camera.async_get_image", side_effect=HomeAssistantError("camera off")),
        pytest.raises(ServiceValidationError) as err,
    ):
        await _send(
            hass,
            config_entry_id=entry.entry_id,
            to="a@example.com",
            message="x",
            attachments=["media-source://camera/camera.gate"],
        )
    assert err.value.translation_key == "snapshot_failed"
    assert await entry.runtime_data.engine.outbox.list() == []


async def test_retry_and_purge_dead_letters(hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator) -> None:
    entry = await make_entry()
    failed = async_capture_events(hass, "acs_email_failed")
    emu.add_fault(Fault.error(400, code="BadRequest", times=2))
    for subject in ("one", "two"):
        await _send(hass, config_entry_id=entry.entry_id, to="a@example.com", subject=subject, message="x")
    await wait_until(lambda: len(failed) == 2)
    await entry.runtime_data.coordinator.async_refresh()
    assert hass.states.get("sensor.acs_email_dead_letters").state == "2"

    response = await hass.services.async_call(
        DOMAIN, "retry_dead_letters", {"config_entry_id": entry.entry_id}, blocking=True, return_response=True
    )
    assert response == {"requeued": 2}
    await wait_until(lambda: len(emu.mails) == 2)

    emu.add_fault(Fault.error(400, code="BadRequest"))
    await _send(hass, config_entry_id=entry.entry_id, to="a@example.com", subject="three", message="x")
    await wait_until(lambda: len(failed) == 3)
    response = await hass.services.async_call(
        DOMAIN, "purge_dead_letters", {"config_entry_id": entry.entry_id}, blocking=True, return_response=True
    )
    assert response == {"purged": 1}
    assert await entry.runtime_data.engine.outbox.list(state="dead") == []


async def test_services_yaml_describes_every_action_with_valid_selectors(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    descriptions = (await async_get_all_descriptions(hass))[DOMAIN]
    assert set(descriptions) == set(hass.services.async_services_for_domain(DOMAIN))
    for service, description in descriptions.items():
        for name, field in description["fields"].items():
            selector_config = field["selector"]
            if "object" in selector_config and "fields" not in ObjectSelectorConfig.__annotations__:
                # HA 2025.4's object selector takes no options (its frontend ignores them); 2026's validates them.
                continue
            validate_selector(selector_config)
            assert name in SCHEMAS[service].schema, (service, name)
