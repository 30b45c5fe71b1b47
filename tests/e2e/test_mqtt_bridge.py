"""The MQTT bridge end to end: mosquitto_pub → real Mosquitto → bridge (in this process) → emulator over HTTPS."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
import voluptuous as vol
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from acs_email_bridge import service as service_module
from acs_email_bridge.cli import main as cli_main
from acs_email_bridge.config import BridgeConfig
from acs_email_bridge.emulator import Fault
from acs_email_bridge.metrics import Metrics
from acs_email_bridge.mqtt import BadEvent, Disposition, InboundEvent, MqttSource, Outcome
from acs_email_bridge.service import Service, read_config
from acs_email_core.engine import Engine
from acs_email_core.message import EmailMessage

from .conftest import SENDER
from .mqtt_helpers import Listener, bridge_config, send_request, wait_until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PDF = b"%PDF-1.4\n" + bytes(range(256))

Start = Callable[..., Awaitable[Service]]


@pytest.fixture
async def start_bridge() -> AsyncIterator[Start]:
    """``await start_bridge(config, router=None)``: a running Service connected to the broker; stopped at teardown."""
    services: list[Service] = []

    async def start(path: Path, router: Any = None) -> Service:
        service = Service(await asyncio.to_thread(read_config, path), router=router)
        await service.start()
        services.append(service)
        await asyncio.wait_for(mqtt_source(service).settled.wait(), 20)
        return service

    yield start
    for service in services:
        await service.stop()


def mqtt_source(service: Service) -> MqttSource:
    return next(s for s in service.sources if isinstance(s, MqttSource))


def failed_rows(service: Service) -> list[tuple[str, str, str]]:
    with sqlite3.connect(mqtt_source(service).settings.state_file) as conn:
        return conn.execute("SELECT topic, reason, payload FROM failed ORDER BY received_at").fetchall()


async def test_send_topic_mails_the_request_and_publishes_its_outcome(tmp_path, emu, broker, start_bridge):
    await start_bridge(bridge_config(tmp_path, emu, broker.port))
    results = await Listener(broker.port, "acs_email/result").ready()
    request = {
        "id": "garage-1",
        "to": ["Owner <owner@example.com>"],
        "cc": "partner@example.com",
        "subject": "Garage door open",
        "text": "The garage door is open.",
        "html": '<p>Open</p><img src="cid:snap">',
        "priority": "high",
        "attachments": [
            {"name": "report.pdf", "content": base64.b64encode(PDF).decode()},
            {"name": "snap.png", "content": base64.b64encode(PNG).decode(), "content_id": "snap"},
        ],
    }
    await broker.publish("acs_email/send", json.dumps(request))

    await wait_until(lambda: [r["state"] for r in results.json("acs_email/result")] == ["queued", "sent"], 30)
    queued, sent = results.json("acs_email/result")
    assert queued["id"] == sent["id"] == "garage-1"
    assert queued["message_id"] == sent["message_id"]
    [mail] = emu.mails
    assert mail.operation_id == sent["message_id"]
    assert mail.sender == SENDER
    assert mail.subject == "Garage door open"
    assert mail.recipients("to") == ["owner@example.com"]
    assert mail.recipients("cc") == ["partner@example.com"]
    assert mail.payload["headers"]["X-Priority"] == "1"
    assert {a.name: a.content for a in mail.attachments()} == {"report.pdf": PDF, "snap.png": PNG}
    assert next(a for a in mail.attachments() if a.name == "snap.png").content_id == "snap"
    results.close()


async def test_bad_input_is_logged_kept_and_answered_while_the_bridge_keeps_going(
    tmp_path, emu, broker, start_bridge, caplog, capsys
):
    caplog.set_level(logging.WARNING, logger="acs_email_bridge")
    service = await start_bridge(bridge_config(tmp_path, emu, broker.port, mqtt_extra={"max_payload": "1k"}))
    results = await Listener(broker.port, "acs_email/result").ready()
    await broker.publish("acs_email/send", "{not json")
    await broker.publish("acs_email/send", b"\xff\xfe\x00binary")
    await broker.publish("acs_email/send", send_request(1, text="x" * 2000))
    await broker.publish("acs_email/send", json.dumps({"id": "r4", "to": "a@example.com", "text": "no subject"}))
    await broker.publish(
        "acs_email/send", json.dumps({"id": "r5", "to": "not an address", "subject": "s", "text": "t"})
    )
    await broker.publish("acs_email/send", send_request(6, id="good"))

    await wait_until(lambda: len(emu.mails) == 1 and len(results.json("acs_email/result")) == 7, 30)
    assert emu.mails[0].subject == "event 6"
    states = {(r["id"], r["state"]) for r in results.json("acs_email/result")}
    assert states >= {("r4", "failed"), ("r5", "failed"), ("good", "queued"), ("good", "sent")}
    reasons = [reason for _topic, reason, _payload in failed_rows(service)]
    assert len(reasons) == 5
    assert "not valid JSON" in reasons[0]
    assert "not UTF-8" in reasons[1]
    assert "over max_payload" in reasons[2]
    assert "subject: required key not provided" in reasons[3]
    assert reasons[4].startswith("invalid send request: to: 'not an address' is not an address list")
    assert failed_rows(service)[1][2] == b"\xff\xfe\x00binary"  # kept as received, for inspection
    lines = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(lines) == 5
    assert all(line.startswith("MQTT: event on acs_email/send failed") for line in lines)
    text = service.metrics.exposition().decode()
    assert 'acs_email_bridge_events_total{disposition="failed",route="send",rule="",source="mqtt"} 5.0' in text
    config = tmp_path / "config.yaml"
    assert await asyncio.to_thread(cli_main, ["failed", "-c", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "acs_email/send [send]: payload is not UTF-8 text" in listing
    assert "<9 bytes, not text>" in listing
    assert "5 failed event(s) shown" in listing
    assert 'acs_email_bridge_events_total{disposition="mailed",route="send",rule="",source="mqtt"} 1.0' in text
    results.close()


async def test_a_burst_of_bad_events_is_counted_and_kept_but_logged_a_few_lines_a_minute(
    tmp_path, emu, broker, start_bridge, caplog
):
    """A sensor gone haywire: 40 unusable events on one route, 6 log lines; one that half fails, one line."""
    caplog.set_level(logging.DEBUG, logger="acs_email_bridge")
    routes = [
        {"name": "strict", "topic": "dev/bad", "to": "ops@example.com", "format": "json", "subject": "{{ payload.n }}"},
        {
            "name": "sensor",
            "topic": "dev/ok/#",
            "to": "ops@example.com",
            "format": "json",
            "subject": "{{ payload.n }}",
        },
        {"name": "raw", "topic": "dev/ok/#", "to": "ops@example.com", "format": "binary", "subject": "raw"},
    ]
    service = await start_bridge(bridge_config(tmp_path, emu, broker.port, routes=routes))
    await broker.pub(["-t", "dev/bad", "-q", "1", "-l"], b"{broken\n" * 40)
    await broker.publish("dev/ok/1", "{broken too")  # the binary route mails it, the JSON route cannot
    await wait_until(lambda: mqtt_source(service).ingested == 41 and len(emu.mails) == 1, 30)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "failed" in r.getMessage()]
    bad = [line for line in lines if "on dev/bad" in line]
    assert len(bad) == 6, bad
    assert bad[-1].endswith("more like it in the next 60 s are counted, not logged")
    (half,) = [line for line in lines if "on dev/ok/1" in line]
    assert half.startswith("MQTT: event on dev/ok/1 failed (route sensor): route sensor: invalid JSON")
    text = service.metrics.exposition().decode()
    assert 'acs_email_bridge_events_total{disposition="failed",route="strict",rule="",source="mqtt"} 40.0' in text
    assert len(failed_rows(service)) == 41  # all kept for `acs-email-bridge failed`


class _TestRouter:
    """A router after the routes branch's interface: mails leak events, drops dry ones, fails on bad JSON."""

    def __init__(self, config: BridgeConfig, engine: Engine, metrics: Metrics) -> None:
        self.sender = config.engine.sender
        self.filters: list[str] = list(config.sections["test_routes"]["topics"])
        self.seen: list[InboundEvent] = []

    def topics(self) -> Sequence[str]:
        return self.filters

    async def __call__(self, event: InboundEvent) -> Outcome:
        self.seen.append(event)
        data = event.json()
        if not data.get("water_leak"):
            return Outcome(Disposition.DROPPED, route="leak", rule="only_leaks")
        if "battery" not in data:
            raise BadEvent("payload has no 'battery' field", route="leak")
        mail = EmailMessage.build(
            sender=self.sender,
            to="owner@example.com",
            subject=f"Leak at {event.topic.split('/')[1]} (battery {data['battery']}%)",
            text="Water!",
            message_id=event.mail_id(0),
        )
        return Outcome.mailed([mail], route="leak")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def reload(self, config: Any) -> None:
        self.filters = list(config.sections["test_routes"]["topics"])


