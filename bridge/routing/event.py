"""What each route decided for an event; the router folds these into the MQTT source's ``Outcome``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OutcomeKind(StrEnum):
    """What happened to an event on one route."""

    MAILED = "mailed"  # a mail for the outbox
    DIGESTED = "digested"  # held durably for a later digest (or collapsed) mail
    STORED = "stored"  # kept as the latest value of a companion topic (snapshot, UPS charge...)
    DROPPED = "dropped"  # a rule decided not to mail it; ``rule`` names the rule
    FAILED = "failed"  # bad input or a failing template; ``reason`` says why


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The decision of one route."""

    route: str
    kind: OutcomeKind
    rule: str | None = None
    message_ids: tuple[str, ...] = ()
    reason: str | None = None
