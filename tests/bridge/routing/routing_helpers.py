"""Constants and helpers of the routing tests (imported by name: tests/bridge is not a package)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from acs_email_bridge.emulator.mailbox import ReceivedMail
from acs_email_bridge.mqtt.events import InboundEvent
from acs_email_bridge.routing import Router
from acs_email_core.message import EmailMessage

FIXTURES = Path(__file__).parent / "fixtures"
SENDER = "alerts@home.example.com"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(200))
T0 = 1_764_662_400.0  # 2025-12-02 08:00:00 UTC


class Clock:
    """The time the router sees; tests move it forward instead of sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Harness:
    """A router whose digests go to a list (what the engine would queue), with the outcome mails collected too."""

    def __init__(self, router: Router, submitted: list[EmailMessage]) -> None:
        self.router = router
        self.submitted = submitted
        self.mails: list[EmailMessage] = []
        self.outcomes: list[Any] = []

    async def send(self, event: InboundEvent) -> Any:
        outcome = await self.router(event)
        self.outcomes.append(outcome)
        self.mails.extend(outcome.mails)
        return outcome

    async def flush(self) -> list[EmailMessage]:
        before = len(self.submitted)
        await self.router.flush_due()
        self.mails.extend(self.submitted[before:])
        return self.submitted[before:]


MakeRouter = Callable[..., Awaitable[Harness]]
Deliver = Callable[..., Awaitable[list[ReceivedMail]]]
