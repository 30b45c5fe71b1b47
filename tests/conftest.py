"""Shared fixtures: a started ACS Email emulator (HTTPS with its own CA) for any test that needs ACS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from acs_email_bridge.emulator import Emulator

EmulatorFactory = Callable[..., Awaitable[Emulator]]


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
