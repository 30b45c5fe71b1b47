"""Every preset, fed the payload shapes real devices publish, through the real engine to the emulator."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from routing_helpers import JPEG, Deliver, fixture

OWNER = "Home Owner <owner@example.com>"


def _text(mail) -> str:
    return mail.payload["content"].get("plainText") or ""


def _priority(mail) -> str | None:
    return (mail.payload.get("headers") or {}).get("X-Priority")


async def test_frigate_collapses_new_update_end_into_one_mail_with_the_snapshot_inline(deliver: Deliver, event) -> None:
    config = {"presets": {"frigate": {"to": OWNER}}}
    mails = await deliver(
        config,
        [
            event("frigate/front_door/person/snapshot", JPEG),
            event("frigate/events", fixture("frigate-new.json")),
            event("frigate/events", fixture("frigate-update.json")),
            event("frigate/events", fixture("frigate-false-positive.json")),
            event("frigate/events", fixture("frigate-end.json")),
            ("advance", 0),
            event("frigate/events", fixture("frigate-end.json")),  # a late repeat of the same event
            ("advance", 60),
        ],
    )
    assert len(mails) == 1
    mail = mails[0]
    assert mail.subject == "Person at front door"
    assert mail.recipients("to") == ["owner@example.com"]
    text = _text(mail)
    assert "Person (John Smith) detected by camera front_door." in text
    assert "Zones:   yard, driveway, porch" in text  # from the last update, not the first message
    assert "Score:   97 %" in text
    assert "Event:   1607123955.475377-mxklsc" in text
    [snapshot] = mail.attachments()
    assert (snapshot.name, snapshot.content_type, snapshot.content_id) == ("snapshot.jpg", "image/jpeg", "snapshot.jpg")
    assert snapshot.content == JPEG
    assert 'src="cid:snapshot.jpg"' in mail.payload["content"]["html"]


async def test_frigate_event_without_end_is_mailed_after_max_wait_even_without_a_snapshot(
    deliver: Deliver, event
) -> None:
    mails = await deliver(
        {"presets": {"frigate": {"to": OWNER}}},
        [event("frigate/events", fixture("frigate-new.json")), ("advance", 29), ("advance", 2)],
    )
    assert [m.subject for m in mails] == ["Person at front door"]
    assert mails[0].attachments() == []
    assert "No snapshot was received" in mails[0].payload["content"]["html"]


async def test_nut_mails_transitions_with_charge_and_runtime(deliver: Deliver, event) -> None:
    status = "nut2mqtt/den_ups_ups_status/state"
    mails = await deliver(
        {"presets": {"nut": {"to": OWNER}}},
        [
            event("nut2mqtt/den_ups_battery_charge/state", "100"),
            event(status, "OL CHRG"),  # the normal state: no mail
            event("nut2mqtt/den_ups_battery_charge/state", "54"),
            event("nut2mqtt/den_ups_battery_runtime/state", "1260"),
            event(status, "OB DISCHRG"),
            event(status, "OB DISCHRG"),  # unchanged
            event(status, "OB LB DISCHRG"),
            event(status, "OL CHRG"),
        ],
    )
    assert [m.subject for m in mails] == [
        "UPS den_ups is on battery",
        "UPS den_ups battery LOW",
        "UPS den_ups is back on line",
    ]
    assert all(m.recipients("to") == ["owner@example.com"] for m in mails)
    text = _text(mails[0])
    assert "UPS den_ups: on battery (was on line)." in text
    assert "Battery charge: 54 %" in text
    assert "Runtime left:   21 min 0 s" in text
    assert [_priority(m) for m in mails] == ["1", "1", None]


async def test_apcupsd_mails_on_battery_low_battery_and_back_on_line(deliver: Deliver, event) -> None:
    mails = await deliver(
        {"presets": {"apcupsd": {"to": OWNER}}},
        [
            event("apcupsd/nas/bcharge", "100.0"),
            event("apcupsd/nas/timeleft", "153.0"),
            event("apcupsd/nas/raw/STATUS", "ONLINE"),
            event("apcupsd/nas/raw/STATUS", "ONBATT"),
            event("apcupsd/nas/bcharge", "9.0"),
            event("apcupsd/nas/timeleft", "2.5"),
            event("apcupsd/nas/raw/STATUS", "ONBATT LOWBATT"),
            event("apcupsd/nas/raw/STATUS", "ONLINE"),
        ],
    )
    assert [m.subject for m in mails] == ["UPS nas is on battery", "UPS nas battery LOW", "UPS nas is back on line"]
    assert all(m.recipients("to") == ["owner@example.com"] for m in mails)
    assert "Battery charge: 100 %" in _text(mails[0])
    assert "Runtime left:   153.0 min" in _text(mails[0])
    assert "Battery charge: 9 %" in _text(mails[1])
    assert "Status:         ONBATT LOWBATT" in _text(mails[1])


async def test_zigbee2mqtt_leak_smoke_and_low_battery(deliver: Deliver, event) -> None:
    config = {
        "presets": {
            "zigbee2mqtt_leak": {"to": OWNER},
            "zigbee2mqtt_smoke": {"to": "fire@example.com"},
            "zigbee2mqtt_battery": {"to": "maintenance@example.com"},
        }
    }
    mails = await deliver(
        config,
        [
            event("zigbee2mqtt/basement_leak", fixture("z2m-leak.json")),
            event("zigbee2mqtt/basement_leak", fixture("z2m-leak.json")),  # reported again: no second mail
            event("zigbee2mqtt/basement_leak", fixture("z2m-leak-cleared.json")),
            event("zigbee2mqtt/hallway_smoke", fixture("z2m-smoke.json")),
            event("zigbee2mqtt/kitchen_leak", fixture("z2m-battery-low.json")),
            event("zigbee2mqtt/bridge/state", '{"state":"online"}'),
        ],
    )
    summary = [(m.subject, m.recipients("to"), _priority(m)) for m in mails]
    assert summary == [
        ("Water leak at basement_leak", ["owner@example.com"], "1"),
        ("Leak cleared at basement_leak", ["owner@example.com"], None),
        ("SMOKE detected by hallway_smoke", ["fire@example.com"], "1"),
        ("Battery low: kitchen_leak", ["maintenance@example.com"], None),
    ]
    assert "Battery: 100 %" in _text(mails[0])
    assert "Battery: 7 %" in _text(mails[3])


async def test_paperless_attaches_the_archived_document(deliver: Deliver, event, tmp_path: Path) -> None:
    media = tmp_path / "media"
    archive = media / "documents" / "archive"
    archive.mkdir(parents=True)
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 8
    (archive / "0000042.pdf").write_bytes(pdf)
    payload = fixture("paperless.json").replace(b"/usr/src/paperless/media", str(media).encode())
    mails = await deliver(
        {"presets": {"paperless": {"to": OWNER, "allowed_dirs": [str(media)]}}},
        [event("paperless/post-consumption", payload)],
    )
    [mail] = mails
    assert mail.subject == "Scanned: Invoice ACME 2026-11.pdf"
    assert mail.recipients("to") == ["owner@example.com"]
    assert "Correspondent: ACME" in _text(mail)
    assert "Download: http://paperless.local/api/documents/42/download/" in _text(mail)
    [document] = mail.attachments()
    assert (document.name, document.content_type, document.content) == ("scan_0001.pdf", "application/pdf", pdf)


async def test_scanner_attaches_base64_content_or_a_file_inside_the_allowed_directory(
    deliver: Deliver, event, tmp_path: Path
) -> None:
    scans = tmp_path / "scans" / "office"
    scans.mkdir(parents=True)
    scanned = b"%PDF-1.4\nscan\n%%EOF\n"
    (scans / "scan-2026-12-02.pdf").write_bytes(scanned)
    path_payload = fixture("scanner-path.json").replace(b"/scans/office", str(scans).encode())
    mails = await deliver(
        {"presets": {"scanner": {"to": OWNER, "allowed_dirs": [str(tmp_path / "scans")]}}},
        [
            event("scanner/office", fixture("scanner-content.json")),
            event("scanner/office", path_payload),
            event("scanner/office", json.dumps({"path": "/etc/passwd"})),  # outside: refused, nothing mailed
        ],
    )
    assert [m.subject for m in mails] == [
        "Scan from office: receipt.pdf",
        "Scan from office: scan-2026-12-02.pdf",
    ]
    content = json.loads(fixture("scanner-content.json"))["content"]
    assert [(a.name, a.content) for a in mails[0].attachments()] == [("receipt.pdf", base64.b64decode(content))]
    assert [(a.name, a.content) for a in mails[1].attachments()] == [("scan-2026-12-02.pdf", scanned)]


async def test_tasmota_and_shelly_availability(deliver: Deliver, event) -> None:
    mails = await deliver(
        {"presets": {"tasmota_availability": {"to": OWNER}, "shelly_availability": {"to": OWNER}}},
        [
            event("tele/plug1/LWT", "Online", retain=True),
            event("tele/plug1/LWT", "Offline", retain=True),
            event("tele/plug1/LWT", "Offline", retain=True),
            event("tele/plug1/LWT", "Online", retain=True),
            event("shellyplus1pm-a8032ab12345/online", "false"),
            event("shellies/shelly1-garage/online", "true"),
        ],
    )
    assert [(m.subject, _priority(m)) for m in mails] == [
        ("plug1 is offline", "1"),
        ("plug1 is back online", None),
        ("shellyplus1pm-a8032ab12345 is offline", "1"),
    ]


async def test_generic_json_and_text(deliver: Deliver, event) -> None:
    mails = await deliver(
        {
            "presets": {
                "json": {"to": OWNER, "topic": "octoPrint/event/+"},
                "text": {"to": OWNER, "topic": "home/doorbell"},
            }
        },
        [
            event(
                "octoPrint/event/PrintDone",
                '{"_timestamp":1517190629,"_event":"PrintDone","origin":"local","filename":"case.gco"}',
            ),
            event("home/doorbell", "pressed at the front door"),
        ],
    )
    assert [m.subject for m in mails] == ["octoPrint/event/PrintDone", "home/doorbell: pressed at the front door"]
    assert '"_event": "PrintDone"' in _text(mails[0])
    assert _text(mails[1]) == "pressed at the front door"


async def test_frigate_reviews_one_mail_per_review_with_the_thumbnail(deliver: Deliver, event, tmp_path: Path) -> None:
    media = tmp_path / "media"
    thumbs = media / "clips" / "review"
    thumbs.mkdir(parents=True)
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(32)
    (thumbs / "thumb-front_cam-1718987129.308396-fqk5ka.webp").write_bytes(webp)

    def review(name: str) -> bytes:
        return fixture(name).replace(b"/media/frigate", str(media).encode())

    mails = await deliver(
        {"presets": {"frigate_reviews": {"to": OWNER, "allowed_dirs": [str(media)]}}},
        [
            event("frigate/reviews", review("frigate-review-new.json")),
            event("frigate/reviews", review("frigate-review-end.json")),
            ("advance", 0),
        ],
    )
    [mail] = mails
    assert mail.subject == "Alert: person, car at front cam"
    assert "Alert on camera front_cam: person, car (Bob)." in _text(mail)
    assert "Zones:   front_yard" in _text(mail)
    assert "Ended:" in _text(mail)
    assert [(a.name, a.content_type, a.content) for a in mail.attachments()] == [
        ("thumb-front_cam-1718987129.308396-fqk5ka.webp", "image/webp", webp)
    ]
