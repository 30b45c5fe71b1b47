"""The emulator process killed with SIGKILL while it holds an accepted mail's answer: once it is back on the same
port, ``send`` finds the operation (kept in its state dir) and reports the mail sent, without sending it twice."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import sys
from pathlib import Path

import aiohttp

SENDER = "alerts@home.example"


async def _emulator(tmp_path: Path, port: int) -> tuple[asyncio.subprocess.Process, str]:
    """The emulator CLI on ``port``; its banner's pasted ``acs:`` block."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acs_email_bridge", "emulator", f"--port={port}", f"--tls-dir={tmp_path / 'tls'}",
        f"--state-dir={tmp_path / 'state'}", f"--record-dir={tmp_path / 'mail'}", "--senders", SENDER,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    banner = ""
    async with asyncio.timeout(30):
        while "Ctrl+C" not in banner:
            line = (await process.stdout.readline()).decode()
            assert line, banner
            banner += line
    return process, banner[banner.index("\nacs:") + 1 : banner.index("Press Ctrl+C")]


async def _admin(port: int, ca_file: Path, method: str, path: str, body: object = None) -> dict[str, object]:
    context = ssl.create_default_context(cafile=str(ca_file))
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.request(method, f"https://127.0.0.1:{port}/_emulator{path}", json=body) as response,
    ):
        response.raise_for_status()
        result: dict[str, object] = json.loads(await response.text())
        return result


async def test_send_survives_the_emulator_killed_mid_request(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port to come back on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    emulator, acs_block = await _emulator(tmp_path, port)
    (tmp_path / "acs.yaml").write_text(acs_block + "outbox:\n  path: outbox.db\n  retry_initial: 0.1\n")
    ca_file = tmp_path / "tls" / "ca.pem"
    await _admin(port, ca_file, "POST", "/faults", {"kind": "delay", "seconds": 30, "stage": "after"})
    send = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acs_email_bridge", "send", "-c", str(tmp_path / "acs.yaml"), "--to", "a@example.com",
        "-s", "killed", "-t", "mid-request", "--timeout", "60", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):  # accepted and kept on disk, its answer held back
            while not (tmp_path / "mail").is_dir() or not any((tmp_path / "mail").glob("*.eml")):
                await asyncio.sleep(0.05)
        emulator.send_signal(signal.SIGKILL)
        await emulator.wait()
        emulator, _block = await _emulator(tmp_path, port)
        async with asyncio.timeout(60):
            out, err = await send.communicate()
        assert send.returncode == 0, err.decode()
        message_id = out.decode().split()[1]
        assert out.decode().splitlines()[-1] == f"sent {message_id}"
        received = await _admin(port, ca_file, "GET", "")
        assert [mail["operation_id"] for mail in received["mails"]] == [message_id]  # type: ignore[index, union-attr]
        assert received["duplicates"] == 0
        assert received["requests"] == {"status": {"200": 1}}  # asked, found it: no second POST
    finally:
        for process in (send, emulator):
            if process.returncode is None:
                process.kill()
                await process.wait()
