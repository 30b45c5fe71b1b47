"""The delivery loop: outbox → rate limiter → transport, with bounded concurrency and graceful shutdown.

Only this loop starts send requests, and it takes the quota slot before it claims a message, so a mail
never sits in ``sending`` while waiting for quota and the limiter is never overcommitted. A connection
failure pauses all sending (with growing backoff) instead of burning every queued mail's attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .limiter import SlidingWindowLimiter
from .outbox import ClaimedMessage, Outbox, State
from .quota import Quota
from .retry import RetryPolicy
from .transport import Outcome, OutcomeKind

_LOGGER = logging.getLogger(__name__)
SEND, POLL = "send", "poll"
# Backoff of the whole dispatcher while ACS cannot be reached (consecutive failures → pause).
OUTAGE_BACKOFF = RetryPolicy(initial_delay=2.0, multiplier=2.0, max_delay=300.0, jitter=0.2)
# Delivery confirmation (optional): at most this many status polls per mail, every ``confirm_interval``
# seconds (ACS itself suggests 3 s), and never the last POLL_RESERVE polls of a window, which are kept
# for the checks that prevent duplicates after an ambiguous failure.
# Before resending after an ambiguous failure, "no such operation" must be answered twice, this far apart.
VERIFY_RECHECK = 2.0
# After an authentication failure, sending pauses; it tries again after this many seconds.
AUTH_RETRY = 900.0
CONFIRM_INTERVAL = 3.0
CONFIRM_POLLS = 10
POLL_RESERVE = 2


class Transport(Protocol):
    """What the dispatcher needs from a transport (the ACS one, or a test double of it)."""

    async def send(self, payload: dict[str, Any], operation_id: str) -> Outcome: ...

    async def status(self, operation_id: str) -> Outcome: ...


@dataclass(frozen=True)
class DispatcherStatus:
    """Counters for sensors, diagnostics and the CLI; totals count since start."""

    queued: int
    sending: int
    dead: int
    sent_total: int
    throttled_total: int
    failed_total: int
    dead_total: int
    quota_left: int
    oldest_queued_age: float | None
    paused: str | None


class Dispatcher:
    """Delivers queued mail as fast as the quota allows and never twice."""

    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        quota: Quota,
        *,
        concurrency: int = 2,
        clock: Callable[[], float] = time.time,
        on_auth_failure: Callable[[str], None] | None = None,
        outage_backoff: RetryPolicy = OUTAGE_BACKOFF,
        confirm_interval: float | None = None,
        auth_retry: float = AUTH_RETRY,
        verify_recheck: float = VERIFY_RECHECK,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._outbox = outbox
        self._transport = transport
        self._clock = clock
        self._send_limiter = SlidingWindowLimiter(quota.send, clock=clock)
        self._poll_limiter = SlidingWindowLimiter(quota.poll, clock=clock)
        self._longest_window = max(w.seconds for w in (*quota.send, *quota.poll))
        self._slots = asyncio.Semaphore(concurrency)
        self._on_auth_failure = on_auth_failure
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._paused: str | None = None
        self._outages = 0
        self._outage_backoff = outage_backoff
        self._confirm_interval = confirm_interval
        self._auth_retry = auth_retry
        self._verify_recheck = verify_recheck
        self._auth_retry_handle: asyncio.TimerHandle | None = None
        self._waiters: dict[str, list[asyncio.Future[State]]] = {}
        self._sent = self._throttled = self._failed = self._dead = 0

    # ---- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Restore the last hour of quota use (it survives restarts) and start delivering."""
        since = self._clock() - self._longest_window
        self._send_limiter.load(await self._outbox.request_history(SEND, since))
        self._poll_limiter.load(await self._outbox.request_history(POLL, since))
        self._stopping.clear()
        self._loop_task = asyncio.create_task(self._run(), name="acs_email dispatcher")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let in-flight sends finish for ``grace`` seconds, then interrupt them safely."""
        self._stopping.set()
        self.resume()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def resume(self) -> None:
        """Continue after new credentials were configured (sending pauses on an authentication failure)."""
        if self._auth_retry_handle is not None:
            self._auth_retry_handle.cancel()
            self._auth_retry_handle = None
        self._paused = None
        self._resumed.set()

    @property
    def paused(self) -> str | None:
        """Why sending is paused (authentication failure), or None."""
        return self._paused

    async def status(self) -> DispatcherStatus:
        """Current counters; cheap enough to call for every sensor update."""
        stats = await self._outbox.stats()
        oldest = None if stats.oldest_queued_at is None else max(0.0, self._clock() - stats.oldest_queued_at)
        return DispatcherStatus(
            queued=stats.queued,
            sending=stats.sending,
            dead=stats.dead,
            sent_total=self._sent,
            throttled_total=self._throttled,
            failed_total=self._failed,
            dead_total=self._dead,
            quota_left=self._send_limiter.remaining(),
            oldest_queued_age=oldest,
            paused=self._paused,
        )

    async def wait_for(self, message_id: str) -> State:
        """Wait until a message is sent or dead; returns that state (bound it with ``asyncio.timeout``)."""
        future: asyncio.Future[State] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(future)
        try:
            entry = await self._outbox.get(message_id)
            if entry is None:
                raise KeyError(message_id)
            if entry.state in (State.SENT, State.DEAD):
                return entry.state
            return await future
        finally:
            waiters = self._waiters.get(message_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(message_id, None)

    def _settled(self, message_id: str, state: State) -> None:
        for future in self._waiters.pop(message_id, []):
            if not future.done():
                future.set_result(state)

    # ---- main loop -----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self._resumed.wait()
            await self._slots.acquire()
            try:
                message = await self._next_message()
            except BaseException:
                self._slots.release()
                raise
            if message is None:
                self._slots.release()
                continue
            token = self._send_limiter.start()
            task = asyncio.create_task(self._deliver(message, token), name=f"acs_email send {message.id}")
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and (error := task.exception()) is not None:
            _LOGGER.error("delivery task failed unexpectedly", exc_info=error)

    async def _next_message(self) -> ClaimedMessage | None:
        """Wait for quota, then for a due message; None when woken for another reason (stop, pause, new work)."""
        await self._send_limiter.wait_ready()
        if self._paused is not None or self._stopping.is_set():
            return None
        claimed = await self._outbox.claim_due(1)
        if claimed:
            return claimed[0]
        due = await self._outbox.next_due_at()
        timeout = None if due is None else max(0.0, due - self._clock()) + 0.01
        await self._outbox.wait_for_work(timeout)
        return None

    # ---- one message ---------------------------------------------------------------------------------------
    async def _deliver(self, message: ClaimedMessage, token: int) -> None:
        posted = False
        try:
            if message.verify:
                self._send_limiter.cancel(token)
                if await self._verified(message):
                    return
                token = await self._send_limiter.acquire()
            posted = True
            outcome = await self._transport.send(message.payload, message.id)
            await self._finish(self._send_limiter, SEND, token)
            if outcome.kind is OutcomeKind.SENT and self._confirm_interval is not None:
                outcome = await self._confirmed(message.id, outcome, self._confirm_interval)
            await self._settle(message, outcome)
        except asyncio.CancelledError:
            await self._outbox.mark_retry(
                message.id, "interrupted by shutdown", retry_after=0, verify=posted, count_attempt=False
            )
            raise

    async def _finish(self, limiter: SlidingWindowLimiter, kind: str, token: int) -> None:
        at = limiter.finish(token)
        await self._outbox.record_requests(kind, [at])

    async def _poll(self, message_id: str) -> Outcome:
        token = await self._poll_limiter.acquire()
        outcome = await self._transport.status(message_id)
        await self._finish(self._poll_limiter, POLL, token)
        return outcome

    async def _verified(self, message: ClaimedMessage) -> bool:
        """After an ambiguous failure or a crash: did ACS already accept it? True when the message is settled."""
        outcome = await self._poll(message.id)
        if outcome.kind is OutcomeKind.NOT_FOUND:
            # ACS has been seen to answer 404 for an operation it had accepted, now and then: a resend
            # is a duplicate if that 404 was wrong, so it must hold twice before the mail goes out again.
            await asyncio.sleep(self._verify_recheck)
            outcome = await self._poll(message.id)
            if outcome.kind is OutcomeKind.NOT_FOUND:
                return False
        await self._settle(message, outcome, throttled=self._poll_limiter)  # a 429 here: the poll quota is out
        return True

    async def _confirmed(self, message_id: str, accepted: Outcome, interval: float) -> Outcome:
        """Follow an accepted operation to Succeeded or Failed, spending only spare poll quota.

        ACS answers 202 before it decides; a mail can still end Failed (e.g. all recipients suppressed).
        When the poll budget runs short, or the status cannot be read, the mail stays simply accepted.
        """
        for _ in range(CONFIRM_POLLS):
            await asyncio.sleep(interval)
            if self._poll_limiter.remaining() <= POLL_RESERVE:
                break
            outcome = await self._poll(message_id)
            if outcome.kind is OutcomeKind.PERMANENT:
                return outcome
            if outcome.kind is not OutcomeKind.SENT:  # throttled, unreachable, or ACS's sporadic 404
                break
            if (outcome.status or "").lower() == "succeeded":
                return outcome
        return accepted

    async def _settle(
        self, message: ClaimedMessage, outcome: Outcome, *, throttled: SlidingWindowLimiter | None = None
    ) -> None:
        """Record the outcome in the outbox and adjust pacing; a 429 pauses ``throttled`` (default: sends)."""
        kind = outcome.kind
        if kind is OutcomeKind.SENT:
            self._outages = 0
            self._sent += 1
            await self._outbox.mark_sent(message.id)
            self._settled(message.id, State.SENT)
            _LOGGER.info("mail %s accepted by ACS (%s)", message.id, outcome.status or "sent")
        elif kind is OutcomeKind.THROTTLED:
            self._throttled += 1
            wait = outcome.retry_after if outcome.retry_after is not None else 60.0
            (throttled or self._send_limiter).block_until(self._clock() + wait)
            await self._outbox.mark_retry(
                message.id, outcome.detail, retry_after=wait, verify=message.verify, count_attempt=False
            )
        elif kind is OutcomeKind.AUTH:
            await self._outbox.release([message.id])
            self._pause(outcome.detail)
        elif kind is OutcomeKind.TRANSIENT:
            self._failed += 1
            self._outages += 1
            pause = max(outcome.retry_after or 0.0, self._outage_backoff.delay(self._outages))
            self._send_limiter.block_until(self._clock() + pause)
            state = await self._outbox.mark_retry(
                message.id,
                outcome.detail,
                retry_after=pause,
                verify=message.verify or outcome.ambiguous,
                count_attempt=outcome.ambiguous or outcome.retry_after is not None,
            )
            if state is State.DEAD:
                self._died(message.id)
            _LOGGER.warning("ACS unavailable (%s); pausing %.0f s", outcome.detail, pause)
        elif kind is OutcomeKind.ID_IN_USE:
            # ACS has an operation with this id (an earlier attempt got through): its status decides.
            if not await self._verified(replace(message, verify=True)):
                await self._settle(message, Outcome(OutcomeKind.PERMANENT, outcome.detail))
        else:
            await self._outbox.mark_dead(message.id, outcome.detail)
            self._died(message.id)
            _LOGGER.error("mail %s refused by ACS: %s", message.id, outcome.detail)

    def _died(self, message_id: str) -> None:
        self._dead += 1
        self._settled(message_id, State.DEAD)

    def _pause(self, reason: str) -> None:
        """Stop sending after an authentication failure; try again after ``auth_retry`` seconds.

        Retrying later helps when the fix happens in Azure, not here: a role assignment that is still
        propagating, a client secret renewed under the same value, a CA file put back in place.
        """
        if self._paused is None:
            _LOGGER.error(
                "ACS authentication failed, sending paused (next try in %.0f s, or when resumed): %s",
                self._auth_retry,
                reason,
            )
        self._paused = reason
        self._resumed.clear()
        if self._auth_retry_handle is not None:
            self._auth_retry_handle.cancel()
        self._auth_retry_handle = asyncio.get_running_loop().call_later(self._auth_retry, self.resume)
        if self._on_auth_failure is not None:
            self._on_auth_failure(reason)
