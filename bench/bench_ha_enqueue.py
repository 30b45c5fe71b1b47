"""Home Assistant action latency: ``acs_email.send_message`` call → return (the mail is durable), ACS slow or down.

Runs a real Home Assistant core (the test harness of pytest-homeassistant-custom-component, no pytest), the
integration from this work tree, and the project's ACS emulator over HTTPS in its own process (as ACS is
remote: in the same event loop its request handling would be counted as HA's). For each scenario it calls the
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
import base64
import secrets
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

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


class EmulatorProcess:
    """``python -m acs_email_bridge.emulator`` on a fixed port, so it can be stopped and started again."""

    def __init__(self, base: Path) -> None:
        self.tls_dir = base / "tls"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.access_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.banner: dict[str, str] = {}
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "acs_email_bridge.emulator", "--port", str(self.port), "--retry-after", "0"),
            *("--tls-dir", str(self.tls_dir), "--record-dir", "", "--access-key", self.access_key),
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        while (line := (await self._process.stdout.readline()).decode()) and not line.startswith("acs:"):
            name, _, value = line.strip().partition(": ")
            self.banner[name] = value.strip()

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            await self._process.wait()
            self._process = None

    async def add_fault(self, fault: dict[str, Any]) -> None:
        endpoint = self.banner["endpoint"]
        ssl_context = await asyncio.to_thread(ssl.create_default_context, cafile=self.banner["CA file"])
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{endpoint}/_emulator/faults", json=fault, ssl=ssl_context) as response,
        ):
            response.raise_for_status()


async def main(calls: int, base: Path) -> None:
    emu = EmulatorProcess(base)
    await emu.start()
    try:
        async with async_test_home_assistant(config_dir=str(base / "config")) as hass:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)  # let the loader find custom_components/
            entry = MockConfigEntry(
                domain="acs_email",
                title="bench",
                data={
                    "auth_method": "service_principal",
                    "endpoint": emu.banner["endpoint"],
                    "tenant_id": emu.banner["tenant id"],
                    "client_id": emu.banner["client id"],
                    "client_secret": emu.banner["client secret"],
                    "authority": emu.banner["authority"],
                    "ca_file": emu.banner["CA file"],
                    "sender": SENDER,
                },
                options={"quota": "custom", "per_minute": 100_000, "per_hour": 1_000_000, "max_attempts": 100},
            )
            entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()
            print(f"HA action latency, {calls} calls per scenario, outbox under {base}", flush=True)

            await scenario(hass, entry.entry_id, "ACS up", calls)
            await emu.add_fault({"kind": "delay", "seconds": 5.0, "times": 1_000_000})  # every send: 5 s
            await scenario(hass, entry.entry_id, "ACS slow (5 s per send)", calls)
            await emu.stop()
            await scenario(hass, entry.entry_id, "ACS down (connection refused)", calls)
            stats = await entry.runtime_data.engine.outbox.stats()
            print(f"  queued at the end: {stats.queued + stats.sending}, sent: {stats.sent}", flush=True)
            await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_stop(force=True)
    finally:
        await emu.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ha-", dir=args.dir) as tmp:
        asyncio.run(main(args.calls, Path(tmp)))
