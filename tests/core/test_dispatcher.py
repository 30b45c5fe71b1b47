"""The delivery loop: bounded concurrency, graceful shutdown, quota memory across restarts, pause and resume."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_bridge.emulator.faults import Route
from acs_email_core.config import EngineSettings
from acs_email_core.dispatcher import Dispatcher
from acs_email_core.engine import Engine
from acs_email_core.message import EmailMessage
from acs_email_core.outbox import Outbox, State
from acs_email_core.quota import Quota, Window
from acs_email_core.transport import AcsTransport, Outcome

SENDER = "DoNotReply@d.example.com"
MakeEmulator = Callable[..., Awaitable[Emulator]]
SettingsFactory = Callable[..., EngineSettings]
LOOSE = Quota(send=(Window(10_000, 60.0),), poll=(Window(10_000, 60.0),))


def _messages(count: int) -> list[EmailMessage]:
    return [EmailMessage.build(sender=SENDER, to=f"r{i}@example.com", subject=f"m{i}", text="x") for i in range(count)]


class CountingTransport:
    """The real transport, watched: how many sends are in flight at once."""

    def __init__(self, inner: AcsTransport) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peak = 0

    async def send(self, payload: dict[str, Any], operation_id: str) -> Outcome:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self.inner.send(payload, operation_id)
        finally:
            self.in_flight -= 1

    async def status(self, operation_id: str) -> Outcome:
        return await self.inner.status(operation_id)


@pytest.fixture
async def emu(make_emulator: MakeEmulator) -> Emulator:
    return await make_emulator(senders=[SENDER], retry_after=0)


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_concurrency_is_bounded(
    emu: Emulator, tmp_path: Path, concurrency: int, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.delay(0.15, times=100))
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    async with Outbox(tmp_path / "o.db") as outbox, AcsTransport(settings.credentials) as real:
        transport = CountingTransport(real)
        dispatcher = Dispatcher(outbox, transport, LOOSE, concurrency=concurrency)
        ids = await outbox.enqueue_many(_messages(8))
        await dispatcher.start()
        async with asyncio.timeout(30):
            assert set(await asyncio.gather(*(dispatcher.wait_for(i) for i in ids))) == {State.SENT}
        await dispatcher.stop()
    assert transport.peak == concurrency
    assert len(emu.mails) == 8


async def test_graceful_stop_finishes_or_safely_interrupts(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    path = tmp_path / "o.db"
    emu.faults.add(Fault.delay(0.2, after=True))  # finishes within the grace period
    emu.faults.add(Fault.delay(5.0, after=True))  # accepted, answer too late: interrupted by stop
    engine = Engine(engine_settings(emu, path, SENDER, concurrency=2))
    await engine.start()
    ids = await engine.submit_many(_messages(2))
    async with asyncio.timeout(10):
        while len(emu.mails) < 2:
            await asyncio.sleep(0.01)
    await engine.stop(grace=0.5)

    async with Outbox(path) as outbox:
        states = {i: (await outbox.get(i)) for i in ids}
    assert sorted(e.state for e in states.values() if e) == [State.QUEUED, State.SENT]
    interrupted = next(e for e in states.values() if e and e.state is State.QUEUED)
    assert interrupted.verify is True and interrupted.attempts == 0

    async with Engine(engine_settings(emu, path, SENDER)) as engine:  # restart: the status query finds it, no resend
        async with asyncio.timeout(10):
            assert await engine.wait_for(interrupted.id) is State.SENT
    assert len(emu.mails) == 2
    assert emu.duplicates == 0


async def test_quota_use_is_remembered_across_restarts(
    make_emulator: MakeEmulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    quota = Quota(send=(Window(3, 2.0),), poll=(Window(10, 2.0),))
    emu = await make_emulator(senders=[SENDER], quota=quota, retry_after=0)
    path = tmp_path / "o.db"
    async with Engine(engine_settings(emu, path, SENDER, quota=quota)) as engine:
        ids = await engine.submit_many(_messages(3))
        await asyncio.gather(*(engine.wait_for(i) for i in ids))
        assert (await engine.status()).quota_left == 0
    async with Engine(engine_settings(emu, path, SENDER, quota=quota)) as engine:
        assert (await engine.status()).quota_left == 0  # the last window's sends were remembered
        (late,) = await engine.submit_many(_messages(1))
        async with asyncio.timeout(10):
            assert await engine.wait_for(late) is State.SENT
    first, last = emu.mails[0].received_at, emu.mails[-1].received_at
    assert (last - first).total_seconds() >= 2.0
    assert emu.requests.count(status=429) == 0


async def test_status_counters(emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory) -> None:
    emu.faults.add(Fault.error(429, retry_after=1))
    emu.faults.add(Fault.error(400, code="BadRequest", message="Request body validation error."))
    quota = Quota(send=(Window(5, 60.0),), poll=(Window(10, 60.0),))
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER, quota=quota, concurrency=1)) as engine:
        ids = await engine.submit_many(_messages(3))
        async with asyncio.timeout(10):
            states = [await engine.wait_for(i) for i in ids]
        status = await engine.status()
    assert sorted(states) == sorted([State.DEAD, State.SENT, State.SENT])
    assert (status.sent_total, status.throttled_total, status.dead_total, status.dead) == (2, 1, 1, 1)
    assert status.queued == 0 and status.oldest_queued_age is None
    assert status.quota_left == 5 - 4  # four POSTs reached the service: all count against the quota


async def test_oldest_queued_age_while_paused(emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory) -> None:
    emu.faults.add(Fault.error(401, code="Denied", message="Denied"))
    reasons: list[str] = []
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER), on_auth_failure=reasons.append) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        async with asyncio.timeout(10):
            while not reasons:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        paused = await engine.status()
        engine.dispatcher.resume()
        async with asyncio.timeout(10):
            assert await engine.wait_for(message_id) is State.SENT
        resumed = await engine.status()
    assert paused.paused is not None and "Denied" in paused.paused
    assert paused.queued == 1 and paused.oldest_queued_age is not None and paused.oldest_queued_age >= 0.1
    assert resumed.paused is None


async def test_wait_for_unknown_message(emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory) -> None:
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER)) as engine:
        with pytest.raises(KeyError):
            await engine.wait_for("00000000-0000-4000-8000-000000000000")


def test_concurrency_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Dispatcher(Outbox(tmp_path / "o.db"), CountingTransport(None), LOOSE, concurrency=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("confirm", "expected"), [(None, State.SENT), (0.05, State.DEAD)])
async def test_delivery_confirmation_catches_failed_operations(
    make_emulator: MakeEmulator,
    tmp_path: Path,
    confirm: float | None,
    expected: State,
    engine_settings: SettingsFactory,
) -> None:
    emu = await make_emulator(senders=[SENDER], retry_after=0, running_for=0.2)
    emu.faults.add(Fault.failed("EmailDroppedAllRecipientsSuppressed", "all recipients were suppressed"))
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER, confirm_interval=confirm)) as engine:
        failed, ok = await engine.submit_many(_messages(2))
        async with asyncio.timeout(10):
            states = (await engine.wait_for(failed), await engine.wait_for(ok))
        entry = await engine.outbox.get(failed)
    assert states == (expected, State.SENT)
    if expected is State.DEAD:
        assert entry is not None and "EmailDroppedAllRecipientsSuppressed" in (entry.last_error or "")
        assert emu.requests.count(route="status") >= 2  # at least one poll for each mail
    else:
        assert emu.requests.count(route="status") == 0  # without confirmation no poll quota is spent


async def test_confirmation_only_spends_spare_poll_quota(
    make_emulator: MakeEmulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    quota = Quota(send=(Window(100, 60.0),), poll=(Window(3, 60.0),))  # one poll above the reserve
    emu = await make_emulator(senders=[SENDER], retry_after=0, running_for=60.0, quota=quota)
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER, quota=quota, confirm_interval=0.05)) as engine:
        ids = await engine.submit_many(_messages(3))
        async with asyncio.timeout(10):
            assert [await engine.wait_for(i) for i in ids] == [State.SENT] * 3
    assert emu.requests.count(route="status") == 1  # the reserve stays for duplicate checks
    assert emu.requests.count(status=429) == 0


async def test_paused_sending_tries_again_later(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.error(401, code="Denied", message="Denied", times=2))
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    async with Outbox(tmp_path / "o.db") as outbox, AcsTransport(settings.credentials) as transport:
        reasons: list[str] = []
        dispatcher = Dispatcher(outbox, transport, LOOSE, on_auth_failure=reasons.append, auth_retry=0.2)
        (message_id,) = await outbox.enqueue_many(_messages(1))
        await dispatcher.start()
        async with asyncio.timeout(10):
            assert await dispatcher.wait_for(message_id) is State.SENT
        await dispatcher.stop()
    assert len(reasons) == 2  # two refusals, each followed by a pause and a later retry
    assert dispatcher.paused is None


async def test_a_single_not_found_does_not_trigger_a_resend(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.drop(after=True))  # accepted, then the connection is cut: the status decides
    emu.faults.add(
        Fault.error(404, code="NotFound", message="Requested message could not be located.", route=Route.STATUS)
    )
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER)) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        async with asyncio.timeout(10):
            assert await engine.wait_for(message_id) is State.SENT
    assert emu.requests.count(route="status") == 2  # the wrong 404, then the real answer
    assert len(emu.mails) == 1 and emu.duplicates == 0


@pytest.mark.parametrize(
    ("fault", "untrusted", "cause"),
    [
        (Fault.error(401, code="Denied", message="Denied"), False, "ACS authentication failed"),
        (
            Fault.error(403, code="AuthorizationFailed", message="no role"),
            False,
            "ACS refused the service principal (no role",
        ),
        (None, True, "ACS server certificate refused"),
    ],
)
async def test_pause_log_names_its_cause(
    emu: Emulator,
    tmp_path: Path,
    engine_settings: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
    fault: Fault | None,
    untrusted: bool,
    cause: str,
) -> None:
    """A certificate or a missing role is not an authentication failure: the log says which fix is needed."""
    if fault is not None:
        emu.faults.add(fault)
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    if untrusted:
        trustme.CA().cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
        settings = replace(settings, credentials=replace(settings.credentials, ca_file=str(tmp_path / "other-ca.pem")))
    async with Outbox(tmp_path / "o.db") as outbox, AcsTransport(settings.credentials) as transport:
        paused = asyncio.Event()
        dispatcher = Dispatcher(outbox, transport, LOOSE, on_auth_failure=lambda _reason: paused.set())
        await outbox.enqueue_many(_messages(1))
        await dispatcher.start()
        async with asyncio.timeout(10):
            await paused.wait()
        await dispatcher.stop()
    (line,) = [r.getMessage() for r in caplog.records if "sending paused" in r.getMessage()]
    assert line.startswith(cause), line


async def test_a_429_on_a_confirmation_poll_pauses_status_checks_across_restarts(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    """The status endpoint's Retry-After holds for every later check, in this process and the next."""
    emu.faults.add(Fault.error(429, retry_after=120, route=Route.STATUS))
    async with Engine(engine_settings(emu, tmp_path / "o.db", SENDER, confirm_interval=0.05)) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        async with asyncio.timeout(10):
            assert await engine.wait_for(message_id) is State.SENT  # accepted stays accepted
        blocks = await engine.outbox.blocks()
    assert "poll" in blocks and blocks["poll"][1] > 100
