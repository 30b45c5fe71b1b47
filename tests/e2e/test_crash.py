"""A delivering process killed with SIGKILL at random points loses nothing and duplicates nothing."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import yaml

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_core.message import EmailMessage
from acs_email_core.outbox import Outbox, State

from .conftest import SENDER

TOTAL = 60


def _write_config(directory: Path, emu: Emulator) -> Path:
    config = {
        "acs": {
            "connection_string": emu.connection_string,
            "sender": SENDER,
            "ca_file": str(emu.ca_file),
            "timeout": 2,
        },
        "quota": {"per_minute": 10_000, "per_hour": 100_000},
        "outbox": {"path": str(directory / "outbox.db"), "retry_initial": 0.1, "retry_max": 0.5},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def _flush(config: Path) -> asyncio.subprocess.Process:
    """``acs-email-bridge queue flush`` in a child process; its log goes to ``flush.log`` beside the config."""
    with (config.parent / "flush.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "acs_email_bridge", "-v", "queue", "flush", "--config", str(config),
            stdout=log, stderr=log,
        )  # fmt: skip


async def _kill_when(process: asyncio.subprocess.Process, emu: Emulator, received: int, log: Path) -> None:
    async with asyncio.timeout(60):
        while len(emu.mails) < received and process.returncode is None:
            await asyncio.sleep(0.02)
    assert process.returncode is None, f"flush ended on its own ({process.returncode}):\n{log.read_text()}"
    process.send_signal(signal.SIGKILL)
    assert await process.wait() == -signal.SIGKILL


async def test_sigkill_mid_stream_delivers_everything_exactly_once(tmp_path: Path) -> None:
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], retry_after=0) as emu:
        config = _write_config(tmp_path, emu)
        messages = [
            EmailMessage.build(sender=SENDER, to=f"r{i}@example.com", subject=f"mail {i}", text="x")
            for i in range(TOTAL)
        ]
        async with Outbox(tmp_path / "outbox.db", max_messages=1_000) as outbox:
            await outbox.enqueue_many(messages)
        # Every answer is late, after the mail was accepted: a kill almost always catches POSTs in flight.
        emu.faults.add(Fault.delay(0.25, after=True, times=10_000))

        log = tmp_path / "flush.log"
        for received in (10, 25, 40):
            await _kill_when(await _flush(config), emu, received, log)

        final = await _flush(config)
        async with asyncio.timeout(120):
            assert await final.wait() == 0, log.read_text()

        async with Outbox(tmp_path / "outbox.db") as outbox:
            stats = await outbox.stats()
            assert (stats.sent, stats.queued, stats.sending, stats.dead) == (TOTAL, 0, 0, 0)
            assert all(e.state is State.SENT for e in await outbox.list(limit=TOTAL))
        assert sorted(m.operation_id for m in emu.mails) == sorted(m.message_id for m in messages)
        assert emu.duplicates == 0
