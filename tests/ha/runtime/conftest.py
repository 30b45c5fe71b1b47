"""Fixtures for the integration's runtime: a real ACS emulator over HTTPS and config entries pointing at it.

The engine runs for real (outbox on disk under the test's own config dir, the Azure SDK, the emulator);
only its pacing is shortened (retry and outage backoff in milliseconds) so that tests take seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from emulated import SENDER, MakeEntry, entry_data
from homeassistant.config_entries import ConfigEntryState, ConfigSubentryData
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from acs_email_bridge.emulator import Emulator
from custom_components.acs_email import settings as settings_module
from custom_components.acs_email.const import DOMAIN
from custom_components.acs_email.core.retry import RetryPolicy

FAST = RetryPolicy(initial_delay=0.05, max_delay=0.3, jitter=0.1, max_attempts=5)


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    """The emulator listens on 127.0.0.1; the plugin blocks new sockets unless this fixture is used."""


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
