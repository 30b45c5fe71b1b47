"""MQTT ingest: the bridge against mqttwarn 0.36 (file service) on one Mosquitto and one workload.

Workload: N QoS 1 events (default 20,000) published in one go with ``mosquitto_pub -l``. The bridge gets
send-topic requests (each becomes a mail in the SQLite outbox, committed with fsync before its PUBACK);
mqttwarn gets the same lines on its own topic and appends each to a file (acked before it is handled).

Prints, per program: idle RSS, ingest rate (first publish to last event handled), RSS after the run, and
the share of a burst received with Mosquitto's stock ``max_queued_messages 1000``. mqttwarn is installed
into a separate venv (build/mqttwarn-venv) on first use; pass ``--no-mqttwarn`` to skip it.

    .venv-core/bin/python bench/bench_mqtt.py [--events 20000] [--no-mqttwarn]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from acs_email_bridge.emulator import Emulator
from acs_email_bridge.mosquitto import Mosquitto, free_port

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench-mqtt"
MQTTWARN_VENV = ROOT / "build" / "mqttwarn-venv"
SENDER = "DoNotReply@bench.example.com"
STOCK = ["max_queued_messages 1000"]  # Mosquitto's default, written out
UNLIMITED = ["max_queued_messages 0"]


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+)", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def lines(n: int, tag: str) -> bytes:
    """Sensor readings (the route workload) that are also valid send requests (the send workload)."""
    return "".join(
        json.dumps({"to": f"user{i % 97}@example.com", "subject": f"{tag} {i}", "text": str(i), "priority": "low"})
        + "\n"
        for i in range(n)
    ).encode()


async def publish(broker: Mosquitto, topic: str, payload: bytes) -> None:
    await broker.pub(["-t", topic, "-q", "1", "-l"], payload)


POLL = 0.1  # seconds between counts: each of the bridge's is a /metrics scrape, which costs it some CPU


async def wait_count(count: Callable[[], int], target: int, quiet: float = 3.0, limit: float = 300.0) -> float:
    """Poll until ``count() >= target`` or nothing changed for ``quiet`` s; returns when the last change was seen."""
    last, last_at, started = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - started < limit:
        value = await asyncio.to_thread(count)
        if value != last:
            last, last_at = value, time.monotonic()
        if value >= target or time.monotonic() - last_at > quiet:
            return last_at
        await asyncio.sleep(POLL)
    return last_at


async def until(condition: Callable[[], bool]) -> None:
    while True:
        if condition():
            return
        await asyncio.sleep(0.05)


# What any bridge built on the stack the project requires (asyncio, SQLite, paho-mqtt, voluptuous, pyyaml,
# Jinja2's sandbox, prometheus-client) holds before a line of its own code: the floor of its idle RSS.
STACK = "asyncio, sqlite3, paho.mqtt.client, voluptuous, yaml, jinja2.sandbox, prometheus_client"


def stack_rss() -> float:
    code = f"import re, {STACK}; print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout) / 1024


# ---- the bridge ------------------------------------------------------------------------------------------
class Bridge:
    def __init__(
        self, directory: Path, emu: Emulator, broker: Mosquitto, name: str, *, send: bool = False, digest: bool = False
    ) -> None:
        self.directory = directory / name
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self.http_port = free_port()
        config = {
            "acs": {"connection_string": emu.connection_string, "sender": SENDER, "ca_file": str(emu.ca_file)},
            "quota": "custom_domain",
            "outbox": {"path": "outbox.db", "max_messages": 100_000},
            "mqtt": {"port": broker.port, "client_id": f"bench-{name}", "send_topic": f"bench/{name}/send"},
            "http": {"port": self.http_port},
            # A sensor route: a mail when the state changes; every event decided, its decision durable.
            "routes": [
                {
                    "name": "sensor",
                    "topic": f"bench/{name}/sensor/+",
                    "to": "ops@example.com",
                    "subject": "{{ topic_parts[-1] }} is {{ payload.priority }}",
                    "change_only": {"value": "{{ payload.priority }}"},
                },
                # A digest route: every event held on disk, one mail per hour lists them.
                {
                    "name": "log",
                    "topic": f"bench/{name}/log/+",
                    "to": "ops@example.com",
                    "subject": "{{ topic_parts[-1] }}: {{ payload.subject }}",
                    "digest": "1h",
                },
            ],
        }
        self.config = self.directory / "config.yaml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.topic = f"bench/{name}/send" if send else f"bench/{name}/{'log' if digest else 'sensor'}/1"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.directory / "bridge.log").open("wb")
        cmd = [sys.executable, "-m", "acs_email_bridge", "run", "-c", str(self.config)]
        self.process = subprocess.Popen(cmd, stdout=log, stderr=log)

    def handled(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return 0
        return int(sum(float(v) for v in re.findall(r"^acs_email_bridge_events_total\{[^}]*\} (\S+)$", text, re.M)))

    async def connected(self) -> None:
        log = self.directory / "bridge.log"
        await until(lambda: "MQTT: connected" in log.read_text(errors="replace"))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)


# ---- mqttwarn --------------------------------------------------------------------------------------------
def mqttwarn_command() -> Path | None:
    exe = MQTTWARN_VENV / "bin" / "mqttwarn"
    if not exe.exists():
        print("installing mqttwarn 0.36 into build/mqttwarn-venv ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MQTTWARN_VENV)], check=True)
        pip = [str(MQTTWARN_VENV / "bin" / "pip"), "install", "-q", "mqttwarn>=0.36,<0.37"]
        if subprocess.run(pip, check=False).returncode != 0:
            return None
    return exe


class Mqttwarn:
    def __init__(self, directory: Path, broker: Mosquitto, name: str, exe: Path) -> None:
        self.directory = directory / name
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self.out = self.directory / "events.log"
        self.topic = f"bench/{name}"
        self.exe = exe
        ini = f"""[defaults]
