"""The core's promises under faults (issue 5): nothing lost, nothing sent twice, no quota window exceeded.

Each test drives the real engine, outbox and SDK against the emulator and injects one fault: an emulator
misbehaviour, a stepped wall clock, a locked database, a transport that raises.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_bridge.emulator.faults import Route
from acs_email_core import message as message_module
from acs_email_core.config import EngineSettings
from acs_email_core.dispatcher import Dispatcher
from acs_email_core.engine import Engine
from acs_email_core.message import Attachment, EmailMessage
from acs_email_core.outbox import Outbox, State
from acs_email_core.quota import Quota, Window
from acs_email_core.retry import RetryPolicy
from acs_email_core.timebase import Timebase
from acs_email_core.transport import AcsCredentials, AcsTransport, Outcome, OutcomeKind

SENDER = "DoNotReply@f.example.com"
MakeEmulator = Callable[..., Awaitable[Emulator]]
SettingsFactory = Callable[..., EngineSettings]
LOOSE = Quota(send=(Window(10_000, 60.0),), poll=(Window(10_000, 60.0),))
FAST = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.1, max_attempts=5)


def _messages(count: int) -> list[EmailMessage]:
    return [EmailMessage.build(sender=SENDER, to=f"r{i}@example.com", subject=f"m{i}", text="x") for i in range(count)]


class WallClock:
    """A wall clock that a test steps; pacing must not care."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@contextlib.asynccontextmanager
async def _running(dispatcher: Dispatcher) -> AsyncIterator[Dispatcher]:
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()


def _stepping_outbox(directory: Path, wall: WallClock) -> Outbox:
    """An outbox on the test's wall clock; time still passes on the real monotonic clock."""
    return Outbox(directory / "o.db", clock=wall, monotonic=time.monotonic)


@pytest.fixture
async def emu(make_emulator: MakeEmulator) -> Emulator:
    return await make_emulator(senders=[SENDER], retry_after=0)


