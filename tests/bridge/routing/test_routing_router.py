"""Routes: filters, conditions, templates, recipients, attachments, priority and bad input."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import pytest
from routing_helpers import FIXTURES, JPEG, MakeRouter

from acs_email_bridge.mqtt.events import Disposition
from acs_email_bridge.routing.topics import matches

TO = "ops@example.com"


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("zigbee2mqtt/+", "zigbee2mqtt/leak", True),
        ("zigbee2mqtt/+", "zigbee2mqtt/leak/availability", False),
        ("frigate/+/+/snapshot", "frigate/front/person/snapshot", True),
        ("home/#", "home", True),
        ("home/#", "home/a/b/c", True),
        ("home/+/temp", "home//temp", True),
        ("#", "$SYS/broker/uptime", False),
        ("$SYS/#", "$SYS/broker/uptime", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_filters_match_like_the_broker(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


async def test_nested_payload_topic_parts_and_time_in_templates(make_router: MakeRouter, event) -> None:
    h = await make_router(
        {
            "routes": [
                {
                    "name": "octo",
                    "topic": "octoPrint/event/+",
                    "to": TO,
                    "subject": "{{ topic_parts[2] }}: {{ payload.job.file.name }}"
                    " ({{ payload.job['progress'].pct }} %)",
                    "text": "{{ payload.job.file.name | upper }} at {{ time | datetime('%H:%M') }} raw={{ raw }}",
                }
            ]
        }
    )
    payload = {"job": {"file": {"name": "case.gco"}, "progress": {"pct": 42}}}
    outcome = await h.send(event("octoPrint/event/PrintDone", json.dumps(payload)))
    assert outcome.disposition is Disposition.MAILED
    [mail] = outcome.mails
    assert mail.subject == "PrintDone: case.gco (42 %)"
    assert mail.text is not None and mail.text.startswith("CASE.GCO at ")
    assert "raw={" in mail.text


async def test_html_escapes_payload_values_and_text_does_not(make_router: MakeRouter, event) -> None:
    h = await make_router(
        {"routes": [{"name": "r", "topic": "t", "to": TO, "text": "{{ payload.v }}", "html": "<p>{{ payload.v }}</p>"}]}
    )
    [mail] = (await h.send(event("t", json.dumps({"v": "<script>x</script>"})))).mails
    assert mail.html == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert mail.text == "<script>x</script>"


@pytest.mark.parametrize(
    ("when", "mailed"),
    [
        ([{"path": "after.label", "in": ["person", "car"]}], [True, False, True]),
        ([{"path": "after.score", "gt": 0.5}], [True, False, False]),
        ([{"path": "after.zones", "contains": "yard"}], [True, True, False]),
        ([{"path": "after.zones[0]", "eq": "yard"}], [True, True, False]),
        ([{"path": "after.plate", "exists": True}], [False, False, True]),
        ([{"path": "after.label", "matches": "^p"}], [True, False, False]),
        ("payload.after.score | float > 0.5 or payload.after.plate is defined", [True, False, True]),
        ("{{ 'yard' in payload.after.zones }}", [True, True, False]),
    ],
)
async def test_conditions_on_nested_json(make_router: MakeRouter, event, when, mailed: list[bool]) -> None:
    h = await make_router({"routes": [{"name": "r", "topic": "cam", "to": TO, "when": when}]})
    payloads = [
        {"after": {"label": "person", "score": "0.9", "zones": ["yard", "drive"]}},
        {"after": {"label": "dog", "score": 0.2, "zones": ["yard"]}},
        {"after": {"label": "car", "score": 0.4, "zones": [], "plate": "AB12"}},
    ]
    results = [(await h.send(event("cam", json.dumps(p)))).disposition is Disposition.MAILED for p in payloads]
    assert results == mailed
    assert all(o.rule == "when" for o in h.outcomes if o.disposition is Disposition.DROPPED)


async def test_templated_recipients_and_priority(make_router: MakeRouter, event) -> None:
    h = await make_router(
        {
            "routes": [
                {
                    "name": "r",
                    "topic": "alerts/+",
                    "to": ["{{ payload.owner }}", "Ops <ops@example.com>"],
                    "cc": "{{ payload.cc | default('') }}",
                    "priority": "{{ 'high' if payload.level == 'crit' else 'low' }}",
                }
            ]
        }
    )
    [mail] = (await h.send(event("alerts/x", '{"owner": "ann@example.com", "level": "crit"}'))).mails
    assert [a.address for a in mail.to] == ["ann@example.com", "ops@example.com"]
    assert mail.cc == ()
    assert mail.priority.value == "high"
    outcome = await h.send(event("alerts/x", '{"owner": "not an address", "level": "x"}'))
    assert outcome.disposition is Disposition.FAILED
    assert "to rendered 'not an address'" in outcome.reason


async def test_bad_input_fails_one_route_with_a_reason_and_the_others_keep_working(
    make_router: MakeRouter, event, caplog: pytest.LogCaptureFixture
) -> None:
    h = await make_router(
        {
            "routes": [
                {"name": "strict", "topic": "dev/#", "to": TO, "format": "json", "subject": "{{ payload.name }}"},
                {"name": "small", "topic": "dev/#", "to": TO, "max_payload": 64},
                {"name": "any", "topic": "dev/#", "to": TO, "format": "binary", "text": "{{ payload | length }} bytes"},
            ]
        }
    )
    caplog.set_level(logging.DEBUG, logger="acs_email_bridge.routing.router")  # the source logs it at WARNING
    cases = {
        "dev/json": b"{not json",
        "dev/binary": b"\xff\xfe\x00\x01",
        "dev/big": b'{"name": "x", "pad": "' + b"a" * 100 + b'"}',
        "dev/missing": b'{"other": 1}',
    }
    for topic, payload in cases.items():
        outcome = await h.send(event(topic, payload))
        assert outcome.disposition is Disposition.MAILED  # the binary-safe route still mails
        assert outcome.route is not None and "any" in outcome.route
    counters = h.router.counters()
    assert counters[("strict", "failed", "bad-input")] == 3  # all but the big one, which has a name
    assert counters[("small", "failed", "bad-input")] == 3  # all but the small one without a name
    assert counters[("any", "mailed", "")] == 4
    messages = [r.getMessage() for r in caplog.records if r.name.endswith("router")]
    assert any("dev/json" in m and "invalid JSON" in m for m in messages)
    assert any("dev/binary" in m and "binary payload" in m for m in messages)
    assert any("dev/big" in m and "over this route's 64 byte limit" in m for m in messages)
    assert any("dev/missing" in m and "'payload.name' is undefined" in m for m in messages)


async def test_failed_event_alone_is_reported_failed_with_its_reason(make_router: MakeRouter, event) -> None:
    h = await make_router({"presets": {"frigate": {"to": TO}}})
    outcome = await h.send(event("frigate/events", b'{"type": "new", "after": {"id": "x", "label": "person"}}'))
    assert outcome.disposition is Disposition.FAILED
    assert outcome.route == "frigate"
    assert "payload.after.false_positive" in outcome.reason or "payload.after.camera" in outcome.reason


async def test_no_matching_route_is_ignored(make_router: MakeRouter, event) -> None:
    h = await make_router({"routes": [{"name": "r", "topic": "a/#", "to": TO}]})
    assert (await h.send(event("b/c", "x"))).disposition is Disposition.IGNORED


async def test_attachments_base64_file_and_companion(make_router: MakeRouter, event, tmp_path: Path) -> None:
    allowed = tmp_path / "shared"
    allowed.mkdir()
    (allowed / "report.pdf").write_bytes(b"%PDF-1.4 report")
    (tmp_path / "secret.pdf").write_bytes(b"%PDF-1.4 secret")
    os.symlink(tmp_path / "secret.pdf", allowed / "link.pdf")
    h = await make_router(
        {
            "routes": [
                {
                    "name": "r",
                    "topic": "docs/+",
                    "to": TO,
                    "html": '<img src="cid:cam.jpg">',
                    "allowed_dirs": [str(allowed)],
                    "attachments": [
                        {"base64": "image", "name": "photo", "optional": True},
                        {"file": "{{ payload.path | default('') }}", "optional": True},
                        {"companion": "cams/{{ topic_parts[1] }}/snapshot", "name": "cam.jpg", "inline": True},
                    ],
                }
            ]
        }
    )
    assert h.router.topics() == ["docs/+", "cams/+/snapshot"]
    no_snapshot = await h.send(event("docs/a", "{}"))
    assert no_snapshot.disposition is Disposition.FAILED
    assert "nothing was received yet on companion topic 'cams/a/snapshot'" in no_snapshot.reason
    await h.send(event("cams/a/snapshot", JPEG))
    payload = {"image": base64.b64encode(b"\x89PNG\r\n\x1a\nxx").decode(), "path": str(allowed / "report.pdf")}
    [mail] = (await h.send(event("docs/a", json.dumps(payload)))).mails
    assert [(a.name, a.content_type, a.content_id) for a in mail.attachments] == [
        ("photo.png", "image/png", None),
        ("report.pdf", "application/pdf", None),
        ("cam.jpg", "image/jpeg", "cam.jpg"),
    ]
    for outside in (str(tmp_path / "secret.pdf"), str(allowed / "link.pdf"), str(allowed / ".." / "secret.pdf")):
        outcome = await h.send(event("docs/a", json.dumps({"path": outside})))
        assert outcome.disposition is Disposition.FAILED
        assert "outside the allowed directories" in outcome.reason
    bad = await h.send(event("docs/a", json.dumps({"image": "%%% not base64"})))
    assert "not valid base64" in bad.reason
    gone = await h.send(event("docs/a", json.dumps({"path": str(allowed / "gone.pdf")})))
    assert gone.disposition is Disposition.FAILED
    assert "does not exist" in gone.reason


async def test_missing_ok_leaves_out_a_file_that_is_not_there(make_router: MakeRouter, event, tmp_path: Path) -> None:
    h = await make_router(
        {
            "routes": [
                {
                    "name": "r",
                    "topic": "t",
                    "to": TO,
                    "allowed_dirs": [str(tmp_path)],
                    "attachments": [{"file": "{{ payload.path }}", "missing_ok": True}],
                    "text": "{{ attachments | length }} attached",
                }
            ]
        }
    )
    [mail] = (await h.send(event("t", json.dumps({"path": str(tmp_path / "gone.webp")})))).mails
    assert (mail.attachments, mail.text) == ((), "0 attached")
    outside = await h.send(event("t", json.dumps({"path": "/etc/hostname"})))
    assert "outside the allowed directories" in outside.reason  # missing_ok never lowers the fence


async def test_an_optional_attachment_whose_field_the_payload_lacks_is_left_out(
    make_router: MakeRouter, event, tmp_path: Path
) -> None:
    """``optional``: a payload without the field names no file (the README's clip); a named file must be there."""
    attachments = [{"file": "{{ payload.clip }}", "optional": True}, {"base64": "img", "name": "x.png"}]
    h = await make_router(
        {"routes": [{"name": "r", "topic": "t", "to": TO, "allowed_dirs": [str(tmp_path)], "attachments": attachments}]}
    )
    outcome = await h.send(event("t", json.dumps({"img": base64.b64encode(b"png").decode()})))
    assert outcome.disposition is Disposition.MAILED, outcome.reason
    [mail] = outcome.mails
    assert [a.name for a in mail.attachments] == ["x.png"]
    failed = await h.send(event("t", json.dumps({"clip": str(tmp_path / "c.mp4")})))
    assert failed.disposition is Disposition.FAILED and "c.mp4' does not exist" in failed.reason  # named: needed
    typo = [{"file": "{{ paylod.clip }}", "optional": True}]  # not a payload field: a mistake, not "not named"
    h = await make_router(
        {"routes": [{"name": "r", "topic": "t", "to": TO, "allowed_dirs": [str(tmp_path)], "attachments": typo}]}
    )
    assert "'paylod' is undefined" in (await h.send(event("t", "{}"))).reason


async def test_an_event_failing_on_every_route_keeps_every_reason(make_router: MakeRouter, event) -> None:
    routes = [
        {"name": "a", "topic": "t", "to": TO, "format": "json", "subject": "{{ payload.x }}"},
        {"name": "b", "topic": "t", "to": TO, "max_payload": 4},
    ]
    outcome = await (await make_router({"routes": routes})).send(event("t", b'{"y": "too long for b"}'))
    assert outcome.disposition is Disposition.FAILED and outcome.route == "a,b"
    assert outcome.reason.startswith("route a: template 'a.subject': line 1: 'payload.x' is undefined")
    assert "; route b: payload of 23 bytes is over this route's 4 byte limit" in outcome.reason


async def test_a_sensor_of_another_kind_is_dropped_by_when_not_failed(make_router: MakeRouter, event) -> None:
    h = await make_router(
        {
            "presets": {
                "zigbee2mqtt_leak": {"to": TO},
                "zigbee2mqtt_smoke": {"to": TO},
                "zigbee2mqtt_battery": {"to": TO},
            }
        }
    )
    smoke = (FIXTURES / "z2m-smoke.json").read_bytes()
    outcome = await h.send(event("zigbee2mqtt/hallway", smoke))
    assert outcome.route == "zigbee2mqtt_smoke"
    counters = h.router.counters()
    assert counters[("zigbee2mqtt_leak", "dropped", "when")] == 1
    assert counters[("zigbee2mqtt_battery", "dropped", "change_only")] == 1  # battery_low false, as assumed at start
    assert not any(kind == "failed" for _route, kind, _rule in counters)
