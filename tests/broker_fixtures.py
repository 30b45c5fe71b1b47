"""Fixtures: a real Mosquitto broker on a free loopback port (acs_email_bridge.mosquitto), for the MQTT bridge tests.

Loaded as a pytest plugin by tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from acs_email_bridge.mosquitto import Mosquitto

BrokerFactory = Callable[..., Awaitable[Mosquitto]]


@pytest.fixture
async def make_broker(tmp_path: Path) -> AsyncIterator[BrokerFactory]:
    """``await make_broker(settings=[...])``: started brokers, each stopped at teardown."""
    brokers: list[Mosquitto] = []

    async def make(settings: Sequence[str] = (), name: str = "broker") -> Mosquitto:
        broker = Mosquitto(tmp_path / f"{name}{len(brokers)}", settings)
        brokers.append(broker)
        await broker.start()
        return broker

    yield make
    for broker in brokers:
        await broker.stop()


@pytest.fixture
async def broker(make_broker: BrokerFactory) -> Mosquitto:
    """A broker with the settings the README recommends for the bridge (no per-client queue limit)."""
    return await make_broker(["max_queued_messages 0"])
