"""The delivery loop: outbox → rate limiter → transport, with bounded concurrency and graceful shutdown.

Only this loop starts send requests, and it takes the quota slot (one atomic step: wait and take) before it
claims a message, so a mail never sits in ``sending`` while waiting for quota and the limiter is never
overcommitted. Every request is written to the outbox *before* it is made (as if it took as long as it
possibly can) and corrected when it ends, so a process killed mid-request still leaves it counted for the
next one. Pacing runs on the monotonic clock (the outbox keeps due times right across steps of the wall clock).
A connection failure pauses all sending (with growing backoff) instead of burning every queued mail's
attempts; an outbox failure (disk full, database locked) is logged and retried, never the end of delivery.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from .errors import OutboxError
from .limiter import SlidingWindowLimiter
from .outbox import ClaimedMessage, Outbox, State
from .quota import Quota
from .retry import RetryPolicy
from .timebase import Timebase
from .transport import CERTIFICATE_REFUSED, Outcome, OutcomeKind

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")
SEND, POLL = "send", "poll"
# Backoff of the whole dispatcher while ACS cannot be reached (consecutive failures → pause).
OUTAGE_BACKOFF = RetryPolicy(initial_delay=2.0, multiplier=2.0, max_delay=300.0, jitter=0.2)
# Delivery confirmation (optional): at most this many status polls per mail, every ``confirm_interval``
# seconds (ACS itself suggests 3 s), and never the last POLL_RESERVE polls of a window, which are kept
# for the checks that prevent duplicates after an ambiguous failure.
# Before resending after an ambiguous failure, "no such operation" must be answered twice, this far apart,
# and the last time only once the original POST cannot be in progress any more: RESEND_AFTER seconds after
# it started (the engine uses three request timeouts: two for the client's hard limit, one of margin).
VERIFY_RECHECK = 2.0
RESEND_AFTER = 90.0
# The longest a request can take (the transport gives up after two timeouts); an unfinished one counts as this.
REQUEST_HORIZON = 60.0
# Backoff while the outbox itself fails (disk full, database locked by another program).
STORAGE_BACKOFF = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=30.0, jitter=0.2)

# After an authentication failure, sending pauses; it tries again after this many seconds.
AUTH_RETRY = 900.0
CONFIRM_INTERVAL = 3.0
CONFIRM_POLLS = 10
POLL_RESERVE = 2


class Transport(Protocol):
    """What the dispatcher needs from a transport (the ACS one, or a test double of it)."""

    async def send(self, payload: dict[str, Any] | str, operation_id: str) -> Outcome: ...

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
    storage_error: str | None = None  # the outbox cannot be written (delivery retries with backoff)


# Outcomes that prove ACS itself answered (an outage is over). Not AUTH or THROTTLED: those may come from Entra,
# or from a TLS proxy standing in for an unreachable ACS.
_ANSWERS = frozenset({OutcomeKind.SENT, OutcomeKind.PERMANENT, OutcomeKind.ID_IN_USE, OutcomeKind.NOT_FOUND})


def pause_cause(reason: str) -> str:
    """What stopped sending, in words that point at the fix: trust, permission, or the credentials."""
    if reason.startswith(CERTIFICATE_REFUSED):
        return "ACS server certificate refused"
    if "AuthorizationFailed" in reason or reason.startswith("HTTP 403"):
        return "ACS refused the service principal (no role on the ACS resource, or the subscription is blocked)"
    return "ACS authentication failed"


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
        resend_after: float = RESEND_AFTER,
        request_horizon: float = REQUEST_HORIZON,
        storage_backoff: RetryPolicy = STORAGE_BACKOFF,
        timebase: Timebase | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._outbox = outbox
        self._transport = transport
        self._quota = quota
        self._time = timebase or Timebase(wall=clock)
        self._limiters = self._new_limiters()
        self._longest_window = max(w.seconds for w in (*quota.send, *quota.poll))
        self._slots = asyncio.Semaphore(concurrency)
        self._on_auth_failure = on_auth_failure
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._paused: str | None = None
        self._storage_error: str | None = None
        self._looking: int | None = None  # the quota token held while looking for a due mail (not a request)
        self._outages = 0  # consecutive failed requests: ACS (or the network) is away
        self._outage_since = 0.0  # monotonic time of the first of them
        self._outage_backoff = outage_backoff
        self._storage_backoff = storage_backoff
        self._confirm_interval = confirm_interval
        self._auth_retry = auth_retry
        self._verify_recheck = verify_recheck
        self._resend_after = resend_after
        self._horizon = request_horizon
        self._not_found_once: set[str] = set()  # answered "no such operation" while the POST was young
        self._auth_retry_handle: asyncio.TimerHandle | None = None
        self._waiters: dict[str, list[asyncio.Future[State]]] = {}
        self._sent = self._throttled = self._failed = self._dead = 0

    def _new_limiters(self) -> dict[str, SlidingWindowLimiter]:
        mono = self._time.mono
        return {
            SEND: SlidingWindowLimiter(self._quota.send, clock=mono),
            POLL: SlidingWindowLimiter(self._quota.poll, clock=mono),
        }

    @property
    def _send_limiter(self) -> SlidingWindowLimiter:
        return self._limiters[SEND]

    # ---- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Restore quota use and Retry-After blocks from the outbox (they survive restarts), start delivering."""
        self._limiters = self._new_limiters()
        blocks = await self._outbox.blocks()
        for kind, limiter in self._limiters.items():
            limiter.load([self._time.to_mono(stamp) for stamp in await self._outbox.request_history(kind)])
            if kind in blocks:
                until, seconds = blocks[kind]
                left = min(seconds, self._time.left(until))  # a clock stepped back cannot lengthen it
                if left > 0:
                    limiter.block_until(self._time.mono() + left)
        self._stopping.clear()
        self._loop_task = asyncio.create_task(self._run(), name="acs_email dispatcher")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let in-flight sends finish for ``grace`` seconds, then interrupt them safely."""
        self._stopping.set()
        self.resume()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.wait({self._loop_task})
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
        oldest = None if stats.oldest_queued_at is None else max(0.0, self._time.wall() - stats.oldest_queued_at)
        return DispatcherStatus(
            queued=stats.queued,
            sending=stats.sending,
            dead=stats.dead,
            sent_total=self._sent,
            throttled_total=self._throttled,
            failed_total=self._failed,
            dead_total=self._dead,
            quota_left=self._send_limiter.remaining(reserved=self._looking),
            oldest_queued_age=oldest,
            paused=self._paused,
            storage_error=self._storage_error,
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
        self._not_found_once.discard(message_id)
        for future in self._waiters.pop(message_id, []):
            if not future.done():
                future.set_result(state)

    # ---- main loop -----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._step()
            except Exception as err:  # the outbox failed (disk full, locked): keep trying, never stop for good
                failures += 1
                delay = self._storage_backoff.delay(failures)
                self._storage_error = str(err)
                _LOGGER.error("cannot claim mail (%s); trying again in %.1f s", err, delay)
                await asyncio.sleep(delay)
            else:
                failures = 0
                self._storage_error = None

    async def _step(self) -> None:
        """Wait for a free concurrency slot, quota and a due message; start its delivery."""
        await self._resumed.wait()
        await self._slots.acquire()
        try:
            claimed = await self._next_message()
        except BaseException:
            self._slots.release()
            raise
        if claimed is None:
            self._slots.release()
            return
        message, token = claimed
        task = asyncio.create_task(self._deliver(message, token), name=f"acs_email send {message.id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and (error := task.exception()) is not None:
            _LOGGER.error("delivery task failed unexpectedly", exc_info=error)

    async def _next_message(self) -> tuple[ClaimedMessage, int] | None:
        """Take a quota slot, then a due message; None (slot given back) when there is none, or on stop/pause."""
        token = await self._send_limiter.acquire()  # waiting and taking are one step: no resend slips in between
        self._looking = token
        try:
            if self._paused is not None or self._stopping.is_set():
                claimed = []
            else:
                claimed = await self._outbox.claim_due(1)
        except BaseException:
            self._send_limiter.cancel(token)
            raise
        finally:
            self._looking = None
        if claimed:
            return claimed[0], token
        self._send_limiter.cancel(token)
        if self._paused is not None or self._stopping.is_set():
            return None
        due = await self._outbox.next_due_at()
        timeout = None if due is None else max(0.0, due - self._time.wall()) + 0.01
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
                if message.expired is not None:  # ACS does not have it, and it is past the retry policy
                    await self._outbox.mark_dead(message.id, f"{message.expired} (ACS never received it)")
                    self._died(message.id)
                    _LOGGER.error("mail %s given up: %s", message.id, message.expired)
                    return
                token = await self._send_limiter.acquire()
            posted = True
            send = functools.partial(self._transport.send, message.body, message.id)
            outcome = await self._request(SEND, token, send, message.id)
            if outcome.kind is OutcomeKind.SENT and self._confirm_interval is not None:
                outcome = await self._confirmed(message.id, outcome, self._confirm_interval)
            await self._settle(message, outcome)
        except asyncio.CancelledError:
            # The flag stays set until a status check settles it: a check cut short proves nothing.
            await self._outbox.mark_retry(
                message.id,
                "interrupted by shutdown",
                retry_after=0,
                verify=message.verify or posted,
                count_attempt=False,
            )
            raise
        except Exception as err:  # the outbox failed mid-delivery: keep the mail, with its verify flag
            _LOGGER.error("delivery of mail %s interrupted: %s", message.id, err)
            retry = functools.partial(
                self._outbox.mark_retry,
                message.id,
                f"interrupted: {err}",
                retry_after=self._storage_backoff.delay(1),
                verify=message.verify or posted,
                count_attempt=False,
            )
            if await self._persist(retry) is State.DEAD:
                self._died(message.id)

    async def _persist(self, write: Callable[[], Awaitable[_T]]) -> _T:
        """Retry an outbox write until it succeeds (a full disk frees up, a lock is released)."""
        failures = 0
        while True:
            try:
                return await write()
            except OutboxError as err:
                failures += 1
                delay = self._storage_backoff.delay(failures)
                _LOGGER.error("cannot update the outbox (%s); trying again in %.1f s", err, delay)
                await asyncio.sleep(delay)

    async def _request(
        self, kind: str, token: int, call: Callable[[], Awaitable[Outcome]], message_id: str | None = None
    ) -> Outcome:
        """Make one ACS request on the quota slot ``token``, remembered on disk from before it starts."""
        limiter = self._limiters[kind]
        start = self._time.now()
        try:
            handle = await self._outbox.request_started(kind, start, start.shifted(self._horizon), message_id)
        except BaseException:
            limiter.cancel(token)
            raise
        try:
            outcome = await call()
        except Exception as err:  # a transport classifies everything; this is the safety net
            _LOGGER.exception("unexpected error from the transport")
            outcome = Outcome(OutcomeKind.TRANSIENT, f"unexpected error: {type(err).__name__}: {err}", ambiguous=True)
        finally:
            limiter.finish(token)  # cancelled too: it may have reached the service, so it counts
        end = self._time.now()
        try:
            await self._outbox.request_finished(handle, kind, end, end.shifted(-self._longest_window))
        except OutboxError as err:  # harmless: the request stays remembered as ending at its latest
            _LOGGER.warning("cannot record a request's end: %s", err)
        return outcome

    async def _poll(self, message_id: str) -> Outcome:
        token = await self._limiters[POLL].acquire()
        return await self._request(POLL, token, functools.partial(self._transport.status, message_id))

    def _resend_wait(self, message: ClaimedMessage) -> float:
        """Seconds until the last POST of ``message`` cannot be in progress any more."""
        if message.posted is None:
            return 0.0
        return self._resend_after - self._time.age(message.posted)

    async def _verified(self, message: ClaimedMessage) -> bool:
        """After an ambiguous failure or a crash: did ACS already accept it? True when the message is settled."""
        outcome = await self._poll(message.id)
        if outcome.kind is OutcomeKind.NOT_FOUND:
            # "No such operation" proves nothing while ACS may still be processing the original POST, and
            # ACS has been seen to answer 404 for an operation it had accepted, now and then: a resend
            # needs two 404s, apart, the last one once the original POST cannot be in progress any more.
            wait = self._resend_wait(message)
            if wait > 0:
                self._not_found_once.add(message.id)
                await self._outbox.mark_retry(
                    message.id,
                    "ACS does not know the mail yet; asking again once the last attempt cannot be in progress",
                    retry_after=wait,
                    verify=True,
                    count_attempt=False,
                )
                return True
            if message.id in self._not_found_once:
                self._not_found_once.discard(message.id)
                return False
            await asyncio.sleep(self._verify_recheck)
            outcome = await self._poll(message.id)
            if outcome.kind is OutcomeKind.NOT_FOUND:
                return False
        await self._settle(message, outcome, lane=POLL)
        return True

    async def _confirmed(self, message_id: str, accepted: Outcome, interval: float) -> Outcome:
        """Follow an accepted operation to Succeeded or Failed, spending only spare poll quota.

        ACS answers 202 before it decides; a mail can still end Failed (e.g. all recipients suppressed).
        When the poll budget runs short, or the status cannot be read, the mail stays simply accepted.
        """
        for _ in range(CONFIRM_POLLS):
            await asyncio.sleep(interval)
            if self._limiters[POLL].remaining() <= POLL_RESERVE:
                break
            outcome = await self._poll(message_id)
            if outcome.kind is OutcomeKind.PERMANENT:
                return outcome
            if outcome.kind is OutcomeKind.THROTTLED:  # its Retry-After holds for every status check
                await self._block(POLL, outcome.retry_after if outcome.retry_after is not None else 60.0)
                break
            if outcome.kind is not OutcomeKind.SENT:  # unreachable, or ACS's sporadic 404
                break
            if (outcome.status or "").lower() == "succeeded":
                return outcome
        return accepted

    async def _block(self, kind: str, seconds: float) -> None:
        """Nothing of ``kind`` starts for ``seconds``; remembered in the outbox, so a restart obeys it too."""
        limiter = self._limiters[kind]
        now = self._time.now()
        assert now.mono is not None
        limiter.block_until(now.mono + seconds)
        left = limiter.blocked_until - now.mono
        try:
            await self._outbox.save_block(kind, now.shifted(left), left)
        except OutboxError as err:
            _LOGGER.warning("cannot remember a pause of %.0f s: %s", left, err)

    async def _settle(self, message: ClaimedMessage, outcome: Outcome, *, lane: str = SEND) -> None:
        """Record the outcome in the outbox and adjust pacing.

        ``lane`` says which request it answers: a 429 pauses that quota, and a failed status check is not
        a send attempt, so it never brings the mail closer to the dead letters.
        """
        kind = outcome.kind
        if kind in _ANSWERS:
            self._answered()
        if kind is OutcomeKind.SENT:
            await self._outbox.mark_sent(message.id)
            self._sent += 1
            self._settled(message.id, State.SENT)
            _LOGGER.info("mail %s accepted by ACS (%s)", message.id, outcome.status or "sent")
        elif kind is OutcomeKind.THROTTLED:
            self._throttled += 1
            wait = outcome.retry_after if outcome.retry_after is not None else 60.0
            await self._block(lane, wait)
            await self._outbox.mark_retry(
                message.id, outcome.detail, retry_after=wait, verify=message.verify, count_attempt=False
            )
        elif kind is OutcomeKind.AUTH:
            await self._outbox.mark_retry(
                message.id, outcome.detail, retry_after=0, verify=message.verify, count_attempt=False
            )
            self._pause(outcome.detail)
        elif kind is OutcomeKind.TRANSIENT:
            self._failed += 1
            self._outages += 1
            if self._outages == 1:
                self._outage_since = self._time.mono()
            pause = max(outcome.retry_after or 0.0, self._outage_backoff.delay(self._outages))
            await self._block(SEND, pause)
            state = await self._outbox.mark_retry(
                message.id,
                outcome.detail,
                retry_after=pause,
                verify=message.verify or outcome.ambiguous,
                count_attempt=lane == SEND and (outcome.ambiguous or outcome.retry_after is not None),
            )
            if state is State.DEAD:
                self._died(message.id)
            # Once per outage (it may last hours, retried with backoff); the mail waits in the outbox meanwhile.
            log = _LOGGER.info if self._outages == 1 else _LOGGER.debug
            log("ACS unavailable (%s); mail waits in the outbox, next try in %.0f s", outcome.detail, pause)
        elif kind is OutcomeKind.ID_IN_USE:
            # ACS has an operation with this id (an earlier attempt got through): its status decides. If ACS
            # then claims not to know it, a resend would only be refused again: the mail is dead.
            status = await self._poll(message.id)
            if status.kind is OutcomeKind.NOT_FOUND:
                status = Outcome(OutcomeKind.PERMANENT, outcome.detail)
            await self._settle(replace(message, verify=True), status, lane=POLL)
        else:
            await self._outbox.mark_dead(message.id, outcome.detail)
            self._died(message.id)
            _LOGGER.error("mail %s refused by ACS: %s", message.id, outcome.detail)

    def _answered(self) -> None:
        """ACS answered: an outage, if there was one, is over (logged once, as its start was)."""
        if self._outages:
            _LOGGER.info(
                "ACS reachable again after %d failed attempt(s) over %.0f s; sending resumes",
                self._outages,
                self._time.mono() - self._outage_since,
            )
            self._outages = 0

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
                "%s, sending paused (next try in %.0f s, or when resumed): %s",
                pause_cause(reason),
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
