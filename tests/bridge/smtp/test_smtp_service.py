"""The relay inside the bridge service without MQTT: /metrics per device, HA sensors and state, policy reload."""

from __future__ import annotations

import asyncio
import dataclasses
import smtplib
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from acs_email_bridge.emulator import Emulator
from acs_email_bridge.mqtt import MQTT_SCHEMA, mqtt_settings
from acs_email_bridge.mqtt.discovery import StatePublisher
from acs_email_bridge.service import Service, read_config
from acs_email_bridge.smtp.accounts import DeviceStore
from acs_email_bridge.smtp.source import SmtpSource

SENDER = "relay@devices.example.com"
MAIL = b"From: scanner@office.lan\r\nTo: {to}\r\nSubject: scan\r\n\r\nhello\r\n"


def _write(path: Path, emulator: Emulator, devices: dict[str, Any], submission_port: int = 0) -> Path:
    config = {
        "acs": {
            "connection_string": emulator.connection_string,
            "sender": SENDER,
            "ca_file": str(emulator.ca_file),
        },
        "quota": {"per_minute": 10_000, "per_hour": 100_000},
        "outbox": {"path": "outbox.db", "synchronous": "normal"},
        "http": {"host": "127.0.0.1", "port": 0},
        "smtp": {"listen": "127.0.0.1", "submission_port": submission_port, "smtps_port": None, "devices": devices},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _send(port: int, cert: Path, password: str, to: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(cert)))
        client.login("scanner", password)
        code, reply = client.mail("scanner@office.lan")
        if code != 250:
            return code, reply
        code, reply = client.rcpt(to)
        if code != 250:
            return code, reply
        return client.data(MAIL.replace(b"{to}", to.encode()))


async def test_relay_in_the_service_counts_per_device_and_reloads_policies(tmp_path: Path, emulator) -> None:
    config = _write(tmp_path / "config.yaml", emulator, {"scanner": {"recipients": ["example.com"]}})
    password = DeviceStore(tmp_path / "smtp_devices.db").add("scanner")
    service = Service(await asyncio.to_thread(read_config, config))
    [source] = [s for s in service.sources if isinstance(s, SmtpSource)]
    await service.start()
    try:
        port = source.relay.ports["submission"]
        assert source.relay.certificate is not None
        cert = source.relay.certificate.cert_file
        assert (await asyncio.to_thread(_send, port, cert, password, "alice@example.com"))[0] == 250
        code, reply = await asyncio.to_thread(_send, port, cert, password, "bob@partner.example")
        assert code == 550 and b"not allowed for device 'scanner'" in reply

        http = next(s for s in service.sources if s.name == "http")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{http.port}/metrics") as response,
        ):
            metrics = await response.text()
        assert 'acs_email_smtp_accepted_total{device="scanner"} 1.0' in metrics
        assert 'acs_email_smtp_refused_total{device="scanner",reason="recipient"} 1.0' in metrics
        assert 'acs_email_bridge_mails_queued_total{source="smtp"} 1.0' in metrics
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{http.port}/healthz") as response:
            assert response.status == 200, await response.text()

        # What Home Assistant gets over MQTT discovery: one sensor per device and figure, and their values.
        with_mqtt = dataclasses.replace(service.config, sections={**service.config.sections, "mqtt": MQTT_SCHEMA({})})
        settings = mqtt_settings(with_mqtt)
        assert settings is not None
        publisher = StatePublisher(settings, link=None, context=service.context)
        state = await publisher.state()
        assert (state["smtp_scanner_accepted"], state["smtp_scanner_refused"]) == (1, 1)
        sensors = {config["name"]: config for _topic, config in publisher.discovery_configs()}
        assert sensors["SMTP scanner mails"]["value_template"] == "{{ value_json.smtp_scanner_accepted }}"
        assert sensors["SMTP scanner refusals"]["value_template"] == "{{ value_json.smtp_scanner_refused }}"

        # A new policy applies on reload (SIGHUP), without restarting the listeners.
        _write(config, emulator, {"scanner": {"recipients": ["example.com", "partner.example"]}})
        assert await service.reload()
        assert source.relay.ports["submission"] == port
        assert (await asyncio.to_thread(_send, port, cert, password, "bob@partner.example"))[0] == 250
        async with asyncio.timeout(30):
            while len(emulator.mails) < 2:
                await asyncio.sleep(0.02)
        assert sorted(m.recipients("to")[0] for m in emulator.mails) == ["alice@example.com", "bob@partner.example"]

        # A reload onto a port in use is refused for the relay, which goes on listening where it was.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            _write(config, emulator, {"scanner": {"recipients": ["example.com"]}}, submission_port=busy)
            assert not await service.reload()
        assert source.relay.ports["submission"] == port
        assert (await asyncio.to_thread(_send, port, cert, password, "carol@example.com"))[0] == 250
    finally:
        await service.stop()
