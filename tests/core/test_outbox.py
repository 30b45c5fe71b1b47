"""Durable outbox: what a user would notice — nothing lost, nothing sent twice, clear refusals."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acs_email_core.errors import AcsEmailError, OutboxFullError, ValidationError
from acs_email_core.message import EmailMessage
from acs_email_core.outbox import Outbox, State
from acs_email_core.retry import RetryPolicy
from acs_email_core.timebase import Stamp

T = TypeVar("T")


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mail(subject: str = "door open", *, text: str = "body", message_id: str | None = None) -> EmailMessage:
    return EmailMessage.build(
        sender="ha@example.com", to="me@example.org", subject=subject, text=text, message_id=message_id
    )


def invalid_mail() -> EmailMessage:
    return EmailMessage(sender="ha@example.com", to=(), subject="no recipient", text="body")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.db"


@pytest.fixture
async def outbox(db_path: Path, clock: FakeClock) -> AsyncIterator[Outbox]:
    async with Outbox(db_path, clock=clock, retry=RetryPolicy(max_attempts=3, max_age=3600)) as ob:
        yield ob


# ---- the happy path and idempotency --------------------------------------------------------------------------
async def test_enqueue_claim_and_mark_sent(outbox: Outbox) -> None:
    message = mail(text="x" * 5000)
    assert await outbox.enqueue(message, source="mqtt") == message.message_id
    assert (await outbox.stats()).queued == 1

    [claimed] = await outbox.claim_due(10)
    assert claimed.id == message.message_id
    assert claimed.payload == message.to_acs_payload()
    assert (claimed.attempts, claimed.verify) == (0, False)
    assert await outbox.claim_due(10) == []  # a message is handed out once

    await outbox.mark_sent(claimed.id)
    entry = await outbox.get(claimed.id)
    assert entry is not None
    assert (entry.state, entry.source, entry.subject, entry.recipients) == (State.SENT, "mqtt", "door open", 1)
    assert 5000 < entry.size < 6000  # payload bytes, shown so that big mails can be spotted
    stats = await outbox.stats()
    assert (stats.queued, stats.sending, stats.sent, stats.dead) == (0, 0, 1, 0)


async def test_same_message_enqueued_twice_is_stored_once(outbox: Outbox) -> None:
    message = mail()
    assert await outbox.enqueue(message) == await outbox.enqueue(message)
    assert await outbox.enqueue_many([message, message]) == [message.message_id] * 2
    assert (await outbox.stats()).queued == 1

    [claimed] = await outbox.claim_due(1)
    await outbox.mark_sent(claimed.id)
    await outbox.enqueue(message)  # a source that redelivers after the send must not cause a second mail
    assert await outbox.claim_due(1) == []


async def test_claims_oldest_due_first_and_skips_messages_not_yet_due(outbox: Outbox, clock: FakeClock) -> None:
    first, second, third = mail("1"), mail("2"), mail("3")
    for message in (first, second, third):
        await outbox.enqueue(message)
        clock.now += 1
    [claimed] = await outbox.claim_due(1)
    await outbox.mark_retry(claimed.id, "timeout", retry_after=60)  # first is now due last
    assert [c.id for c in await outbox.claim_due(10)] == [second.message_id, third.message_id]
    assert await outbox.next_due_at() == clock.now + 60
    assert await outbox.claim_due(10) == []
    clock.now += 60
    assert [c.id for c in await outbox.claim_due(10)] == [first.message_id]


# ---- refusals -------------------------------------------------------------------------------------------------
async def test_full_outbox_refuses_with_a_clear_error_and_keeps_what_it_had(db_path: Path) -> None:
    async with Outbox(db_path, max_messages=3) as outbox:
        kept = await outbox.enqueue_many([mail(), mail(), mail()])
        with pytest.raises(OutboxFullError, match=r"outbox full: it holds 3 of at most 3 messages"):
            await outbox.enqueue(mail())
        with pytest.raises(OutboxFullError):
            await outbox.enqueue_many([mail(), mail()])
        assert sorted(e.id for e in await outbox.list()) == sorted(kept)

        # Dead letters still take room; sent mail does not.
        [one, two] = await outbox.claim_due(2)
        await outbox.mark_dead(one.id, "403 sender not allowed")
        with pytest.raises(OutboxFullError):
            await outbox.enqueue(mail())
        await outbox.mark_sent(two.id)
        await outbox.enqueue(mail())
        assert (await outbox.stats()).queued == 2


async def test_full_outbox_still_acknowledges_a_redelivered_message(db_path: Path) -> None:
    async with Outbox(db_path, max_messages=1) as outbox:
        message = mail()
        await outbox.enqueue(message)
        assert await outbox.enqueue(message) == message.message_id


async def test_enqueue_many_is_all_or_nothing(outbox: Outbox) -> None:
    with pytest.raises(ValidationError, match="to"):
        await outbox.enqueue_many([mail(), invalid_mail(), mail()])
    assert await outbox.list() == []
    stats = await outbox.stats()
    assert (stats.queued, stats.sending, stats.sent, stats.dead) == (0, 0, 0, 0)


async def test_an_invalid_message_from_one_producer_does_not_fail_the_others(outbox: Outbox) -> None:
    good = [mail() for _ in range(5)]
    results = await asyncio.gather(
        *(outbox.enqueue(m) for m in good[:3]),
        outbox.enqueue(invalid_mail()),
        *(outbox.enqueue(m) for m in good[3:]),
        return_exceptions=True,
    )
    assert isinstance(results[3], ValidationError)
    assert {e.id for e in await outbox.list()} == {m.message_id for m in good}


async def test_closed_outbox_refuses_clearly(db_path: Path) -> None:
    outbox = Outbox(db_path)
    with pytest.raises(AcsEmailError, match="not open"):
        await outbox.enqueue(mail())


async def test_marks_on_unknown_ids_raise_key_error(outbox: Outbox) -> None:
    with pytest.raises(KeyError):
        await outbox.mark_sent("nope")
    with pytest.raises(KeyError):
        await outbox.mark_retry("nope", "x")
    with pytest.raises(KeyError):
        await outbox.mark_dead("nope", "x")


async def test_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    async with Outbox(db_path):
        pass
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(AcsEmailError, match="newer"):
        await Outbox(db_path).open()


# ---- retries, dead letters, housekeeping ---------------------------------------------------------------------
async def test_backoff_grows_with_bounded_jitter_and_retry_after_wins(db_path: Path, clock: FakeClock) -> None:
    policy = RetryPolicy(initial_delay=10, multiplier=2, max_delay=1000, jitter=0.2, max_attempts=10)
    async with Outbox(db_path, clock=clock, retry=policy) as outbox:
        message_id = await outbox.enqueue(mail())
        for attempt in range(1, 5):
            [claimed] = await outbox.claim_due(1)
            assert claimed.attempts == attempt - 1
            assert await outbox.mark_retry(message_id, "503 unavailable") is State.QUEUED
            delay = (await outbox.next_due_at() or 0) - clock.now
            base = 10 * 2 ** (attempt - 1)
            assert base * 0.8 <= delay <= base * 1.2
            clock.now += delay

        [claimed] = await outbox.claim_due(1)
        await outbox.mark_retry(message_id, "429 throttled", retry_after=42, count_attempt=False, verify=True)
        entry = await outbox.get(message_id)
        assert entry is not None
        assert (entry.next_attempt_at, entry.attempts, entry.verify) == (clock.now + 42, 4, True)
        assert entry.last_error == "429 throttled"
        clock.now += 42
        assert (await outbox.claim_due(1))[0].verify is True


async def test_message_dies_after_max_attempts_with_the_reason(outbox: Outbox) -> None:
    message_id = await outbox.enqueue(mail())
    states = []
    for _ in range(3):
        await outbox.claim_due(1)
        states.append(await outbox.mark_retry(message_id, "500 internal error", retry_after=0))
    assert states == [State.QUEUED, State.QUEUED, State.DEAD]
    [dead] = await outbox.list(State.DEAD)
    assert dead.last_error == "gave up after 3 attempts: 500 internal error"
    assert await outbox.claim_due(1) == []


async def test_message_dies_when_too_old_and_requeue_gives_it_a_fresh_start(outbox: Outbox, clock: FakeClock) -> None:
    message_id = await outbox.enqueue(mail())
    await outbox.claim_due(1)
    clock.now += 3600
    assert await outbox.mark_retry(message_id, "connection refused") is State.DEAD
    entry = await outbox.get(message_id)
    assert entry is not None
    assert entry.last_error == "expired after 60 min: connection refused"

    assert await outbox.requeue([message_id]) == 1
    [claimed] = await outbox.claim_due(1)
    assert claimed.attempts == 0
    # The age window restarted at the requeue: one more failure is a retry, not an instant death.
    assert await outbox.mark_retry(message_id, "connection refused") is State.QUEUED


async def test_dead_letters_are_listed_requeued_and_purged(outbox: Outbox) -> None:
    ids = await outbox.enqueue_many([mail(str(i)) for i in range(4)])
    for claimed in await outbox.claim_due(4):
        await outbox.mark_dead(claimed.id, "403 domain not verified")
    assert {e.id for e in await outbox.list(State.DEAD)} == set(ids)
    assert all(e.last_error == "403 domain not verified" for e in await outbox.list(State.DEAD, limit=2))
    assert len(await outbox.list(State.DEAD, limit=2)) == 2

    assert await outbox.requeue([ids[0]]) == 1
    assert await outbox.purge([ids[1]]) == 1
    assert await outbox.get(ids[1]) is None
    assert await outbox.requeue() == 2
    assert {c.id for c in await outbox.claim_due(10)} == {ids[0], ids[2], ids[3]}
    assert await outbox.purge() == 0  # nothing dead any more; sending rows are not touched
    assert (await outbox.stats()).sending == 3


async def test_release_puts_claimed_messages_back_unchanged(outbox: Outbox) -> None:
    message_id = await outbox.enqueue(mail())
    await outbox.claim_due(1)
    await outbox.mark_retry(message_id, "timeout", retry_after=0, verify=True)
    await outbox.claim_due(1)
    await outbox.release([message_id])
    [claimed] = await outbox.claim_due(1)
    assert (claimed.attempts, claimed.verify) == (1, True)


async def test_old_sent_messages_are_pruned_after_retention(db_path: Path, clock: FakeClock) -> None:
    async with Outbox(db_path, clock=clock, retention=100) as outbox:
        old, recent = await outbox.enqueue_many([mail(), mail()])
        await outbox.claim_due(2)
        await outbox.mark_sent(old)
        clock.now += 60
        await outbox.mark_sent(recent)
        assert await outbox.prune() == 0
        clock.now += 50
        assert await outbox.prune() == 1
        assert await outbox.get(old) is None
        assert await outbox.get(recent) is not None
    clock.now += 100
    async with Outbox(db_path, clock=clock, retention=100) as outbox:  # also pruned on open
        assert await outbox.get(recent) is None


async def test_claim_cancelled_midway_leaves_nothing_stuck_in_sending(outbox: Outbox) -> None:
    await outbox.enqueue(mail())
    task = asyncio.create_task(outbox.claim_due(1))
    await asyncio.sleep(0)  # let it hand the claim to the worker thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = await outbox.stats()
    assert (stats.queued, stats.sending) == (1, 0)


# ---- durability and crashes ----------------------------------------------------------------------------------
async def test_enqueued_message_is_visible_to_another_connection_at_once(db_path: Path) -> None:
    async with Outbox(db_path) as writer:
        message_id = await writer.enqueue(mail())
        async with Outbox(db_path) as reader:
            entry = await reader.get(message_id)
            assert entry is not None
            assert entry.state is State.QUEUED


async def test_second_opener_does_not_take_back_messages_being_sent(db_path: Path) -> None:
    """The CLI may open the outbox while the bridge sends; it must not requeue the bridge's in-flight mail."""
    async with Outbox(db_path) as bridge:
        message_id = await bridge.enqueue(mail())
        await bridge.claim_due(1)
        async with Outbox(db_path) as cli:
            entry = await cli.get(message_id)
            assert entry is not None
            assert entry.state is State.SENDING


