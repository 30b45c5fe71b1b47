"""Exact sliding windows: never over the limit in any window the service could be counting."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acs_email_core.limiter import SlidingWindowLimiter
from acs_email_core.quota import PRESETS, Window

PER_MINUTE = Window(5, 60.0)
MANAGED = PRESETS["azure_managed"].send  # 5/min, 10/h


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter_at(windows, now: float = 0.0) -> tuple[SlidingWindowLimiter, FakeClock]:
    clock = FakeClock(now)
    return SlidingWindowLimiter(windows, clock=clock), clock


def done(limiter: SlidingWindowLimiter, *times: float) -> None:
    """Requests that started and completed at the given times."""
    for at in times:
        limiter.finish(limiter.start(), at)


# ---- windows with an injected clock ----------------------------------------------------------------------


def test_burst_at_window_edge_then_nothing_until_it_ages_out():
    limiter, _ = limiter_at([PER_MINUTE])
    done(limiter, *[59.9] * 5)
    # A fixed per-minute counter would reset at t=60 and allow 5 more: 10 within 0.1 s.
    for now in (59.9, 60.0, 61.0, 119.8):
        assert limiter.remaining(now) == 0
        assert limiter.delay(now) == pytest.approx(119.9 - now)
    assert limiter.delay(119.9) == 0
    assert limiter.remaining(119.9) == 5


def test_slots_free_one_by_one_as_each_ages_out():
    limiter, _ = limiter_at([PER_MINUTE])
    done(limiter, 0.0, 59.9, 59.9, 59.9, 59.9)
    assert limiter.delay(59.95) == pytest.approx(0.05)
    assert limiter.remaining(60.0) == 1
    assert limiter.delay(60.0) == 0
    done(limiter, 60.0)
    assert limiter.delay(60.0) == pytest.approx(59.9)


def test_delay_names_the_slot_that_frees_the_needed_room():
    limiter, _ = limiter_at([Window(3, 10.0)])
    done(limiter, 1.0, 2.0, 3.0)
    assert limiter.delay(5.0) == pytest.approx(6.0)  # oldest (1.0) ages out at 11.0
    limiter.start()  # one more in flight: now two slots must free
    assert limiter.delay(5.0) == pytest.approx(7.0)


def test_in_flight_requests_count_and_only_their_completion_frees_a_time():
    limiter, _ = limiter_at([PER_MINUTE])
    tokens = [limiter.start() for _ in range(5)]
    assert limiter.remaining(0.0) == 0
    assert limiter.delay(0.0) is None  # nothing will age out until something completes
    limiter.finish(tokens[0], 10.0)
    assert limiter.delay(10.0) == pytest.approx(60.0)
    assert limiter.remaining(70.0) == 1  # the other four are still in flight, however long they take
    limiter.start()
    assert limiter.delay(1000.0) is None


def test_completion_not_start_is_what_ages_out():
    limiter, clock = limiter_at([Window(1, 60.0)])
    token = limiter.start()
    clock.now = 30.0
    assert limiter.finish(token) == 30.0  # defaults to the clock
    assert limiter.delay(60.0) == pytest.approx(30.0)
    assert limiter.remaining(89.999) == 0
    assert limiter.delay(90.0) == 0


def test_finishing_an_unknown_token_is_harmless_bookkeeping():
    limiter, _ = limiter_at([Window(2, 60.0)])
    limiter.finish(limiter.start(), 0.0)
    limiter.finish(999, 0.0)
    assert limiter.remaining(0.0) == 0


def test_minute_and_hour_windows_together():
    limiter, _ = limiter_at(MANAGED)
    done(limiter, *[0.0] * 5)
    assert limiter.delay(0.0) == pytest.approx(60.0)  # the minute window decides
    done(limiter, *[60.0] * 5)
    assert limiter.remaining(120.0) == 0
    assert limiter.delay(120.0) == pytest.approx(3480.0)  # now the hour window decides: frees at 3600
    assert limiter.remaining(3600.0) == 5
    done(limiter, *[3600.0] * 5)
    assert limiter.delay(3600.0) == pytest.approx(60.0)  # minute again
    assert limiter.delay(3660.0) == pytest.approx(0.0)  # both 60.0 (hour) and 3600.0 (minute) slots free now


def test_remaining_is_the_tightest_window():
    limiter, _ = limiter_at(MANAGED)
    assert limiter.remaining(0.0) == 5
    done(limiter, 0.0, 0.0)
    limiter.start()
    assert limiter.remaining(0.0) == 2
    done(limiter, 100.0, 100.0, 100.0, 200.0)
    assert limiter.remaining(300.0) == 3  # minute: 4 left (1 in flight); hour: 3 left (6 done + 1 in flight)


def test_a_slot_held_only_to_look_for_work_counts_as_free():
    """The dispatcher holds a token while it looks for a due mail; the quota left it shows must not drop by one."""
    limiter, _ = limiter_at(MANAGED)
    looking = limiter.start()
    assert limiter.remaining(0.0) == 4
    assert limiter.remaining(0.0, reserved=looking) == 5
    other = limiter.start()
    assert limiter.remaining(0.0, reserved=looking) == 4
    limiter.cancel(looking)
    assert limiter.remaining(0.0, reserved=looking) == 4  # given back: nothing more to add
    limiter.cancel(other)


def test_block_until_is_obeyed_and_never_shortened():
    limiter, _ = limiter_at([PER_MINUTE])
    limiter.block_until(100.0)
    limiter.block_until(80.0)
    assert limiter.delay(50.0) == pytest.approx(50.0)
    assert limiter.remaining(50.0) == 0
    assert limiter.delay(100.0) == 0
    assert limiter.remaining(100.0) == 5


def test_block_until_and_window_take_the_later_time():
    limiter, _ = limiter_at([Window(1, 60.0)])
    done(limiter, 0.0)
    limiter.block_until(30.0)
    assert limiter.delay(10.0) == pytest.approx(50.0)
    limiter.block_until(90.0)
    assert limiter.delay(10.0) == pytest.approx(80.0)


def test_history_survives_a_restart():
    # The dispatcher stores every completion time (Outbox.record_requests) and loads them on start.
    saved = [10.0, 20.0, 3000.0, 3600.0, 3601.0, 3602.0, 3603.0, 3604.0]
    before, clock = limiter_at(MANAGED)
    done(before, *saved)
    clock.now = 3615.0

    after, _ = limiter_at(MANAGED, now=3615.0)
    after.load(saved)
    for now in (3615.0, 3620.0, 3650.0, 3700.0):
        assert after.delay(now) == before.delay(now)
        assert after.remaining(now) == before.remaining(now)
    assert after.delay(3615.0) == pytest.approx(3600.0 + 60.0 - 3615.0)
    assert after.remaining(3700.0) == 4  # the hour window still holds 3000.0 and 3600.0-3604.0


def test_load_merges_and_drops_expired_times():
    limiter, _ = limiter_at([Window(3, 60.0)], now=100.0)
    done(limiter, 90.0)
    limiter.load([10.0, 95.0, 30.0])
    assert limiter.remaining(100.0) == 1  # 90 and 95 count; 10 and 30 are outside the window


def test_try_acquire_counts_only_admitted_requests():
    server, _ = limiter_at([Window(2, 1.0)])
    assert server.try_acquire(0.0)
    assert server.try_acquire(0.5)
    assert not server.try_acquire(0.9)
    assert not server.try_acquire(0.99)  # refused attempts do not occupy a slot...
    assert server.try_acquire(1.0)  # ...so this one fits as soon as 0.0 ages out
    assert not server.try_acquire(1.2)
    assert server.try_acquire(1.5)


def test_try_acquire_respects_retry_after_block():
    server, clock = limiter_at([Window(10, 1.0)])
    server.block_until(5.0)
    clock.now = 4.9
    assert not server.try_acquire()
    clock.now = 5.0
    assert server.try_acquire()


def test_at_least_one_window_is_required():
    with pytest.raises(ValueError, match="window"):
        SlidingWindowLimiter([])


# ---- real waiting (scaled-down quota) --------------------------------------------------------------------


async def test_acquire_waits_for_the_oldest_slot_to_age_out():
    limiter = SlidingWindowLimiter([Window(2, 0.2)], clock=time.monotonic)
    first_done = limiter.finish(await limiter.acquire())
    limiter.finish(await limiter.acquire())
    started = time.monotonic()
    token = await asyncio.wait_for(limiter.acquire(), timeout=2.0)
    granted = time.monotonic()
    assert granted >= first_done + 0.2
    assert granted - started < 0.2 + 0.5
    limiter.finish(token)


async def test_acquire_wakes_when_an_in_flight_request_finishes():
    limiter = SlidingWindowLimiter([Window(1, 0.05)], clock=time.monotonic)
    token = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.15)  # three windows long: it is waiting for the completion, not for a timer
    assert not waiter.done()
    finished_at = limiter.finish(token)
    second = await asyncio.wait_for(waiter, timeout=1.0)
    granted = time.monotonic()
    assert finished_at + 0.05 <= granted < finished_at + 0.5
    assert second != token


async def test_acquire_obeys_a_block_set_while_waiting():
    limiter = SlidingWindowLimiter([Window(1, 0.05)], clock=time.monotonic)
    limiter.finish(await limiter.acquire())
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    until = time.monotonic() + 0.2
    limiter.block_until(until)
    await asyncio.wait_for(waiter, timeout=1.0)
    assert time.monotonic() >= until


async def test_waiters_are_admitted_one_window_apart():
    limiter = SlidingWindowLimiter([Window(1, 0.05)], clock=time.monotonic)

    async def send() -> float:
        token = await limiter.acquire()
        return limiter.finish(token)

    completions = sorted(await asyncio.wait_for(asyncio.gather(*(send() for _ in range(4))), timeout=2.0))
    gaps = [b - a for a, b in itertools.pairwise(completions)]
    assert all(gap >= 0.05 for gap in gaps)
    assert completions[-1] - completions[0] < 1.0


# ---- property: the service never counts more than the limit ---------------------------------------------


def run_client(windows: list[Window], requests: list[tuple[int, int, int]]) -> list[float]:
    """Discrete-event run of a client that starts each request as soon as the limiter allows.

    ``requests`` are (arrival, duration, offset); the service counts each request ``offset`` after its
    start, capped at its completion. Returns the instants the service counted. Integer times keep it exact.
    """
    clock = FakeClock()
    limiter = SlidingWindowLimiter(windows, clock=clock)
    arrivals = deque(sorted(requests))
    queue: deque[tuple[int, int, int]] = deque()
    in_flight: list[tuple[float, int]] = []
    counted: list[float] = []
    for _ in range(100_000):
        now = clock.now
        while in_flight and in_flight[0][0] <= now:
            completion, token = heapq.heappop(in_flight)
            limiter.finish(token, completion)
        while arrivals and arrivals[0][0] <= now:
            queue.append(arrivals.popleft())
        while queue and limiter.delay(now) == 0:
            _, duration, offset = queue.popleft()
            heapq.heappush(in_flight, (now + duration, limiter.start()))
            counted.append(now + min(offset, duration))
        upcoming = [arrivals[0][0]] if arrivals else []
        if in_flight:
            upcoming.append(in_flight[0][0])
        if queue and (wait := limiter.delay(now)) is not None:
            upcoming.append(now + wait)
        if not upcoming:
            break
        clock.now = float(min(upcoming))
    assert not queue and not arrivals and not in_flight, "every request must eventually be sent"
    return counted


def max_in_any_window(instants: list[float], seconds: float) -> int:
    """Most instants the service sees inside one window ``(t - seconds, t]``."""
    return max((sum(1 for y in instants if x - seconds < y <= x) for x in instants), default=0)


_windows = st.lists(
    st.builds(Window, st.integers(1, 4), st.integers(1, 40).map(float)), min_size=1, max_size=2, unique=True
)
_requests = st.lists(st.tuples(st.integers(1, 100), st.integers(0, 15), st.integers(0, 15)), max_size=25)


@settings(max_examples=200, deadline=None)
@given(windows=_windows, requests=_requests)
def test_service_never_counts_more_than_the_limit(windows, requests):
    counted = run_client(windows, requests)
    assert len(counted) == len(requests)
    for window in windows:
        assert max_in_any_window(counted, window.seconds) <= window.limit
    server = SlidingWindowLimiter(windows, clock=FakeClock())
    assert all(server.try_acquire(at) for at in sorted(counted))


def test_simulation_does_throttle():
    """Guards the property above against a vacuous run: a burst must be spread out, not sent at once."""
    counted = run_client([Window(2, 10.0)], [(1, 0, 0)] * 5)
    assert counted == [1.0, 1.0, 11.0, 11.0, 21.0]
