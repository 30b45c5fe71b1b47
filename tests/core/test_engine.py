"""One process delivers from an outbox file; others queue into it and take over when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_core.config import EngineSettings
from acs_email_core.engine import Engine
from acs_email_core.message import EmailMessage
from acs_email_core.outbox import State

SENDER = "DoNotReply@engine.example.com"
MakeEmulator = Callable[..., Awaitable[Emulator]]
SettingsFactory = Callable[..., EngineSettings]


def _message(i: int) -> EmailMessage:
    return EmailMessage.build(sender=SENDER, to=f"r{i}@example.com", subject=f"m{i}", text="x")


async def test_second_engine_queues_while_first_delivers_then_takes_over(
    make_emulator: MakeEmulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    emu = await make_emulator(senders=[SENDER], retry_after=0)
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    first, second = Engine(settings), Engine(settings)
    await first.start()
    await second.start()
    try:
        assert first.outbox.owner and not second.outbox.owner
        queued_by_second = await second.submit(_message(1))
        async with asyncio.timeout(10):
            assert await second.wait_for(queued_by_second) is State.SENT  # delivered by the first
        assert (await first.status()).sent_total == 1

        emu.faults.add(Fault.error(503, times=1_000))  # the first cannot deliver this one before it stops
        stranded = await second.submit(_message(2))
        await asyncio.sleep(0.2)
        await first.stop()
        emu.faults.clear()
        async with asyncio.timeout(10):
            assert await second.wait_for(stranded) is State.SENT  # the second took over
        assert second.outbox.owner
    finally:
        await second.stop()
        await first.stop()
    assert sorted(m.operation_id for m in emu.mails) == sorted([queued_by_second, stranded])
    assert emu.duplicates == 0


async def test_queue_only_engine_never_delivers(
    make_emulator: MakeEmulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    emu = await make_emulator(senders=[SENDER], retry_after=0)
    engine = Engine(engine_settings(emu, tmp_path / "o.db", SENDER))
    await engine.start(deliver=False)
    try:
        message_id = await engine.submit(_message(1))
        await asyncio.sleep(0.3)
        entry = await engine.outbox.get(message_id)
    finally:
        await engine.stop()
    assert entry is not None and entry.state is State.QUEUED
    assert emu.mails == []
