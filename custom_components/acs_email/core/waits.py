"""Waiting for an :class:`asyncio.Event` with a time limit, in a way a stop can always cancel."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_set(event: asyncio.Event, seconds: float | None) -> bool:
    """True once ``event`` is set, False after ``seconds`` (None: no limit).

    Not ``asyncio.wait_for``: on Python 3.11 it returns normally when a cancellation arrives as the event is
    set, so a loop cancelled to stop it (a timer, a state publisher) runs on and its ``stop()`` waits forever.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
            return True
    return False
