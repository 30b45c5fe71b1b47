"""Attacks on the router's promises: a reload or restart that drops a route, unreadable attachment files."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from routing_helpers import Clock, MakeRouter

from acs_email_bridge.mqtt.events import InboundEvent
from acs_email_bridge.routing import Router, routing_from_config
from acs_email_core.message import EmailMessage, MessageLimits


def _digest(name: str) -> dict[str, Any]:
    return {"routes": [{"name": name, "topic": "d/#", "to": "me@example.com", "digest": "10m", "subject": "{{ raw }}"}]}


async def test_held_digest_of_a_route_renamed_by_reload_is_mailed(
    make_router: MakeRouter, event: Callable[..., InboundEvent], clock: Clock, tmp_path: Path
) -> None:
    h = await make_router(_digest("old-name"))
    await h.send(event("d/1", "first"))
    await h.send(event("d/2", "second"))
    await h.router.reload(routing_from_config(_digest("new-name"), base_dir=tmp_path))
    clock.advance(601)
    [mail] = await h.flush()
    assert "first" in (mail.text or "") and "second" in (mail.text or "")
    assert [a.address for a in mail.to] == ["me@example.com"]
    assert h.router.held() == 0


async def test_held_digest_of_a_route_gone_at_restart_is_mailed(
    make_router: MakeRouter, event: Callable[..., InboundEvent], clock: Clock, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    h = await make_router(_digest("removed"), state=state)
    await h.send(event("d/1", "kept overnight"))
    await h.send(event("d/2", "and this"))
    await h.router.stop()
    second = await make_router({"routes": [{"name": "other", "topic": "x", "to": "me@example.com"}]}, state=state)
    clock.advance(601)
    [mail] = await second.flush()
    assert "kept overnight" in (mail.text or "") and "and this" in (mail.text or "")
    assert second.router.held() == 0


async def test_collapsed_event_of_a_route_removed_by_reload_is_mailed(
    make_router: MakeRouter, event: Callable[..., InboundEvent], clock: Clock, tmp_path: Path
) -> None:
    frigate = {"presets": {"frigate": {"to": "me@example.com"}}}
    h = await make_router(frigate)
    new = (
        '{"type": "new", "before": {}, "after": {"id": "e1", "camera": "drive", "label": "person", '
        '"start_time": 1764662400, "false_positive": false, "score": 0.8}}'
    )
    await h.send(event("frigate/events", new))
    await h.router.reload(routing_from_config({"routes": []}, base_dir=tmp_path))
    clock.advance(31)
    [mail] = await h.flush()
    assert mail.subject == "Person at drive"


async def test_a_fifo_named_as_attachment_fails_the_event_instead_of_blocking(
    make_router: MakeRouter, event: Callable[..., InboundEvent], tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    os.mkfifo(scans / "pipe.pdf")
    h = await make_router({"presets": {"scanner": {"to": "me@example.com", "allowed_dirs": [str(scans)]}}})
    outcome = await h.send(event("scanner/hall", f'{{"path": "{scans / "pipe.pdf"}"}}'))
    assert outcome.disposition.value == "failed" and "not a regular file" in (outcome.reason or "")


async def test_an_html_only_route_digests_payload_text_once_escaped(
    make_router: MakeRouter, event: Callable[..., InboundEvent], clock: Clock
) -> None:
    route = {"name": "h", "topic": "h", "to": "me@example.com", "digest": "1m", "html": "<b>{{ raw }}</b>"}
    h = await make_router({"routes": [route]})
    await h.send(event("h", "Tom & Jerry <script>x</script>"))
    await h.send(event("h", "second"))
    clock.advance(61)
    [mail] = await h.flush()
    assert "Tom & Jerry <script>x</script>" in (mail.text or "")
    assert "Tom &amp; Jerry &lt;script&gt;x&lt;/script&gt;" in (mail.html or "")
    assert "<script>" not in (mail.html or "")


async def test_a_route_failing_while_another_mails_is_reported_with_its_reason(
    make_router: MakeRouter, event: Callable[..., InboundEvent]
) -> None:
    h = await make_router(
        {
            "routes": [
                {"name": "good", "topic": "t", "to": "me@example.com"},
                {"name": "broken", "topic": "t", "to": "me@example.com", "subject": "{{ payload.missing.field }}"},
                {"name": "bad-to", "topic": "t", "to": "{{ payload.who }}"},
            ]
        }
    )
    outcome = await h.send(event("t", '{"who": "not an address"}'))
    assert [m.subject for m in outcome.mails] == ["t"]
    assert [name for name, _why in outcome.failures] == ["broken", "bad-to"]
    assert "'payload.missing' is undefined" in outcome.failures[0][1]
    assert "not an address" in outcome.failures[1][1]


async def test_a_clock_stepped_back_does_not_silence_a_cooldown_route_for_the_step(
    make_router: MakeRouter, event: Callable[..., InboundEvent], clock: Clock
) -> None:
    h = await make_router({"routes": [{"name": "c", "topic": "c", "to": "me@example.com", "cooldown": "5m"}]})
    await h.send(event("c", "first"))
    clock.advance(-10)  # a small step back (NTP): still within the cooldown
    assert (await h.send(event("c", "second"))).rule == "cooldown"
    clock.advance(-86_400)  # the clock was a day ahead and is corrected
    assert [m.text for m in (await h.send(event("c", "third"))).mails] != []
    assert len(h.mails) == 2


async def test_a_clock_stepped_back_does_not_hold_a_digest_for_the_step(
    make_router: MakeRouter, event: Callable[..., InboundEvent], clock: Clock
) -> None:
    h = await make_router(_digest("d"))
    await h.send(event("d/1", "one"))
    await h.send(event("d/2", "two"))
    clock.advance(-86_400)  # the digest would be due in a day and ten minutes: the clock went back, mail it now
    [mail] = await h.flush()
    assert "one" in (mail.text or "") and "two" in (mail.text or "")
    assert h.router.held() == 0


async def test_ups_presets_mail_power_back_while_the_battery_is_low_and_ignore_cleared_topics(
    make_router: MakeRouter, event: Callable[..., InboundEvent]
) -> None:
    h = await make_router({"presets": {"nut": {"to": "me@example.com"}, "apcupsd": {"to": "me@example.com"}}})
    steps = [
        ("nut2mqtt/den_ups_ups_status/state", "OB DISCHRG LB", "UPS den_ups battery LOW"),
        ("nut2mqtt/den_ups_ups_status/state", "", None),  # a retained status cleared: no "UPS den_ups:" mail
        ("nut2mqtt/den_ups_ups_status/state", "OL CHRG LB", "UPS den_ups is back on line"),
        ("apcupsd/nas/raw/STATUS", "ONBATT LOWBATT", "UPS nas battery LOW"),
        ("apcupsd/nas/raw/STATUS", " ", None),
        ("apcupsd/nas/raw/STATUS", "ONLINE LOWBATT", "UPS nas is back on line"),
    ]
    for topic, payload, subject in steps:
        outcome = await h.send(event(topic, payload))
        assert [m.subject for m in outcome.mails] == ([subject] if subject else []), payload
        if subject is None:
            assert (outcome.disposition.value, outcome.rule) == ("dropped", "when")


async def test_zigbee_preset_ignores_a_null_state_instead_of_mailing_leak_cleared(
    make_router: MakeRouter, event: Callable[..., InboundEvent]
) -> None:
    h = await make_router({"presets": {"zigbee2mqtt_leak": {"to": "me@example.com"}}})
    assert [m.subject for m in (await h.send(event("zigbee2mqtt/cellar", '{"water_leak": true}'))).mails] == [
        "Water leak at cellar"
    ]
    outcome = await h.send(event("zigbee2mqtt/cellar", '{"water_leak": null, "battery": 80}'))
    assert (outcome.disposition.value, outcome.rule) == ("dropped", "when")
    assert [m.subject for m in (await h.send(event("zigbee2mqtt/cellar", '{"water_leak": false}'))).mails] == [
        "Leak cleared at cellar"
    ]


async def test_a_night_of_events_too_big_for_one_mail_comes_as_several_digests(
    event: Callable[..., InboundEvent], clock: Clock, tmp_path: Path
) -> None:
    route = {"name": "q", "topic": "q", "to": "me@example.com", "text": "{{ raw }}"}
    route["quiet_hours"] = {"start": "07:00", "end": "09:00"}  # the clock starts at 08:00 UTC
    alone = {**route, "name": "alone", "topic": "alone"}
    config = routing_from_config({"routing": {"timezone": "UTC"}, "routes": [route, alone]}, base_dir=tmp_path)
    submitted: list[EmailMessage] = []

    async def submit(message: EmailMessage, source: str) -> str:
        submitted.append(message)
        return message.message_id

    limits = MessageLimits(max_request_bytes=200_000)
    router = Router(
        config, submit=submit, sender="a@example.com", state_path=tmp_path / "s.db", clock=clock, limits=limits
    )
    await router.start(timers=False)
    try:
        await router(event("alone", "huge " * 50_000))  # alone over the limit: counted as failed, not retried forever
        for n in range(150):  # 150 x 2,000 characters, in text and HTML: over the 200 kB a mail may have
            await router(event("q", f"{n:04d}" + "x" * 1996))
        clock.advance(3600)
        for _round in range(10):
            await router.flush_due()
        listed = sorted(
            int(line.split()[0][:4])
            for m in submitted
            for line in (m.text or "").splitlines()
            if line.startswith("    ") and line.strip()[:4].isdigit()
        )
        assert listed == list(range(150))
        assert len(submitted) > 1 and router.held() == 0
        assert router.counters()[("alone", "failed", "quiet")] == 1
    finally:
        await router.stop()


async def test_a_burst_between_quota_checks_digests_what_the_quota_cannot_carry(
    event: Callable[..., InboundEvent], clock: Clock, tmp_path: Path
) -> None:
    async def room() -> int:  # three sends left and nothing queued: the fourth mail would wait
        return 3

    async def submit(message: EmailMessage, source: str) -> str:
        return message.message_id

    config = routing_from_config({"routes": [{"name": "r", "topic": "t", "to": "me@example.com"}]}, base_dir=tmp_path)
    router = Router(
        config, submit=submit, sender="a@example.com", state_path=tmp_path / "s.db", clock=clock, quota_probe=room
    )
    await router.start(timers=False)
    try:
        await router.refresh_quota()
        outcomes = await asyncio.gather(*(router(event("t", str(n))) for n in range(10)))  # one batch, no refresh
        assert [o.disposition.value for o in outcomes] == ["mailed"] * 3 + ["digested"] * 7
        assert {o.rule for o in outcomes[3:]} == {"quota"}
    finally:
        await router.stop()


async def test_attachment_names_from_a_payload_lose_their_directories(
    make_router: MakeRouter, event: Callable[..., InboundEvent], tmp_path: Path
) -> None:
    h = await make_router({"presets": {"scanner": {"to": "me@example.com", "allowed_dirs": [str(tmp_path)]}}})
    names = []
    for name in ("../../etc/cron.d/x.pdf", "C:\\Users\\me\\scan.pdf", "../"):
        outcome = await h.send(event("scanner/s", json.dumps({"filename": name, "content": "JVBERi0xLjQK"})))
        names += [a.name for m in outcome.mails for a in m.attachments]
    assert names == ["x.pdf", "scan.pdf", "attachment.pdf"]


async def test_numbers_json_does_not_know_are_read_as_numbers_and_every_route_runs(
    make_router: MakeRouter, event: Callable[..., InboundEvent]
) -> None:
    hot = {"name": "hot", "topic": "temp", "to": "me@example.com", "when": "payload is number and payload > 30"}
    log = {"name": "log", "topic": "temp", "to": "me@example.com", "subject": "{{ raw }}"}
    h = await make_router({"routes": [hot, log]})
    for raw, mailed in (("+31.5", ["hot", "log"]), (".5", ["log"]), ("45.", ["hot", "log"]), ("9" * 5000, ["log"])):
        outcome = await h.send(event("temp", raw))
        assert outcome.disposition.value == "mailed" and outcome.route == ",".join(mailed), raw


async def test_json_nested_too_deep_fails_its_route_while_a_text_route_mails(
    make_router: MakeRouter, event: Callable[..., InboundEvent]
) -> None:
    text = {"name": "text", "topic": "deep", "format": "text", "to": "me@example.com", "text": "{{ raw | length }}"}
    parsed = {"name": "parsed", "topic": "deep", "format": "json", "to": "me@example.com"}
    h = await make_router({"routes": [text, parsed]})
    outcome = await h.send(event("deep", "[" * 200_000 + "]" * 200_000))
    assert [m.text for m in outcome.mails] == ["400000"]
    assert [name for name, _why in outcome.failures] == ["parsed"]
