"""``acs-email-bridge run`` with only an ``smtp:`` section, killed with SIGKILL right after its 250:
the mail is on disk, and the next run delivers it, once."""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import smtplib
import ssl
import sys
from pathlib import Path

import yaml

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_bridge.smtp.accounts import DeviceStore
from acs_email_core.outbox import Outbox

from .conftest import SENDER
from .test_crash import _write_config as write_engine_config

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 400


def _write_config(directory: Path, emu: Emulator) -> Path:
    """The crash test's engine config plus an ``smtp:`` section (only a STARTTLS listener, on a free port)."""
    path = write_engine_config(directory, emu)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["smtp"] = {
        "hostname": "relay.test",
        "listen": "127.0.0.1",
        "submission_port": 0,
        "smtps_port": None,
        "devices": {"scanner": {"recipients": ["example.com"]}},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def _run(config: Path) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``acs-email-bridge run``; returns it and the submission port it announced."""
    log = config.parent / "run.log"
    start = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "acs_email_bridge", "run", "-c", str(config), stdout=out, stderr=out
        )
    async with asyncio.timeout(60):
        while not (match := re.search(r"SMTP relay listening on \S+ submission (\d+)", log.read_text()[start:])):
            assert process.returncode is None, log.read_text()
            await asyncio.sleep(0.05)
    return process, int(match.group(1))


def _send(port: int, password: str, cert: Path) -> str:
    message = (
        b"From: Scanner <scanner@office.lan>\r\nTo: alice@example.com\r\nSubject: scan before the crash\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        b"see attachment\r\n--b\r\nContent-Type: application/pdf; name=scan.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(PDF).replace(b"\n", b"\r\n") + b"--b--\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(cert)))
        client.login("scanner", password)
        client.mail("scanner@office.lan")
        client.rcpt("alice@example.com")
        code, reply = client.data(message)
        assert code == 250, reply
        return reply.decode()


async def test_sigkill_right_after_250_delivers_once_after_restart(tmp_path: Path) -> None:
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], retry_after=0) as emu:
        config = _write_config(tmp_path, emu)
        password = DeviceStore(tmp_path / "smtp_devices.db").add("scanner")
        emu.faults.add(Fault.error(503, times=1_000_000))  # ACS unavailable: the mail can only be in the outbox

        process, port = await _run(config)
        reply = await asyncio.to_thread(_send, port, password, tmp_path / "smtp_tls" / "smtp-cert.pem")
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        assert emu.mails == []
        message_id = re.search(r"Queued as (\S+)", reply).group(1)

        emu.faults.clear()
        process, _port = await _run(config)
        try:
            async with asyncio.timeout(60):
                while not emu.mails:
                    await asyncio.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0, (tmp_path / "run.log").read_text()

        [mail] = emu.mails
        assert mail.operation_id == message_id and emu.duplicates == 0
        assert mail.subject == "scan before the crash" and mail.recipients("to") == ["alice@example.com"]
        assert [(a.name, a.content) for a in mail.attachments()] == [("scan.pdf", PDF)]
        async with Outbox(tmp_path / "outbox.db") as outbox:
            stats = await outbox.stats()
            assert (stats.sent, stats.queued, stats.sending, stats.dead) == (1, 0, 0, 0)