@pytest.fixture
def test_routes(monkeypatch):
    monkeypatch.setitem(service_module.SECTIONS, "test_routes", vol.Schema({"topics": [str]}))


async def test_router_outcomes_and_reload_changes_subscriptions(tmp_path, emu, broker, start_bridge, test_routes):
    config = bridge_config(tmp_path, emu, broker.port, test_routes={"topics": ["zigbee2mqtt/+"]})
    service = await start_bridge(config, router=_TestRouter)
    router = service.router
    assert isinstance(router, _TestRouter)
    await broker.publish("zigbee2mqtt/kitchen", json.dumps({"water_leak": True, "battery": 97}))
    await broker.publish("zigbee2mqtt/bath", json.dumps({"water_leak": False, "battery": 97}))
    await broker.publish("zigbee2mqtt/cellar", json.dumps({"water_leak": True}))
    await broker.publish("other/cellar", json.dumps({"water_leak": True, "battery": 5}))
    await wait_until(lambda: mqtt_source(service).ingested == 3, 20)
    await wait_until(lambda: len(emu.mails) == 1, 20)
    assert emu.mails[0].subject == "Leak at kitchen (battery 97%)"
    assert emu.mails[0].operation_id == router.seen[0].mail_id(0)
    text = service.metrics.exposition().decode()
    assert 'disposition="dropped",route="leak",rule="only_leaks"' in text
    assert failed_rows(service)[0][:2] == ("zigbee2mqtt/cellar", "payload has no 'battery' field")

    config.write_text(config.read_text().replace("zigbee2mqtt/+", "water/+"), encoding="utf-8")
    assert await service.reload()  # returns once the broker confirmed the new subscriptions
    await broker.publish("zigbee2mqtt/attic", json.dumps({"water_leak": True, "battery": 50}))
    await broker.publish("water/garage", json.dumps({"water_leak": True, "battery": 42}))
    await wait_until(lambda: len(emu.mails) == 2, 20)
    assert emu.mails[1].subject == "Leak at garage (battery 42%)"
    assert [e.topic for e in router.seen][-1] == "water/garage"
    assert "zigbee2mqtt/attic" not in [e.topic for e in router.seen]

    config.write_text(config.read_text().replace("port:", "port: [oops]  #"), encoding="utf-8")
    assert not await service.reload()  # refused: the running config stays
    await broker.publish("water/hall", json.dumps({"water_leak": True, "battery": 1}))
    await wait_until(lambda: len(emu.mails) == 3, 20)


