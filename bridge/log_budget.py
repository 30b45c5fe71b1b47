"""A budget of log lines per key and minute: a device gone haywire must not fill the disk (or an SD card).

Every event is still counted in the metrics and kept for ``acs-email-bridge failed``; only the log stops
repeating itself. The first lines of a burst are logged in full, then one line says that the rest of the
minute is not, and the next line after it tells how many were left out.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    started: float
    lines: int = 0
    left_out: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether to log this line, and what to add to it."""

    log: bool
    note: str = ""


class LogBudget:
    """``take(key)`` before logging a line about ``key`` (a route, a topic)."""

    def __init__(
        self,
        lines: int = 5,
        window: float = 60.0,
        *,
        max_keys: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lines = lines
        self._window = window
        self._max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, _Window] = OrderedDict()

    def take(self, key: str) -> Verdict:
        now = self._clock()
        state = self._keys.get(key)
        note = ""
        if state is None or now - state.started >= self._window:
            if state is not None and state.left_out:
                note = f" ({state.left_out} more like it not logged)"
            state = self._keys[key] = _Window(now)
            while len(self._keys) > self._max_keys:
                self._keys.popitem(last=False)
        self._keys.move_to_end(key)
        state.lines += 1
        if state.lines <= self._lines:
            return Verdict(True, note)
        if state.lines == self._lines + 1:
            rest = self._window - (now - state.started)
            return Verdict(True, f"{note}; more like it in the next {rest:.0f} s are counted, not logged")
        state.left_out += 1
        return Verdict(False)
