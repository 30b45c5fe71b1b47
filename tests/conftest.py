"""Shared fixtures: a started ACS Email emulator (HTTPS with its own CA) for any test that needs ACS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from acs_email_bridge.emulator import Emulator
from acs_email_core.config import EngineSettings
from acs_email_core.quota import Quota, Window
from acs_email_core.retry import RetryPolicy
from acs_email_core.transport import AcsCredentials

EmulatorFactory = Callable[..., Awaitable[Emulator]]
SettingsFactory = Callable[..., EngineSettings]

# Test pacing: quotas that never bind unless a test sets its own, retries and backoffs in milliseconds.
FAST_RETRY = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.1, max_attempts=5)
LOOSE_QUOTA = Quota(send=(Window(10_000, 60.0),), poll=(Window(10_000, 60.0),))


@pytest.fixture
async def make_emulator(tmp_path: Path) -> AsyncIterator[EmulatorFactory]:
    """Start an emulator with custom options (``quota=...``, ``senders=...``); all are stopped at teardown.

    TLS material goes to ``tmp_path/"tls"`` unless ``tls_dir`` is given; every emulator listens on a free port.
    """
    async with AsyncExitStack() as stack:

        async def make(**options: Any) -> Emulator:
            options.setdefault("tls_dir", tmp_path / "tls")
            return await stack.enter_async_context(Emulator(**options))

        yield make


@pytest.fixture
async def emulator(make_emulator: EmulatorFactory) -> Emulator:
    """The quota-less default emulator: any sender, ``Retry-After: 1``, operations succeed at once."""
    return await make_emulator(retry_after=1)


@pytest.fixture
def engine_settings() -> SettingsFactory:
    """``make(emulator, outbox_path, sender, principal=False, **overrides)``: engine settings for an emulator.

    Access-key (HMAC) auth by default, an Entra service principal with ``principal=True``; fast pacing.
    """

    def make(emu: Emulator, outbox: Path, sender: str, *, principal: bool = False, **overrides: Any) -> EngineSettings:
        if principal:
            credentials = AcsCredentials(
                endpoint=emu.endpoint,
                tenant_id=emu.tenant_id,
                client_id=emu.client_id,
                client_secret=emu.client_secret,
                authority=emu.authority,
                ca_file=str(emu.ca_file),
            )
        else:
            credentials = AcsCredentials(connection_string=emu.connection_string, ca_file=str(emu.ca_file))
        values: dict[str, Any] = {
            "credentials": credentials,
            "sender": sender,
            "outbox_path": outbox,
            "quota": LOOSE_QUOTA,
            "retry": FAST_RETRY,
            "outage_backoff": FAST_RETRY,
            "verify_recheck": 0.05,
            "resend_after": 0.2,
            "timeout": 5.0,
            "synchronous": "NORMAL",
        }
        values.update(overrides)
        return EngineSettings(**values)

    return make


pytest_plugins = ["broker_fixtures"]  # a real Mosquitto for the MQTT bridge tests
