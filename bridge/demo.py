"""``make demo``: the whole path on embedded defaults, no Azure needed.

Starts the ACS emulator (HTTPS, fake Entra authority), writes a config that uses a service principal,
queues a mail with an attachment and an inline image through the engine, waits for delivery and shows
where the emulator stored the received ``.eml``; then the MQTT bridge (``demo_mqtt``): Mosquitto, the
bridge with ``examples/demo.yaml``, and device events published with ``mosquitto_pub``.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import yaml

from acs_email_core.engine import Engine
from acs_email_core.errors import ConfigError
from acs_email_core.message import Attachment, EmailMessage
from acs_email_core.outbox import State

from .command import config_hint
from .config import load_settings
from .demo_mqtt import run_mqtt_demo
from .emulator import Emulator, Fault
from .smtp.demo import scan_through_relay

SENDER = "DoNotReply@demo.example.com"
RECIPIENT = "Home Owner <owner@example.com>"


def _png(width: int = 16, height: int = 16) -> bytes:
    """A tiny solid-blue PNG, made here so the demo ships no binary files."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x1e\x88\xe5" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _write_config(directory: Path, emulator: Emulator) -> Path:
    config = {
        "acs": {
            "endpoint": emulator.endpoint,
            "sender": SENDER,
            "tenant_id": emulator.tenant_id,
            "client_id": emulator.client_id,
            "client_secret": "!file client_secret.txt",
            "authority": emulator.authority,
            "ca_file": str(emulator.ca_file),
            # A local emulator answers at once; a short timeout also shortens the wait before a mail whose
            # POST failed ambiguously (the 503 below) may be resent: three timeouts after that POST started.
            "timeout": "5s",
        },
        "quota": "custom_domain",
        "outbox": {"path": "outbox.db"},
    }
    text = yaml.safe_dump(config, sort_keys=False).replace("'!file client_secret.txt'", "!file client_secret.txt")
    secret = directory / "client_secret.txt"
    secret.write_text(emulator.client_secret + "\n", encoding="utf-8")
    secret.chmod(0o600)
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _sample_message(sender: str) -> EmailMessage:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = "time,sensor,value\n" + "".join(f"{now},ups_load,{20 + i}\n" for i in range(5))
    return EmailMessage.build(
        sender=sender,
        to=RECIPIENT,
        subject=f"acs_email demo: UPS report {now}",
        text=f"The UPS switched to battery at {now}. The load report is attached.",
        html=f'<p><img src="cid:status-icon" alt=""> The UPS switched to battery at <b>{now}</b>.</p>'
        "<p>The load report is attached.</p>",
        attachments=[
            Attachment("ups-load.csv", report.encode()),
            Attachment("status.png", _png(), content_id="status-icon"),
        ],
        priority="high",
    )


async def _trouble(engine: Engine, emulator: Emulator, sender: str) -> bool:
    """Three alert mails while ACS misbehaves: all arrive, once each. True when that held."""
    emulator.faults.add(Fault.error(503, message="Service Unavailable"))
    emulator.faults.add(Fault.drop(after=True))  # accepted, then the connection is cut: ambiguous
    emulator.faults.add(Fault.error(429, code="TooManyRequests", retry_after=1))
    print("\nnow ACS misbehaves: a 503, a connection cut after the mail was accepted, a 429 with Retry-After: 1")
    before = len(emulator.mails)
    loop = asyncio.get_running_loop()
    started = loop.time()
    messages = [
        EmailMessage.build(sender=sender, to=RECIPIENT, subject=f"acs_email demo: sensor alert {i}", text="Leak!")
        for i in range(1, 4)
    ]
    ids = await engine.submit_many(messages, source="demo")
    async with asyncio.timeout(120):
        states = [await engine.wait_for(i) for i in ids]
    status = await engine.status()
    print(
        f"  {states.count(State.SENT)}/3 sent in {loop.time() - started:.1f} s "
        f"({status.failed_total} failed attempt(s) retried, {status.throttled_total} throttled); "
        f"the emulator got {len(emulator.mails) - before} new mail(s), {emulator.duplicates} duplicate(s)"
    )
    return states == [State.SENT] * 3 and len(emulator.mails) - before == 3 and emulator.duplicates == 0


async def run_demo(directory: Path) -> int:
    """Run the demo end to end in ``directory`` (absolute); returns the process exit code."""
    try:
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--dir {directory}: {err.strerror}") from None
    async with Emulator(tls_dir=directory / "tls", record_dir=directory / "mail", senders=[SENDER]) as emulator:
        print(f"ACS emulator listening on {emulator.endpoint} (CA {emulator.ca_file})")
        config_path = await asyncio.to_thread(_write_config, directory, emulator)
        print(f"config written to {config_path} (service principal, secret in client_secret.txt)")
        _raw, settings = await asyncio.to_thread(load_settings, config_path)
        message = await asyncio.to_thread(_sample_message, settings.sender)
        async with Engine(settings) as engine:
            message_id = await engine.submit(message, source="demo")
            print(f"queued {message_id} (HTML, a CSV attachment, an inline image) in {settings.outbox_path}")
            async with asyncio.timeout(60):
                state = await engine.wait_for(message_id)
            if state is not State.SENT:
                print(f"demo mail ended {state.value}")
                return 1
            eml = directory / "mail" / f"{message_id}.eml"
            print(f"sent; the emulator received it as {eml}")
            for line in (await asyncio.to_thread(eml.read_text, encoding="utf-8")).splitlines()[:9]:
                print(f"  | {line}")
            if not await _trouble(engine, emulator, settings.sender):
                return 1
            if not await scan_through_relay(directory, engine, "owner@example.com"):
                return 1
        if not await run_mqtt_demo(directory, emulator):
            return 1
    print(f"\nreceived mail: {directory / 'mail'}\nthe outbox: {config_hint('list', config_path)}")
    return 0
