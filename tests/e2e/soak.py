"""Fault soak: many mails through the emulator while everything that can go wrong does.

Rounds alternate between a delivering *child process* killed with SIGKILL at a random moment and an
in-process engine whose wall clock steps (forwards and backwards) and which is stopped with a short grace;
concurrency cycles through 1, 2 and 4. Before every round the emulator is loaded with random faults:
connections cut after the mail was accepted, cut before, 503s, injected 429s, slow answers, answers later
than the client's timeout, requests stalled past it and then processed, status-endpoint failures and 429s,
operations held Running. New mail arrives from another process meanwhile. A
last round delivers what is left. Verdicts: every mail accepted exactly once (emulator duplicate counter 0)
and no request refused for being over the quota (quota 429s = all 429s minus the injected ones).

Used by tests/e2e/test_soak.py (short) and bench/bench_soak.py (long, prints figures). Run as a script
(``python soak.py child <json>``), it is the delivering child.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_bridge.emulator.faults import Route
from acs_email_core.config import EngineSettings
from acs_email_core.dispatcher import Dispatcher
from acs_email_core.engine import Engine
from acs_email_core.message import EmailMessage
from acs_email_core.outbox import Outbox
from acs_email_core.quota import Quota, Window
from acs_email_core.retry import RetryPolicy
from acs_email_core.timebase import Timebase
from acs_email_core.transport import AcsCredentials, AcsTransport

SENDER = "DoNotReply@soak.example.com"
QUOTA = Quota(send=(Window(10, 1.0), Window(40, 5.0)), poll=(Window(20, 1.0), Window(80, 5.0)))
TIMEOUT = 1.0  # client timeout: an answer later than this is an ambiguous failure
# Fast pacing, and no dead letters: every mail must arrive, however many faults it meets.
RETRY = RetryPolicy(initial_delay=0.1, max_delay=0.5, jitter=0.2, max_attempts=1_000_000, max_age=86_400)

FAULTS: dict[str, Callable[[], Fault]] = {
    "cut after acceptance": lambda: Fault.drop(after=True),
    "cut before processing": lambda: Fault.drop(),
    "503": lambda: Fault.error(503),
    "injected 429": lambda: Fault.error(429, retry_after=1),
    "slow answer": lambda: Fault.delay(0.4),
    "answer after the timeout": lambda: Fault.delay(1.5, after=True),
    "status 503": lambda: Fault.error(503, route=Route.STATUS),
    "status cut": lambda: Fault.drop(route=Route.STATUS),
    "status 429": lambda: Fault.error(429, retry_after=1, route=Route.STATUS),
    "503 with Retry-After": lambda: Fault.error(503, retry_after=1),
    # Read, held past the client's timeout, then accepted anyway (ACS still processing the abandoned POST).
    "stalled past the timeout": lambda: Fault.stall(1.5),
    "status stalled": lambda: Fault.stall(1.5, route=Route.STATUS),
    "operation held Running": lambda: Fault.held("Running", 2.0),
}
INJECTED_429 = ("injected 429", "status 429")


def settings(emu_connection: str, ca_file: str, outbox: Path, concurrency: int) -> EngineSettings:
    return EngineSettings(
        credentials=AcsCredentials(connection_string=emu_connection, ca_file=ca_file),
        sender=SENDER,
        outbox_path=outbox,
        quota=QUOTA,
        retry=RETRY,
        concurrency=concurrency,
        timeout=TIMEOUT,
        outage_backoff=RETRY,
        verify_recheck=0.1,
        synchronous="NORMAL",
    )


@dataclass
class SoakReport:
    mails: int = 0
    delivered: int = 0
    duplicates: int = 0
    over_quota: int = 0  # requests the emulator refused with 429 for its quota (not injected)
    kills: int = 0
    graceful_stops: int = 0
    clock_steps: int = 0
    concurrency: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)  # injected and reached
    seconds: float = 0.0

    def lines(self) -> list[str]:
        faults = ", ".join(f"{name} {n}" for name, n in sorted(self.faults.items()))
        rounds = ", ".join(f"{c}: {n}" for c, n in sorted(self.concurrency.items()))
        return [
            f"mails {self.mails}, delivered {self.delivered}, duplicates {self.duplicates}, "
            f"windows over quota {self.over_quota}",
            f"SIGKILLs {self.kills}, graceful stops {self.graceful_stops}, wall clock steps {self.clock_steps}, "
            f"rounds per concurrency {{{rounds}}}",
            f"faults survived ({sum(self.faults.values())}): {faults}",
            f"time {self.seconds:.1f} s",
        ]


class _Wall:
    """The in-process rounds' wall clock, which the soak steps."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _mails(count: int, start: int) -> list[EmailMessage]:
    return [
        EmailMessage.build(sender=SENDER, to=f"r{i}@example.com", subject=f"soak {i}", text=f"mail {i}")
        for i in range(start, start + count)
    ]


