"""SMTP relay fixtures: the real engine delivering to the emulator, the relay on free loopback ports.

Clients are real (smtplib, swaks) and run in threads or subprocesses, never on the test's event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import smtplib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from acs_email_bridge.emulator import Emulator
from acs_email_bridge.emulator.mailbox import ReceivedMail
from acs_email_bridge.smtp.accounts import DeviceStore
from acs_email_bridge.smtp.config import SMTP_SECTION, smtp_settings
from acs_email_bridge.smtp.relay import SmtpRelay
from acs_email_core.engine import Engine

SENDER = "relay@devices.example.com"  # the verified ACS MailFrom


def device_policies() -> dict[str, Any]:
    """The devices most tests use: a scanner (LOGIN/PLAIN), a UPS known by address, a legacy MFD."""
    return {
        "scanner": {
            "recipients": ["example.com", "boss@other.example.org"],
            "senders": ["office.lan", "*.scans.example.net"],
            "per_minute": 100,
        },
        "ups": {"recipients": ["ops@example.com"], "auth": "none", "networks": ["127.0.0.1/32"]},
        "oldmfd": {"recipients": ["*"], "insecure_auth": True, "display_name": "Old MFD"},
    }


@dataclass
class RelayEnv:
    emulator: Emulator
    engine: Engine
    relay: SmtpRelay
    registry: CollectorRegistry
    passwords: dict[str, str] = field(default_factory=dict)

    def port(self, listener: str) -> int:
        return self.relay.ports[listener]

    @property
    def cert_file(self) -> Path:
        assert self.relay.certificate is not None
        return self.relay.certificate.cert_file

    def client_context(self, **options: Any) -> ssl.SSLContext:
        """A client context that trusts the relay's generated certificate."""
        context = ssl.create_default_context(cafile=str(self.cert_file))
        for name, value in options.items():
            setattr(context, name, value)
        return context

    def smtp(self, listener: str = "submission", **kwargs: Any) -> smtplib.SMTP:
        """A connected smtplib client (blocking: use it inside ``asyncio.to_thread``)."""
        if listener == "smtps":
            kwargs.setdefault("context", self.client_context())
            return smtplib.SMTP_SSL("127.0.0.1", self.port(listener), timeout=30, **kwargs)
        return smtplib.SMTP("127.0.0.1", self.port(listener), timeout=30, **kwargs)

    async def delivered(self, count: int, wait: float = 30) -> list[ReceivedMail]:
        """Wait until the emulator has received ``count`` mails (the engine delivers in the background)."""
        async with asyncio.timeout(wait):
            while len(self.emulator.mails) < count:
                await asyncio.sleep(0.02)
        return list(self.emulator.mails)

    def counter(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


RelayFactory = Callable[..., Awaitable[RelayEnv]]


@pytest.fixture
async def make_relay(
    tmp_path: Path, emulator: Emulator, engine_settings: Callable[..., Any]
) -> AsyncIterator[RelayFactory]:
    """``make(smtp={...}, engine={...}, deliver=True, clock=...)``: engine + relay on free ports.

    ``smtp`` overrides keys of the ``smtp:`` section, ``engine`` fields of the engine settings.
    """
    numbers = itertools.count()
    async with AsyncExitStack() as stack:

        async def make(
            *,
            smtp: dict[str, Any] | None = None,
            engine: dict[str, Any] | None = None,
            deliver: bool = True,
            clock: Callable[[], float] = time.monotonic,
        ) -> RelayEnv:
            directory = tmp_path / f"relay{next(numbers)}"  # one outbox and accounts file each
            settings = engine_settings(emulator, directory / "outbox.db", SENDER, **(engine or {}))
            section: dict[str, Any] = {
                "hostname": "relay.test",
                "listen": "127.0.0.1",
                "submission_port": 0,
                "smtps_port": 0,
                "plain_port": 0,
                "plain_networks": ["127.0.0.0/8"],
                "devices": device_policies(),
            }
            section.update(smtp or {})
            relay_settings = smtp_settings(SMTP_SECTION(section), settings, directory)
            store = DeviceStore(relay_settings.accounts_path)
            passwords = {
                name: await asyncio.to_thread(store.add, name, replace=True)
                for name, device in relay_settings.devices.items()
                if device.auth == "password"
            }
            eng = Engine(settings)
            await eng.start(deliver=deliver)
            stack.push_async_callback(eng.stop)
            registry = CollectorRegistry()
            relay = SmtpRelay(relay_settings, eng, registry=registry, clock=clock)
            await relay.start()
            stack.push_async_callback(relay.stop)
            return RelayEnv(emulator, eng, relay, registry, passwords)

        yield make


@pytest.fixture
async def relay_env(make_relay: RelayFactory) -> RelayEnv:
    return await make_relay()


@pytest.fixture
def legacy_tls() -> ssl.SSLContext:
    """A client that speaks only TLS 1.0/1.1, like an old printer (the test is skipped where OpenSSL cannot)."""
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname, legacy.verify_mode = False, ssl.CERT_NONE
    try:
        legacy.minimum_version = ssl.TLSVersion.TLSv1
        legacy.maximum_version = ssl.TLSVersion.TLSv1_1
        legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot speak TLS 1.1")
    return legacy


class FakeClock:
    """A monotonic clock the test moves (rate limits, lockouts)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
