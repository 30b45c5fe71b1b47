"""End-to-end fixtures: the real engine and SDK against the emulator over HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from acs_email_bridge.emulator import Emulator
from acs_email_core.config import EngineSettings
from acs_email_core.message import Attachment, EmailMessage
from acs_email_core.quota import Quota, Window
from acs_email_core.retry import RetryPolicy
from acs_email_core.transport import AcsCredentials

SENDER = "DoNotReply@test.example.com"
# Generous enough never to matter unless a test sets its own.
UNLIMITED = Quota(send=(Window(100_000, 60.0),), poll=(Window(100_000, 60.0),))
FAST_RETRY = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.1, max_attempts=5)


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], retry_after=0) as emulator:
        yield emulator


def connection_string_settings(emulator: Emulator, outbox: Path, **overrides: object) -> EngineSettings:
    """Engine settings for the emulator with access-key (HMAC) auth over HTTPS."""
    credentials = AcsCredentials(connection_string=emulator.connection_string, ca_file=str(emulator.ca_file))
    return _settings(credentials, outbox, **overrides)


def principal_settings(emulator: Emulator, outbox: Path, **overrides: object) -> EngineSettings:
    """Engine settings for the emulator with an Entra service principal (fake authority)."""
    credentials = AcsCredentials(
        endpoint=emulator.endpoint,
        tenant_id=emulator.tenant_id,
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
        authority=emulator.authority,
        ca_file=str(emulator.ca_file),
    )
    return _settings(credentials, outbox, **overrides)


def _settings(credentials: AcsCredentials, outbox: Path, **overrides: object) -> EngineSettings:
    values: dict[str, object] = {
        "credentials": credentials,
        "sender": SENDER,
        "outbox_path": outbox,
        "quota": UNLIMITED,
        "retry": FAST_RETRY,
        "outage_backoff": FAST_RETRY,
        "verify_recheck": 0.05,
        "timeout": 5.0,
        "synchronous": "NORMAL",
    }
    values.update(overrides)
    return EngineSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def make_message() -> Callable[..., EmailMessage]:
    def make(index: int = 0, **kwargs: object) -> EmailMessage:
        fields: dict[str, object] = {
            "sender": SENDER,
            "to": f"Recipient {index} <r{index}@example.com>",
            "subject": f"test mail {index}",
            "text": f"body {index}",
        }
        fields.update(kwargs)
        return EmailMessage.build(**fields)  # type: ignore[arg-type]

    return make


def sample_attachment() -> Attachment:
    return Attachment("report.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 4)
