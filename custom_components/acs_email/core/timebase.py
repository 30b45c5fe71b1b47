"""Two clocks: monotonic time for pacing inside a run, wall time for what outlives it.

The wall clock steps (a Raspberry Pi without a real-time clock is corrected by NTP minutes or years after
boot); a limiter on it would let a burst through on a forward step and stop sending on a backward one.
Pacing therefore uses the monotonic clock. A time that must survive a restart is stored as a
:class:`Stamp` (wall time, monotonic time and boot id): within the same boot the monotonic part is exact
across processes (every cron ``send`` is a new one); after a reboot only the wall part is left, and it is
read conservatively (an event never looks older than "just now").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _read_boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:  # not Linux: stored times fall back to the wall clock
        return None


BOOT_ID = _read_boot_id()  # read once at import, never on an event loop


@dataclass(frozen=True)
class Stamp:
    """A point in time that can be compared with "now" in a later process."""

    wall: float
    mono: float | None = None
    boot: str | None = None

    def shifted(self, seconds: float) -> Stamp:
        """The same stamp ``seconds`` later on both clocks."""
        return Stamp(self.wall + seconds, None if self.mono is None else self.mono + seconds, self.boot)


class Timebase:
    """Reads both clocks; injectable so tests can step the wall clock and still pace on real time."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        boot: str | None = BOOT_ID,
    ) -> None:
        self.wall = wall
        self.mono = mono
        self.boot = boot

    def now(self) -> Stamp:
        return Stamp(self.wall(), self.mono(), self.boot)

    def age(self, stamp: Stamp) -> float:
        """Seconds since ``stamp`` (negative: still ahead). Exact in the same boot, else never below 0."""
        if stamp.mono is not None and stamp.boot is not None and stamp.boot == self.boot:
            return self.mono() - stamp.mono
        return max(0.0, self.wall() - stamp.wall)

    def left(self, deadline: Stamp) -> float:
        """Seconds until ``deadline`` (negative: passed). Exact in the same boot, else by the wall clock.

        Unlike :meth:`age`, not clamped: a deadline still ahead on the wall clock after a reboot holds;
        the caller caps it by the length it was given (a clock set back cannot lengthen it).
        """
        if deadline.mono is not None and deadline.boot is not None and deadline.boot == self.boot:
            return deadline.mono - self.mono()
        return deadline.wall - self.wall()

    def to_mono(self, stamp: Stamp) -> float:
        """``stamp`` on this process's monotonic clock."""
        return self.mono() - self.age(stamp)