class Soak:
    def __init__(self, directory: Path, emu: Emulator, rng: random.Random) -> None:
        self.directory = directory
        self.outbox_path = directory / "outbox.db"
        self.emu = emu
        self.rng = rng
        self.ids: list[str] = []
        self.report = SoakReport()
        self.injected: Counter[str] = Counter()
        self.wall = _Wall()

    async def enqueue(self, count: int) -> None:
        """New mail from another process (it only queues: the delivering process owns the outbox)."""
        async with Outbox(self.outbox_path, max_messages=100_000) as outbox:
            self.ids += await outbox.enqueue_many(_mails(count, len(self.ids)))

    def inject(self, count: int) -> None:
        for _ in range(count):
            name = self.rng.choice(sorted(FAULTS))
            fault = FAULTS[name]()
            self.injected[name] += 1
            self.emu.faults.add(fault)

    async def kill_round(self, concurrency: int, seconds: float, log: Path) -> None:
        params = {
            "connection": self.emu.connection_string,
            "ca": str(self.emu.ca_file),
            "outbox": str(self.outbox_path),
            "concurrency": concurrency,
        }
        with log.open("ab") as out:
            child = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "child", json.dumps(params), stdout=asyncio.subprocess.PIPE, stderr=out
            )
        assert child.stdout is not None
        async with asyncio.timeout(60):
            assert await child.stdout.readline() == b"ready\n", log.read_text()
        await asyncio.sleep(seconds / 2)
        await self.enqueue(self.rng.randint(0, 5))
        await asyncio.sleep(seconds / 2)
        child.send_signal(signal.SIGKILL)
        await child.wait()
        self.report.kills += 1

    async def engine_round(self, concurrency: int, seconds: float, *, until_done: bool = False) -> None:
        s = settings(self.emu.connection_string, str(self.emu.ca_file), self.outbox_path, concurrency)
        timebase = Timebase(wall=self.wall)
        outbox = Outbox(
            self.outbox_path,
            max_messages=100_000,
            retry=RETRY,
            synchronous="NORMAL",
            clock=self.wall,
            monotonic=time.monotonic,
        )
        async with outbox, AcsTransport(s.credentials, timeout=TIMEOUT) as transport:
            dispatcher = Dispatcher(
                outbox,
                transport,
                QUOTA,
                concurrency=concurrency,
                outage_backoff=RETRY,
                verify_recheck=0.1,
                request_horizon=2 * TIMEOUT,
                resend_after=3 * TIMEOUT,
                timebase=timebase,
            )
            await dispatcher.start()
            try:
                if until_done:
                    async with asyncio.timeout(120):
                        while (await outbox.stats()).sent < len(self.ids):
                            await asyncio.sleep(0.1)
                else:
                    await asyncio.sleep(seconds / 2)
                    self.wall.offset += self.rng.choice([-1, 1]) * self.rng.uniform(30, 7200)
                    self.report.clock_steps += 1
                    await asyncio.sleep(seconds / 2)
            finally:
                await dispatcher.stop(grace=0 if not until_done else 10)
        if not until_done:
            self.report.graceful_stops += 1

    def settle_faults(self) -> None:
        """Count the injected faults that requests reached; drop the others."""
        names = {json.dumps({**make().to_dict(), "times": 0}, sort_keys=True): name for name, make in FAULTS.items()}
        pending = Counter[str]()
        for item in self.emu.faults.pending():
            remaining = item.pop("remaining")
            pending[names[json.dumps({**item, "times": 0}, sort_keys=True)]] += remaining
        self.emu.faults.clear()
        self.report.faults = self.injected - pending

    def finish(self, started: float) -> SoakReport:
        report = self.report
        report.mails = len(self.ids)
        report.delivered = len({m.operation_id for m in self.emu.mails} & set(self.ids))
        report.duplicates = self.emu.duplicates + len(self.emu.mails) - len({m.operation_id for m in self.emu.mails})
        count = self.emu.requests.count
        all_429 = count(route="send", status=429) + count(route="status", status=429)
        report.over_quota = all_429 - sum(report.faults[name] for name in INJECTED_429)
        report.seconds = time.monotonic() - started
        return report


async def run_soak(directory: Path, *, mails: int, rounds: int, seed: int = 1) -> SoakReport:
    """Run the soak; the report says what happened (the caller decides what is a failure)."""
    rng = random.Random(seed)
    started = time.monotonic()
    async with Emulator(tls_dir=directory / "tls", senders=[SENDER], retry_after=0, quota=QUOTA) as emu:
        soak = Soak(directory, emu, rng)
        await soak.enqueue(mails)
        for number in range(rounds):
            concurrency = (1, 2, 4)[number % 3]
            soak.report.concurrency[concurrency] += 1
            soak.inject(rng.randint(2, 5))
            seconds = rng.uniform(0.6, 1.6)
            if number % 2 == 0:
                await soak.kill_round(concurrency, seconds, directory / "child.log")
            else:
                await soak.engine_round(concurrency, seconds)
        soak.settle_faults()  # faults no request reached are dropped: the last round only delivers
        await soak.engine_round(2, 0, until_done=True)
        return soak.finish(started)


def _child(params: dict[str, Any]) -> None:
    async def main() -> None:
        s = settings(params["connection"], params["ca"], Path(params["outbox"]), params["concurrency"])
        async with Engine(s):
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    _child(json.loads(sys.argv[2]))
