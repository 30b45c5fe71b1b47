"""Failure injection: faults queued per route, each applied to the next ``times`` requests that reach it.

A fault is taken when a request reaches the point where it acts, not when the request arrives: a
``before`` fault (error, delay, drop) applies to the next request of its route; an ``after`` fault
(delay, drop) to the next request that was processed (for a send: accepted, duplicates included); a
``fail``/``cancel``/``hold`` fault to the next newly accepted mail. So faults of different points stack on one request
(e.g. ``drop(after=True)`` plus ``failed()``: accepted, connection cut, the operation ends Failed),
while faults of the same point are used in the order they were added.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any


class Route(StrEnum):
    """The emulator routes a fault can target."""

    SEND = "send"  # POST /emails:send
    STATUS = "status"  # GET /emails/operations/{id}
    TOKEN = "token"  # noqa: S105 - POST /{tenant}/oauth2/v2.0/token (fake Entra)


class Kind(StrEnum):
    ERROR = "error"  # answer an error status (optionally with Retry-After) instead of processing
    DELAY = "delay"  # sleep ``seconds`` before processing, or after it (stage=after)
    DROP = "drop"  # close the connection without an answer, before or after processing
    FAIL = "fail"  # accept the mail, but the operation ends Failed with ``code``/``message`` (send only)
    CANCEL = "cancel"  # accept the mail, but the operation ends Canceled (send only)
    HOLD = "hold"  # accept the mail; the operation stays ``operation_status`` for ``seconds`` (None: for good)
    STALL = "stall"  # sleep ``seconds`` before processing, then process even if the client has given up


class Stage(StrEnum):
    BEFORE = "before"  # before the request is processed: nothing is accepted
    AFTER = "after"  # after it was processed: for a send, the mail WAS accepted (the ambiguous case)
    OUTCOME = "outcome"  # when a mail is accepted: decides how its operation ends (fail/cancel/hold faults)


_OUTCOME_KINDS = frozenset({Kind.FAIL, Kind.CANCEL, Kind.HOLD})
HELD_STATUSES = frozenset({"NotStarted", "Running"})


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; prefer the named constructors, which only take what their kind uses."""

    kind: Kind
    route: Route = Route.SEND
    times: int = 1
    status: int = 500
    code: str | None = None
    message: str | None = None
    retry_after: int | None = None
    seconds: float | None = 0.0
    stage: Stage = Stage.BEFORE
    operation_status: str | None = None  # hold: NotStarted or Running

    def __post_init__(self) -> None:
        # Coerce plain strings (admin API JSON) and reject combinations that could never apply.
        object.__setattr__(self, "kind", Kind(self.kind))
        object.__setattr__(self, "route", Route(self.route))
        object.__setattr__(self, "stage", Stage(self.stage))
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.kind is Kind.ERROR and not 400 <= self.status <= 599:
            raise ValueError("an error fault needs a 4xx/5xx status")
        if self.kind in _OUTCOME_KINDS:
            if self.route is not Route.SEND:
                raise ValueError(f"only a send creates an operation a {self.kind} fault can act on")
            object.__setattr__(self, "stage", Stage.OUTCOME)
        elif self.stage is Stage.OUTCOME or (self.kind in (Kind.ERROR, Kind.STALL) and self.stage is Stage.AFTER):
            raise ValueError(f"a {self.kind} fault cannot act at stage {self.stage}")
        if (self.kind is Kind.HOLD) != (self.operation_status is not None):
            raise ValueError("operation_status is for hold faults, which need one")
        if self.operation_status is not None and self.operation_status not in HELD_STATUSES:
            raise ValueError(f"a hold keeps an operation {' or '.join(sorted(HELD_STATUSES))}")
        if self.seconds is None and self.kind is not Kind.HOLD:
            raise ValueError("only a hold may last for good (seconds=None)")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError("seconds must not be negative")

    @classmethod
    def error(
        cls,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
        route: Route = Route.SEND,
        times: int = 1,
    ) -> Fault:
        """Answer ``status`` (500, 503, 429, 401, 403...) without processing the request."""
        return cls(Kind.ERROR, route, times, status=status, code=code, message=message, retry_after=retry_after)

    @classmethod
    def delay(cls, seconds: float, *, after: bool = False, route: Route = Route.SEND, times: int = 1) -> Fault:
        """A slow answer. ``after=True``: the mail is accepted first, then the answer is late.

        With ``after=False`` a client that gives up during the delay leaves nothing accepted.
        """
        return cls(Kind.DELAY, route, times, seconds=seconds, stage=Stage.AFTER if after else Stage.BEFORE)

    @classmethod
    def stall(cls, seconds: float, *, route: Route = Route.SEND, times: int = 1) -> Fault:
        """A service busy with the request: it is processed ``seconds`` late, even if the client gave up first.

        The case that makes a resend soon after a timeout a duplicate: ACS still has the original POST.
        """
        return cls(Kind.STALL, route, times, seconds=seconds)

    @classmethod
    def drop(cls, *, after: bool = False, route: Route = Route.SEND, times: int = 1) -> Fault:
        """Close the connection without answering; ``after=True`` accepts the mail first."""
        return cls(Kind.DROP, route, times, stage=Stage.AFTER if after else Stage.BEFORE)

    @classmethod
    def failed(
        cls,
        code: str = "EmailDroppedAllRecipientsSuppressed",
        message: str = (
            "Email was dropped because all recipients were suppressed. You will get a dropped event for "
            "each suppresssed recipient through event grid or Azure monitoring."
        ),
        *,
        times: int = 1,
    ) -> Fault:
        """The send gets its 202, but polling the operation ends ``Failed`` with this error."""
        return cls(Kind.FAIL, Route.SEND, times, code=code, message=message)

    @classmethod
    def canceled(cls, code: str | None = None, message: str | None = None, *, times: int = 1) -> Fault:
        """The send gets its 202, but the operation ends ``Canceled`` (with this error, if given)."""
        return cls(Kind.CANCEL, Route.SEND, times, code=code, message=message)

    @classmethod
    def held(cls, status: str = "Running", seconds: float | None = None, *, times: int = 1) -> Fault:
        """The send gets its 202, but the operation reports ``status`` for ``seconds`` (None: for good)."""
        return cls(Kind.HOLD, Route.SEND, times, seconds=seconds, operation_status=status)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build from admin-API JSON; unknown keys are an error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, StrEnum) else value for key, value in asdict(self).items()}


@dataclass
class _Pending:
    fault: Fault
    remaining: int


class FaultQueue:
    """FIFO per (route, stage); the head fault applies to the next request reaching it until used ``times``."""

    def __init__(self) -> None:
        self._queues: dict[tuple[Route, Stage], deque[_Pending]] = {}

    def add(self, fault: Fault) -> None:
        self._queues.setdefault((fault.route, fault.stage), deque()).append(_Pending(fault, fault.times))

    def take(self, route: Route, stage: Stage) -> Fault | None:
        """The fault for a request of ``route`` now at ``stage`` (consumes one use), or None."""
        queue = self._queues.get((route, stage))
        if not queue:
            return None
        head = queue[0]
        head.remaining -= 1
        if head.remaining == 0:
            queue.popleft()
        return head.fault

    def pending(self) -> list[dict[str, Any]]:
        """What is still queued, with the uses left (for the admin API)."""
        return [
            {**pending.fault.to_dict(), "remaining": pending.remaining}
            for queue in self._queues.values()
            for pending in queue
        ]

    def clear(self) -> None:
        for queue in self._queues.values():
            queue.clear()
