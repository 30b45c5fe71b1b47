"""Dispatch overhead per mail: engine (outbox → limiter → SDK) versus bare SDK calls to the same emulator.

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
from acs_email_core.transport import AcsCredentials

SENDER = "DoNotReply@bench.example.com"
UNLIMITED = Quota(send=(Window(10**9, 60.0),), poll=(Window(10**9, 60.0),))


def _messages(count: int) -> list[EmailMessage]:
    return [
        EmailMessage.build(sender=SENDER, to=f"r{i}@example.com", subject=f"bench {i}", text="x" * 500)
        for i in range(count)
    ]


async def _bare_sdk(emu: Emulator, messages: list[EmailMessage]) -> float:
    """Sequential begin_send calls, no outbox: the floor set by HTTPS + SDK + emulator."""
    client = EmailClient.from_connection_string(
        emu.connection_string, connection_verify=str(emu.ca_file), retry_total=0
    )
    async with client:
        start = time.perf_counter()
        for message in messages:
            await client.begin_send(message.to_acs_payload(), operation_id=message.message_id, polling=False)
        return time.perf_counter() - start


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
            bare = await _bare_sdk(emu, _messages(count))
            rows = [("bare SDK, sequential", bare)]
            for concurrency in (1, 2, 4):
                rows.append(
                    (f"engine, concurrency {concurrency}", await _engine(emu, _messages(count), directory, concurrency))
                )
    print(f"dispatch of {count} mails to the local emulator over HTTPS (synchronous=FULL outbox)")
    print(f"{'path':28} {'total s':>8} {'ms/mail':>8} {'mails/s':>8}")
    for name, seconds in rows:
        print(f"{name:28} {seconds:8.2f} {1000 * seconds / count:8.2f} {count / seconds:8.0f}")
    engine_seq = rows[1][1]
    print(f"engine overhead per mail vs bare SDK (concurrency 1): {1000 * (engine_seq - bare) / count:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
