"""Flood control with an injected clock: dedup, cooldown, change-only, digests, quiet hours; state across restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from routing_helpers import JPEG, T0, Clock, MakeRouter, fixture

from acs_email_bridge.mqtt.events import Disposition
from acs_email_bridge.routing import Router, quota_probe, routing_from_config
from acs_email_core.engine import Engine
from acs_email_core.errors import OutboxFullError
from acs_email_core.message import EmailMessage
from acs_email_core.quota import Quota, Window

TO = "ops@example.com"


def _dispositions(outcomes) -> list[str]:
    return [o.rule or o.disposition.value for o in outcomes]


async def test_dedup_drops_repeats_of_a_key_within_the_window(make_router: MakeRouter, event, clock: Clock) -> None:
    h = await make_router(
        {"routes": [{"name": "d", "topic": "t", "to": TO, "dedup": {"key": "{{ payload.id }}", "window": "1m"}}]}
    )
    for payload in ('{"id": "A"}', '{"id": "A", "n": 2}', '{"id": "B"}'):
        await h.send(event("t", payload))
    clock.advance(61)
    await h.send(event("t", '{"id": "A"}'))
    assert _dispositions(h.outcomes) == ["mailed", "dedup", "mailed", "mailed"]
    assert h.router.counters()[("d", "dropped", "dedup")] == 1


async def test_cooldown_per_key(make_router: MakeRouter, event, clock: Clock) -> None:
    h = await make_router(
        {"routes": [{"name": "c", "topic": "door/+", "to": TO, "cooldown": {"key": "{{ topic }}", "window": "5m"}}]}
    )
    await h.send(event("door/front", "open"))
    clock.advance(10)
    await h.send(event("door/front", "open"))
    await h.send(event("door/back", "open"))
    clock.advance(291)
    await h.send(event("door/front", "open"))
    assert _dispositions(h.outcomes) == ["mailed", "cooldown", "mailed", "mailed"]


async def test_change_only_survives_a_restart(make_router: MakeRouter, event, tmp_path: Path) -> None:
    config = {
        "routes": [
            {
                "name": "ups",
                "topic": "ups/+/status",
                "to": TO,
                "change_only": {"value": "{{ raw.split()[0] }}", "initial": "OL"},
                "subject": "{{ topic_parts[1] }}: {{ previous }} -> {{ value }}",
            }
        ]
    }
    state = tmp_path / "state.db"
    first = await make_router(config, state=state)
    for status in ("OL CHRG", "OB DISCHRG", "OB DISCHRG"):
        await first.send(event("ups/den/status", status))
    await first.router.stop()
    second = await make_router(config, state=state)
    for status in ("OB", "OL CHRG"):
        await second.send(event("ups/den/status", status))
    assert _dispositions(first.outcomes + second.outcomes) == [
        "change_only",
        "mailed",
        "change_only",
        "change_only",
        "mailed",
    ]
    assert [m.subject for m in first.mails + second.mails] == ["den: OL -> OB", "den: OB -> OL"]


async def test_digest_collects_a_window_into_one_mail(make_router: MakeRouter, event, clock: Clock) -> None:
    h = await make_router(
        {
            "routing": {"timezone": "UTC"},
            "routes": [
                {
                    "name": "motion",
                    "topic": "motion/+",
                    "to": TO,
                    "subject": "Motion in {{ topic_parts[1] }}",
                    "text": "level {{ payload.level }}",
                    "digest": "10m",
                }
            ],
        }
    )
    for room, offset in (("hall", 0), ("kitchen", 60), ("hall", 240)):
        clock.now = T0 + offset
        outcome = await h.send(event("motion/" + room, json.dumps({"level": offset})))
        assert (outcome.disposition, outcome.rule) == (Disposition.DIGESTED, "digest")
    clock.now = T0 + 599
    assert await h.flush() == []
    clock.now = T0 + 600
    [mail] = await h.flush()
    assert mail.subject == "Digest: 3 events from motion (08:00-08:04)"
    assert [a.address for a in mail.to] == [TO]
    assert mail.text is not None
    lines = mail.text.splitlines()
    assert "2025-12-02 08:00:00  Motion in hall" in lines
    assert "2025-12-02 08:01:00  Motion in kitchen" in lines
    assert "    level 240" in lines
    assert mail.html is not None and "<b>Motion in kitchen</b>" in mail.html
    assert await h.flush() == []  # sent once
    assert h.router.held() == 0


async def test_digest_is_sent_early_when_full(make_router: MakeRouter, event, clock: Clock) -> None:
    h = await make_router(
        {"routes": [{"name": "m", "topic": "m", "to": TO, "digest": {"window": "1h", "max_events": 3}}]}
    )
    sent = []
    for n in range(4):
        await h.send(event("m", str(n)))
        sent += await h.flush()  # what the timer does as soon as a digest is due
        clock.advance(1)
    assert len(sent) == 1
    assert sent[0].subject.startswith("Digest: 3 events from m")
    assert h.router.held() == 1  # the fourth starts the next digest


async def test_digest_while_the_quota_is_short(make_router: MakeRouter, event, clock: Clock) -> None:
    h = await make_router({"routes": [{"name": "q", "topic": "q", "to": TO}]})
    assert (await h.send(event("q", "1"))).disposition is Disposition.MAILED
    h.router.quota_short = True
    for n in (2, 3):
        outcome = await h.send(event("q", str(n)))
        assert (outcome.disposition, outcome.rule) == (Disposition.DIGESTED, "quota")
    h.router.quota_short = False
    assert (await h.send(event("q", "4"))).disposition is Disposition.MAILED
    clock.advance(600)
    [digest] = await h.flush()
    assert digest.subject.startswith("Digest (quota was short): 2 events from q")


async def test_quiet_hours_hold_events_for_a_morning_digest(make_router: MakeRouter, event, clock: Clock) -> None:
    h = await make_router(
        {
            "routing": {"timezone": "Europe/Berlin"},
            "routes": [
                {
                    "name": "garage",
                    "topic": "garage/door",
                    "to": TO,
                    "subject": "Garage {{ raw }}",
                    "quiet_hours": {"start": "22:00", "end": "07:00"},
                }
            ],
        }
    )
    evening = T0 + 13 * 3600 + 30 * 60  # 21:30 UTC = 22:30 in Berlin
    for offset, state in ((0, "open"), (40 * 60, "closed"), (4.5 * 3600, "open")):
        clock.now = evening + offset
        outcome = await h.send(event("garage/door", state, received_at=clock.now))
        assert outcome.rule == "quiet_hours"
    clock.now = T0 + 21 * 3600 + 59 * 60  # 06:59 Berlin
    assert await h.flush() == []
    clock.now = T0 + 22 * 3600  # 07:00 Berlin
    [digest] = await h.flush()
    assert digest.subject == "While you were away: 3 events from garage (02 Dec 22:30 - 03 Dec 03:00)"
    assert digest.text is not None and "2025-12-02 23:10:00  Garage closed" in digest.text
    outcome = await h.send(event("garage/door", "open"))
    assert outcome.disposition is Disposition.MAILED


async def test_held_quiet_hours_digests_follow_quiet_hours_changed_by_reload_or_restart(
    make_router: MakeRouter, event, clock: Clock, tmp_path: Path
) -> None:
    def config(end: str) -> dict[str, Any]:
        route = {"name": "garage", "topic": "garage/+", "to": TO, "quiet_hours": {"start": "22:00", "end": end}}
        return {"routing": {"timezone": "Europe/Berlin"}, "routes": [route]}

    state = tmp_path / "state.db"
    first = await make_router(config("07:00"), state=state)
    clock.now = T0 + 13 * 3600 + 30 * 60  # 22:30 Berlin
    assert (await first.send(event("garage/door", "open"))).rule == "quiet_hours"
    clock.now = T0 + 17 * 3600  # 02:00 Berlin: quiet hours now end at 05:00
    await first.router.reload(routing_from_config(config("05:00"), base_dir=tmp_path))
    await first.router.stop()
    second = await make_router(config("05:00"), state=state)  # the new end was stored
    clock.now = T0 + 19 * 3600 + 59 * 60  # 04:59 Berlin
    assert await second.flush() == []
    clock.now = T0 + 20 * 3600  # 05:00 Berlin
    [held] = await second.flush()  # one event held: mailed as it would have been, with its time
    assert (held.subject, held.text) == ("garage/door", "garage/door at 2025-12-02 22:30:00\n\nopen")
    assert (await second.send(event("garage/door", "closed"))).disposition is Disposition.MAILED
    clock.now = T0 + 14 * 3600  # 23:00 Berlin again
    assert (await second.send(event("garage/door", "open"))).rule == "quiet_hours"
    await second.router.stop()
    third = await make_router(config("22:30"), state=state)  # started with quiet hours already over
    [held] = await third.flush()
    assert (held.subject, held.text) == ("garage/door", "garage/door at 2025-12-02 23:00:00\n\nopen")


async def test_held_digest_survives_a_restart_and_a_redelivery_is_listed_once(
    make_router: MakeRouter, event, clock: Clock, tmp_path: Path
) -> None:
    config = {"routes": [{"name": "m", "topic": "m", "to": TO, "digest": "5m"}]}
    state = tmp_path / "state.db"
    first = await make_router(config, state=state)
    kept = event("m", "one")
    await first.send(kept)
    await first.send(event("m", "two"))
    await first.router.stop()
    second = await make_router(config, state=state)
    redelivered = await second.send(event("m", "one", event_id=kept.event_id, duplicate=True))
    assert redelivered.disposition is Disposition.DIGESTED
    clock.advance(300)
    [digest] = await second.flush()
    assert "2 events" in digest.subject


async def test_a_message_delivered_twice_in_one_batch_is_listed_once_in_its_digest(
    make_router: MakeRouter, event, clock: Clock
) -> None:
    h = await make_router({"routes": [{"name": "m", "topic": "m", "to": TO, "digest": "5m"}]})
    first = event("m", "one")
    await asyncio.gather(  # the redelivery routed before the first delivery's decision is recorded
        h.send(first), h.send(event("m", "two")), h.send(event("m", "one", event_id=first.event_id))
    )
    assert h.router.held() == 2
    clock.advance(300)
    [digest] = await h.flush()
    assert "2 events" in digest.subject


async def test_a_redelivered_event_gets_its_first_decision_and_mail_id(
    make_router: MakeRouter, event, tmp_path: Path
) -> None:
    config = {
        "routes": [
            {"name": "plain", "topic": "ups", "to": TO},
            {
                "name": "changes",
                "topic": "ups",
                "to": TO,
                "change_only": {"initial": "OL"},
                "subject": "{{ previous }} -> {{ value }}",
            },
        ]
    }
    state = tmp_path / "state.db"
    first = await make_router(config, state=state)
    original = event("ups", "OB")
    mailed = await first.send(original)
    assert mailed.route == "plain,changes"
    ids = [m.message_id for m in mailed.mails]
    # The bridge died after the router stored its state but before the outbox commit: the broker redelivers.
    await first.router.stop()
    second = await make_router(config, state=state)
    again = await second.send(event("ups", "OB", event_id=original.event_id, duplicate=True))
    assert [m.message_id for m in again.mails] == ids  # the outbox stores them once
    assert [m.subject for m in again.mails] == [m.subject for m in mailed.mails] == ["ups", "OL -> OB"]
    later = await second.send(event("ups", "OB"))  # a new message with the same value: change-only drops it
    assert later.route == "plain"


async def test_quota_probe_reports_short_when_the_queue_uses_up_the_quota(
    tmp_path: Path, emulator, engine_settings
) -> None:

    quota = Quota(send=(Window(2, 60.0),), poll=(Window(10, 60.0),))
    settings = engine_settings(emulator, tmp_path / "outbox.db", "a@example.com", quota=quota)
    engine = Engine(settings)
    await engine.start(deliver=False)
    try:
        probe = quota_probe(engine)
        mail = {"sender": "a@example.com", "to": TO, "subject": "s", "text": "t"}
        assert await probe() == 2
        await engine.submit(EmailMessage.build(**mail))
        assert await probe() == 1
        await engine.submit(EmailMessage.build(**mail))
        assert await probe() == 0  # two queued, two sends left: the next mail would wait
    finally:
        await engine.stop()


async def test_refresh_quota_switches_routes_to_digests_and_back(tmp_path: Path, clock: Clock, event) -> None:

    short = [True]

    async def probe() -> int:
        return 0 if short[0] else 5

    async def submit(message, source: str) -> str:
        return message.message_id

    routing = routing_from_config({"routes": [{"name": "r", "topic": "t", "to": TO}]}, base_dir=tmp_path)
    router = Router(routing, submit=submit, sender=TO, state_path=tmp_path / "s.db", clock=clock, quota_probe=probe)
    await router.start(timers=False)
    try:
        await router.refresh_quota()
        assert (await router(event("t", "1"))).rule == "quota"
        short[0] = False
        await router.refresh_quota()
        assert (await router(event("t", "2"))).disposition is Disposition.MAILED
    finally:
        await router.stop()


async def test_a_digest_interrupted_while_queued_is_sent_once_with_exactly_its_events(
    event, clock: Clock, tmp_path: Path
) -> None:
    config = {"routes": [{"name": "m", "topic": "m", "to": TO, "digest": "5m", "text": "{{ raw }}"}]}
    routing = routing_from_config(config, base_dir=tmp_path)
    queued: list[EmailMessage] = []
    full = [True]

    async def submit(message: EmailMessage, source: str) -> str:
        queued.append(message)
        if full[0]:  # the outbox refuses (or the process dies) after the mail was handed over
            raise OutboxFullError("outbox full")
        return message.message_id

    def make() -> Router:
        return Router(routing, submit=submit, sender=TO, state_path=tmp_path / "s.db", clock=clock)

    first = make()
    await first.start(timers=False)
    for n in (1, 2):
        await first(event("m", f"early {n}"))
    clock.advance(300)
    assert await first.flush_due() == []  # not queued: the events stay held, marked for this digest
    await first.stop()

    full[0] = False
    second = make()
    await second.start(timers=False)  # completes the interrupted digest before taking new events
    await second(event("m", "late"))
    clock.advance(300)
    await second.flush_due()
    await second.stop()
    first_try, retried, late = queued
    assert retried.message_id == first_try.message_id  # the outbox stores it once
    assert "2 events" in retried.subject and "early 1" in (retried.text or "")
    assert late.subject == "m" and late.text == "late"


async def test_digests_carry_the_events_attachments(
    make_router: MakeRouter, event, clock: Clock, tmp_path: Path
) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.pdf").write_bytes(b"%PDF-1.4 a")
    h = await make_router(
        {
            "routes": [
                {
                    "name": "cam",
                    "topic": "cam/+",
                    "to": TO,
                    "subject": "{{ topic_parts[1] }}",
                    "text": "{{ payload.clip }}",
                    "digest": "10m",
                    "allowed_dirs": [str(clips)],
                    "attachments": [{"file": "{{ payload.clip }}"}],
                }
            ]
        }
    )
    await h.send(event("cam/door", json.dumps({"clip": str(clips / "a.pdf")})))
    await h.send(event("cam/yard", json.dumps({"clip": str(clips / "gone.pdf")})))
    clock.advance(600)
    [digest] = await h.flush()
    assert [(a.name, a.data) for a in digest.attachments] == [("01-a.pdf", b"%PDF-1.4 a")]
    assert digest.text is not None
    assert "    [attached: 01-a.pdf]" in digest.text
    assert f"[attachment unavailable: attachment '{clips / 'gone.pdf'}' does not exist]" in digest.text


async def test_prune_forgets_expired_dedup_keys(make_router: MakeRouter, event, clock: Clock, tmp_path: Path) -> None:
    config = {"routes": [{"name": "d", "topic": "t", "to": TO, "dedup": {"key": "{{ raw }}", "window": "1m"}}]}
    state = tmp_path / "state.db"
    h = await make_router(config, state=state)
    await h.send(event("t", "a"))
    clock.advance(30)
    await h.send(event("t", "b"))
    clock.advance(40)  # a is 70 s old, b 40 s
    await h.router.prune()
    await h.router.stop()
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT key FROM flood WHERE route = 'd'").fetchall() == [("b",)]
    again = await make_router(config, state=state)
    outcomes = [await again.send(event("t", v)) for v in ("a", "b")]
    assert [o.rule or o.disposition.value for o in outcomes] == ["mailed", "dedup"]


async def test_a_frigate_event_at_night_arrives_in_the_morning_with_its_snapshot(
    make_router: MakeRouter, event, clock: Clock
) -> None:
    h = await make_router(
        {
            "routing": {"timezone": "UTC"},
            "presets": {"frigate": {"to": TO, "quiet_hours": {"start": "22:00", "end": "07:00"}}},
        }
    )
    clock.now = T0 + 15 * 3600  # 23:00 UTC
    await h.send(event("frigate/front_door/person/snapshot", JPEG))
    for name in ("frigate-new.json", "frigate-end.json"):
        assert (await h.send(event("frigate/events", fixture(name)))).rule == "collapse"
    assert await h.flush() == []  # the collapsed event goes on into the quiet-hours digest
    assert h.router.counters()[("frigate", "digested", "collapse")] == 3  # two events, then the collapsed one
    clock.now = T0 + 23 * 3600  # 07:00
    [mail] = await h.flush()
    assert mail.subject == "Person at front door"
    assert [(a.name, a.data) for a in mail.attachments] == [("01-snapshot.jpg", JPEG)]
    assert "[attached: 01-snapshot.jpg]" in (mail.text or "")


async def test_an_oversized_companion_is_refused_and_the_previous_one_kept(make_router: MakeRouter, event) -> None:
    h = await make_router(
        {
            "routing": {"companion_max_payload": "1KiB"},
            "routes": [
                {"name": "r", "topic": "t", "to": TO, "attachments": [{"companion": "cam/snap", "name": "s.jpg"}]}
            ],
        }
    )
    await h.send(event("cam/snap", JPEG))
    refused = await h.send(event("cam/snap", JPEG * 10))
    assert (refused.disposition, refused.route) == (Disposition.FAILED, "(companions)")
    assert "over the 1,024 byte companion limit" in refused.reason
    [mail] = (await h.send(event("t", "x"))).mails
    assert mail.attachments[0].data == JPEG


async def test_concurrent_calls_keep_their_order_on_stateful_routes(make_router: MakeRouter, event) -> None:
    h = await make_router(
        {
            "routes": [
                {"name": "ups", "topic": "ups", "to": TO, "change_only": {"initial": "OL"}, "subject": "{{ value }}"},
                {"name": "log", "topic": "ups", "to": TO, "digest": "1h"},
            ]
        }
    )
    states = ["OB", "OB", "OL", "OL", "OB", "OL", "OL"]
    outcomes = await asyncio.gather(*(h.router(event("ups", s)) for s in states))
    subjects = [m.subject for o in outcomes for m in o.mails]
    assert subjects == ["OB", "OL", "OB", "OL"]
    assert h.router.held() == len(states)