hostname = '127.0.0.1'
port = {broker.port}
clientid = 'bench-{name}'
cleansession = False
loglevel = WARNING
launch = file

[config:file]
append_newline = True
targets = {{
    'events': ['{self.out}'],
    }}

[{self.topic}]
targets = file:events
qos = 1
"""
        (self.directory / "mqttwarn.ini").write_text(ini, encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.directory / "mqttwarn.log").open("wb")
        env = {"MQTTWARNINI": str(self.directory / "mqttwarn.ini"), "PATH": "/usr/bin:/bin"}
        self.process = subprocess.Popen([str(self.exe)], stdout=log, stderr=log, env=env, cwd=self.directory)

    def handled(self) -> int:
        try:
            with self.out.open("rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except OSError:
            return 0

    async def connected(self, broker: Mosquitto) -> None:
        await until(lambda: f"as bench-{self.directory.name}" in broker.log)
        await asyncio.sleep(0.5)  # its SUBSCRIBE follows the CONNACK

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ---- scenarios -------------------------------------------------------------------------------------------
async def run(program: Bridge | Mqttwarn, broker: Mosquitto, events: int, tag: str) -> dict[str, float]:
    program.start()
    assert program.process is not None
    if isinstance(program, Bridge):
        await program.connected()
    else:
        await program.connected(broker)
    await asyncio.sleep(2.0)
    idle = rss_mib(program.process.pid)
    started = time.monotonic()
    await publish(broker, program.topic, lines(events, tag))
    published = time.monotonic() - started
    done_at = await wait_count(program.handled, events)
    handled = await asyncio.to_thread(program.handled)
    after = rss_mib(program.process.pid)
    program.stop()
    return {
        "idle_rss": idle,
        "rss_after": after,
        "handled": handled,
        "seconds": done_at - started,
        "rate": handled / max(done_at - started, 1e-9),
        "publish_seconds": published,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--no-mqttwarn", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    exe = None if args.no_mqttwarn else mqttwarn_command()
    async with Emulator(tls_dir=BUILD / "tls", senders=[SENDER]) as emu:
        roomy = Mosquitto(BUILD / "broker-unlimited", UNLIMITED)
        stock = Mosquitto(BUILD / "broker-stock", STOCK)
        await roomy.start()
        await stock.start()
        try:
            results: dict[str, dict[str, dict[str, float]]] = {}
            contenders: list[tuple[str, Callable[[Mosquitto, str], Bridge | Mqttwarn]]] = [
                ("bridge, route", lambda b, n: Bridge(BUILD, emu, b, n)),
                ("bridge, send topic", lambda b, n: Bridge(BUILD, emu, b, n, send=True)),
                ("bridge, digest route", lambda b, n: Bridge(BUILD, emu, b, n, digest=True)),
            ]
            if exe is not None:
                contenders.append(("mqttwarn 0.36", lambda b, n: Mqttwarn(BUILD, b, n, exe)))
            for label, make in contenders:
                key = label.replace(", ", "-").replace(" ", "")
                results[label] = {
                    "throughput": await run(make(roomy, f"{key}-rate"), roomy, args.events, "rate"),
                    "burst": await run(make(stock, f"{key}-burst"), stock, args.events, "burst"),
                }
        finally:
            await roomy.stop()
            await stock.stop()
    print(f"\n{args.events:,} QoS 1 events from mosquitto_pub -l, Mosquitto 2 on loopback, {sys.version.split()[0]}")
    print(f"{'program':22} {'idle RSS':>9} {'ingest/s':>9} {'handled':>8} {'RSS after':>10} {'stock-burst share':>18}")
    for label, r in results.items():
        t, b = r["throughput"], r["burst"]
        print(
            f"{label:22} {t['idle_rss']:7.1f}Mi {t['rate']:9,.0f} {int(t['handled']):8,} {t['rss_after']:8.1f}Mi "
            f"{100 * b['handled'] / args.events:16.1f} %"
        )
    print(f"{'(the stack alone)':22} {stack_rss():7.1f}Mi   Python {sys.version.split()[0]} with {STACK} imported")
    print(
        "\ningest/s: first publish to last event handled (broker: max_queued_messages 0). The bridge commits every "
        "event (fsync) before its PUBACK: 'route' = a change-only sensor route (each event decided, the first mailed), "
        "'send topic' = each event a mail in the outbox, 'digest route' = each event held on disk for an hourly "
        "digest. mqttwarn acks first, then appends each event to a file."
        "\nstock-burst share: events handled out of the burst with Mosquitto's stock max_queued_messages 1000."
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
