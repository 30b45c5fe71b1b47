"""A loop waiting on an event with a time limit stops when cancelled, even as the event is set (Python 3.11)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from acs_email_core.waits import wait_set


async def _loop_until_cancelled(wait: Callable[[asyncio.Event], Awaitable[object]]) -> asyncio.Task[None]:
    """A timer-like loop, then the stop that raced with a wake-up: the event set and the task cancelled at once."""
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            await wait(event)
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)  # it waits
    event.set()
    task.cancel()
    await asyncio.wait({task}, timeout=2.0)
    return task


async def test_a_stop_racing_a_wake_up_ends_the_loop() -> None:
    task = await _loop_until_cancelled(lambda event: wait_set(event, 60.0))
    assert task.cancelled()


async def test_the_event_or_the_time_limit_ends_the_wait() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    event.set()
    assert await wait_set(event, None) is True
