"""The SMTP part of ``make demo``: a scanner sends a PDF through the relay, like a printer would."""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

from prometheus_client import CollectorRegistry

from acs_email_core.engine import Engine
from acs_email_core.outbox import State

from .accounts import DeviceStore
from .config import DevicePolicy, SmtpSettings
from .relay import SmtpRelay

DEVICE = "scanner"


def _pdf() -> bytes:
    """A one-page PDF saying "Scanned page", written by hand so the demo ships no binary files."""
    text = b"BT /F1 24 Tf 72 720 Td (Scanned page) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _scan(port: int, cert: Path, password: str, recipient: str) -> str:
    """What a multifunction printer does: STARTTLS, AUTH LOGIN, one mail with the scan; returns the reply."""
    scan = EmailMessage()
    scan["From"] = "Office Scanner <scanner@office.lan>"
    scan["To"] = recipient
    scan["Subject"] = "Scanned document from MFP-3071"
    scan.set_content("Please find the scanned document attached.")
    scan.add_attachment(_pdf(), "application", "pdf", filename="scan0001.pdf")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(cert)))
        client.ehlo()
        client.user, client.password = DEVICE, password
        client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        client.mail("scanner@office.lan")
        client.rcpt(recipient)
        code, reply = client.data(scan.as_bytes())
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return reply.decode()


async def scan_through_relay(directory: Path, engine: Engine, recipient: str) -> bool:
    """Start the relay on the demo's engine, send a scan through it, wait until ACS has it. True when it did."""
    settings = SmtpSettings(
        accounts_path=directory / "smtp_devices.db",
        tls_dir=directory / "smtp_tls",
        hostname="localhost",
        listen="127.0.0.1",
        submission_port=0,
        smtps_port=None,
        devices={DEVICE: DevicePolicy(DEVICE, recipients=(recipient,), display_name="Office scanner")},
    )
    password = await asyncio.to_thread(DeviceStore(settings.accounts_path).add, DEVICE, replace=True)
    relay = SmtpRelay(settings, engine, registry=CollectorRegistry())
    await relay.start()
    try:
        assert relay.certificate is not None
        port = relay.ports["submission"]
        print(f"\nSMTP relay on 127.0.0.1:{port} (STARTTLS), certificate SHA-256 {relay.certificate.sha256[:23]}…")
        print(f"  device {DEVICE!r} (user {DEVICE}, a generated password) sends a PDF scan with AUTH LOGIN")
        reply = await asyncio.to_thread(_scan, port, relay.certificate.cert_file, password, recipient)
        print(f"  relay: {reply}")
        match = re.search(r"Queued as (\S+)", reply)
        if match is None:
            return False
        async with asyncio.timeout(60):
            state = await engine.wait_for(match.group(1))
        entry = await engine.outbox.get(match.group(1))
        print(
            f"  {state.value}: {entry.subject if entry else ''!r} from {engine.settings.sender}, Reply-To the scanner"
        )
        return state is State.SENT
    finally:
        await relay.stop()
