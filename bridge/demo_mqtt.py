"""The MQTT half of ``make demo``: Mosquitto, the bridge with ``examples/demo.yaml``, real device payloads.

Starts Mosquitto on a free loopback port, runs ``acs-email-bridge run`` as a child process with the demo
routes (Frigate, UPS via NUT, a Zigbee water-leak sensor, a scanner) pointed at the emulator, publishes sample
events with ``mosquitto_pub`` and prints the mails that arrived, with the paths of their ``.eml`` files.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .config import load_yaml
from .emulator import Emulator
from .mosquitto import MOSQUITTO, MOSQUITTO_PUB, Mosquitto

# examples/demo.yaml, installed with the package (bridge/demo_routes.yaml links to it): the demo runs anywhere.
ROUTES = Path(__file__).with_name("demo_routes.yaml")
OUTBOX = "bridge-outbox.db"  # in the demo directory; its journal and routing state are named after it
# The smallest valid JPEG (1x1 pixel): Frigate's snapshot topic carries the raw image bytes.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////////////"
    "////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA="
)
PDF = b"%PDF-1.4\n1 0 obj <</Type/Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"


def _frigate(kind: str, now: float) -> str:
    event = {
        "id": f"{now:.6f}-demo01",
        "camera": "front_door",
        "label": "person",
        "sub_label": None,
        "top_score": 0.91,
        "score": 0.88,
        "false_positive": False,
        "start_time": now - 12,
        "end_time": now if kind == "end" else None,
        "current_zones": ["driveway"],
        "entered_zones": ["driveway"],
        "has_snapshot": True,
    }
    return json.dumps({"type": kind, "before": event, "after": event})


def _events(scans: Path) -> list[tuple[str, bytes, str]]:
    """(topic, payload, what it is) in publishing order."""
    now = time.time()
    scan = scans / "invoice-2026-12.pdf"
    request = {
        "id": "demo-script-1",
        "to": "Home Owner <owner@example.com>",
        "subject": "Backup finished",
        "text": "The nightly backup finished without errors.",
    }
    return [
        ("frigate/front_door/person/snapshot", JPEG, "Frigate snapshot (JPEG bytes)"),
        ("frigate/events", _frigate("new", now).encode(), "Frigate event: new"),
        ("frigate/events", _frigate("update", now).encode(), "Frigate event: update (same id: no 2nd mail)"),
        ("frigate/events", _frigate("end", now).encode(), "Frigate event: end"),
        ("nut2mqtt/den_ups_battery_charge/state", b"87", "NUT: battery charge 87 %"),
        ("nut2mqtt/den_ups_battery_runtime/state", b"1260", "NUT: runtime 1260 s"),
        ("nut2mqtt/den_ups_ups_status/state", b"OB DISCHRG", "NUT: on battery"),
        ("nut2mqtt/den_ups_ups_status/state", b"OB DISCHRG", "NUT: still on battery (no 2nd mail)"),
        ("nut2mqtt/den_ups_ups_status/state", b"OL CHRG", "NUT: back on line"),
        ("zigbee2mqtt/basement_leak", b'{"water_leak":true,"battery":97,"linkquality":120}', "Zigbee2MQTT: leak"),
        ("scanner/office", json.dumps({"path": str(scan)}).encode(), f"scanner: {scan.name} in {scans}"),
        ("acs_email/send", json.dumps(request).encode(), "send topic: a mail request from a script"),
    ]


def _write_config(directory: Path, emulator: Emulator, broker: Mosquitto, scans: Path) -> Path:
    os.environ["ACS_CONNECTION_STRING"] = emulator.connection_string
    os.environ["MQTT_HOST"] = "127.0.0.1"
    config: dict[str, Any] = json.loads(json.dumps(load_yaml(ROUTES)))  # plain dicts, tags resolved
    config["acs"]["ca_file"] = str(emulator.ca_file)
    config["mqtt"]["port"] = broker.port
    config["outbox"] = {"path": str(directory / OUTBOX)}
    config.setdefault("routing", {})["allowed_dirs"] = [str(scans)]
    config["http"] = {"port": 0}
    path = directory / "bridge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


async def _wait_for(predicate: Any, timeout: float) -> bool:  # noqa: ASYNC109 - a demo step's deadline
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


def _missing() -> str | None:
    if not (Path(MOSQUITTO).exists() or shutil.which("mosquitto")) or not shutil.which(MOSQUITTO_PUB):
        return "Mosquitto is not installed: `make deps` installs it (mosquitto, mosquitto-clients)"
    if not ROUTES.exists():
        return f"{ROUTES} is missing from this installation"
    return None


def _fresh_state(directory: Path) -> None:
    """A fresh broker (no old sessions) and bridge: what a last run's routes remember (a leak already reported,
    a UPS already on battery) would turn this run's events into drops."""
    shutil.rmtree(directory / "mosquitto", ignore_errors=True)
    for path in directory.glob(f"{Path(OUTBOX).stem}.*"):  # the outbox, its MQTT journal, routing state, WAL files
        path.unlink()


async def run_mqtt_demo(directory: Path, emulator: Emulator) -> bool:
    """The MQTT part of the demo; True when every expected mail arrived once."""
    problem = await asyncio.to_thread(_missing)
    if problem:
        print(f"\n{problem}")
        return False
    scans = directory / "scans"
    await asyncio.to_thread(scans.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread((scans / "invoice-2026-12.pdf").write_bytes, PDF)
    await asyncio.to_thread(_fresh_state, directory)
    broker = Mosquitto(directory / "mosquitto", ["max_queued_messages 0"])
    await broker.start()
    log_path = directory / "bridge.log"
    bridge: asyncio.subprocess.Process | None = None
    try:
        config = await asyncio.to_thread(_write_config, directory, emulator, broker, scans)
        print(f"\nMosquitto on 127.0.0.1:{broker.port}; bridge config {config} (routes of examples/demo.yaml)")
        with log_path.open("wb") as log:
            bridge = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "acs_email_bridge", "run", "--config", str(config), stdout=log, stderr=log
            )
        if not await _wait_for(lambda: "MQTT: connected" in log_path.read_text(errors="replace"), 30):
            print(f"the bridge did not connect; see {log_path}")
            return False
        before = len(emulator.mails)
        print("publishing with mosquitto_pub (QoS 1):")
        for topic, payload, what in _events(scans):
            print(f"  {topic:42} {what}")
            await broker.publish(topic, payload)
        expected = 6  # Frigate 1, UPS 2 (on battery, back on line), leak 1, scan 1, send topic 1
        arrived = await _wait_for(lambda: len(emulator.mails) - before >= expected, 60)
        await asyncio.sleep(1.0)  # a duplicate would show up now
        mails = emulator.mails[before:]
        print(f"\n{len(mails)} mail(s) arrived at the emulator (expected {expected}):")
        for mail in mails:
            attachments = ", ".join(f"{a.name} ({len(a.content)} B)" for a in mail.attachments()) or "no attachments"
            print(f"  {mail.subject}\n    to {', '.join(mail.recipients('to'))}; {attachments}")
            print(f"    {directory / 'mail' / (mail.operation_id + '.eml')}")
        print(f"bridge log: {log_path}")
        return arrived and len(mails) == expected and emulator.duplicates == 0
    finally:
        if bridge is not None and bridge.returncode is None:
            bridge.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(bridge.wait(), 30)
            except TimeoutError:
                bridge.kill()
        await broker.stop()
