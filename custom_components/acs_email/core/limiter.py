"""Exact sliding-window rate limiting, shared by the dispatcher (client side) and the emulator (service side).

A request occupies a slot from the moment it starts until ``window`` seconds after it *completes*. The
service counts a request when it receives it, which is always between our start and our completion, so a
client that waits for a free slot can never be counted over the limit, whatever the network latency.
Times are monotonic (see timebase.py): a step of the wall clock neither opens a burst nor stops sending.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Callable, Iterable, Sequence

from .quota import Window
from .waits import wait_set

Clock = Callable[[], float]


class SlidingWindowLimiter:
    """Admits a request only when every window has room; also obeys ``Retry-After`` pauses."""

    def __init__(self, windows: Sequence[Window], *, clock: Clock = time.monotonic) -> None:
        if not windows:
            raise ValueError("at least one window is required")
        self._windows = tuple(windows)
        self._span = max(w.seconds for w in windows)
        self._clock = clock
        self._done: list[float] = []  # completion times, ascending
        self._inflight: set[int] = set()
        self._tokens = itertools.count(1)
        self._blocked_until = 0.0
        self._changed = asyncio.Event()

    # ---- bookkeeping -------------------------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        cut = bisect.bisect_right(self._done, now - self._span)
        if cut:
            del self._done[:cut]

    def _used(self, window: Window, now: float) -> tuple[int, int]:
        """(completed requests inside the window, index of the oldest of them)."""
        first = bisect.bisect_right(self._done, now - window.seconds)
        return len(self._done) - first, first

    def delay(self, now: float | None = None) -> float | None:
        """Seconds until a request may start; 0 means now, None means only an in-flight completion frees room."""
        now = self._clock() if now is None else now
        self._expire(now)
        wait = max(0.0, self._blocked_until - now)
        for window in self._windows:
            done, first = self._used(window, now)
            excess = done + len(self._inflight) - window.limit + 1
            if excess <= 0:
                continue
            if excess > done:
                return None
            frees_at = self._done[first + excess - 1] + window.seconds
            wait = max(wait, frees_at - now)
        return wait

    def remaining(self, now: float | None = None, *, reserved: int | None = None) -> int:
        """Requests that could start right now without waiting (the tightest window decides).

        ``reserved``: a token taken only to look for work, counted as free (it is given back when there is none).
        """
        now = self._clock() if now is None else now
        self._expire(now)
        if self._blocked_until > now:
            return 0
        inflight = len(self._inflight) - (reserved in self._inflight)
        return max(0, min(w.limit - self._used(w, now)[0] - inflight for w in self._windows))

    # ---- request lifecycle -------------------------------------------------------------------------------
    def start(self) -> int:
        """Mark a request as in flight; returns the token to pass to :meth:`finish`."""
        token = next(self._tokens)
        self._inflight.add(token)
        return token

    def finish(self, token: int, at: float | None = None) -> float:
        """The request completed (whatever its outcome); its slot now ages out of the windows."""
        self._inflight.discard(token)
        at = self._clock() if at is None else at
        bisect.insort(self._done, at)
        self._notify()
        return at

    def cancel(self, token: int) -> None:
        """The request was never sent: free its slot without counting it."""
        self._inflight.discard(token)
        self._notify()

    def try_acquire(self, now: float | None = None) -> bool:
        """Service side: count a request received ``now`` if it fits (start and finish at once)."""
        now = self._clock() if now is None else now
        if self.delay(now) != 0:
            return False
        self.finish(self.start(), now)
        return True

    @property
    def blocked_until(self) -> float:
        """Time before which nothing starts (a ``Retry-After`` or an outage pause); 0 when never blocked."""
        return self._blocked_until

    def block_until(self, until: float) -> None:
        """Obey a ``Retry-After``: nothing starts before ``until``."""
        self._blocked_until = max(self._blocked_until, until)
        self._notify()

    def load(self, times: Iterable[float]) -> None:
        """Restore completion times remembered from before a restart (on this limiter's clock; may lie ahead)."""
        self._done = sorted([*self._done, *times])
        self._expire(self._clock())

    # ---- async waiting -----------------------------------------------------------------------------------
    def _notify(self) -> None:
        """Wake every waiter of the current generation; later waiters wait on a fresh event."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_ready(self) -> None:
        """Wait until a request could start now (without taking the slot)."""
        while (wait := self.delay()) != 0:
            changed = self._changed
            await wait_set(changed, wait)

    async def acquire(self) -> int:
        """Wait until a request may start, then mark it in flight and return its token."""
        await self.wait_ready()
        return self.start()
