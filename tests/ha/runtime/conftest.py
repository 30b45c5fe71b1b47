"""Fixtures for the integration's runtime: a real ACS emulator over HTTPS and config entries pointing at it.

The engine runs for real (outbox on disk under the test's own config dir, the Azure SDK, the emulator);
only its pacing is shortened (retry and outage backoff in milliseconds) so that tests take seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import PropertyMock, patch

import pytest
from emulated import SENDER, MakeEntry, entry_data
from homeassistant import block_async_io
from homeassistant.config_entries import ConfigEntryState, ConfigSubentryData
from homeassistant.core import CoreState, HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from acs_email_bridge.emulator import Emulator
from custom_components.acs_email import settings as settings_module
from custom_components.acs_email.const import DOMAIN
from custom_components.acs_email.core.retry import RetryPolicy

FAST = RetryPolicy(initial_delay=0.05, max_delay=0.3, jitter=0.1, max_attempts=5)


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    """The emulator listens on 127.0.0.1; the plugin blocks new sockets unless this fixture is used."""


@pytest.fixture
def all_sensors_enabled() -> Iterator[None]:
    """Create the sensors a new install leaves disabled, as a user who turned them on has them."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default", new_callable=PropertyMock
    ) as enabled:
        enabled.return_value = True
        yield


@pytest.fixture(autouse=True)
def _no_blocking_calls(
    disable_block_async_io: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """HA's loop guard as in a real install (phcc leaves it off; HA itself skips file I/O checks under tests).

    Any blocking call (file, SSL, sleep, HTTP) made in the event loop on behalf of this integration fails the test.
    """
    monkeypatch.setattr(block_async_io, "_IN_TESTS", False)
    caplog.set_level(logging.DEBUG, logger="homeassistant.util.loop")  # repeats of a report are logged at debug
    block_async_io.enable()
    yield
    offences = [
        message
        for message in (r.getMessage() for when in ("setup", "call") for r in caplog.get_records(when))
        if message.startswith("Detected blocking call")
        and ("custom integration 'acs_email'" in message or "custom_components/acs_email" in message)
    ]
    assert not offences, offences[0]


@pytest.fixture(autouse=True)
async def _engines_stopped(hass: HomeAssistant) -> AsyncIterator[None]:
    """Unload what a test left loaded and let the outbox threads end before phcc looks for lingering threads.

    (The outbox shuts its worker down without waiting; in HA that is harmless, in phcc's check it is a race.)
    """
    yield
    if hass.state is CoreState.running:  # a test may have stopped this Home Assistant itself
        for entry in hass.config_entries.async_entries(DOMAIN):
            if entry.state is ConfigEntryState.LOADED:
                await hass.config_entries.async_unload(entry.entry_id)
    for thread in threading.enumerate():
        if thread.name.startswith("acs-email-outbox"):
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)


@pytest.fixture(autouse=True)
def fast_pacing() -> Iterator[None]:
    """Real settings from the entry, with retries and outage backoff in milliseconds."""
    real = settings_module.engine_settings

    def fast(hass: HomeAssistant, entry: Any) -> Any:
        return dataclasses.replace(
            real(hass, entry), retry=FAST, outage_backoff=FAST, verify_recheck=0.05, timeout=5.0, synchronous="NORMAL"
        )

    with patch("custom_components.acs_email.engine_settings", fast):
        yield


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    """A started emulator that knows only SENDER (others get DomainNotLinked)."""
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], retry_after=0) as emulator:
        yield emulator


@pytest.fixture
def make_entry(hass: HomeAssistant, emu: Emulator) -> MakeEntry:
    """``await make_entry(options=..., subentries=[...], setup=True, **data_changes)``."""

    async def make(
        *,
        options: dict[str, Any] | None = None,
        subentries: list[ConfigSubentryData] | None = None,
        setup: bool = True,
        title: str = "ACS Email",
        **changes: Any,
    ) -> MockConfigEntry:
        entry = MockConfigEntry(
            domain=DOMAIN,
            title=title,
            data=entry_data(emu, **changes),
            options=options or {},
            subentries_data=subentries or [],
            unique_id=f"{title}-{SENDER}",
        )
        entry.add_to_hass(hass)
        if setup:
            assert await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()
            assert entry.state is ConfigEntryState.LOADED
        return entry

    return make