async def test_events_published_while_the_bridge_is_stopped_arrive_after_it_restarts(
    tmp_path, emu, broker, start_bridge, caplog
):
    config = bridge_config(tmp_path, emu, broker.port)
    first = await start_bridge(config)
    await first.stop()
    await broker.publish_lines("acs_email/send", [send_request(i) for i in range(50)])
    await broker.publish("acs_email/send", send_request(99), qos=0)  # QoS 0: the broker keeps nothing
    caplog.set_level(logging.INFO, logger="acs_email_bridge")
    await start_bridge(config)
    await wait_until(lambda: len(emu.mails) == 50, 30)
    await asyncio.sleep(0.3)
    assert sorted(m.subject for m in emu.mails) == sorted(f"event {i}" for i in range(50))
    assert emu.duplicates == 0
    assert any("session resumed" in r.getMessage() for r in caplog.records)
    assert not any("redelivered" in r.getMessage() for r in caplog.records)  # the clean stop acked everything


async def test_qos0_events_and_a_lost_session_are_warned_about(tmp_path, emu, make_broker, start_bridge, caplog):
    broker = await make_broker(["max_queued_messages 0"])
    config = bridge_config(tmp_path, emu, broker.port)
    caplog.set_level(logging.WARNING, logger="acs_email_bridge")
    service = await start_bridge(config)
    await broker.publish("acs_email/send", send_request(1), qos=0)
    await wait_until(lambda: len(emu.mails) == 1, 20)
    assert any("acs_email/send arrives at QoS 0" in r.getMessage() for r in caplog.records)
    await service.stop()

    await broker.stop()
    for db in broker.directory.glob("*.db"):
        db.unlink()  # as if the broker had run without persistence
    await broker.start()
    service = await start_bridge(config)
    assert any("had lost the session" in r.getMessage() for r in caplog.records)
    assert "acs_email_bridge_mqtt_session_lost_total 1.0" in service.metrics.exposition().decode()


