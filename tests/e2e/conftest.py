"""End-to-end fixtures: the real engine and SDK against the emulator over HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from acs_email_bridge.emulator import Emulator
from acs_email_core.message import Attachment, EmailMessage

SENDER = "DoNotReply@test.example.com"


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], retry_after=0) as emulator:
        yield emulator


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