async def _until(condition: Callable[[], bool], within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def _all_sent(dispatcher: Dispatcher | Engine, ids: list[str], within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        assert set(await asyncio.gather(*(dispatcher.wait_for(i) for i in ids))) == {State.SENT}


async def _needing_verify(outbox: Outbox, count: int) -> list[str]:
    """Mails whose previous POST may have reached ACS (it did not): each is checked before it is resent."""
    ids = await outbox.enqueue_many(_messages(count))
    for claimed in await outbox.claim_due(count):
        await outbox.mark_retry(claimed.id, "cut", retry_after=0, verify=True, count_attempt=False)
    return ids


# ---- 1. a shutdown during the pre-resend check ----------------------------------------------------------------
async def test_a_shutdown_during_the_status_check_keeps_the_check_for_the_next_run(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.drop(after=True))  # accepted, answer lost: the status must decide
    emu.faults.add(Fault.delay(5.0, route=Route.STATUS))  # the check is slow: the stop comes first
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    engine = Engine(settings)
    await engine.start()
    (message_id,) = await engine.submit_many(_messages(1))
    await _until(lambda: not emu.faults.pending())  # the status request has arrived and hangs
    await engine.stop(grace=0.1)

    async with Outbox(tmp_path / "o.db") as outbox:
        entry = await outbox.get(message_id)
        assert entry is not None and entry.state is State.QUEUED and entry.verify
    async with Engine(settings) as engine:
        assert await asyncio.wait_for(engine.wait_for(message_id), 20) is State.SENT
    assert len(emu.mails) == 1 and emu.duplicates == 0


# ---- 2. resend window --------------------------------------------------------------------------------------------
async def test_no_resend_while_acs_may_still_be_processing_the_original_post(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    # ACS holds the POST for 1.5 s and then accepts it, although the client gave up after 1 s.
    emu.faults.add(Fault.stall(1.5))
    settings = engine_settings(emu, tmp_path / "o.db", SENDER, timeout=0.5, resend_after=2.5)
    started = asyncio.get_running_loop().time()
    async with Engine(settings) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        assert await asyncio.wait_for(engine.wait_for(message_id), 20) is State.SENT
    await asyncio.sleep(max(0.0, started + 2.0 - asyncio.get_running_loop().time()))  # the stall is over
    assert emu.requests.count(route="send") == 1  # answered 404 meanwhile, yet never sent again
    assert len(emu.mails) == 1 and emu.duplicates == 0


# ---- 3. storage faults -------------------------------------------------------------------------------------------
async def test_a_locked_database_delays_delivery_and_never_ends_it(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.db"
    engine = Engine(engine_settings(emu, path, SENDER))
    engine.outbox._store.busy_timeout = 0.1  # give up on the lock quickly (the default waits 30 s)
    engine.dispatcher._storage_backoff = FAST
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await engine.start()
        ids = await engine.submit_many(_messages(3))
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        await _until(lambda: any("database is locked" in r.getMessage() for r in caplog.records))
        assert (await engine.status()).storage_error is not None
        other.execute("ROLLBACK")
        await _all_sent(engine, ids)
        assert (await engine.status()).storage_error is None
    finally:
        other.close()
        await engine.stop()
    async with Outbox(path) as next_owner:  # stop released the owner lock
        assert next_owner.owner
    assert len(emu.mails) == 3 and emu.duplicates == 0


async def test_a_database_locked_while_a_mail_is_in_flight_keeps_it_and_never_duplicates_it(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.db"
    emu.faults.add(Fault.delay(1.0, after=True))  # accepted; the answer comes while the database is locked
    engine = Engine(engine_settings(emu, path, SENDER))
    engine.outbox._store.busy_timeout = 0.1
    engine.dispatcher._storage_backoff = FAST
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await engine.start()
        (message_id,) = await engine.submit_many(_messages(1))
        await _until(lambda: len(emu.mails) == 1)
        other.execute("BEGIN IMMEDIATE")  # ACS's answer cannot be recorded
        await _until(lambda: any("cannot update the outbox" in r.getMessage() for r in caplog.records))
        other.execute("ROLLBACK")
        assert await asyncio.wait_for(engine.wait_for(message_id), 20) is State.SENT
    finally:
        other.close()
        await engine.stop()
    assert emu.requests.count(route="status") >= 1  # settled by asking ACS, not by sending again
    assert len(emu.mails) == 1 and emu.duplicates == 0


# ---- 4. exceptions nobody classified -----------------------------------------------------------------------------
async def test_a_malformed_tenant_id_pauses_with_a_reason_and_leaks_nothing(emu: Emulator) -> None:
    credentials = AcsCredentials(
        endpoint=emu.endpoint,
        tenant_id="not a tenant!",
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        authority=emu.authority,
        ca_file=str(emu.ca_file),
    )
    async with AcsTransport(credentials) as transport:
        for _ in range(3):
            outcome = await transport.send({"senderAddress": SENDER}, "00000000-0000-4000-8000-000000000001")
            assert outcome.kind is OutcomeKind.AUTH
            assert "invalid service principal" in outcome.detail
            assert transport._client is not None and transport._client._own_session is None  # closed again
    assert emu.requests.count(route="send") == 0


class RaisingTransport:
    """A transport with a bug: every send raises something it never classified."""

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, payload: dict[str, Any], operation_id: str) -> Outcome:
        self.calls += 1
        raise RuntimeError("unforeseen")

    async def status(self, operation_id: str) -> Outcome:
        return Outcome(OutcomeKind.NOT_FOUND)


async def test_an_unclassified_exception_ends_as_an_outcome_and_frees_its_quota_slot(tmp_path: Path) -> None:
    quota = Quota(send=(Window(3, 0.2),), poll=(Window(100, 0.2),))
    async with Outbox(tmp_path / "o.db", retry=FAST) as outbox:
        ids = await outbox.enqueue_many(_messages(4))
        transport = RaisingTransport()
        async with _running(
            Dispatcher(
                outbox, transport, quota, concurrency=2, outage_backoff=FAST, verify_recheck=0.01, resend_after=0.0
            )
        ) as dispatcher:
            async with asyncio.timeout(30):
                assert set(await asyncio.gather(*(dispatcher.wait_for(i) for i in ids))) == {State.DEAD}
        assert transport.calls == 4 * FAST.max_attempts  # more than the quota's 3: every slot came back
        assert (await outbox.stats()).sending == 0
        assert "unforeseen" in ((await outbox.get(ids[0])) or pytest.fail()).last_error  # type: ignore[operator]


# ---- 5. one atomic step to take a quota slot ---------------------------------------------------------------------
@pytest.mark.parametrize("concurrency", [2, 4])
async def test_resends_and_new_mail_together_stay_within_the_quota(
    make_emulator: MakeEmulator, tmp_path: Path, engine_settings: SettingsFactory, concurrency: int
) -> None:
    quota = Quota(send=(Window(2, 0.3),), poll=(Window(10_000, 60.0),))
    emu = await make_emulator(senders=[SENDER], retry_after=0, quota=quota)
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    async with Outbox(tmp_path / "o.db") as outbox, AcsTransport(settings.credentials) as transport:
        ids = await _needing_verify(outbox, 8) + await outbox.enqueue_many(_messages(8))
        dispatcher = Dispatcher(outbox, transport, quota, concurrency=concurrency, verify_recheck=0.01)
        async with _running(dispatcher):
            await _all_sent(dispatcher, ids, within=60)
    assert emu.requests.count(route="send", status=429) == 0
    assert len(emu.mails) == 16 and emu.duplicates == 0


# ---- 7. Retry-After outlives the process -------------------------------------------------------------------------
async def test_retry_after_is_obeyed_by_the_next_process(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.error(429, retry_after=300))
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    async with Engine(settings) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        await _until(lambda: emu.requests.count(route="send") == 1)
    async with Engine(settings) as engine:
        status = await engine.status()
        assert status.quota_left == 0  # blocked for the rest of the 300 s
        entry = await engine.outbox.get(message_id)
        assert entry is not None and entry.state is State.QUEUED
    assert emu.requests.count(route="send") == 1


@pytest.mark.parametrize("step", [0.0, -3600.0])
async def test_retry_after_outlives_a_reboot(tmp_path: Path, step: float) -> None:
    """After a reboot only the wall clock is left: a Retry-After still running on it must still hold."""
    before = Timebase(boot="boot-before-the-reboot")
    async with Outbox(tmp_path / "o.db") as outbox:
        now = before.now()
        await outbox.save_block("send", now.shifted(300), 300)
    wall = WallClock()
    wall.offset = step  # and the clock may have been set back meanwhile: the block never outlasts its 300 s
    async with _stepping_outbox(tmp_path, wall) as outbox:
        after = Timebase(wall=wall, boot="boot-after-the-reboot")
        dispatcher = Dispatcher(outbox, RaisingTransport(), LOOSE, timebase=after)
        async with _running(dispatcher):
            status = await dispatcher.status()
            assert status.quota_left == 0
            assert 290 < dispatcher._send_limiter.blocked_until - after.mono() <= 300


# ---- 8. clock steps ----------------------------------------------------------------------------------------------
STEP_QUOTA = Quota(send=(Window(3, 1.0),), poll=(Window(10_000, 60.0),))


@pytest.mark.parametrize("step", [3600.0, -3600.0])
async def test_a_wall_clock_step_neither_bursts_nor_stalls(
    make_emulator: MakeEmulator, tmp_path: Path, engine_settings: SettingsFactory, step: float
) -> None:
    emu = await make_emulator(senders=[SENDER], retry_after=0, quota=STEP_QUOTA)
    wall = WallClock()
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    async with _stepping_outbox(tmp_path, wall) as outbox, AcsTransport(settings.credentials) as transport:
        ids = await outbox.enqueue_many(_messages(6))
        async with _running(Dispatcher(outbox, transport, STEP_QUOTA, clock=wall)) as dispatcher:
            await _until(lambda: len(emu.mails) == 3)
            wall.offset += step  # NTP corrects the clock while three mails wait for quota
            ids += await outbox.enqueue_many(_messages(3))
            await _all_sent(dispatcher, ids)
    assert emu.requests.count(route="send", status=429) == 0
    assert len(emu.mails) == 9 and emu.duplicates == 0


async def test_quota_use_is_remembered_across_a_restart_after_a_forward_step(
    make_emulator: MakeEmulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    quota = Quota(send=(Window(3, 3.0),), poll=(Window(10_000, 60.0),))
    emu = await make_emulator(senders=[SENDER], retry_after=0, quota=quota)
    wall = WallClock()
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    for run in range(2):
        async with _stepping_outbox(tmp_path, wall) as outbox, AcsTransport(settings.credentials) as transport:
            ids = await outbox.enqueue_many(_messages(3))
            async with _running(Dispatcher(outbox, transport, quota, clock=wall)) as dispatcher:
                await _all_sent(dispatcher, ids)
        if run == 0:
            wall.offset += 3600.0  # the next cron run starts after NTP stepped the clock
    assert emu.requests.count(route="send", status=429) == 0
    assert len(emu.mails) == 6


async def test_mail_scheduled_before_a_backward_step_between_runs_is_not_held_back(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    wall = WallClock()
    wall.offset = 3600.0  # the clock was an hour fast when the last run scheduled a retry
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    async with _stepping_outbox(tmp_path, wall) as outbox, AcsTransport(settings.credentials) as transport:
        dispatcher = Dispatcher(outbox, transport, LOOSE, clock=wall)
        await dispatcher.start()
        await dispatcher.stop()
        (message_id,) = await outbox.enqueue_many(_messages(1))
        await outbox.claim_due(1)
        await outbox.mark_retry(message_id, "503", retry_after=1.0)
    wall.offset = 0.0  # NTP fixed it before this run
    async with (
        _stepping_outbox(tmp_path, wall) as outbox,
        AcsTransport(settings.credentials) as transport,
        _running(Dispatcher(outbox, transport, LOOSE, clock=wall)) as dispatcher,
    ):
        await _all_sent(dispatcher, [message_id])


# ---- 9. one owner, whatever the path -----------------------------------------------------------------------------
async def test_a_symlink_to_the_outbox_is_the_same_outbox(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "real.db") as first:
        (tmp_path / "link.db").symlink_to(tmp_path / "real.db")
        async with Outbox(tmp_path / "link.db") as second:
            assert first.owner
            assert not second.owner
    async with Outbox(tmp_path / "link.db") as after:  # and it takes over once the first has gone
        assert after.owner


# ---- 10. Entra's own outages --------------------------------------------------------------------------------------
async def test_entra_5xx_and_429_are_outages_not_bad_credentials(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.error(503, route=Route.TOKEN, times=4))
    emu.faults.add(Fault.error(429, retry_after=1, route=Route.TOKEN, times=2))
    pauses: list[str] = []
    settings = engine_settings(emu, tmp_path / "o.db", SENDER, principal=True)
    async with Engine(settings, on_auth_failure=pauses.append) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        assert await asyncio.wait_for(engine.wait_for(message_id), 30) is State.SENT
        entry = await engine.outbox.get(message_id)
    assert pauses == []
    assert entry is not None and entry.attempts == 0  # the POST never left: no attempt used up
    assert emu.requests.count(route="token", status=503) == 4
    assert len(emu.mails) == 1


async def test_entra_throttling_waits_the_retry_after_it_gives(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    """A 429 from the token endpoint: nothing before its Retry-After (not the outage backoff), then the mail goes."""
    emu.faults.add(Fault.error(429, retry_after=2, route=Route.TOKEN, times=1))
    settings = engine_settings(emu, tmp_path / "o.db", SENDER, principal=True, outage_backoff=FAST)
    async with Engine(settings) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        await _until(lambda: emu.requests.count(route="token") >= 1)
        await asyncio.sleep(1.0)  # FAST backoff would have tried again several times by now
        assert emu.requests.count(route="token") == 1 and emu.mails == []
        assert await asyncio.wait_for(engine.wait_for(message_id), 15) is State.SENT  # not the 60 s default
        entry = await engine.outbox.get(message_id)
    assert entry is not None and entry.attempts == 0


# ---- 11. guarded state changes -------------------------------------------------------------------------------------
async def test_a_late_retry_never_reopens_a_sent_or_dead_mail(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db") as outbox:
        sent, dead = await outbox.enqueue_many(_messages(2))
        await outbox.claim_due(2)
        # The commits happen, then a shutdown cancels the delivery, whose cleanup asks for a retry.
        await outbox.mark_sent(sent)
        await outbox.mark_dead(dead, "refused")
        assert await outbox.mark_retry(sent, "interrupted by shutdown", retry_after=0) is State.SENT
        assert await outbox.mark_retry(dead, "interrupted by shutdown", retry_after=0) is State.DEAD
        assert await outbox.claim_due(2) == []
        stats = await outbox.stats()
        assert (stats.sent, stats.dead, stats.queued) == (1, 1, 0)


# ---- 12. status faults are not send attempts; the request history stays small ----------------------------------------
async def test_a_failing_status_endpoint_does_not_use_up_attempts(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    emu.faults.add(Fault.error(503, route=Route.STATUS, times=8))  # more than max_attempts (5)
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    async with Engine(settings) as engine:
        ids = await _needing_verify(engine.outbox, 1)
        assert await asyncio.wait_for(engine.wait_for(ids[0]), 30) is State.SENT
    assert emu.requests.count(route="status", status=503) == 8
    assert len(emu.mails) == 1


async def test_request_history_is_pruned_while_running(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    quota = Quota(send=(Window(1_000, 0.3),), poll=(Window(1_000, 0.3),))
    settings = engine_settings(emu, tmp_path / "o.db", SENDER)
    async with (
        Outbox(tmp_path / "o.db") as outbox,
        AcsTransport(settings.credentials) as transport,
        _running(Dispatcher(outbox, transport, quota)) as dispatcher,
    ):
        await _all_sent(dispatcher, await outbox.enqueue_many(_messages(20)))
        await asyncio.sleep(0.4)  # every one of those requests is now out of the window
        await _all_sent(dispatcher, await outbox.enqueue_many(_messages(1)))
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 1


# ---- 14. big attachments are encoded off the event loop --------------------------------------------------------------
async def test_a_7_mb_attachment_is_never_encoded_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real = base64.b64encode

    def spy(data: bytes, altchars: bytes | None = None) -> bytes:
        threads.append(threading.current_thread().name)
        return real(data, altchars)

    monkeypatch.setattr(message_module.base64, "b64encode", spy)
    loop_thread = threading.current_thread().name
    attachment = Attachment("video.mp4", bytes(7 * 1024 * 1024))
    message = EmailMessage.build(sender=SENDER, to="a@example.com", subject="clip", text="x", attachments=[attachment])
    with pytest.raises(Exception, match="over the"):
        EmailMessage.build(
            sender=SENDER, to="a@example.com", subject="too big", text="x", attachments=[attachment, attachment]
        )
    async with Outbox(tmp_path / "o.db") as outbox:
        await outbox.enqueue(message)
        [claimed] = await outbox.claim_due(1)
    assert claimed.payload["attachments"][0]["contentInBase64"] == real(attachment.data).decode()
    assert threads and loop_thread not in threads


def test_size_check_without_encoding_matches_the_encoded_request() -> None:
    limits = message_module.MessageLimits(max_request_bytes=4096)
    verdicts = set()
    for size in range(2800, 2900):
        attachments = [Attachment("a.pdf", bytes(size), content_id="c1")]
        message = EmailMessage.build(sender=SENDER, to="a@example.com", subject="s", text="x", attachments=attachments)
        try:
            message.to_acs_payload(limits)
        except message_module.ValidationError:
            encoded_fits = False
        else:
            encoded_fits = True
        try:
            message.validate(limits)
        except message_module.ValidationError:
            computed_fits = False
        else:
            computed_fits = True
        assert computed_fits == encoded_fits, size
        verdicts.add(encoded_fits)
    assert verdicts == {True, False}  # the range crosses the limit


# ---- attacks after issue 5: a mail ACS may have is never dead-lettered on the retry policy alone ---------------------
ONE_TRY = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.1, max_attempts=1)


async def test_a_mail_acs_accepted_is_not_dead_when_out_of_attempts(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    """Accepted, then the answer is lost on its only attempt: the status check finds it sent, not dead."""
    emu.faults.add(Fault.drop(after=True))
    settings = engine_settings(emu, tmp_path / "o.db", SENDER, retry=ONE_TRY, outage_backoff=FAST, resend_after=0.2)
    async with Engine(settings) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        assert await asyncio.wait_for(engine.wait_for(message_id), 30) is State.SENT
    assert len(emu.mails) == 1 and emu.duplicates == 0


async def test_a_mail_past_its_age_is_dead_only_once_acs_says_it_never_had_it(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    """Cut before ACS processed it, on its only attempt: dead after the status checks, and never POSTed again."""
    emu.faults.add(Fault.drop())
    settings = engine_settings(emu, tmp_path / "o.db", SENDER, retry=ONE_TRY, outage_backoff=FAST, resend_after=0.2)
    async with Engine(settings) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        assert await asyncio.wait_for(engine.wait_for(message_id), 30) is State.DEAD
        entry = await engine.outbox.get(message_id)
    assert entry is not None and "ACS never received it" in (entry.last_error or "")
    assert emu.requests.count(route="send") == 1 and emu.requests.count(route="status") >= 1
    assert emu.mails == []


async def test_an_outage_is_logged_once_and_its_end_once(
    emu: Emulator, tmp_path: Path, engine_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Three failed tries in a row are one outage: one line when it starts, one when ACS answers again."""
    emu.faults.add(Fault.error(503, times=3))
    settings = engine_settings(emu, tmp_path / "o.db", SENDER, retry=FAST, outage_backoff=FAST)
    caplog.set_level("INFO", logger="acs_email_core.dispatcher")
    async with Engine(settings) as engine:
        (message_id,) = await engine.submit_many(_messages(1))
        assert await asyncio.wait_for(engine.wait_for(message_id), 30) is State.SENT
    lines = [r.getMessage() for r in caplog.records if r.name == "acs_email_core.dispatcher"]
    assert sum("ACS unavailable" in line for line in lines) == 1, lines
    assert sum("ACS reachable again after 3 failed attempt(s)" in line for line in lines) == 1, lines
