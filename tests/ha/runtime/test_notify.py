"""notify.acs_email (legacy, free targets, rich data) and the recipient notify entities (notify.send_message)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from emulated import SENDER, MakeEntry, recipient, wait_until
from homeassistant.components.notify import DOMAIN as NOTIFY_DOMAIN
from homeassistant.components.notify import SERVICE_SEND_MESSAGE
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import async_capture_events

from acs_email_bridge.emulator import Emulator
from custom_components.acs_email.const import CONF_DEFAULT_RECIPIENTS, CONF_NOTIFY_SERVICE, DOMAIN

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4


@pytest.fixture
def allowed_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    directory = tmp_path / "www"
    directory.mkdir()
    (directory / "door.jpg").write_bytes(JPEG)
    (directory / "report.pdf").write_bytes(PDF)
    hass.config.allowlist_external_dirs = {str(directory)}
    return directory


async def test_legacy_notify_one_mail_to_all_targets_with_html_inline_image_and_attachment(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator, allowed_dir: Path
) -> None:
    entry = await make_entry()
    sent = async_capture_events(hass, "acs_email_sent")
    assert hass.services.has_service(NOTIFY_DOMAIN, DOMAIN)

    await hass.services.async_call(
        NOTIFY_DOMAIN,
        DOMAIN,
        {
            "title": "Front door",
            "message": "Someone is at the door.",
            "target": ["owner@example.com", "Alice <alice@example.com>, bob@example.com"],
            "data": {
                "html": '<p>Someone is at the door.</p><img src="cid:door.jpg">',
                "images": [str(allowed_dir / "door.jpg")],
                "attachments": [str(allowed_dir / "report.pdf")],
                "cc": "cc@example.com",
                "bcc": ["hidden@example.com"],
                "reply_to": "desk@example.com",
                "priority": "high",
            },
        },
        blocking=True,
    )
    await wait_until(lambda: len(sent) == 1)

    (mail,) = emu.mails
    assert mail.sender == SENDER
    assert mail.subject == "Front door"
    assert mail.recipients("to") == ["owner@example.com", "alice@example.com", "bob@example.com"]
    assert mail.recipients("cc") == ["cc@example.com"]
    assert mail.recipients("bcc") == ["hidden@example.com"]
    assert mail.payload["replyTo"] == [{"address": "desk@example.com"}]
    assert mail.payload["content"]["plainText"] == "Someone is at the door."
    assert 'src="cid:door.jpg"' in mail.payload["content"]["html"]
    assert mail.payload["headers"]["X-Priority"] == "1"
    image, report = mail.attachments()
    assert (image.name, image.content_type, image.content, image.content_id) == (
        "door.jpg",
        "image/jpeg",
        JPEG,
        "door.jpg",
    )
    assert (report.name, report.content_type, report.content, report.content_id) == (
        "report.pdf",
        "application/pdf",
        PDF,
        None,
    )
    assert sent[0].data["message_id"] == mail.operation_id
    assert sent[0].data["config_entry_id"] == entry.entry_id


async def test_legacy_notify_without_target_uses_default_recipients(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    await make_entry(options={CONF_DEFAULT_RECIPIENTS: ["owner@example.com", "second@example.com"]})
    await hass.services.async_call(NOTIFY_DOMAIN, DOMAIN, {"message": "UPS on battery"}, blocking=True)
    await wait_until(lambda: len(emu.mails) == 1)
    assert emu.mails[0].recipients("to") == ["owner@example.com", "second@example.com"]
    assert emu.mails[0].subject == "Home Assistant"


async def test_legacy_notify_refuses_bad_input_and_queues_nothing(
    hass: HomeAssistant, make_entry: MakeEntry, tmp_path: Path, allowed_dir: Path
) -> None:
    entry = await make_entry()
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(JPEG)
    link = allowed_dir / "link.jpg"
    link.symlink_to(outside)
    dotdot = f"{allowed_dir}/../secret.jpg"
    huge = allowed_dir / "huge.bin"
    with huge.open("wb") as file:
        file.truncate(20 * 1024 * 1024)  # 20 MB (sparse)
    fifo = allowed_dir / "pipe.jpg"
    os.mkfifo(fifo)
    cases = [
        ({"message": "no target"}, "no_recipients"),
        ({"message": "x", "target": ["not an address"]}, "invalid_message"),
        ({"message": "x", "target": ["a@example.com"], "data": {"images": [str(outside)]}}, "remote_path_not_allowed"),
        (
            {"message": "x", "target": ["a@example.com"], "data": {"images": ["relative.jpg"]}},
            "remote_path_not_allowed",
        ),
        (
            {"message": "x", "target": ["a@example.com"], "data": {"attachments": [str(allowed_dir / "missing.pdf")]}},
            "file_not_found",
        ),
        ({"message": "x", "target": ["a@example.com"], "data": {"colour": "red"}}, "invalid_notify_data"),
        (
            {"message": "x", "target": ["a@example.com"], "data": {"attachments": [{"filename": "x.pdf"}]}},
            "attachment_without_source",
        ),
        ({"message": "x", "target": "a@example.com", "data": {"images": [str(link)]}}, "remote_path_not_allowed"),
        ({"message": "x", "target": "a@example.com", "data": {"images": [dotdot]}}, "remote_path_not_allowed"),
        (
            {"message": "x", "target": "a@example.com", "data": {"images": ["/proc/self/environ"]}},
            "remote_path_not_allowed",
        ),
        ({"message": "x", "target": "a@example.com", "data": {"attachments": [str(huge)]}}, "file_too_large"),
        # a FIFO (or device) under an allowed dir: reading it would block an executor thread for ever
        ({"message": "x", "target": "a@example.com", "data": {"attachments": [str(fifo)]}}, "file_unreadable"),
        (  # an inline image the HTML shows but nobody attached: the mail would show a broken image
            {
                "message": "x",
                "target": "a@example.com",
                "data": {
                    "html": '<img src="cid:door.jpg"><img src="cid:gone.png">',
                    "images": [str(allowed_dir / "door.jpg")],
                },
            },
            "missing_inline_image",
        ),
        (
            {
                "message": "x",
                "target": "a@example.com",
                "data": {
                    "html": "<p>x</p>",
                    "images": [
                        {"path": str(allowed_dir / "door.jpg"), "content_id": "a"},
                        {"path": str(allowed_dir / "report.pdf"), "content_id": "a"},
                    ],
                },
            },
            "invalid_message",
        ),
    ]
    for data, key in cases:
        with pytest.raises(ServiceValidationError) as err:
            await hass.services.async_call(NOTIFY_DOMAIN, DOMAIN, data, blocking=True)
        assert err.value.translation_key == key, data
    stats = await entry.runtime_data.engine.outbox.stats()
    assert (stats.queued, stats.sending, stats.sent) == (0, 0, 0)


async def test_notify_service_name_is_configurable_and_removed_on_unload(
    hass: HomeAssistant, make_entry: MakeEntry
) -> None:
    first = await make_entry()
    second = await make_entry(title="Office", options={CONF_NOTIFY_SERVICE: "office mail"})
    await hass.async_block_till_done()
    assert hass.services.has_service(NOTIFY_DOMAIN, "acs_email")
    assert hass.services.has_service(NOTIFY_DOMAIN, "office_mail")

    assert await hass.config_entries.async_unload(second.entry_id)
    assert not hass.services.has_service(NOTIFY_DOMAIN, "office_mail")
    assert hass.services.has_service(NOTIFY_DOMAIN, "acs_email")
    assert await hass.config_entries.async_unload(first.entry_id)
    assert not hass.services.has_service(NOTIFY_DOMAIN, "acs_email")


async def test_recipient_entities_send_with_notify_send_message(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    entry = await make_entry(
        subentries=[recipient("Alice", "alice@example.com"), recipient("Family", "mum@example.com", "dad@example.com")]
    )
    registry = er.async_get(hass)
    alice = registry.async_get_entity_id(NOTIFY_DOMAIN, DOMAIN, f"{entry.entry_id}_alice")
    family = registry.async_get_entity_id(NOTIFY_DOMAIN, DOMAIN, f"{entry.entry_id}_family")
    assert alice == "notify.alice"
    assert family == "notify.family"
    devices = dr.async_get(hass)
    alice_device = devices.async_get(registry.async_get(alice).device_id)
    family_device = devices.async_get(registry.async_get(family).device_id)
    assert alice_device.name == "Alice"
    assert family_device.name == "Family"
    assert alice_device.id != family_device.id

    await hass.services.async_call(
        NOTIFY_DOMAIN,
        SERVICE_SEND_MESSAGE,
        {"entity_id": family, "message": "Dinner", "title": "Tonight"},
        blocking=True,
    )
    await wait_until(lambda: len(emu.mails) == 1)
    assert emu.mails[0].recipients("to") == ["mum@example.com", "dad@example.com"]
    assert emu.mails[0].subject == "Tonight"
    assert emu.mails[0].payload["content"]["plainText"] == "Dinner"
    assert hass.states.get(family).state not in ("unknown", "unavailable")


async def test_recipients_added_and_removed_while_loaded(hass: HomeAssistant, make_entry: MakeEntry) -> None:
    entry = await make_entry(subentries=[recipient("Alice", "alice@example.com")])
    registry = er.async_get(hass)
    devices = dr.async_get(hass)
    alice_device = registry.async_get("notify.alice").device_id

    hass.config_entries.async_add_subentry(entry, ConfigSubentry(**recipient("Bob", "bob@example.com")))
    await hass.async_block_till_done()
    assert hass.states.get("notify.bob") is not None

    assert hass.config_entries.async_remove_subentry(entry, "alice")
    await hass.async_block_till_done()
    assert registry.async_get("notify.alice") is None
    assert devices.async_get(alice_device) is None  # no stale device left behind
    assert hass.states.get("notify.bob") is not None
