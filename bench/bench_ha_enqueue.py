"""Home Assistant action latency: ``acs_email.send_message`` call → return (the mail is durable), ACS slow or down.

Runs a real Home Assistant core (the test harness of pytest-homeassistant-custom-component, no pytest), the
integration from this work tree, and the project's ACS emulator over HTTPS. For each scenario it calls the
action N times, one after another (what an automation does), then in bursts of concurrent calls, and prints
median / p95 / max. The outbox runs with its real settings (``synchronous=FULL``: an fsync per commit).

Run it in an HA venv (``make venv-ha-min`` first):

    .venv-ha-min/bin/python bench/bench_ha_enqueue.py [--calls 300] [--dir DIR]

DIR holds the HA config dir (and the outbox); use the disk you deploy on, since fsync cost dominates.
Nothing is asserted; the aim printed is a median under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from acs_email_bridge.emulator import Emulator, Fault

try:
    from homeassistant import loader
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry, async_test_home_assistant
except ImportError:
    print("bench_ha_enqueue: needs Home Assistant; run it with .venv-ha-min/bin/python (make venv-ha-min)")
    sys.exit(0)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # HA's loader imports custom_components from the work tree
SENDER = "DoNotReply@bench.example.com"
AIM_MS = 5.0


def report(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    median = statistics.median(ms)
    verdict = "ok" if median < AIM_MS else "over the aim"
    print(
        f"  {name:<58} n={len(ms):<4} median {median:6.2f} ms   p95 {p95:6.2f} ms   max {ms[-1]:7.2f} ms"
        f"   (aim: median < {AIM_MS:g} ms: {verdict})",
        flush=True,
    )


async def call(hass: HomeAssistant, entry_id: str, index: int) -> float:
    start = time.perf_counter()
    response: Any = await hass.services.async_call(
        "acs_email",
        "send_message",
        {
            "config_entry_id": entry_id,
            "to": ["owner@example.com", "Alice <alice@example.com>"],
            "subject": f"Front door opened ({index})",
            "message": "The front door opened at 21:04. " * 10,
        },
        blocking=True,
        return_response=True,
    )
    elapsed = time.perf_counter() - start
    assert response["state"] == "queued"
    return elapsed


async def scenario(hass: HomeAssistant, entry_id: str, name: str, calls: int) -> None:
    for index in range(10):  # warm-up: first token request, first commit, code paths
        await call(hass, entry_id, -index)
    sequential = [await call(hass, entry_id, index) for index in range(calls)]
    report(f"{name}: one call after another", sequential)
    burst: list[float] = []
    for _ in range(max(1, calls // 20)):
        burst += await asyncio.gather(*(call(hass, entry_id, index) for index in range(20)))
    report(f"{name}: bursts of 20 concurrent calls", burst)


async def main(calls: int, base: Path) -> None:
    async with Emulator(tls_dir=base / "tls", senders=[SENDER], retry_after=0) as emu:
        port = int(emu.endpoint.rsplit(":", 1)[1])
        async with async_test_home_assistant(config_dir=str(base / "config")) as hass:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)  # let the loader find custom_components/
            entry = MockConfigEntry(
                domain="acs_email",
                title="bench",
                data={
                    "auth_method": "service_principal",
                    "endpoint": emu.endpoint,
                    "tenant_id": emu.tenant_id,
                    "client_id": emu.client_id,
                    "client_secret": emu.client_secret,
                    "authority": emu.authority,
                    "ca_file": str(emu.ca_file),
                    "sender": SENDER,
                },
                options={"quota": "custom", "per_minute": 100_000, "per_hour": 1_000_000, "max_attempts": 100},
            )
            entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()
            print(f"HA action latency, {calls} calls per scenario, outbox under {base}", flush=True)

            await scenario(hass, entry.entry_id, "ACS up", calls)
            emu.add_fault(Fault.delay(5.0, times=1_000_000))  # every send takes 5 s to answer
            await scenario(hass, entry.entry_id, "ACS slow (5 s per send)", calls)
            emu.faults.clear()
            await emu.stop()
            await scenario(hass, entry.entry_id, "ACS down (connection refused)", calls)
            stats = await entry.runtime_data.engine.outbox.stats()
            print(f"  queued at the end: {stats.queued + stats.sending}, sent: {stats.sent}", flush=True)
            await emu.start(port=port)
            await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_stop(force=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ha-", dir=args.dir) as tmp:
        asyncio.run(main(args.calls, Path(tmp)))
