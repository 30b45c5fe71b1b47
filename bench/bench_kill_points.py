"""SIGKILL at every await point of delivery: exactly once and within quota whichever step a crash hits.

The delivering child counts the points where it awaits the outbox (claim, request started/finished, mark
sent/retry/dead, save a Retry-After) or ACS (send, status), before and after each, and kills itself with
SIGKILL at point K; K runs from 1 until a run survives, at concurrency 1, 2 and 4. The emulator meanwhile
cuts a connection after acceptance, stalls a POST past the client's timeout (then accepts it), answers after
the timeout and fails a status check. A clean engine then delivers what is left. Verdicts: every mail sent,
emulator duplicate counter 0, no 429 (no fault injects one, so any 429 is the quota's).

Run: python bench/bench_kill_points.py [max_points] [concurrencies, e.g. 1,2,4]   (exit status 1 on any failure)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from e2e.soak import QUOTA, SENDER, _mails, settings

from acs_email_bridge.emulator import Emulator, Fault, Route
from acs_email_core import outbox as outbox_module
from acs_email_core import transport as transport_module
from acs_email_core.engine import Engine
from acs_email_core.outbox import Outbox

MAILS = 6
OUTBOX_POINTS = (
    "claim_due",
    "request_started",
    "request_finished",
    "mark_sent",
    "mark_retry",
    "mark_dead",
    "save_block",
)


def _faults() -> list[Fault]:
    return [
        Fault.drop(after=True),
        Fault.stall(1.3),
        Fault.delay(1.5, after=True),
        Fault.error(503, route=Route.STATUS),
    ]


def _child(params: dict[str, Any]) -> None:
    passed = 0

    def point() -> None:
        nonlocal passed
        passed += 1
        if passed == params["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)

    def instrument(cls: type, name: str) -> None:
        original = getattr(cls, name)

        async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            point()
            result = await original(self, *args, **kwargs)
            point()
            return result

        setattr(cls, name, counted)

    for name in OUTBOX_POINTS:
        instrument(outbox_module.Outbox, name)
    for name in ("send", "status"):
        instrument(transport_module.AcsTransport, name)

    async def main() -> None:
        s = settings(params["connection"], params["ca"], Path(params["outbox"]), params["concurrency"])
        async with Engine(s):
            await asyncio.sleep(8)

    asyncio.run(main())


async def _run(directory: Path, kill_at: int, concurrency: int) -> tuple[bool, bool, int, int]:
    """(killed, all sent, duplicates, 429s) of one run."""
    async with Emulator(tls_dir=directory / "tls", senders=[SENDER], retry_after=0, quota=QUOTA) as emu:
        path = directory / f"outbox-{concurrency}-{kill_at}.db"
        async with Outbox(path) as outbox:
            ids = await outbox.enqueue_many(_mails(MAILS, 0))
        for fault in _faults():
            emu.faults.add(fault)
        params = {
            "connection": emu.connection_string,
            "ca": str(emu.ca_file),
            "outbox": str(path),
            "concurrency": concurrency,
            "kill_at": kill_at,
        }
        with (directory / "child.log").open("ab") as log:
            child = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "child", json.dumps(params), stderr=log
            )
            await asyncio.wait_for(child.wait(), 60)
        emu.faults.clear()
        async with Engine(settings(emu.connection_string, str(emu.ca_file), path, concurrency)) as engine:
            async with asyncio.timeout(60):
                states = [await engine.wait_for(i) for i in ids]
        duplicates = emu.duplicates + len(emu.mails) - len({m.operation_id for m in emu.mails})
        all_sent = all(str(state) == "sent" for state in states)
        return child.returncode == -signal.SIGKILL, all_sent, duplicates, emu.requests.count(status=429)


async def _main(max_points: int, concurrencies: tuple[int, ...]) -> int:
    runs = kills = failures = 0
    with tempfile.TemporaryDirectory(prefix="acs-kill-") as directory:
        for concurrency in concurrencies:
            points = 0
            for kill_at in range(1, max_points + 1):
                killed, all_sent, duplicates, throttled = await _run(Path(directory), kill_at, concurrency)
                runs += 1
                kills += killed
                points = kill_at
                if not all_sent or duplicates or throttled:
                    failures += 1
                    print(
                        f"FAILED: concurrency {concurrency}, killed at point {kill_at}: all sent {all_sent}, "
                        f"duplicates {duplicates}, 429s {throttled}",
                        flush=True,
                    )
                if not killed:  # the run ended before reaching point K: every point has been hit
                    break
            print(f"concurrency {concurrency}: killed at points 1..{points}", flush=True)
    print(f"runs {runs}, SIGKILLs {kills}, mails {runs * MAILS}, failures {failures}")
    print("verdict:", "every mail exactly once, within quota" if failures == 0 else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        _child(json.loads(sys.argv[2]))
    else:
        logging.basicConfig(level=logging.CRITICAL)  # the crashes are the point: their warnings are not news
        max_points = int(sys.argv[1]) if len(sys.argv) > 1 else 150
        concurrencies = tuple(int(c) for c in (sys.argv[2] if len(sys.argv) > 2 else "1,2,4").split(","))
        sys.exit(asyncio.run(_main(max_points, concurrencies)))
