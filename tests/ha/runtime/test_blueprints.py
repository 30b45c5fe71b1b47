"""The shipped blueprints, run as a user would: imported into the config dir, used by an automation, triggered."""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest.mock import patch

from emulated import MakeEntry, recipient, wait_until
from homeassistant.components.camera import Image
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

from acs_email_bridge.emulator import Emulator

BLUEPRINTS = Path(__file__).resolve().parents[3] / "blueprints" / "automation" / "acs_email"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


def _install(hass: HomeAssistant) -> None:
    target = Path(hass.config.path("blueprints", "automation", "acs_email"))
    shutil.copytree(BLUEPRINTS, target)


async def test_ups_on_battery_mails_once_per_change(hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator) -> None:
    entry = await make_entry(subentries=[recipient("Admin", "admin@example.com")])
    await hass.async_add_executor_job(_install, hass)
    hass.states.async_set("sensor.ups_status", "Online", {"friendly_name": "Rack UPS"})
    hass.states.async_set("sensor.ups_battery", "97", {"device_class": "battery"})
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "use_blueprint": {
                    "path": "acs_email/ups_on_battery.yaml",
                    "input": {
                        "ups_status": "sensor.ups_status",
                        "battery_charge": "sensor.ups_battery",
                        "account": entry.entry_id,
                        "recipients": ["notify.admin"],
                        "addresses": ["oncall@example.com"],
                    },
                }
            }
        },
    )
    await hass.async_block_till_done()

    hass.states.async_set("sensor.ups_status", "On Battery", {"friendly_name": "Rack UPS"})
    await wait_until(lambda: len(emu.mails) == 1)
    mail = emu.mails[0]
    assert mail.subject == "Rack UPS: running on battery"
    assert mail.recipients("to") == ["admin@example.com", "oncall@example.com"]
    assert "Battery charge: 97 %" in mail.payload["content"]["plainText"]
    assert mail.payload["headers"]["X-Priority"] == "1"

    hass.states.async_set("sensor.ups_status", "On Battery", {"friendly_name": "Rack UPS", "changed": 1})
    hass.states.async_set("sensor.ups_status", "Online", {"friendly_name": "Rack UPS"})
    await wait_until(lambda: len(emu.mails) == 2)
    assert emu.mails[1].subject == "Rack UPS: mains power restored"
    await hass.async_block_till_done()
    assert len(emu.mails) == 2  # the attribute-only change sent nothing


async def _use_camera_blueprint(
    hass: HomeAssistant, make_entry: MakeEntry, camera_state: str, camera_name: str
) -> None:
    """An automation from the camera blueprint: a person sensor at the gate, mail to owner@example.com."""
    entry = await make_entry()
    await hass.async_add_executor_job(_install, hass)
    hass.states.async_set("binary_sensor.gate_person", "off", {"friendly_name": "Person at the gate"})
    hass.states.async_set("camera.gate", camera_state, {"friendly_name": camera_name})
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "use_blueprint": {
                    "path": "acs_email/camera_detection_snapshot.yaml",
                    "input": {
                        "detection": "binary_sensor.gate_person",
                        "camera": "camera.gate",
                        "account": entry.entry_id,
                        "addresses": ["owner@example.com"],
                        "cooldown": 0,
                    },
                }
            }
        },
    )
    await hass.async_block_till_done()


async def test_camera_detection_mails_the_snapshot_inline(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    await _use_camera_blueprint(hass, make_entry, camera_state="idle", camera_name="Gate <cam>")

    with patch("homeassistant.components.camera.async_get_image", return_value=Image("image/jpeg", JPEG)) as get:
        hass.states.async_set("binary_sensor.gate_person", "on", {"friendly_name": "Person at the gate"})
        await wait_until(lambda: len(emu.mails) == 1)
    get.assert_awaited_once_with(hass, "camera.gate")
    mail = emu.mails[0]
    assert mail.recipients("to") == ["owner@example.com"]
    assert mail.subject.startswith("Person at the gate at ")
    assert '<img src="cid:snapshot"' in mail.payload["content"]["html"]
    assert "Gate &lt;cam&gt;" in mail.payload["content"]["html"]  # names are escaped in the HTML
    (snapshot,) = mail.attachments()
    assert (snapshot.name, snapshot.content_type, snapshot.content, snapshot.content_id) == (
        "snapshot.jpg",
        "image/jpeg",
        JPEG,
        "snapshot",
    )


async def test_camera_detection_still_mails_when_the_camera_is_offline(
    hass: HomeAssistant, make_entry: MakeEntry, emu: Emulator
) -> None:
    """No snapshot to take: the detection is mailed all the same, saying the camera is unavailable."""
    await _use_camera_blueprint(hass, make_entry, camera_state="unavailable", camera_name="Gate")
    hass.states.async_set("binary_sensor.gate_person", "on", {"friendly_name": "Person at the gate"})
    await wait_until(lambda: len(emu.mails) == 1)
    mail = emu.mails[0]
    assert mail.subject.startswith("Person at the gate at ")
    assert "The camera Gate is unavailable: no snapshot." in mail.payload["content"]["plainText"]
    assert mail.attachments() == []