async def test_home_assistant_discovery_status_and_http_endpoints(tmp_path, emu, broker, start_bridge):
    listener = await Listener(broker.port, "homeassistant/#", "acs_email/#").ready()
    config = bridge_config(tmp_path, emu, broker.port, http={"port": 0})
    service = await start_bridge(config)
    await broker.publish("acs_email/send", send_request(1))
    await wait_until(lambda: len(emu.mails) == 1, 20)

    def configs() -> dict[str, Any]:
        return {t: json.loads(p) for t, p, _r in listener.messages if t.startswith("homeassistant/")}

    await wait_until(lambda: len(configs()) == 6, 20)
    sensors = configs()
    queued = sensors["homeassistant/sensor/acs_email_bridge/queued/config"]
    assert queued["state_topic"] == "acs_email/state"
    assert queued["availability_topic"] == "acs_email/status"
    assert queued["device"]["name"] == "ACS Email bridge"
    assert "object_id" not in queued  # deprecated by Home Assistant (removed in 2026.4)
    assert {c["unique_id"] for c in sensors.values()} == {
        f"acs_email_bridge_{k}" for k in ("connected", "queued", "sent", "dead", "quota_left", "last_error")
    }
    assert ("acs_email/status", b"online", False) in listener.messages
    state = listener.json("acs_email/state")[-1]
    assert set(state) == {"connected", "queued", "sent", "dead", "quota_left", "last_error"}

    http = next(s for s in service.sources if s.name == "http")
    url = f"http://127.0.0.1:{http.port}"  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/healthz") as response:
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
        async with session.get(f"{url}/metrics") as response:
            text = await response.text()
            assert "acs_email_bridge_mqtt_connected 1.0" in text
            assert 'acs_email_outbox_messages{state="queued"}' in text
        await broker.stop()
        await wait_until(lambda: not mqtt_source(service).link.connected, 20)
        async with session.get(f"{url}/healthz") as response:
            assert response.status == 503
            assert "not connected to the MQTT broker" in (await response.json())["problems"]["mqtt"]
        await broker.start()
        await wait_until(lambda: mqtt_source(service).link.connected, 30)
        await service.stop()
    await wait_until(lambda: ("acs_email/status", b"offline", False) in listener.messages, 10)
    listener.close()


