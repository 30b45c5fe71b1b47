"""A local Mosquitto on a free loopback port, and mosquitto_pub: for ``make demo``, the tests and the bench.

The broker keeps its persistence file in its own folder, so ``restart`` keeps queued messages and sessions
(as a real broker with ``persistence true`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One broker process; ``settings`` are extra mosquitto.conf lines (e.g. ``max_queued_messages 0``).

    They follow the ``listener`` line, so listener options (``certfile``…) apply to it.
    """

    def __init__(self, directory: Path, settings: Sequence[str] = ()) -> None:
        self.directory = directory
        self.port = free_port()
        self.settings = list(settings)
        self.client_args: list[str] = []  # extra mosquitto_pub options: TLS files, -u/-P
        self.process: asyncio.subprocess.Process | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _write_config(self) -> Path:
        own = {line.split()[0] for line in self.settings if line.strip()}
        lines = [
            f"listener {self.port} 127.0.0.1",
            *([] if "allow_anonymous" in own else ["allow_anonymous true"]),
            "persistence true",
            f"persistence_location {self.directory}/",
            f"log_dest file {self.directory}/mosquitto.log",
            *(["user root"] if os.geteuid() == 0 else []),  # as root it would switch to "mosquitto" otherwise
            *self.settings,
        ]
        path = self.directory / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    async def start(self) -> None:
        config = self._write_config()
        self.process = await asyncio.create_subprocess_exec(
            MOSQUITTO, "-c", str(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        async with asyncio.timeout(20):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"mosquitto exited with {self.process.returncode}:\n{self.log}")
                with contextlib.suppress(OSError):
                    _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return
                await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM saves the persistence file (queued messages, sessions); SIGKILL does not."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            async with asyncio.timeout(20):
                await self.process.wait()
        self.process = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def publish(self, topic: str, message: str | bytes, *, qos: int = 1, retain: bool = False) -> None:
        """One message with mosquitto_pub (waits for its PUBACK)."""
        args = ["-t", topic, "-q", str(qos), *(["-r"] if retain else []), "-s"]
        await self.pub(args, message if isinstance(message, bytes) else message.encode())

    async def publish_lines(self, topic: str, lines: Sequence[str], *, qos: int = 1) -> None:
        """``mosquitto_pub -l``: one message per line over one connection, as devices and scripts do."""
        await self.pub(["-t", topic, "-q", str(qos), "-l"], "".join(f"{line}\n" for line in lines).encode())

    async def pub(self, args: Sequence[str], stdin: bytes) -> None:
        process = await asyncio.create_subprocess_exec(
            MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(self.port), *self.client_args, *args,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate(stdin)
        if process.returncode != 0:
            raise RuntimeError(f"mosquitto_pub failed ({process.returncode}): {err.decode()} {out.decode()}")