async def test_close_waits_for_pending_enqueues(db_path: Path) -> None:
    outbox = Outbox(db_path)
    await outbox.open()
    tasks = [asyncio.create_task(outbox.enqueue(mail())) for _ in range(50)]
    await asyncio.sleep(0)
    await outbox.close()
    await outbox.close()  # idempotent
    ids = await asyncio.gather(*tasks)
    async with Outbox(db_path) as reopened:
        assert len(await reopened.list(limit=100)) == len(set(ids)) == 50


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from acs_email_core.message import EmailMessage
    from acs_email_core.outbox import Outbox
    from acs_email_core.timebase import Timebase

    def mail():
        return EmailMessage.build(sender="ha@example.com", to="me@example.org", subject="s", text="b")

    async def producer(outbox):
        while True:
            message_id = await outbox.enqueue(mail())
            print("acked", message_id, flush=True)

    async def main(path, mode):
        outbox = Outbox(path)
        await outbox.open()
        if mode == "claim":
            await outbox.enqueue_many([mail() for _ in range(3)])
            first, second = await outbox.claim_due(2)
            now = Timebase().now()
            await outbox.request_started("send", now, now.shifted(60), first.id)  # POST of the first starts
            print("posted", first.id, flush=True)
            print("claimed", second.id, flush=True)
            print("ready", flush=True)
            await asyncio.sleep(3600)
        else:
            await asyncio.gather(*(producer(outbox) for _ in range(8)))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def run_child_until_killed(db_path: Path, mode: str, lines: int) -> list[list[str]]:
    """Start a child that uses the outbox, read ``lines`` lines from it, then kill -9 it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(db_path), mode, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    seen: list[list[str]] = []
    try:
        while len(seen) < lines:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            assert line, "child exited early"
            seen.append(line.decode().split())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return seen


async def test_messages_left_sending_by_a_killed_process_come_back_to_be_verified(db_path: Path) -> None:
    seen = await run_child_until_killed(db_path, "claim", lines=3)
    posted = {words[1] for words in seen if words[0] == "posted"}
    assert len(posted) == 1

    async with Outbox(db_path) as outbox:
        stats = await outbox.stats()
        assert (stats.queued, stats.sending) == (3, 0)
        claimed = await outbox.claim_due(10)
        # Only the one whose POST had started is checked with ACS before any resend; the one that was
        # claimed but never posted, and the one never claimed, go straight out.
        assert {c.id for c in claimed if c.verify} == posted
        assert all(c.posted is not None for c in claimed if c.verify)
        assert len(claimed) == 3


async def test_every_acknowledged_message_survives_kill_9_during_enqueues(db_path: Path) -> None:
    seen = await run_child_until_killed(db_path, "produce", lines=300)
    acked = {words[1] for words in seen}
    async with Outbox(db_path) as outbox:
        stored = {e.id for e in await outbox.list(limit=100_000)}
    assert acked <= stored


# ---- rate-limiter memory -------------------------------------------------------------------------------------
async def test_request_history_survives_reopen_and_drops_old_entries(db_path: Path) -> None:
    async with Outbox(db_path) as outbox:
        handles = [await outbox.request_started("send", Stamp(t), Stamp(t + 60)) for t in (100.0, 200.0, 300.0)]
        await outbox.request_started("poll", Stamp(150.0), Stamp(210.0))
        await outbox.request_finished(handles[0], "send", Stamp(101.0), forget_before=Stamp(0.0))
        await outbox.request_finished(handles[1], "send", Stamp(201.0), forget_before=Stamp(150.0))
    async with Outbox(db_path) as outbox:
        # 101 was dropped; 300 never finished (a killed process): remembered as ending at its latest, 360.
        assert sorted(s.wall for s in await outbox.request_history("send")) == [201.0, 360.0]
        assert [s.wall for s in await outbox.request_history("poll")] == [210.0]


# ---- event loop friendliness ---------------------------------------------------------------------------------
async def test_large_enqueue_does_not_block_the_event_loop(outbox: Outbox) -> None:
    messages = [mail() for _ in range(2000)]
    task = asyncio.create_task(outbox.enqueue_many(messages))
    heartbeats = 0
    while not task.done():
        await asyncio.sleep(0)
        heartbeats += 1
    await task
    # Had the write run on the loop, the task would have finished within its first step.
    assert heartbeats > 10


async def test_wait_for_work_wakes_on_enqueue_and_times_out_otherwise(outbox: Outbox) -> None:
    await asyncio.wait_for(outbox.wait_for_work(0.01), timeout=5)  # nothing to do: returns on timeout
    waiter = asyncio.create_task(outbox.wait_for_work(None))
    await asyncio.sleep(0)
    assert not waiter.done()
    await outbox.enqueue(mail())
    await asyncio.wait_for(waiter, timeout=5)


# ---- model-based: whatever the sequence of operations, nothing is lost or duplicated --------------------------
class OutboxMachine(RuleBasedStateMachine):
    """Random enqueue/claim/mark/release/requeue/reopen sequences against a plain dict model."""

    MAX_ATTEMPTS = 3

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.mkdtemp()
        self.model: dict[str, State] = {}
        self.attempts: dict[str, int] = {}
        self.outbox = self.open()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def open(self) -> Outbox:
        policy = RetryPolicy(max_attempts=self.MAX_ATTEMPTS)
        outbox = Outbox(Path(self.dir) / "outbox.db", synchronous="NORMAL", retry=policy)
        self.run(outbox.open())
        return outbox

    def ids(self, state: State) -> list[str]:
        return sorted(i for i, s in self.model.items() if s is state)

    @rule(count=st.integers(1, 3), again=st.booleans())
    def enqueue(self, count: int, again: bool) -> None:
        messages = [mail() for _ in range(count)]
        if again and self.model:  # a source redelivering a message it already handed over
            messages[0] = mail(message_id=sorted(self.model)[0])
        for message_id in self.run(self.outbox.enqueue_many(messages)):
            if message_id not in self.model:
                self.model[message_id] = State.QUEUED
                self.attempts[message_id] = 0

    @rule(limit=st.integers(1, 4))
    def claim(self, limit: int) -> None:
        queued = self.ids(State.QUEUED)
        claimed = [c.id for c in self.run(self.outbox.claim_due(limit))]
        assert len(claimed) == len(set(claimed)) == min(limit, len(queued))
        assert set(claimed) <= set(queued)
        for message_id in claimed:
            self.model[message_id] = State.SENDING

    @precondition(lambda self: self.ids(State.SENDING))
    @rule(data=st.data(), outcome=st.sampled_from(["sent", "retry", "dead", "release"]))
    def settle(self, data: st.DataObject, outcome: str) -> None:
        message_id = data.draw(st.sampled_from(self.ids(State.SENDING)))
        if outcome == "sent":
            self.run(self.outbox.mark_sent(message_id))
            self.model[message_id] = State.SENT
        elif outcome == "dead":
            self.run(self.outbox.mark_dead(message_id, "refused"))
            self.model[message_id] = State.DEAD
        elif outcome == "release":
            self.run(self.outbox.release([message_id]))
            self.model[message_id] = State.QUEUED
        else:
            self.attempts[message_id] += 1
            expected = State.DEAD if self.attempts[message_id] >= self.MAX_ATTEMPTS else State.QUEUED
            assert self.run(self.outbox.mark_retry(message_id, "503", retry_after=0)) is expected
            self.model[message_id] = expected

    @precondition(lambda self: any(s is not State.SENDING for s in self.model.values()))
    @rule(data=st.data(), action=st.sampled_from(["retry", "sent", "dead"]))
    def late_settle(self, data: st.DataObject, action: str) -> None:
        """A delivery's cleanup arriving after its mail left ``sending`` (a cancel after the commit) is a no-op."""
        message_id = data.draw(st.sampled_from(sorted(i for i, s in self.model.items() if s is not State.SENDING)))
        if action == "retry":
            assert self.run(self.outbox.mark_retry(message_id, "late", retry_after=0)) is self.model[message_id]
        elif action == "sent":
            self.run(self.outbox.mark_sent(message_id))
        else:
            self.run(self.outbox.mark_dead(message_id, "late"))

    @rule()
    def requeue_all(self) -> None:
        dead = self.ids(State.DEAD)
        assert self.run(self.outbox.requeue()) == len(dead)
        for message_id in dead:
            self.model[message_id] = State.QUEUED
            self.attempts[message_id] = 0

    @rule()
    def crash_and_reopen(self) -> None:
        self.run(self.outbox.close())
        self.outbox = self.open()
        for message_id in self.ids(State.SENDING):
            self.model[message_id] = State.QUEUED

    @invariant()
    def stored_states_match_the_model(self) -> None:
        entries = self.run(self.outbox.list(limit=10_000))
        assert {e.id: e.state for e in entries} == self.model
        stats = self.run(self.outbox.stats())
        counts = {state: len(self.ids(state)) for state in State}
        assert (stats.queued, stats.sending, stats.sent, stats.dead) == (
            counts[State.QUEUED],
            counts[State.SENDING],
            counts[State.SENT],
            counts[State.DEAD],
        )

    def teardown(self) -> None:
        self.run(self.outbox.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestOutboxMachine = OutboxMachine.TestCase
TestOutboxMachine.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)


async def test_a_mail_being_sent_cannot_be_purged(outbox: Outbox) -> None:
    """Its request may be at ACS: deleting the row would leave the outcome nowhere to go (and its waiter hanging)."""
    message_id = await outbox.enqueue(mail())
    await outbox.claim_due(1)
    with pytest.raises(ValueError, match="being sent"):
        await outbox.purge([message_id], state=State.SENDING)
    assert (await outbox.get(message_id)) is not None
