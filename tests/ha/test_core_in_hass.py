"""The HA-free core runs inside Home Assistant's event loop, as the integration will run it.

It is imported the way HA imports it (``custom_components.acs_email.core``), uses HA's pinned aiohttp and
Azure SDK, and delivers a mail to the emulator without leaving threads or tasks behind (the plugin checks).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant

from acs_email_bridge.emulator import Emulator
from custom_components.acs_email.core.config import EngineSettings
from custom_components.acs_email.core.engine import Engine
from custom_components.acs_email.core.message import Attachment, EmailMessage
from custom_components.acs_email.core.outbox import State
from custom_components.acs_email.core.transport import AcsCredentials

SENDER = "DoNotReply@ha.example.com"


@pytest.mark.usefixtures("socket_enabled")  # the emulator listens on 127.0.0.1; the plugin blocks new sockets
async def test_engine_delivers_inside_hass_loop(hass: HomeAssistant, tmp_path: Path) -> None:
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], retry_after=0) as emu:
        settings = EngineSettings(
            credentials=AcsCredentials(
                endpoint=emu.endpoint,
                tenant_id=emu.tenant_id,
                client_id=emu.client_id,
                client_secret=emu.client_secret,
                authority=emu.authority,
                ca_file=str(emu.ca_file),
            ),
            sender=SENDER,
            outbox_path=Path(hass.config.path("acs_email_outbox.db")),
        )
        message = EmailMessage.build(
            sender=SENDER,
            to="Owner <owner@example.com>",
            subject="Front door opened",
            text="The front door opened at 21:04.",
            attachments=[Attachment("snapshot.jpg", b"\xff\xd8\xff\xe0 fake jpeg")],
        )
        engine = Engine(settings)
        await engine.start()
        try:
            message_id = await engine.submit(message, source="hass")
            async with asyncio.timeout(30):
                assert await engine.wait_for(message_id) is State.SENT
        finally:
            await engine.stop()
        await hass.async_block_till_done()

    (received,) = emu.mails
    assert received.operation_id == message.message_id
    assert received.payload == message.to_acs_payload()