async def test_a_batch_failing_after_its_outbox_commit_is_retried_without_a_second_mail(
    tmp_path, emu, broker, start_bridge, caplog
):
    service = await start_bridge(bridge_config(tmp_path, emu, broker.port))
    source = mqtt_source(service)
    record = source.journal.record
    calls = 0

    async def disk_full_once(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the mails are in the outbox already; the send results are not
            raise OSError(28, "No space left on device")
        await record(*args, **kwargs)

    source.journal.record = disk_full_once  # type: ignore[method-assign]
    await broker.publish_lines("acs_email/send", [send_request(i) for i in range(5)])
    await wait_until(lambda: len(emu.mails) == 5 and source.ingested == 5, 30)
    await asyncio.sleep(0.5)  # a second mail would show up now
    assert sorted(m.subject for m in emu.mails) == [f"event {i}" for i in range(5)]
    assert emu.duplicates == 0
    assert "could not be stored; retrying" in caplog.text


async def test_a_full_outbox_holds_events_unacknowledged_until_there_is_room(
    tmp_path, emu, broker, start_bridge, caplog
):
    emu.faults.add(Fault.error(503, times=1000))  # ACS away: nothing leaves the outbox
    outbox = {"path": str(tmp_path / "outbox.db"), "max_messages": 3, "retry_initial": 0.1, "retry_max": 0.5}
    config = bridge_config(tmp_path, emu, broker.port, outbox=outbox)
    service = await start_bridge(config)
    source = mqtt_source(service)
    await broker.publish_lines("acs_email/send", [send_request(i) for i in range(5)])
    await wait_until(lambda: "outbox full" in caplog.text, 30)
    assert source.ingested < 5
    emu.faults.clear()  # ACS is back: the outbox drains, the held events go in
    await wait_until(lambda: len(emu.mails) == 5, 60)
    assert sorted(m.subject for m in emu.mails) == [f"event {i}" for i in range(5)]
    assert service.metrics.last_error.startswith("outbox full")


async def test_filters_of_an_earlier_config_are_dropped_from_the_persistent_session(
    tmp_path, emu, broker, start_bridge, test_routes
):
    config = bridge_config(tmp_path, emu, broker.port, test_routes={"topics": ["old/+"]})
    first = await start_bridge(config, router=_TestRouter)
    await first.stop()
    config.write_text(config.read_text().replace("old/+", "new/+"), encoding="utf-8")
    service = await start_bridge(config, router=_TestRouter)  # returns once old/+ is unsubscribed
    await broker.publish("old/cellar", json.dumps({"water_leak": True, "battery": 5}))
    await broker.publish("new/cellar", json.dumps({"water_leak": True, "battery": 6}))
    await wait_until(lambda: len(emu.mails) == 1, 20)
    await asyncio.sleep(0.3)
    assert [m.subject for m in emu.mails] == ["Leak at cellar (battery 6%)"]
    assert [e.topic for e in service.router.seen] == ["new/cellar"]  # type: ignore[attr-defined]


async def test_a_small_inbox_budget_pauses_reading_and_loses_nothing(tmp_path, emu, broker, start_bridge):
    config = bridge_config(tmp_path, emu, broker.port, mqtt_extra={"inbox_bytes": "64k", "batch_size": 20})
    service = await start_bridge(config)
    source = mqtt_source(service)
    await broker.publish_lines("acs_email/send", [send_request(i, text="x" * 2000) for i in range(300)])
    await wait_until(lambda: len(emu.mails) == 300, 60)
    assert source.link.pauses > 0  # the broker waited (TCP backpressure) while the bridge caught up
    assert sorted(int(m.subject.split()[1]) for m in emu.mails) == list(range(300))


async def test_a_v5_request_is_answered_on_its_response_topic_with_its_correlation_data(
    tmp_path, emu, broker, start_bridge
):
    await start_bridge(bridge_config(tmp_path, emu, broker.port))
    answers: list[tuple[str, bytes, bytes | None]] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe("esp/kitchen/reply", 1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: answers.append(
        (m.topic, m.payload, getattr(m.properties, "CorrelationData", None))
    )
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert await asyncio.to_thread(subscribed.wait, 10)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "esp/kitchen/reply"
        props.CorrelationData = b"req-42"
        client.publish("acs_email/send", send_request(1), qos=1, properties=props).wait_for_publish(10)
        await wait_until(lambda: len(answers) == 2, 30)
    finally:
        client.disconnect()
        client.loop_stop()
    assert [(t, c) for t, _p, c in answers] == [("esp/kitchen/reply", b"req-42")] * 2
    assert [json.loads(p)["state"] for _t, p, _c in answers] == ["queued", "sent"]


async def test_the_final_result_of_a_request_is_published_after_a_restart(tmp_path, emu, broker, start_bridge):
    config = bridge_config(tmp_path, emu, broker.port)
    results = await Listener(broker.port, "acs_email/result").ready()
    emu.faults.add(Fault.error(503, times=1000))  # ACS away: the mail stays queued
    first = await start_bridge(config)
    await broker.publish("acs_email/send", send_request(1, id="late"))
    await wait_until(lambda: [r["state"] for r in results.json("acs_email/result")] == ["queued"], 20)
    await first.stop()
    emu.faults.clear()
    await start_bridge(config)
    await wait_until(lambda: [r["state"] for r in results.json("acs_email/result")] == ["queued", "sent"], 30)
    assert results.json("acs_email/result")[1]["id"] == "late"
    results.close()


async def test_a_second_bridge_on_the_same_config_fails_before_it_can_take_over_the_first_ones_session(
    tmp_path, emu, broker, start_bridge, caplog
):
    """Its listener fails first, so it never connects with the same client id (which would knock the first off)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        http_port = probe.getsockname()[1]
    config = bridge_config(tmp_path, emu, broker.port, http={"port": http_port})
    first = await start_bridge(config)
    second = Service(await asyncio.to_thread(read_config, config))
    with pytest.raises(OSError, match=rf"http: cannot listen on 127.0.0.1:{http_port}: .*(?i:address already in use)"):
        await second.start()
    await asyncio.sleep(1.0)  # a takeover would show now
    assert not [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert mqtt_source(first).link.connected
