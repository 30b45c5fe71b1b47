"""SMTP relay benchmark: accepted mails per second with a 1 MB attachment over STARTTLS, and the relay's memory.

Run: ``python bench/bench_smtp.py [--dir DIR]`` (DIR: where the outbox goes; use the disk you deploy on).
The relay and the engine run in this process with the outbox at ``synchronous=FULL`` (each 250 waits for
fsync); clients are separate processes so their memory and CPU are not counted as the relay's. Delivery is
off: this measures what the relay accepts, not what ACS quotas allow. About 30 seconds; nothing is asserted.
RSS above the first scenario's is glibc's per-thread malloc arenas (conversion runs in worker threads), not
retained objects (tracemalloc: ~40 kB kept after 160 mails); ``MALLOC_ARENA_MAX=2`` keeps it lower.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import smtplib
import ssl
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from email.message import EmailMessage
from pathlib import Path

from bench_outbox import report, rss_mb
from prometheus_client import CollectorRegistry

from acs_email_bridge.smtp.accounts import DeviceStore
from acs_email_bridge.smtp.config import DevicePolicy, SmtpSettings
from acs_email_bridge.smtp.relay import SmtpRelay
from acs_email_core.config import EngineSettings
from acs_email_core.engine import Engine
from acs_email_core.transport import AcsCredentials

ATTACHMENT = 1024 * 1024


def _mime() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Scanner <scanner@office.lan>"
    msg["To"] = "alice@example.com"
    msg["Subject"] = "Scanned document"
    msg.set_content("Scan attached.")
    msg.add_attachment(os.urandom(ATTACHMENT), "application", "pdf", filename="scan.pdf")
    return msg.as_bytes()


def client(port: int, cert: str, password: str, sessions: int, per_session: int) -> int:
    """One client process: ``sessions`` connections (STARTTLS + AUTH LOGIN), ``per_session`` mails each."""
    data, accepted = _mime(), 0
    context = ssl.create_default_context(cafile=cert)
    for _ in range(sessions):
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            smtp.starttls(context=context)
            smtp.ehlo()
            smtp.user, smtp.password = "bench", password
            smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
            for _ in range(per_session):
                smtp.sendmail("scanner@office.lan", ["alice@example.com"], data)
                accepted += 1
    return accepted


async def scenario(
    relay: SmtpRelay, password: str, pool: ProcessPoolExecutor, name: str, clients: int, sessions: int, per: int
) -> None:
    assert relay.certificate is not None
    loop = asyncio.get_running_loop()
    args = (relay.ports["submission"], str(relay.certificate.cert_file), password, sessions, per)
    started = time.perf_counter()
    counts = await asyncio.gather(*(loop.run_in_executor(pool, client, *args) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    total = sum(counts)
    current, peak = rss_mb()
    report(
        f"{name}: {total} mails", f"{total / elapsed:6.1f} mails/s", f"{total * ATTACHMENT / elapsed / 1e6:.1f} MB/s"
    )
    report("  relay process RSS now / peak", f"{current:.0f} / {peak:.0f} MB")


async def main(directory: Path) -> None:
    settings = EngineSettings(
        credentials=AcsCredentials(connection_string="endpoint=https://127.0.0.1:9/;accesskey=YmVuY2g="),
        sender="relay@example.com",
        outbox_path=directory / "outbox.db",
        max_messages=100_000,
    )
    smtp = SmtpSettings(
        accounts_path=directory / "smtp_devices.db",
        tls_dir=directory / "smtp_tls",
        listen="127.0.0.1",
        submission_port=0,
        smtps_port=None,
        max_message_size=4 * ATTACHMENT,
        devices={"bench": DevicePolicy("bench", recipients=("example.com",), per_minute=10**6, per_hour=10**6)},
    )
    password = DeviceStore(smtp.accounts_path).add("bench")
    engine = Engine(settings)
    await engine.start(deliver=False)
    relay = SmtpRelay(smtp, engine, registry=CollectorRegistry())
    await relay.start()
    current, _peak = rss_mb()
    print(f"SMTP relay, {ATTACHMENT // 1024} KiB PDF per mail, STARTTLS + AUTH LOGIN, outbox synchronous=FULL")
    report("relay process RSS at start", f"{current:.0f} MB")
    try:
        with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
            await scenario(relay, password, pool, "1 client, a new session per mail (printer-like)", 1, 20, 1)
            await scenario(relay, password, pool, "4 clients, 10 mails per session", 4, 2, 10)
    finally:
        await relay.stop()
        await engine.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, help="where the outbox goes (default: a temporary directory)")
    options = parser.parse_args()
    if options.dir:
        options.dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(main(options.dir))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
