"""What the MQTT source hands the router (an :class:`Event`) and what it gets back (an :class:`Outcome`).

The source acknowledges the MQTT message once ``Router.handle`` returns, because by then the outbox (or the
router's durable state) holds whatever the router decided. ``Outcome.retry`` tells it not to acknowledge:
the failure was transient (outbox full, disk error) and the broker should deliver the message again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Event:
    """One MQTT message. ``duplicate`` is the MQTT DUP flag: the broker may have delivered it before."""

    topic: str
    payload: bytes
    qos: int = 1
    retained: bool = False
    received: float = field(default_factory=time.time)
    duplicate: bool = False


class OutcomeKind(StrEnum):
    """What happened to an event on one route (or overall)."""

    MAILED = "mailed"  # in the outbox
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


_PRECEDENCE = (OutcomeKind.FAILED, OutcomeKind.MAILED, OutcomeKind.DIGESTED, OutcomeKind.STORED)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything the routes decided for one event; ``kind`` summarises (failed wins, then mailed...)."""

    results: tuple[RouteResult, ...]
    retry: bool = False

    @property
    def kind(self) -> OutcomeKind:
        kinds = {r.kind for r in self.results}
        return next((k for k in _PRECEDENCE if k in kinds), OutcomeKind.DROPPED)

    @property
    def message_ids(self) -> tuple[str, ...]:
        return tuple(i for r in self.results for i in r.message_ids)

    @property
    def reason(self) -> str | None:
        reasons = [f"{r.route}: {r.reason}" for r in self.results if r.reason]
        return "; ".join(reasons) or None

    @property
    def rules(self) -> tuple[str, ...]:
        """Rules that dropped the event (``no-route`` when no route matched its topic)."""
        return tuple(r.rule for r in self.results if r.kind is OutcomeKind.DROPPED and r.rule)
