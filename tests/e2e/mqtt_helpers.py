"""Helpers for the MQTT bridge end-to-end tests: configs, a bridge in a child process, a topic listener."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from acs_email_bridge.emulator import Emulator

from .conftest import SENDER


def bridge_config(
    directory: Path, emu: Emulator, port: int, *, mqtt_extra: dict[str, Any] | None = None, **sections: Any
) -> Path:
    """A config for the bridge on this emulator and broker: loose quota, fast retries, all mail through."""
    config: dict[str, Any] = {
        "acs": {
            "connection_string": emu.connection_string,
            "sender": SENDER,
            "ca_file": str(emu.ca_file),
            "timeout": 5,
        },
        "quota": {"per_minute": 100_000, "per_hour": 1_000_000},
        "outbox": {
            "path": str(directory / "outbox.db"),
            "retry_initial": 0.1,
            "retry_max": 0.5,
            "concurrency": 8,
            "max_messages": 50_000,
        },
        "mqtt": {"port": port, "keepalive": 10, "reconnect_min": 1, "reconnect_max": 2, **(mqtt_extra or {})},
        **sections,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def send_request(index: int, **fields: Any) -> str:
    """A send-topic request, one line of JSON."""
    body: dict[str, Any] = {"to": f"user{index}@example.com", "subject": f"event {index}", "text": f"body {index}"}
    body.update(fields)
    return json.dumps(body)


_RUNNING: set[BridgeProcess] = set()


@pytest.fixture(autouse=True)
async def kill_leftover_bridges() -> AsyncIterator[None]:
    """A test that fails half-way leaves no bridge process behind."""
    yield
    for bridge in list(_RUNNING):
        if bridge.process is not None and bridge.process.returncode is None:
            bridge.process.kill()
            await bridge.process.wait()
    _RUNNING.clear()


class BridgeProcess:
    """``acs-email-bridge run`` in a child process, its log in ``bridge.log`` beside the config."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.parent / "bridge.log"
        self.process: asyncio.subprocess.Process | None = None
        _RUNNING.add(self)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self, *, wait_connected: bool = True) -> None:
        before = self.log.count("MQTT: connected")
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "acs_email_bridge", "run", "--config", str(self.config),
                stdout=log, stderr=log,
            )  # fmt: skip
        if wait_connected:
            await wait_until(lambda: self.log.count("MQTT: connected") > before, 30, lambda: self.log)

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        async with asyncio.timeout(30):
            code = await self.process.wait()
        self.process = None
        return code

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)


async def wait_until(
    condition: Callable[[], bool], within: float = 30, explain: Callable[[], str] = lambda: ""
) -> None:
    """Poll ``condition`` (cheap checks only) until true; fail with ``explain()`` after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"condition not met within {within} s\n{explain()}") from None


class Listener:
    """A plain paho subscriber that records what arrives on some topics (results, state, discovery)."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    async def ready(self) -> Listener:
        assert await asyncio.to_thread(self._subscribed.wait, 10)
        return self

    def json(self, topic: str) -> list[Any]:
        with self._lock:
            return [json.loads(p) for t, p, _r in self.messages if t == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
