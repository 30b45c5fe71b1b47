"""ACS Email quota figures: the presets from the service limits page, plus custom numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True)
class Window:
    """At most ``limit`` requests in any sliding interval of ``seconds``."""

    limit: int
    seconds: float


@dataclass(frozen=True)
class Quota:
    """Send and status-poll windows; ACS counts the two separately."""

    send: tuple[Window, ...]
    poll: tuple[Window, ...]

    def scaled(self, factor: float) -> Quota:
        """Same limits over windows ``factor`` times as long (tests and demos compress hours into seconds)."""
        return Quota(
            send=tuple(Window(w.limit, w.seconds * factor) for w in self.send),
            poll=tuple(Window(w.limit, w.seconds * factor) for w in self.poll),
        )

    def describe(self) -> str:
        """Human summary such as ``30/min, 100/h``."""
        return ", ".join(f"{w.limit}/{_span(w.seconds)}" for w in self.send)


def _span(seconds: float) -> str:
    if seconds == MINUTE:
        return "min"
    if seconds == HOUR:
        return "h"
    return f"{seconds:g}s"


def _quota(send_min: int, send_hour: int, poll_min: int, poll_hour: int) -> Quota:
    return Quota(
        send=(Window(send_min, MINUTE), Window(send_hour, HOUR)),
        poll=(Window(poll_min, MINUTE), Window(poll_hour, HOUR)),
    )


PRESETS: dict[str, Quota] = {
    "azure_managed": _quota(5, 10, 10, 20),
    "custom_domain": _quota(30, 100, 60, 200),
}


_CUSTOM_KEYS = ("per_minute", "per_hour", "poll_per_minute", "poll_per_hour")


def _count(value: object) -> int:
    """An integer, or its digits as text (``!env_var`` gives text); not 29.9 read as 29, nor true as 1."""
    if type(value) is int or (isinstance(value, str) and value.strip().isdigit()):
        return int(value)
    raise ValueError(value)


def quota_from_config(value: str | dict[str, Any] | Quota) -> Quota:
    """Accept a preset name or ``{per_minute, per_hour[, poll_per_minute, poll_per_hour]}`` (raised quotas)."""
    if isinstance(value, Quota):
        return value
    if isinstance(value, str):
        try:
            return PRESETS[value]
        except KeyError:
            raise ConfigError(f"unknown quota preset {value!r}; use one of {sorted(PRESETS)}") from None
    usage = "custom quota needs integer per_minute and per_hour (and optionally poll_per_minute, poll_per_hour)"
    if not isinstance(value, dict):
        raise ConfigError(usage)
    unknown = sorted(str(key) for key in value if key not in _CUSTOM_KEYS)
    if unknown:  # a misspelt key would otherwise leave its default in force, unnoticed
        raise ConfigError(f"unknown key {unknown[0]!r}; {usage}")
    try:
        per_minute, per_hour = _count(value["per_minute"]), _count(value["per_hour"])
        poll_minute = _count(value.get("poll_per_minute", 2 * per_minute))
        poll_hour = _count(value.get("poll_per_hour", 2 * per_hour))
    except (KeyError, ValueError):
        raise ConfigError(usage) from None
    if min(per_minute, per_hour, poll_minute, poll_hour) < 1:
        raise ConfigError("quota numbers must be at least 1")
    return _quota(per_minute, per_hour, poll_minute, poll_hour)
