"""The CLI as cron runs it, one process per mail, under faults: kills mid-request, bad files, bad ids."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_core.message import EmailMessage
from acs_email_core.outbox import Outbox
from acs_email_core.quota import Quota, Window

from .conftest import SENDER

EXIT_INVALID, EXIT_PENDING, EXIT_STORAGE = 2, 3, 5


def _config(directory: Path, emu: Emulator, **sections: Any) -> Path:
    config: dict[str, Any] = {
        "acs": {
            "connection_string": emu.connection_string,
            "sender": SENDER,
            "ca_file": str(emu.ca_file),
            "timeout": 2,
        },
        "outbox": {"path": str(directory / "outbox.db"), "retry_initial": 0.1, "retry_max": 0.5},
    }
    config.update(sections)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def _cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acs_email_bridge", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def _send(config: Path, *extra: str) -> tuple[int, str]:
    process = await _cli("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y", *extra)
    async with asyncio.timeout(120):
        _out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_requests_in_flight_at_a_kill_count_against_the_next_process(tmp_path: Path) -> None:
    minute = {"per_minute": 2, "per_hour": 100, "poll_per_minute": 100, "poll_per_hour": 1000}
    service_quota = Quota(send=(Window(2, 60.0), Window(100, 3600.0)), poll=(Window(100, 60.0), Window(1000, 3600.0)))
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], retry_after=0, quota=service_quota) as emu:
        config = _config(tmp_path, emu, quota=minute)
        async with Outbox(tmp_path / "outbox.db") as outbox:
            await outbox.enqueue_many(
                [EmailMessage.build(sender=SENDER, to=f"r{i}@example.com", subject="m", text="x") for i in range(3)]
            )
        emu.faults.add(Fault.delay(30.0, after=True, times=2))  # both accepted, neither answered
        flush = await _cli("queue", "flush", "-c", str(config))
        async with asyncio.timeout(60):
            while len(emu.mails) < 2:
                await asyncio.sleep(0.02)
        flush.send_signal(signal.SIGKILL)
        await flush.communicate()

        # The next cron run: the minute's two requests are spent, though the killed process never saw an answer.
        code, err = await _send(config, "--timeout", "3")
        assert code == EXIT_PENDING, err
        assert emu.requests.count(route="send", status=429) == 0
        assert len(emu.mails) == 2 and emu.duplicates == 0


async def test_a_corrupt_outbox_is_its_own_exit_code_with_one_line(tmp_path: Path, emu: Emulator) -> None:
    config = _config(tmp_path, emu)
    (tmp_path / "outbox.db").write_bytes(b"this is not an SQLite database\n" * 200)
    code, err = await _send(config)
    assert code == EXIT_STORAGE
    assert err.strip().splitlines() == [f"error: outbox {tmp_path / 'outbox.db'}: file is not a database"]
    process = await _cli("queue", "list", "-c", str(config))
    _out, err_bytes = await process.communicate()
    assert process.returncode == EXIT_STORAGE and "Traceback" not in err_bytes.decode()


async def test_an_unusable_outbox_directory_is_its_own_exit_code(tmp_path: Path, emu: Emulator) -> None:
    (tmp_path / "state").write_text("a file where the outbox directory should be")
    config = _config(tmp_path, emu, outbox={"path": str(tmp_path / "state" / "outbox.db")})
    code, err = await _send(config)
    assert code == EXIT_STORAGE
    assert len(err.strip().splitlines()) == 1 and str(tmp_path / "state" / "outbox.db") in err
    assert emu.mails == []


async def test_a_malformed_tenant_id_is_a_config_error_before_anything_is_queued(tmp_path: Path, emu: Emulator) -> None:
    acs = {
        "endpoint": emu.endpoint,
        "sender": SENDER,
        "tenant_id": "contoso tenant",
        "client_id": "my-app",
        "client_secret": emu.client_secret,
        "authority": emu.authority,
        "ca_file": str(emu.ca_file),
    }
    config = _config(tmp_path, emu, acs=acs)
    code, err = await _send(config)
    assert code == EXIT_INVALID
    assert "acs.tenant_id" in err and "acs.client_id" in err
    assert emu.client_secret not in err
    assert not (tmp_path / "outbox.db").exists()
