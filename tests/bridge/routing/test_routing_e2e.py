"""End to end with a real broker: ``mosquitto_pub`` → ``acs-email-bridge`` service → ACS emulator.

Each preset and each flood-control mode once, on the service as ``run`` builds it (the router's clock injected so
digests and quiet hours need no waiting).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from broker_fixtures import Mosquitto
from routing_helpers import FIXTURES, JPEG, SENDER, T0, Clock

from acs_email_bridge.emulator import Emulator
from acs_email_bridge.emulator.mailbox import ReceivedMail
from acs_email_bridge.mqtt.source import MqttSource
from acs_email_bridge.routing.service import create_router
from acs_email_bridge.service import Service, read_config

WAIT = 30.0  # seconds; generous, the machine is shared
Publish = Callable[..., Awaitable[None]]


@pytest.fixture
def publish(broker: Mosquitto) -> Publish:
    """``await publish(topic, payload, retain=False)`` with mosquitto_pub at QoS 1."""
    return broker.publish


class Bridge:
    def __init__(self, service: Service, emulator: Emulator, clock: Clock) -> None:
        self.service = service
        self.emulator = emulator
        self.clock = clock

    @property
    def router(self) -> Any:
        return self.service.router

    async def mails(self, count: int) -> list[ReceivedMail]:
        """Wait until the emulator holds ``count`` mails (besides the readiness probe) and a moment more for extras."""
        async with asyncio.timeout(WAIT):
            while len(self._real()) < count:
                await asyncio.sleep(0.05)
        return self._real()

    async def handled(self, route: str, kind: str, rule: str = "", count: int = 1) -> None:
        async with asyncio.timeout(WAIT):
            while self.router.counters().get((route, kind, rule), 0) < count:
                await asyncio.sleep(0.05)

    def _real(self) -> list[ReceivedMail]:
        return [m for m in self.emulator.mails if m.subject != "probe"]


StartBridge = Callable[[dict[str, Any]], Awaitable[Bridge]]


@pytest.fixture
async def bridge(
    tmp_path: Path, broker: Mosquitto, emulator: Emulator, publish: Publish, clock: Clock
) -> AsyncIterator[StartBridge]:
    """``await bridge(sections)``: the service (``run``) with these routes/presets, ready for messages."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(sections: dict[str, Any]) -> Bridge:
            config = {
                "acs": {
                    "sender": SENDER,
                    "connection_string": emulator.connection_string,
                    "ca_file": str(emulator.ca_file),
                },
                "quota": {"per_minute": 1000, "per_hour": 10000},
                "outbox": {"path": str(tmp_path / "outbox.db"), "synchronous": "normal"},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": f"routes-e2e-{broker.port}"},
                **sections,
            }
            config.setdefault("routes", []).append(
                {"name": "probe", "topic": "test/probe", "to": "probe@example.com", "subject": "probe"}
            )
            path = tmp_path / "bridge.yaml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            loaded = read_config(path)
            service = Service(loaded, router=functools.partial(create_router, clock=clock))
            await service.start()
            stack.push_async_callback(service.stop)
            ready = Bridge(service, emulator, clock)
            async with asyncio.timeout(WAIT):  # subscribed once a probe comes through
                while not ready.router.counters().get(("probe", "mailed", "")):
                    await publish("test/probe", "ping")
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await ready.handled("probe", "mailed")
            return ready

        yield start


