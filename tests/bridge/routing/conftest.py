"""Fixtures for the routing tests: events, an injected clock, routers on a fake outbox or the real engine."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from routing_helpers import SENDER, Clock, Deliver, Harness, MakeRouter

from acs_email_bridge.emulator import Emulator
from acs_email_bridge.emulator.mailbox import ReceivedMail
from acs_email_bridge.mqtt.events import InboundEvent
from acs_email_bridge.routing import Router, engine_router, routing_from_config
from acs_email_core.engine import Engine
from acs_email_core.message import EmailMessage
from acs_email_core.outbox import State


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def event(clock: Clock) -> Callable[..., InboundEvent]:
    """``event(topic, payload, **fields)``: an InboundEvent received now, with a fresh event id."""
    counter = itertools.count()

    def make(topic: str, payload: bytes | str, **fields: Any) -> InboundEvent:
        data = payload.encode() if isinstance(payload, str) else payload
        values: dict[str, Any] = {
            "qos": 1,
            "retain": False,
            "received_at": clock(),
            "event_id": f"ev-{next(counter)}-{uuid.uuid4()}",
        }
        values.update(fields)
        return InboundEvent(topic, data, **values)

    return make


@pytest.fixture
async def make_router(tmp_path: Path, clock: Clock) -> AsyncIterator[MakeRouter]:
    """``await make_router(config_dict, state=path)``: a started router (no timers) on the injected clock."""
    async with AsyncExitStack() as stack:

        async def make(config: dict[str, Any], *, state: Path | None = None) -> Harness:
            routing = routing_from_config(config, base_dir=tmp_path)
            submitted: list[EmailMessage] = []

            async def submit(message: EmailMessage, source: str) -> str:
                submitted.append(message)
                return message.message_id

            router = Router(
                routing, submit=submit, sender=SENDER, state_path=state or tmp_path / "routes.db", clock=clock
            )
            await router.start(timers=False)
            stack.push_async_callback(router.stop)
            return Harness(router, submitted)

        yield make


@pytest.fixture
def deliver(tmp_path: Path, emulator: Emulator, engine_settings: Any, clock: Clock) -> Deliver:
    """``await deliver(config, [events or ("advance", seconds)])``: route through the real engine to the emulator.

    Outcome mails are committed like the MQTT source does (submit_many); held groups are flushed after each
    clock step; returns the mails the emulator received.
    """

    async def run(config: dict[str, Any], steps: list[Any]) -> list[ReceivedMail]:
        settings = engine_settings(emulator, tmp_path / "outbox.db", SENDER)
        routing = routing_from_config(config, base_dir=tmp_path)
        ids: list[str] = []
        async with Engine(settings) as engine:
            router = engine_router(routing, engine, clock=clock)
            await router.start(timers=False)
            try:
                for step in steps:
                    if isinstance(step, tuple):
                        clock.advance(step[1])
                        ids.extend(await router.flush_due())
                        continue
                    outcome = await router(step)
                    if outcome.mails:
                        ids.extend(await engine.submit_many(outcome.mails, source="test"))
            finally:
                await router.stop()
            for message_id in ids:
                assert await engine.wait_for(message_id) is State.SENT
        return list(emulator.mails)

    return run
