"""The engine drives the real SDK against the emulator and every mail arrives exactly once."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_core.config import EngineSettings
from acs_email_core.engine import Engine
from acs_email_core.message import Attachment, EmailMessage
from acs_email_core.outbox import State
from acs_email_core.quota import PRESETS
from acs_email_core.transport import AcsCredentials

from .conftest import SENDER, sample_attachment

MakeMessage = Callable[..., EmailMessage]
SettingsFactory = Callable[..., EngineSettings]


class _AuthFailures:
    """Collects ``on_auth_failure`` reasons and lets a test wait for the first."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self._event = asyncio.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self._event.set()

    async def wait(self) -> None:
        async with asyncio.timeout(10):
            await self._event.wait()


async def _deliver(engine: Engine, message: EmailMessage) -> State:
    message_id = await engine.submit(message)
    async with asyncio.timeout(30):
        return await engine.wait_for(message_id)


@pytest.mark.parametrize("principal", [False, True], ids=["connection_string", "service_principal"])
async def test_mail_arrives_byte_for_byte(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory, principal: bool
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    message = EmailMessage.build(
        sender=SENDER,
        to="Owner <owner@example.com>",
        cc="cc@example.com",
        subject="Garage door open ✓",
        text="The garage door is open.",
        html='<p><img src="cid:icon"> open</p>',
        attachments=[sample_attachment(), Attachment("icon.png", png, content_id="icon")],
        headers={"X-Source": "test"},
        priority="high",
    )
    async with Engine(engine_settings(emu, tmp_path / "outbox.db", SENDER, principal=principal)) as engine:
        assert await _deliver(engine, message) is State.SENT

    assert len(emu.mails) == 1
    received = emu.mails[0]
    assert received.operation_id == message.message_id
    assert received.payload == message.to_acs_payload()
    attachments = received.payload["attachments"]
    assert base64.b64decode(attachments[1]["contentInBase64"]) == png
    eml = received.to_email_message()
    assert eml["Subject"] == "Garage door open ✓"
    parts = {part.get_filename(): part.get_payload(decode=True) for part in eml.walk() if part.get_filename()}
    assert parts["report.pdf"] == sample_attachment().data
    assert parts["icon.png"] == png


async def test_throttling_is_obeyed_and_nothing_fails(
    emu: Emulator, tmp_path: Path, make_message: MakeMessage, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.error(429, code="TooManyRequests", retry_after=1, times=2))
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER)) as engine:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await _deliver(engine, make_message()) is State.SENT
        elapsed = loop.time() - started
        status = await engine.status()
    assert elapsed >= 2.0  # two Retry-After: 1 waits, none skipped
    assert status.throttled_total == 2
    assert status.dead_total == 0
    assert len(emu.mails) == 1


async def test_burst_with_quota_preset_never_hits_429(
    tmp_path: Path, make_message: MakeMessage, engine_settings: SettingsFactory
) -> None:
    # custom_domain (30/min, 100/h) with an hour compressed to one second: 1,000 mails take ~10 s.
    quota = PRESETS["custom_domain"].scaled(1 / 3600)
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], quota=quota, retry_after=0) as emu:
        settings = engine_settings(emu, tmp_path / "o.db", SENDER, quota=quota, max_messages=2_000)
        async with Engine(settings) as engine:
            ids = await engine.submit_many([make_message(i) for i in range(1_000)])
            async with asyncio.timeout(120):
                states = await asyncio.gather(*(engine.wait_for(i) for i in ids))
        assert set(states) == {State.SENT}
        assert emu.requests.count(status=429) == 0, emu.requests.as_dict()
        assert len(emu.mails) == 1_000
        assert emu.duplicates == 0


async def test_server_errors_and_timeouts_retry_and_arrive_once(
    emu: Emulator, tmp_path: Path, make_message: MakeMessage, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.error(503, times=2))
    emu.faults.add(Fault.delay(8.0, after=True))  # accepted, but the answer comes after the client gave up
    emu.faults.add(Fault.drop(after=True))  # accepted, then the connection is cut
    settings = engine_settings(emu, tmp_path / "o.db", SENDER, timeout=1.0)
    async with Engine(settings) as engine:
        first = await _deliver(engine, make_message(1))
        second = await _deliver(engine, make_message(2))
        status = await engine.status()
    assert (first, second) == (State.SENT, State.SENT)
    assert sorted(m.payload["content"]["subject"] for m in emu.mails) == [
        "test mail 1",
        "test mail 2",
    ]
    assert emu.duplicates == 0
    assert status.failed_total >= 3


async def test_service_refusal_ends_dead_with_reason(
    emu: Emulator, tmp_path: Path, make_message: MakeMessage, engine_settings: SettingsFactory
) -> None:
    message = make_message(sender="someone@not-linked.example.org")  # valid address, not a linked sender
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER)) as engine:
        assert await _deliver(engine, message) is State.DEAD
        entry = await engine.outbox.get(message.message_id)
    assert entry is not None
    assert "400" in (entry.last_error or "")
    assert "sender domain has not been linked" in (entry.last_error or "")
    assert emu.mails == []


async def test_operation_failed_later_is_dead_with_service_code(
    emu: Emulator, tmp_path: Path, make_message: MakeMessage, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.drop(after=True))  # ambiguous: the status query finds the operation Failed
    emu.faults.add(Fault.failed("EmailDroppedAllRecipientsSuppressed", "all recipients were suppressed"))
    message = make_message()
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER)) as engine:
        assert await _deliver(engine, message) is State.DEAD
        entry = await engine.outbox.get(message.message_id)
    assert entry is not None and "EmailDroppedAllRecipientsSuppressed" in (entry.last_error or "")


async def test_wrong_key_pauses_sending_as_auth_failure(
    emu: Emulator, tmp_path: Path, make_message: MakeMessage, engine_settings: SettingsFactory
) -> None:
    bad_key = base64.b64encode(b"not the key").decode()
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    settings = dataclasses.replace(
        settings,
        credentials=AcsCredentials(
            connection_string=f"endpoint={emu.endpoint}/;accesskey={bad_key}", ca_file=str(emu.ca_file)
        ),
    )
    failures = _AuthFailures()
    async with Engine(settings, on_auth_failure=failures) as engine:
        message_id = await engine.submit(make_message())
        await failures.wait()
        status = await engine.status()
        entry = await engine.outbox.get(message_id)
    assert status.paused is not None and "401" in status.paused
    assert bad_key not in failures.reasons[0]
    assert entry is not None and entry.state is State.QUEUED  # kept for when credentials are fixed
    assert emu.mails == []


async def test_wrong_client_secret_is_auth_failure(
    emu: Emulator, tmp_path: Path, make_message: MakeMessage, engine_settings: SettingsFactory
) -> None:
    settings = engine_settings(emu, tmp_path / "o.db", SENDER, principal=True)
    creds = settings.credentials
    wrong = dataclasses.replace(creds, client_secret="wrong-secret-value")
    failures = _AuthFailures()
    settings = dataclasses.replace(settings, credentials=wrong)
    async with Engine(settings, on_auth_failure=failures) as engine:
        await engine.submit(make_message())
        await failures.wait()
    assert "wrong-secret-value" not in failures.reasons[0]
    assert emu.mails == []
