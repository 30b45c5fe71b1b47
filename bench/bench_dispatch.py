"""Dispatch overhead per mail: the engine (outbox → limiter → transport) versus bare transport calls.

Run: python bench/bench_dispatch.py [mails]. Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from azure.communication.email.aio import EmailClient

from acs_email_bridge.emulator import Emulator
from acs_email_core.config import EngineSettings
from acs_email_core.engine import Engine
from acs_email_core.message import EmailMessage
from acs_email_core.quota import Quota, Window
from acs_email_core.transport import AcsCredentials, AcsTransport

SENDER = "DoNotReply@bench.example.com"
UNLIMITED = Quota(send=(Window(10**9, 60.0),), poll=(Window(10**9, 60.0),))


def _messages(count: int) -> list[EmailMessage]:
    return [
        EmailMessage.build(sender=SENDER, to=f"r{i}@example.com", subject=f"bench {i}", text="x" * 500)
        for i in range(count)
    ]


async def _naive_sdk(emu: Emulator, messages: list[EmailMessage]) -> float:
    """The SDK as quickstarts use it: ``connection_verify=<CA path>`` rebuilds the TLS context per request."""
    client = EmailClient.from_connection_string(
        emu.connection_string, connection_verify=str(emu.ca_file), retry_total=0
    )
    async with client:
        start = time.perf_counter()
        for message in messages:
            await client.begin_send(message.to_acs_payload(), operation_id=message.message_id, polling=False)
        return time.perf_counter() - start


async def _transport_only(emu: Emulator, messages: list[EmailMessage]) -> float:
    """Sequential sends through the same transport the engine uses, without outbox or dispatcher."""
    credentials = AcsCredentials(connection_string=emu.connection_string, ca_file=str(emu.ca_file))
    async with AcsTransport(credentials) as transport:
        await transport.send(messages[0].to_acs_payload(), messages[0].message_id)  # warm-up: TLS context, session
        start = time.perf_counter()
        for message in messages[1:]:
            await transport.send(message.to_acs_payload(), message.message_id)
        return (time.perf_counter() - start) * len(messages) / (len(messages) - 1)


async def _engine(emu: Emulator, messages: list[EmailMessage], directory: Path, concurrency: int) -> float:
    settings = EngineSettings(
        credentials=AcsCredentials(connection_string=emu.connection_string, ca_file=str(emu.ca_file)),
        sender=SENDER,
        outbox_path=directory / f"outbox-{concurrency}.db",
        quota=UNLIMITED,
        max_messages=len(messages) + 1,
        concurrency=concurrency,
    )
    async with Engine(settings) as engine:
        start = time.perf_counter()
        ids = await engine.submit_many(messages)
        await asyncio.gather(*(engine.wait_for(i) for i in ids))
        return time.perf_counter() - start


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        async with Emulator(tls_dir=directory / "tls", senders=[SENDER], retry_after=0) as emu:
            rows = [
                ("SDK, CA path per request", await _naive_sdk(emu, _messages(count))),
                ("transport only, sequential", await _transport_only(emu, _messages(count))),
            ]
            for concurrency in (1, 2, 4):
                seconds = await _engine(emu, _messages(count), directory, concurrency)
                rows.append((f"engine, concurrency {concurrency}", seconds))
    print(f"dispatch of {count} mails to the local emulator over HTTPS (synchronous=FULL outbox)")
    print(f"{'path':28} {'total s':>8} {'ms/mail':>8} {'mails/s':>8}")
    for name, seconds in rows:
        print(f"{name:28} {seconds:8.2f} {1000 * seconds / count:8.2f} {count / seconds:8.0f}")
    overhead = 1000 * (rows[2][1] - rows[1][1]) / count
    print(f"outbox + dispatcher overhead per mail (engine, concurrency 1, vs transport only): {overhead:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