async def _reload(b: Bridge, directory: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    """Edit the bridge's config file as a user would, then SIGHUP (the service's reload)."""
    path = directory / "bridge.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(config)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert await b.service.reload()


def _text(mail: ReceivedMail) -> str:
    return mail.payload["content"].get("plainText") or ""


async def test_frigate_snapshot_and_event_lifecycle(bridge: StartBridge, publish: Publish) -> None:
    b = await bridge({"presets": {"frigate": {"to": "owner@example.com"}}})
    await publish("frigate/front_door/person/snapshot", JPEG)
    await b.handled("(companions)", "stored", "companion")
    for name in ("frigate-new.json", "frigate-update.json", "frigate-end.json"):
        await publish("frigate/events", (FIXTURES / name).read_bytes())
    [mail] = await b.mails(1)
    assert mail.subject == "Person at front door"
    assert mail.recipients("to") == ["owner@example.com"]
    assert "Zones:   yard, driveway, porch" in _text(mail)
    assert [(a.name, a.content_id, a.content) for a in mail.attachments()] == [("snapshot.jpg", "snapshot.jpg", JPEG)]
    assert b.router.counters()[("frigate", "digested", "collapse")] == 3
    exposition = b.service.metrics.exposition().decode()
    assert 'acs_email_route_events_total{outcome="digested",route="frigate",rule="collapse"} 3.0' in exposition
    assert 'acs_email_route_events_total{outcome="mailed",route="frigate",rule="collapse"} 1.0' in exposition


async def test_ups_leak_and_scanner_presets(bridge: StartBridge, publish: Publish, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "doc.pdf").write_bytes(b"%PDF-1.4\nscanned\n")
    b = await bridge(
        {
            "routing": {"allowed_dirs": [str(scans)]},
            "presets": {
                "nut": {"to": "ups@example.com"},
                "apcupsd": {"to": "ups@example.com"},
                "zigbee2mqtt_leak": {"to": "leak@example.com"},
                "scanner": {"to": "office@example.com"},
                "tasmota_availability": {"to": "it@example.com"},
            },
        }
    )
    await publish("nut2mqtt/den_ups_battery_charge/state", "61")
    await b.handled("(companions)", "stored", "companion")
    await publish("nut2mqtt/den_ups_ups_status/state", "OB DISCHRG")
    await b.mails(1)
    await publish("apcupsd/nas/raw/STATUS", "ONBATT")
    await b.mails(2)
    await publish("zigbee2mqtt/basement_leak", (FIXTURES / "z2m-leak.json").read_bytes())
    await b.mails(3)
    await publish("scanner/office", json.dumps({"path": str(scans / "doc.pdf")}))
    await b.mails(4)
    await publish("tele/plug1/LWT", "Offline", retain=True)
    mails = await b.mails(5)
    assert [(m.subject, m.recipients("to")) for m in mails] == [
        ("UPS den_ups is on battery", ["ups@example.com"]),
        ("UPS nas is on battery", ["ups@example.com"]),
        ("Water leak at basement_leak", ["leak@example.com"]),
        ("Scan from office: doc.pdf", ["office@example.com"]),
        ("plug1 is offline", ["it@example.com"]),
    ]
    assert "Battery charge: 61 %" in _text(mails[0])
    assert [(a.name, a.content) for a in mails[3].attachments()] == [("doc.pdf", b"%PDF-1.4\nscanned\n")]


async def test_flood_control_modes(bridge: StartBridge, publish: Publish) -> None:
    b = await bridge(
        {
            "routing": {"timezone": "UTC"},
            "routes": [
                {
                    "name": "dedup",
                    "topic": "f/dedup",
                    "to": "a@example.com",
                    "dedup": {"key": "{{ raw }}", "window": "1h"},
                },
                {"name": "cooldown", "topic": "f/cool", "to": "a@example.com", "cooldown": "1h"},
                {"name": "change", "topic": "f/change", "to": "a@example.com", "change_only": True},
                {"name": "digest", "topic": "f/digest", "to": "a@example.com", "digest": "15m"},
                {
                    "name": "quiet",
                    "topic": "f/quiet",
                    "to": "a@example.com",
                    "quiet_hours": {"start": "07:00", "end": "09:00"},
                },
            ],
        }
    )
    b.clock.now = T0  # 08:00 UTC: inside the quiet hours
    for topic, payloads in (
        ("f/dedup", ["x", "x", "y"]),
        ("f/cool", ["1", "2"]),
        ("f/change", ["on", "on", "off"]),
        ("f/digest", ["d1", "d2", "d3"]),
        ("f/quiet", ["q1", "q2"]),
    ):
        for payload in payloads:
            await publish(topic, payload)
    await b.handled("quiet", "digested", "quiet_hours", 2)
    await b.handled("digest", "digested", "digest", 3)
    mails = await b.mails(5)
    assert sorted(m.subject for m in mails) == ["f/change", "f/change", "f/cool", "f/dedup", "f/dedup"]
    counters = b.router.counters()
    assert counters[("dedup", "dropped", "dedup")] == 1
    assert counters[("cooldown", "dropped", "cooldown")] == 1
    assert counters[("change", "dropped", "change_only")] == 1
    b.clock.now = T0 + 3600  # 09:00: the digest window is over and the quiet hours ended
    mails = await b.mails(7)
    digests = sorted(m.subject.split(" (")[0] for m in mails[5:])  # (times of arrival)
    assert digests == ["Digest: 3 events from digest", "While you were away: 2 events from quiet"]
    assert "q1" in _text(next(m for m in mails if "quiet" in m.subject))


async def test_sighup_reload_adds_and_renames_routes_without_losing_held_events(
    bridge: StartBridge, publish: Publish, tmp_path: Path
) -> None:
    b = await bridge({"routes": [{"name": "held", "topic": "r/held", "to": "a@example.com", "digest": "1h"}]})
    await publish("r/held", "kept across the reload")
    await b.handled("held", "digested", "digest")

    def change(config: dict[str, Any]) -> None:
        config["routes"][0]["name"] = "renamed"  # its held event is still mailed when due
        config["routes"].append({"name": "new", "topic": "r/new", "to": "b@example.com"})

    await _reload(b, tmp_path, change)
    assert "r/new" in b.router.topics()
    await publish("r/new", "hello", retain=True)  # retained: delivered once the new subscription is in place
    [mail] = await b.mails(1)
    assert (mail.subject, mail.recipients("to")) == ("r/new", ["b@example.com"])
    b.clock.advance(3600)
    mails = await b.mails(2)
    assert mails[1].subject == "r/held" and "kept across the reload" in _text(mails[1])


async def test_remaining_presets(bridge: StartBridge, publish: Publish, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "documents" / "archive").mkdir(parents=True)
    (media / "documents" / "archive" / "0000042.pdf").write_bytes(b"%PDF-1.4\ninvoice\n")
    b = await bridge(
        {
            "presets": {
                "zigbee2mqtt_smoke": {"to": "fire@example.com"},
                "zigbee2mqtt_battery": {"to": "maintenance@example.com"},
                "paperless": {"to": "office@example.com", "allowed_dirs": [str(media)]},
                "shelly_availability": {"to": "it@example.com"},
                "frigate_reviews": {"to": "owner@example.com"},
                "json": {"to": "me@example.com", "topic": "octoPrint/event/+"},
                "text": {"to": "me@example.com", "topic": "home/doorbell"},
            }
        }
    )
    steps = [
        ("zigbee2mqtt/hallway_smoke", (FIXTURES / "z2m-smoke.json").read_bytes()),
        ("zigbee2mqtt/kitchen_leak", (FIXTURES / "z2m-battery-low.json").read_bytes()),
        (
            "paperless/post-consumption",
            (FIXTURES / "paperless.json").read_bytes().replace(b"/usr/src/paperless/media", str(media).encode()),
        ),
        ("shellyplus1pm-a8032ab12345/online", b"false"),
        ("frigate/reviews", (FIXTURES / "frigate-review-end.json").read_bytes()),
        ("octoPrint/event/PrintFailed", b'{"_event": "PrintFailed", "reason": "error"}'),
        ("home/doorbell", b"pressed"),
    ]
    for count, (topic, payload) in enumerate(steps, 1):
        await publish(topic, payload)
        await b.mails(count)  # one at a time: the order of the mails is the order of the steps
    mails = await b.mails(len(steps))
    assert [(m.subject, m.recipients("to")) for m in mails] == [
        ("SMOKE detected by hallway_smoke", ["fire@example.com"]),
        ("Battery low: kitchen_leak", ["maintenance@example.com"]),
        ("Scanned: Invoice ACME 2026-11.pdf", ["office@example.com"]),
        ("shellyplus1pm-a8032ab12345 is offline", ["it@example.com"]),
        ("Alert: person, car at front cam", ["owner@example.com"]),
        ("octoPrint/event/PrintFailed", ["me@example.com"]),
        ("home/doorbell: pressed", ["me@example.com"]),
    ]
    assert [(a.name, a.content) for a in mails[2].attachments()] == [("scan_0001.pdf", b"%PDF-1.4\ninvoice\n")]
    assert '"reason": "error"' in _text(mails[5])


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_retained_status_is_mailed_once_not_again_at_each_restart(
    bridge: StartBridge, publish: Publish, broker: Mosquitto, protocol: str
) -> None:
    mqtt = {"host": "127.0.0.1", "port": broker.port, "client_id": f"retained-{broker.port}", "protocol": protocol}

    def sections() -> dict[str, Any]:
        return {"mqtt": dict(mqtt), "routes": [{"name": "ups", "topic": "ups/+/status", "to": "a@example.com"}]}

    b = await bridge(sections())
    await publish("ups/den/status", "OB", retain=True)
    [mail] = await b.mails(1)
    assert mail.subject == "ups/den/status"
    for _restart in range(2):
        await b.service.stop()
        b = await bridge(sections())  # ready once its probe came through, after any retained message
    await publish("ups/den/status", "OL", retain=True)
    mails = await b.mails(2)
    assert [m.subject for m in mails] == ["ups/den/status"] * 2
    assert [_text(m) for m in mails] == [_text(mail), _text(mails[1])] and "OL" in _text(mails[1])


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_route_added_by_sighup_mails_its_retained_status_once_across_restarts(
    bridge: StartBridge, publish: Publish, broker: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    mqtt = {"host": "127.0.0.1", "port": broker.port, "client_id": f"added-{broker.port}", "protocol": protocol}
    ups = {"name": "ups", "topic": "ups/+/status", "to": "a@example.com"}
    b = await bridge({"mqtt": dict(mqtt)})
    await publish("ups/den/status", "OB", retain=True)  # before any route wants it

    def add(config: dict[str, Any]) -> None:
        config["routes"].append(dict(ups))

    await _reload(b, tmp_path, add)
    [mail] = await b.mails(1)  # the retained status, for the new subscription
    for _restart in range(2):  # an MQTT 3.1.1 session must not be subscribed again (which resends retained)
        await b.service.stop()
        b = await bridge({"mqtt": dict(mqtt), "routes": [dict(ups)]})
    await publish("ups/den/status", "OL", retain=True)
    mails = await b.mails(2)
    assert [_text(m) for m in mails] == [_text(mail), _text(mails[1])] and "OL" in _text(mails[1])


async def test_an_event_failing_on_one_route_while_another_mails_is_kept_as_failed(
    bridge: StartBridge, publish: Publish
) -> None:
    routes = [
        {"name": "good", "topic": "m/+", "to": "a@example.com"},
        {"name": "broken", "topic": "m/+", "to": "a@example.com", "subject": "{{ payload.after.camera }}"},
    ]
    b = await bridge({"routes": routes})
    await publish("m/1", '{"before": {}}')
    [mail] = await b.mails(1)
    assert mail.subject == "m/1"
    state = next(s for s in b.service.sources if isinstance(s, MqttSource)).settings.state_file
    rows: list[tuple[str, str, str]] = []
    async with asyncio.timeout(WAIT):
        while not rows:
            rows = await asyncio.to_thread(_failed_rows, state)
            await asyncio.sleep(0.05)
    [(topic, route, reason)] = rows
    assert (topic, route) == ("m/1", "broken") and "after" in reason


def _failed_rows(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT topic, route, reason FROM failed").fetchall()


async def test_qos2_large_binary_and_hostile_payloads(bridge: StartBridge, broker: Mosquitto) -> None:
    routes = [
        {
            "name": "cam",
            "topic": "cam/+",
            "format": "json",
            "to": "a@example.com",
            "subject": "{{ payload.name }}",
            "html": "<p>{{ payload.name }}</p>",
            "attachments": [{"base64": "image", "name": "photo.jpg"}],
            "max_payload": "4MB",  # 1 MiB by default
        },
        {"name": "txt", "topic": "txt/+", "format": "text", "to": "a@example.com"},
    ]
    b = await bridge({"routes": routes})
    image = JPEG * 10_000  # about 2 MB
    hostile = json.dumps({"name": "<script>alert(1)</script>", "image": base64.b64encode(image).decode()})
    await broker.publish("cam/1", hostile, qos=2)
    await broker.publish("txt/1", b"\xff\xd8\xff binary", qos=2)
    [mail] = await b.mails(1)
    await b.handled("txt", "failed", "bad-input")
    assert mail.subject == "<script>alert(1)</script>"
    assert "&lt;script&gt;" in mail.payload["content"]["html"] and "<script>" not in mail.payload["content"]["html"]
    assert [(a.name, a.content) for a in mail.attachments()] == [("photo.jpg", image)]


async def test_a_burst_on_a_short_quota_becomes_a_few_mails_and_a_digest(
    bridge: StartBridge, broker: Mosquitto
) -> None:
    b = await bridge(
        {"quota": {"per_minute": 5, "per_hour": 10}, "routes": [{"name": "r", "topic": "burst", "to": "a@example.com"}]}
    )
    await broker.publish_lines("burst", [f"event {n}" for n in range(40)])  # e.g. queued while the bridge was down
    async with asyncio.timeout(WAIT):
        while sum(c for (route, _k, _r), c in b.router.counters().items() if route == "r") < 40:
            await asyncio.sleep(0.05)
    counters = b.router.counters()
    mailed, held = counters.get(("r", "mailed", ""), 0), counters.get(("r", "digested", "quota"), 0)
    assert mailed + held == 40
    assert mailed <= 5  # the probe mail of the start took one of the five
