"""What the MQTT source hands to the router, and what the router answers (the routes engineer implements it).

The source calls the router once per event, in arrival order, and acknowledges the MQTT message only once the
outcome is durable: the mails it returns are committed to the outbox together with those of the other events
of the batch (one commit), a digested event must already be on disk in the router's own store when the
router returns, and a failed one is kept in the failed-events table.

The same broker message can arrive twice (QoS 1 is at least once; a crash between the outbox commit and the
acknowledgement makes the broker send it again): ``event_id`` is then the same, so mails built with
``event.mail_id(i)`` as their message id are stored once, and a router that keeps state per event (digests)
must treat a known ``event_id`` as already handled.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from acs_email_core.message import EmailMessage

_MAIL_IDS = uuid.UUID("1f0b8a52-6d1e-4c57-9a49-2f3b7e0c5d11")


class BadEvent(Exception):
    """An event that cannot produce a mail (bad JSON, a missing field, a failing template): logged, kept, acked."""

    def __init__(self, reason: str, *, route: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.route = route


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One MQTT message as received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: float  # Unix time
    event_id: str  # the same for every delivery of this broker message (see the module docstring)
    duplicate: bool = False  # may have been routed before: a broker redelivery (DUP), or a batch retried
    user_properties: tuple[tuple[str, str], ...] = ()
    response_topic: str | None = None  # MQTT v5 request/response (used by the send topic)
    correlation_data: bytes | None = None

    def text(self) -> str:
        """The payload as UTF-8 text; BadEvent for binary payloads."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadEvent(f"payload is not UTF-8 text (byte {err.start}; {len(self.payload)} bytes)") from None

    def json(self) -> Any:
        """The payload parsed as JSON; BadEvent (with the position) when it is not valid JSON."""
        try:
            return json.loads(self.text())
        except json.JSONDecodeError as err:
            raise BadEvent(f"payload is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None

    def mail_id(self, index: int = 0) -> str:
        """A message id for the ``index``-th mail of this event, stable across redeliveries."""
        return uuid5(_MAIL_IDS, f"{self.event_id}/{index}")


def uuid5(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))`` without the UUID object: ids derived per event are on the hot path."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])  # noqa: S324 - UUIDv5 is SHA-1 by definition
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Disposition(StrEnum):
    """What became of an event; every event gets exactly one, counted in the metrics."""

    MAILED = "mailed"  # Outcome.mails go to the outbox
    DIGESTED = "digested"  # stored durably by the router, mailed later in a digest
    DROPPED = "dropped"  # a flood-control rule (Outcome.rule) decided not to mail it
    IGNORED = "ignored"  # no route matched
    FAILED = "failed"  # bad input (Outcome.reason); kept in the failed-events table


@dataclass(frozen=True, slots=True)
class Outcome:
    """The router's answer for one event."""

    disposition: Disposition
    mails: tuple[EmailMessage, ...] = ()
    route: str | None = None
    rule: str | None = None  # the rule that dropped or digested it
    reason: str = ""  # why it failed
    failures: tuple[tuple[str, str], ...] = ()  # (route, reason) of routes that failed while others handled it

    @classmethod
    def mailed(
        cls, mails: Sequence[EmailMessage], route: str | None = None, failures: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        """Mail these (ids from ``event.mail_id``)."""
        return cls(Disposition.MAILED, tuple(mails), route=route, failures=tuple(failures))

    @classmethod
    def failed(cls, reason: str, route: str | None = None) -> Outcome:
        """Bad input: logged with the topic, counted and kept for inspection."""
        return cls(Disposition.FAILED, route=route, reason=reason)


IGNORED = Outcome(Disposition.IGNORED)

Handler = Callable[[InboundEvent], Awaitable[Outcome]]


class Router(Protocol):
    """Routes MQTT events to mails. The MQTT source subscribes to ``topics()`` and calls the router per event.

    ``reload`` gets the new config on SIGHUP (after it validated); the source re-reads ``topics()`` after it
    and changes its subscriptions. Digest timers and the like run between ``start`` and ``stop``.
    """

    def topics(self) -> Sequence[str]:
        """Topic filters (``+``/``#`` allowed) to subscribe to."""
        ...

    async def __call__(self, event: InboundEvent) -> Outcome:
        """Decide what to do with one event (see the module docstring)."""
        ...

    async def start(self) -> None:
        """Begin timers (digests, quiet hours)."""
        ...

    async def stop(self) -> None:
        """Stop timers; whatever they hold stays durable."""
        ...

    async def reload(self, config: Any) -> None:
        """Take the routes of a new, already validated config."""
        ...


class NoRoutes:
    """The router when no routes are configured: only the built-in send topic works."""

    def topics(self) -> Sequence[str]:
        return ()

    async def __call__(self, event: InboundEvent) -> Outcome:
        return IGNORED

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def reload(self, config: Any) -> None:
        return None
