"""Event-loop stalls while a mail with a 7 MB attachment is built, queued and delivered (Home Assistant's loop).

Run: python bench/bench_big_attachment.py [MB]. A ticker task measures the longest gap between its wake-ups
(1 ms apart) during each step; prints figures, asserts nothing. The emulator runs in another process, so its
own parsing of the request does not count.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

from acs_email_bridge.emulator import Emulator
from acs_email_core.config import EngineSettings
from acs_email_core.engine import Engine
from acs_email_core.message import Attachment, EmailMessage
from acs_email_core.quota import Quota, Window
from acs_email_core.transport import AcsCredentials

SENDER = "DoNotReply@bench.example.com"


async def _longest_stall(step: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(seconds the step took, longest event-loop stall meanwhile)."""
    longest = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last - 0.001)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    await step()
    took = time.perf_counter() - start
    done.set()
    await task
    return took, longest


def _serve(tls_dir: Path, pipe: Connection) -> None:
    async def serve() -> None:
        async with Emulator(tls_dir=tls_dir, senders=[SENDER], retry_after=0) as emu:
            pipe.send((emu.connection_string, str(emu.ca_file)))
            await asyncio.to_thread(pipe.recv)  # until the bench is done

    asyncio.run(serve())


@contextmanager
def _emulator_process(tls_dir: Path) -> Iterator[tuple[str, str]]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(tls_dir, theirs))
    process.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join()


async def main(megabytes: float) -> None:
    data = bytes(int(megabytes * 1024 * 1024))
    with tempfile.TemporaryDirectory() as directory, _emulator_process(Path(directory) / "tls") as (connection, ca):
        if True:
            settings = EngineSettings(
                credentials=AcsCredentials(connection_string=connection, ca_file=ca),
                sender=SENDER,
                outbox_path=Path(directory) / "outbox.db",
                quota=Quota(send=(Window(1000, 60.0),), poll=(Window(1000, 60.0),)),
            )
            async with Engine(settings) as engine:
                message: list[EmailMessage] = []

                async def build() -> None:
                    attachment = Attachment("clip.mp4", data)
                    message.append(
                        EmailMessage.build(
                            sender=SENDER,
                            to="a@example.com",
                            subject="clip",
                            attachments=[attachment],
                            text="motion at the door",
                        )
                    )

                ids: list[str] = []

                async def submit() -> None:
                    ids.append(await engine.submit(message[0]))

                async def deliver() -> None:
                    await engine.wait_for(ids[0])

                for name, step in (("build", build), ("submit", submit), ("deliver", deliver)):
                    took, stall = await _longest_stall(step)
                    print(
                        f"{megabytes:g} MB attachment, {name}: {took * 1000:.0f} ms, longest loop stall "
                        f"{stall * 1000:.1f} ms"
                    )


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 7.0))
