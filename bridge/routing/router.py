"""The router: one MQTT event in; mails out (the MQTT source commits them), or digest entries, or counted drops.

The source calls the router per event and acknowledges the message once the outcome is durable: mails are
committed by the source to the outbox, anything the router keeps (flood-control memory, held events,
companion snapshots) is on disk in its state store before it returns. A message the broker delivers again
keeps its ``event_id``, so:

* mails get ``event.mail_id(route.mail_index)`` ids (the index is derived from the route's name, so it holds
  across reloads), which the outbox stores once;
* a decision that changed the router's state is recorded per event id with that state: a held event (digest,
  collapse), and a mail of a route with flood state (change-only, dedup, cooldown). A redelivered event gets
  the recorded decision again (its mail rebuilt with the same id; a held event not held a second time, even
  if its digest went out meanwhile) instead of a fresh one that the updated state would turn into a drop.
  Drops change no state, and a mail of a route without state always gets the same id, so deciding those
  again gives the same result;
* a digest's events are marked with the digest mail's id before it is queued, so a flush interrupted by a
  crash sends exactly those events again under the same id.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from html import unescape
from pathlib import Path
from typing import Any

from acs_email_core.engine import Engine
from acs_email_core.errors import AcsEmailError, OutboxFullError, TemplateError, ValidationError
from acs_email_core.message import DEFAULT_LIMITS, Attachment, EmailMessage, MessageLimits
from acs_email_core.waits import wait_set

from ..mqtt.events import IGNORED, Disposition, InboundEvent, Outcome, uuid5
from . import compose
from .compose import ComposeError, Recipients, Rendered
from .digest import Extras, HeldEvent, digest_mail
from .event import OutcomeKind, RouteResult
from .payload import PayloadError
from .routes import Route, RoutingConfig
from .store import Statement, StateStore

_LOGGER = logging.getLogger(__name__)
_NAMESPACE = uuid.UUID("5f0c43a2-8f0e-4d7c-9a57-3c1f2b6e9d10")
_RECENT = 10_000  # decisions of recent events kept in memory for quick redeliveries
DECISION_RETENTION = 7 * 86400.0
DECISIONS_KEPT = 200_000  # > 65,535, the most unacknowledged QoS 1 messages MQTT lets be in flight
PRUNE_EVERY = 600.0
COMPANIONS = "(companions)"

Submit = Callable[[EmailMessage, str], Awaitable[str]]
QuotaProbe = Callable[[], Awaitable[int | None]]  # mails the quota takes now beyond those queued; None: no limit
_BAD_INPUT = (PayloadError, ComposeError, TemplateError, ValidationError)


@dataclass
class _Group:
    """Held events waiting for one mail, oldest first; change ``events`` through the methods (they keep ``_ids``)."""

    route: str
    kind: str
    grp: str
    due_at: float
    events: list[HeldEvent] = field(default_factory=list)
    flush_id: str | None = None  # set once its mail is being queued
    _ids: set[str] = field(init=False, repr=False)  # of ``events``: a digest of thousands checks an id in O(1)

    def __post_init__(self) -> None:
        self._ids = {e.id for e in self.events}

    def add(self, held: HeldEvent) -> None:
        """Append, unless an event with its id is held already (two deliveries of one message)."""
        if held.id not in self._ids:
            self._ids.add(held.id)
            self.events.append(held)

    def keep(self, count: int) -> list[HeldEvent]:
        """Keep the oldest ``count`` events; returns the rest."""
        rest, self.events = self.events[count:], self.events[:count]
        self._ids.difference_update(e.id for e in rest)
        return rest


@dataclass(frozen=True)
class _Decision:
    """What a route decided for an event, kept so that a redelivery gets the same."""

    kind: OutcomeKind
    rule: str
    detail: dict[str, Any]


@dataclass
class _Work:
    """What one event does: mails for the source, state statements, memory updates applied with them."""

    statements: list[Statement] = field(default_factory=list)
    memory: list[Callable[[], None]] = field(default_factory=list)
    mails: list[EmailMessage] = field(default_factory=list)
    decoded: dict[str, compose.Parsed] = field(default_factory=dict)  # the payload per format, shared by routes


@dataclass
class _Step:
    """One event on one route."""

    route: Route
    event: InboundEvent
    now: float
    work: _Work
    context: dict[str, Any] = field(default_factory=dict)
    ids: tuple[str, str] | None = None  # (message_id, held_id) when not derived from the event: a collapsed flush

    @property
    def message_id(self) -> str:
        """The id its mail gets (stable across redeliveries); derived when needed, as most events are not mailed."""
        return self.ids[0] if self.ids else self.event.mail_id(self.route.mail_index)

    @property
    def held_id(self) -> str:
        """The id it gets when held for a digest or a collapsed mail."""
        return self.ids[1] if self.ids else uuid5(_NAMESPACE, f"{self.event.event_id}/{self.route.name}")


class Router:
    """Routes events to mails; see the module docstring for what it promises."""

    def __init__(
        self,
        config: RoutingConfig,
        *,
        submit: Submit,
        sender: str,
        state_path: Path,
        clock: Callable[[], float] = time.time,
        quota_probe: QuotaProbe | None = None,
        limits: MessageLimits = DEFAULT_LIMITS,
        synchronous: str = "FULL",
    ) -> None:
        self.config = config
        self._submit = submit
        self._sender = sender
        self._clock = clock
        self._quota_probe = quota_probe
        self._limits = limits
        self._store = StateStore(state_path, synchronous=synchronous)
        self._locks: dict[str, asyncio.Lock] = {}
        self._flood: dict[tuple[str, str, str], tuple[str | None, float]] = {}
        self._companions: dict[str, bytes] = {}
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._flushing: dict[str, _Group] = {}  # flush id → group whose mail is being queued
        self._retired: dict[str, Route] = {}  # routes a reload removed while they held events: flushed as they were
        self._recent: collections.OrderedDict[str, dict[str, _Decision]] = collections.OrderedDict()
        self._counters: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.quota_short = False
        self._room: int | None = None  # what the last quota probe said the quota takes beyond the queue
        # Mails routed (ever), and when the last two probes began: mails routed since the earlier one count
        # against the room, as the probe may not have seen them in the outbox yet (a burst between two probes).
        self._made = 0
        self._probed_at = (0, 0)
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_prune = 0.0

    # ---- lifecycle -----------------------------------------------------------------------------------------
    async def start(self, *, timers: bool = True) -> None:
        """Load the durable state; with ``timers``, flush digests and collapsed events when they are due."""
        snapshot = await self._store.open()
        self._flood = {(r, k, key): (value, at) for r, k, key, value, at in snapshot.flood}
        self._companions = {topic: bytes(payload) for topic, payload, _at in snapshot.companions}
        for row in snapshot.held:
            if row["flush_id"] is not None:  # a flush the previous run did not finish: it is completed first
                group = self._flushing.setdefault(
                    row["flush_id"], _Group(row["route"], row["kind"], row["grp"], 0.0, flush_id=row["flush_id"])
                )
            else:
                group = self._groups.setdefault(
                    (row["route"], row["kind"], row["grp"]),
                    _Group(row["route"], row["kind"], row["grp"], row["due_at"]),
                )
            group.add(_held_from_row(row))
        if self._groups or self._flushing:
            _LOGGER.info("router: %d held event group(s) restored", len(self._groups) + len(self._flushing))
        stranded = sorted(
            {g.route for g in (*self._groups.values(), *self._flushing.values()) if not self._flushable(g)}
        )
        if stranded:
            _LOGGER.warning(
                "router: collapsed events of route(s) %s wait for that route to return", ", ".join(stranded)
            )
        await self._follow_quiet_hours()  # the config may have changed while the bridge was stopped
        if self._flushing:  # before any new event could join what that flush already holds
            await self.flush_due()
        if timers:
            self._timer = asyncio.create_task(self._run_timers(), name="acs-email-routes-timers")

    async def stop(self) -> None:
        """Stop the timers and close the state store after pending writes (held events stay for the next run)."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self._store.close()

    async def reload(self, config: Any) -> None:
        """Take new routes (a RoutingConfig, or the service's BridgeConfig); held events of removed routes wait."""
        if not isinstance(config, RoutingConfig):
            from .service import routing_of  # noqa: PLC0415 - the service glue imports this module

            config = await asyncio.to_thread(routing_of, config)
        names = {r.name for r in config.routes}
        held = {g.route for g in (*self._groups.values(), *self._flushing.values())}
        for route in self.config.routes:
            if route.name not in names and route.name in held:
                self._retired[route.name] = route
        gone = held - names
        if gone:
            _LOGGER.warning(
                "router: held events of removed route(s) %s are mailed when due, as that route said",
                ", ".join(sorted(gone)),
            )
        self.config = config
        await self._follow_quiet_hours()
        self._wake.set()

    async def _follow_quiet_hours(self) -> None:
        """Events held for quiet hours go out when the configured quiet hours end: now, if they no longer hold."""
        now = self._clock()
        local = self._local(now)
        statements: list[Statement] = []
        moved: list[tuple[_Group, float]] = []
        for group in self._groups.values():
            route = next((r for r in self.config.routes if r.name == group.route), None)
            if group.kind != "quiet" or route is None:
                continue  # a removed route's held events keep the time it gave them
            quiet = route.quiet_hours
            due = quiet.next_end(local).timestamp() if quiet is not None and quiet.active(local) else now
            if due != group.due_at:
                moved.append((group, due))
                statements.append(
                    (
                        "UPDATE held SET due_at = ? "
                        "WHERE route = ? AND kind = 'quiet' AND grp = ? AND flush_id IS NULL",
                        (due, group.route, group.grp),
                    )
                )
        if statements:
            await self._store.write(statements)
            for group, due in moved:
                group.due_at = due
            _LOGGER.info("router: %d quiet-hours digest(s) follow the new quiet hours", len(moved))

    def topics(self) -> list[str]:
        """Filters to subscribe to: every route's and every companion topic."""
        return self.config.subscriptions()

    def counters(self) -> dict[tuple[str, str, str], int]:
        """(route, outcome, rule) → events since start, for metrics and tests."""
        return dict(self._counters)

    def held(self) -> int:
        """Events waiting in digests and collapse groups."""
        return sum(len(g.events) for g in self._groups.values())

    # ---- events --------------------------------------------------------------------------------------------
    async def __call__(self, event: InboundEvent) -> Outcome:
        """Decide, and store what the router keeps; bad input gives a failed outcome, never an exception.

        Safe to call for several events at once (their writes then share commits): routes with flood state
        take them in call order.
        """
        now = self._clock()
        work = _Work()
        results: list[RouteResult] = []
        companion, routes = self.config.matching(event.topic)
        if companion:
            results.append(self._store_companion(event, now, work))
        stateful = [r for r in routes if _stateful(r)]
        decisions: dict[str, _Decision] = {}
        async with contextlib.AsyncExitStack() as stack:
            # Locks first, in route order: events calling concurrently keep their order on every stateful route
            # (a free lock is taken without yielding) and never wait on each other's locks.
            for route in stateful:
                await stack.enter_async_context(self._locks.setdefault(route.name, asyncio.Lock()))
            recorded = await self._recorded(event) if routes and event.duplicate else {}
            for route in routes:
                step = _Step(route, event, now, work)
                result = await self._route(step, recorded.get(route.name))
                results.append(result)
                if result.kind is OutcomeKind.DIGESTED or (_stateful(route) and result.kind is OutcomeKind.MAILED):
                    # change-only's value and previous: a mail rebuilt for a redelivery must read as the first did
                    detail = {k: step.context.get(k) for k in ("value", "previous")} if route.change_only else {}
                    decision = decisions[route.name] = _Decision(result.kind, result.rule or "", detail)
                    work.statements.append(
                        (
                            "INSERT OR REPLACE INTO decided (event_id, route, kind, rule, detail, at) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (event.event_id, route.name, result.kind.value, decision.rule, json.dumps(detail), now),
                        )
                    )
            await self._store.write(work.statements)  # a disk error raises: memory stays as the disk is
            if decisions:
                self._remember(event.event_id, decisions)
            for apply in work.memory:
                apply()
        for result in results:
            self._counters[(result.route, result.kind.value, result.rule or "")] += 1
        return _outcome(results, work.mails)

    def _remember(self, event_id: str, decisions: dict[str, _Decision]) -> None:
        self._recent[event_id] = decisions
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    async def _recorded(self, event: InboundEvent) -> dict[str, _Decision]:
        if event.event_id in self._recent:
            return self._recent[event.event_id]
        rows = await self._store.query(
            "SELECT route, kind, rule, detail FROM decided WHERE event_id = ?", (event.event_id,)
        )
        return {r["route"]: _Decision(OutcomeKind(r["kind"]), r["rule"], json.loads(r["detail"])) for r in rows}

    def _store_companion(self, event: InboundEvent, now: float, work: _Work) -> RouteResult:
        if len(event.payload) > self.config.companion_max_payload:
            reason = (
                f"payload of {len(event.payload):,} bytes is over the "
                f"{self.config.companion_max_payload:,} byte companion limit"
            )
            _LOGGER.debug("companion topic %s: %s", event.topic, reason)  # the source logs it
            return RouteResult(COMPANIONS, OutcomeKind.FAILED, "bad-input", reason=reason)
        self._companions[event.topic] = event.payload
        work.statements.append(
            (
                "INSERT OR REPLACE INTO companions (topic, payload, at) VALUES (?, ?, ?)",
                (event.topic, event.payload, now),
            )
        )
        return RouteResult(COMPANIONS, OutcomeKind.STORED, "companion")

    def _latest(self, topic: str) -> bytes | None:
        return self._companions.get(topic)

    # ---- one route -----------------------------------------------------------------------------------------
    async def _route(self, step: _Step, recorded: _Decision | None) -> RouteResult:
        route, event = step.route, step.event
        try:
            parsed = compose.parse(event, route, step.work.decoded)
            step.context = compose.variables(event, route, parsed, self.config.renderer, self._latest)
            if not all(condition.holds(step.context) for condition in route.when):
                return RouteResult(route.name, OutcomeKind.DROPPED, "when")
            compose.add_vars(route, step.context)
            if recorded is not None:
                return await self._replay(step, recorded)
            return await self._flood_control(step)
        except _BAD_INPUT as err:
            _LOGGER.debug("route %s: event on %s failed: %s", route.name, event.topic, err)  # the source logs it
            return RouteResult(route.name, OutcomeKind.FAILED, "bad-input", reason=str(err))
        except Exception as err:  # a bug met by one route must not take the event from the others
            _LOGGER.exception("route %s: event on %s raised", route.name, event.topic)
            return RouteResult(route.name, OutcomeKind.FAILED, "internal", reason=f"internal error: {err!r}")

    async def _replay(self, step: _Step, decision: _Decision) -> RouteResult:
        """A redelivered event gets the decision recorded the first time (its mail rebuilt with the same id)."""
        if decision.kind is OutcomeKind.MAILED:
            step.context.update(decision.detail)
            return await self._mail(step)
        return RouteResult(step.route.name, decision.kind, decision.rule or None)

    async def _flood_control(self, step: _Step) -> RouteResult:
        route, context, now, name = step.route, step.context, step.now, step.route.name
        if route.change_only:
            change_key = route.change_only.key.render(context)
            value = route.change_only.value.render(context)
            previous = self._flood.get((name, "change", change_key), (route.change_only.initial, 0.0))[0]
            context["previous"], context["value"] = previous, value
            if value == previous:
                return RouteResult(name, OutcomeKind.DROPPED, "change_only")
            self._set(step.work, (name, "change", change_key), value, now)
        if route.dedup:
            dedup_key = route.dedup.key.render(context)
            seen = self._flood.get((name, "dedup", dedup_key))
            if seen is not None and _within(now, seen[1], route.dedup.window):
                return RouteResult(name, OutcomeKind.DROPPED, "dedup")
            self._set(step.work, (name, "dedup", dedup_key), None, now)
        if route.collapse:
            return await self._collapse(step)
        return await self._deliver(step)

    async def _collapse(self, step: _Step) -> RouteResult:
        """Hold the latest event per key until ``until`` holds or ``max_wait`` passed; later ones are dropped."""
        route, context, now = step.route, step.context, step.now
        assert route.collapse is not None
        collapse_key = route.collapse.key.render(context)
        if not collapse_key:
            raise ComposeError("the collapse key rendered empty")
        done = self._flood.get((route.name, "collapsed", collapse_key))
        flushing = any(g.route == route.name and g.grp == collapse_key for g in self._flushing.values())
        if flushing or (done is not None and _within(now, done[1], route.collapse.keep)):
            return RouteResult(route.name, OutcomeKind.DROPPED, "collapse")
        attachments = await compose.attachments(route, context, self._latest, self._limits)
        rendered = compose.render(route, context, attachments)  # fails now, not at flush, if the payload is unusable
        finish = route.collapse.until is not None and route.collapse.until.holds(context)
        group = self._groups.get((route.name, "collapse", collapse_key))
        due = now if finish else (group.due_at if group else now + route.collapse.max_wait)
        held = self._held(step, "collapse", collapse_key, due, rendered, keep_payload=True)
        if group is not None:
            step.work.statements.append(
                ("DELETE FROM held WHERE route = ? AND kind = 'collapse' AND grp = ?", (route.name, collapse_key))
            )
        step.work.statements.append(_insert_held(route.name, held))
        step.work.memory.append(lambda: self._replace_group(route.name, held))
        return RouteResult(route.name, OutcomeKind.DIGESTED, "collapse")

    async def _deliver(self, step: _Step) -> RouteResult:
        """Cooldown, quiet hours, digests, then the mail itself."""
        route, context, now, name = step.route, step.context, step.now, step.route.name
        if route.cooldown:
            cooldown_key = route.cooldown.key.render(context)
            last = self._flood.get((name, "cooldown", cooldown_key))
            if last is not None and _within(now, last[1], route.cooldown.window):
                return RouteResult(name, OutcomeKind.DROPPED, "cooldown")
        hold = self._hold_kind(route, now)
        if hold is None:
            result = await self._mail(step)
            if route.cooldown:
                self._set(step.work, (name, "cooldown", route.cooldown.key.render(context)), None, now)
            return result
        kind, due = hold  # the due time of a new group; an existing one keeps its own
        rendered = compose.render(route, context)
        grp = rendered.recipients.key()
        limit = route.digest.max_events if kind == "digest" and route.digest else None
        held = self._held(step, kind, grp, due, rendered, keep_payload=bool(route.attachments))
        step.work.statements.append(_insert_held(name, held))
        step.work.memory.append(lambda: self._add_to_group(name, held, limit=limit))
        return RouteResult(name, OutcomeKind.DIGESTED, {"quiet": "quiet_hours"}.get(kind, kind))

    async def _mail(self, step: _Step) -> RouteResult:
        attachments = await compose.attachments(step.route, step.context, self._latest, self._limits)
        rendered = compose.render(step.route, step.context, attachments)
        message = compose.build(rendered, sender=self._sender, message_id=step.message_id, limits=self._limits)
        step.work.mails.append(message)
        self._made += 1
        if self._room is not None and self._made - self._probed_at[0] >= self._room:
            self._set_quota_short(True)
        return RouteResult(step.route.name, OutcomeKind.MAILED, message_ids=(message.message_id,))

    def _hold_kind(self, route: Route, now: float) -> tuple[str, float] | None:
        """('quiet'|'digest'|'quota', due time) when the event waits for a digest, else None."""
        if route.quiet_hours:
            local = self._local(now)
            if route.quiet_hours.active(local):
                return "quiet", route.quiet_hours.next_end(local).timestamp()
        if route.digest:
            return "digest", now + route.digest.window
        if route.quota_digest and self.quota_short:
            return "quota", now + self.config.quota_digest_window
        return None

    def _held(
        self, step: _Step, kind: str, grp: str, due: float, rendered: Rendered, *, keep_payload: bool
    ) -> HeldEvent:
        text = rendered.text if rendered.text is not None else _strip_html(rendered.html or "")
        event = step.event
        return HeldEvent(
            id=step.held_id,
            kind=kind,
            grp=grp,
            due_at=due,
            at=event.received_at,
            topic=event.topic,
            payload=event.payload if keep_payload else b"",
            subject=rendered.subject,
            text=text,
            qos=event.qos,
            retained=event.retain,
        )

    def _set(self, work: _Work, key: tuple[str, str, str], value: str | None, now: float) -> None:
        work.statements.append(
            ("INSERT OR REPLACE INTO flood (route, kind, key, value, at) VALUES (?, ?, ?, ?, ?)", (*key, value, now))
        )
        work.memory.append(lambda: self._flood.__setitem__(key, (value, now)))

    def _add_to_group(self, route: str, held: HeldEvent, *, limit: int | None = None) -> None:
        """Add to the open group (or open one, due at ``held.due_at``); one holding ``limit`` events is due now."""
        key = (route, held.kind, held.grp)
        group = self._groups.setdefault(key, _Group(route, held.kind, held.grp, held.due_at))
        group.add(held)
        if limit is not None and len(group.events) >= limit:
            group.due_at = min(group.due_at, self._clock())
        self._wake.set()

    def _replace_group(self, route: str, held: HeldEvent) -> None:
        self._groups[(route, held.kind, held.grp)] = _Group(route, held.kind, held.grp, held.due_at, [held])
        self._wake.set()

    def _local(self, when: float) -> datetime:
        if self.config.timezone is not None:
            return datetime.fromtimestamp(when, self.config.timezone)
        return datetime.fromtimestamp(when).astimezone()

    # ---- timers --------------------------------------------------------------------------------------------
    async def flush_due(self) -> list[str]:
        """Mail every held group that is due (digest window over, quiet hours ended, collapse finished)."""
        now = self._clock()
        sent: list[str] = []
        due = [g for g in self._groups.values() if g.due_at <= now or g.due_at - now > self._longest_wait(g) + 1.0]
        for group in [*self._flushing.values(), *due]:
            if not self._flushable(group):
                continue
            route = self._route_of(group.route)
            async with self._locks.setdefault(group.route, asyncio.Lock()):
                try:
                    sent.extend(await self._flush(route, group, now))
                except (OutboxFullError, OSError, AcsEmailError) as err:
                    _LOGGER.warning("route %s: %s mail not queued yet, retried later: %s", group.route, group.kind, err)
        waiting = {g.route for g in (*self._groups.values(), *self._flushing.values())}
        for name in [n for n in self._retired if n not in waiting]:
            del self._retired[name]
        return sent

    def _longest_wait(self, group: _Group) -> float:
        """How far ahead a group's due time can be; further means the clock was stepped back: it is due now."""
        route = self._route_of(group.route)
        if group.kind == "digest" and route is not None and route.digest:
            return route.digest.window
        if group.kind == "collapse" and route is not None and route.collapse:
            return route.collapse.max_wait
        if group.kind == "quota":
            return self.config.quota_digest_window
        return 86_400.0  # quiet hours end within a day

    def _flushable(self, group: _Group) -> bool:
        """A collapsed event's recipients were its route's: without that route it waits on disk for it to return."""
        return group.kind != "collapse" or self._route_of(group.route) is not None

    def _route_of(self, name: str) -> Route | None:
        """The current route of that name, else the one a reload removed while it held events."""
        return next((r for r in self.config.routes if r.name == name), None) or self._retired.get(name)

    async def _flush(self, route: Route | None, group: _Group, now: float) -> list[str]:
        """Mark the group's events with the mail's id, queue the mail, then forget them.

        The mark makes a flush interrupted by a crash send exactly these events again, under the same id (which
        the outbox ignores if it already has it), while events that arrived since form the next group. A night
        of events too big for one mail goes out oldest first in as many mails as it takes.
        """
        key = (group.route, group.kind, group.grp)
        fresh = group.flush_id is None
        if fresh:
            if self._groups.get(key) is not group:
                return []
            group.flush_id = uuid5(_NAMESPACE, f"{group.route}/{group.kind}/{group.grp}/{group.events[0].id}")
        flush_id = group.flush_id
        assert flush_id is not None
        message: EmailMessage | None = None
        statements: list[Statement] = []
        if group.kind != "collapse":
            message, count = await self._fitting(route, group, flush_id)
            rest = group.keep(count)
            if message is None:  # one event alone is over the mail size limit: counted, not retried forever
                _LOGGER.error(
                    "route %s: a held event on %s is too big for any mail", group.route, group.events[0].topic
                )
                statements.append(("DELETE FROM held WHERE id = ?", (group.events[0].id,)))
                self._counters[(group.route, "failed", group.kind)] += 1
                group.keep(0)
            if not fresh:  # marked by an earlier run: what does not fit is unmarked again
                statements.extend(("UPDATE held SET flush_id = NULL WHERE id = ?", (e.id,)) for e in rest)
            self._requeue(group, rest, fresh=fresh, now=now)
        if fresh:
            if self._groups.get(key) is group:
                del self._groups[key]
            statements.extend(("UPDATE held SET flush_id = ? WHERE id = ?", (flush_id, e.id)) for e in group.events)
        self._flushing[flush_id] = group
        await self._store.write(statements)
        if not group.events:
            del self._flushing[flush_id]
            return []
        delete: Statement = ("DELETE FROM held WHERE flush_id = ?", (flush_id,))
        if group.kind == "collapse":
            assert route is not None  # flush_due leaves a collapse group without its route on disk
            sent = await self._flush_collapse(route, group, now, delete, flush_id)
        else:
            assert message is not None
            await self._submit(message, f"mqtt:{group.route}:{group.kind}")
            await self._store.write([delete])
            self._counters[(group.route, "mailed", group.kind)] += 1
            sent = [flush_id]
        del self._flushing[flush_id]
        return sent

    def _requeue(self, group: _Group, rest: list[HeldEvent], *, fresh: bool, now: float) -> None:
        """Events a flush could not carry wait, oldest first, for the next mail, which is due now."""
        if not rest:
            return
        key = (group.route, group.kind, group.grp)
        waiting = None if fresh else self._groups.get(key)
        events = rest + (waiting.events if waiting is not None else [])
        self._groups[key] = _Group(group.route, group.kind, group.grp, min(group.due_at or now, now), events)
        self._wake.set()

    async def _fitting(self, route: Route | None, group: _Group, flush_id: str) -> tuple[EmailMessage | None, int]:
        """The digest mail of the group's oldest events that fit in one mail, and how many; None: not even one."""
        count = len(group.events)
        while True:
            events = group.events[:count]
            # Rendered when held: a route gone since then (at a restart) needs nothing but its name.
            extras = await self._digest_extras(route, events) if route is not None else Extras()
            local = [self._local(e.at) for e in events]
            rendered = digest_mail(
                group.route, group.kind, Recipients.from_key(group.grp), events, local, extras=extras
            )
            try:
                return compose.build(rendered, sender=self._sender, message_id=flush_id, limits=self._limits), count
            except ValidationError as err:
                if err.field != "size":
                    raise
                if count == 1:
                    return None, 1
                count = (count + 1) // 2

    def _context_of(self, route: Route, held: HeldEvent) -> tuple[InboundEvent, dict[str, Any]]:
        """A held event as it arrived, with its template variables (``vars:`` included)."""
        event = InboundEvent(held.topic, held.payload, held.qos, held.retained, held.at, held.id)
        context = compose.variables(event, route, compose.parse(event, route), self.config.renderer, self._latest)
        compose.add_vars(route, context)
        return event, context

    async def _digest_extras(self, route: Route, events: list[HeldEvent]) -> Extras:
        """The attachments of held events, taken now (a companion's latest value), within the size limit."""
        if not route.attachments:
            return Extras()
        budget = int(self._limits.max_request_bytes * 0.7)  # base64 adds a third, text and headers the rest
        attachments: list[Attachment] = []
        notes: dict[str, list[str]] = {}
        for number, held in enumerate(events, 1):
            event = InboundEvent(held.topic, held.payload, held.qos, held.retained, held.at, held.id)
            lines = notes.setdefault(held.id, [])
            try:
                context = compose.variables(
                    event, route, compose.parse(event, route), self.config.renderer, self._latest
                )
                compose.add_vars(route, context)
                found = await compose.attachments(route, context, self._latest, self._limits)
            except _BAD_INPUT as err:
                lines.append(f"[attachment unavailable: {err}]")
                continue
            for attachment in found:
                name = f"{number:02d}-{attachment.name}"
                if len(attachment.data) > budget:
                    lines.append(f"[{attachment.name} left out: the digest reached the size limit]")
                    continue
                budget -= len(attachment.data)
                attachments.append(Attachment(name, attachment.data, attachment.content_type))
                lines.append(f"[attached: {name}]")
        return Extras(tuple(attachments), notes)

    async def _flush_collapse(
        self, route: Route, group: _Group, now: float, delete: Statement, flush_id: str
    ) -> list[str]:
        """The latest event of the group goes on as if it had just arrived: cooldown, quiet hours, digest, mail."""
        held = group.events[-1]
        work = _Work(statements=[delete])
        self._set(work, (route.name, "collapsed", group.grp), None, now)
        try:
            event, context = self._context_of(route, held)
            step = _Step(route, event, now, work, context, (flush_id, uuid5(_NAMESPACE, f"{flush_id}/held")))
            result = await self._deliver(step)
        except _BAD_INPUT as err:
            _LOGGER.warning("route %s: collapsed event on %s failed: %s", route.name, held.topic, err)
            result = RouteResult(route.name, OutcomeKind.FAILED, "bad-input", reason=str(err))
        for message in work.mails:
            await self._submit(message, f"mqtt:{route.name}")
        await self._store.write(work.statements)
        for apply in work.memory:
            apply()
        self._counters[(route.name, result.kind.value, "collapse")] += 1
        return [m.message_id for m in work.mails]

    async def refresh_quota(self) -> None:
        """Ask the probe whether the quota is short (routes then collect digests instead of mailing)."""
        if self._quota_probe is None:
            return
        start = self._made
        self._room = await self._quota_probe()
        self._probed_at = (self._probed_at[1], start)
        self._set_quota_short(self._room is not None and self._made - self._probed_at[0] >= self._room)

    def _set_quota_short(self, short: bool) -> None:
        if short != self.quota_short:
            _LOGGER.warning("router: ACS quota %s", "short: collecting digests" if short else "recovered")
        self.quota_short = short

    async def prune(self) -> None:
        """Forget flood state whose window is over, and decisions no redelivery can need any more."""
        now = self._clock()
        windows: dict[tuple[str, str], float] = {}
        for route in self.config.routes:
            if route.dedup:
                windows[(route.name, "dedup")] = route.dedup.window
            if route.cooldown:
                windows[(route.name, "cooldown")] = route.cooldown.window
            if route.collapse:
                windows[(route.name, "collapsed")] = route.collapse.keep
        expired = [
            k for k, (_v, at) in self._flood.items() if (k[0], k[1]) in windows and not _within(now, at, windows[k[:2]])
        ]
        statements: list[Statement] = [
            ("DELETE FROM flood WHERE route = ? AND kind = ? AND key = ?", k) for k in expired
        ]
        statements.append(("DELETE FROM decided WHERE at < ?", (now - DECISION_RETENTION,)))
        # Only events in flight at a crash come back; far more than a broker lets be in flight is kept.
        statements.append(
            (
                "DELETE FROM decided WHERE at < (SELECT at FROM decided ORDER BY at DESC LIMIT 1 OFFSET ?)",
                (DECISIONS_KEPT,),
            )
        )
        await self._store.write(statements)
        for k in expired:
            self._flood.pop(k, None)

    async def _run_timers(self) -> None:
        while True:
            try:
                await self.refresh_quota()
                await self.flush_due()
                if self._clock() - self._last_prune >= PRUNE_EVERY:
                    self._last_prune = self._clock()
                    await self.prune()
            except Exception:  # keep the timers alive; the next round tries again
                _LOGGER.exception("router timers")
            due = min((g.due_at for g in self._groups.values() if self._flushable(g)), default=None)
            delay = 1.0 if due is None else max(0.0, min(1.0, due - self._clock()))
            self._wake.clear()
            await wait_set(self._wake, delay)


def _outcome(results: list[RouteResult], mails: list[EmailMessage]) -> Outcome:
    """One disposition for the source: mailed, else failed, digested, dropped; no route at all is ignored."""
    if mails:  # a route that failed meanwhile is still kept as a failed event, with its reason
        failures = [(r.route, r.reason or "failed") for r in results if r.kind is OutcomeKind.FAILED]
        routes = ",".join(r.route for r in results if r.kind is OutcomeKind.MAILED)
        return Outcome.mailed(mails, route=routes, failures=failures)
    for kind in (OutcomeKind.FAILED, OutcomeKind.DIGESTED, OutcomeKind.DROPPED, OutcomeKind.STORED):
        for r in results:
            if r.kind is kind:
                if kind is OutcomeKind.FAILED:  # every failed route named, as a partly mailed event has them
                    failed = [f for f in results if f.kind is OutcomeKind.FAILED]
                    if len(failed) == 1:
                        return Outcome.failed(r.reason or "failed", route=r.route)
                    reasons = "; ".join(f"route {f.route}: {f.reason or 'failed'}" for f in failed)
                    return Outcome.failed(reasons, route=",".join(f.route for f in failed))
                disposition = Disposition.DROPPED if kind is OutcomeKind.DROPPED else Disposition.DIGESTED
                return Outcome(disposition, route=r.route, rule=r.rule)
    return IGNORED


def _within(now: float, at: float, window: float) -> bool:
    """``at`` is less than ``window`` from now, either way: a clock stepped back further leaves no memory in force."""
    return abs(now - at) < window


def _stateful(route: Route) -> bool:
    return bool(route.change_only or route.dedup or route.cooldown or route.collapse)


def _insert_held(route: str, held: HeldEvent) -> Statement:
    return (
        "INSERT OR IGNORE INTO held (id, route, kind, grp, due_at, at, topic, payload, subject, text, qos, retained) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            held.id,
            route,
            held.kind,
            held.grp,
            held.due_at,
            held.at,
            held.topic,
            held.payload,
            held.subject,
            held.text,
            held.qos,
            int(held.retained),
        ),
    )


def _held_from_row(row: Any) -> HeldEvent:
    return HeldEvent(
        id=row["id"],
        kind=row["kind"],
        grp=row["grp"],
        due_at=row["due_at"],
        at=row["at"],
        topic=row["topic"],
        payload=bytes(row["payload"]),
        subject=row["subject"],
        text=row["text"],
        qos=row["qos"],
        retained=bool(row["retained"]),
    )


_TAGS = re.compile(r"<[^>]+>")


def _strip_html(html: str) -> str:
    """The text of an HTML-only mail, for its digest line (entities decoded: the digest escapes it again)."""
    return unescape(_TAGS.sub("", html)).strip()


def quota_probe(engine: Engine) -> QuotaProbe:
    """What the quota lets through now beyond the mails already queued (short at 0); None while sending is paused."""

    async def probe() -> int | None:
        status = await engine.status()
        return None if status.paused is not None else max(1, status.quota_left) - status.queued

    return probe


def engine_router(config: RoutingConfig, engine: Engine, *, clock: Callable[[], float] = time.time) -> Router:
    """A router whose digests go into ``engine``; its state file sits next to the outbox unless configured."""
    return Router(
        config,
        submit=lambda message, source: engine.submit(message, source=source),
        sender=engine.settings.sender,
        state_path=config.state_path or engine.settings.outbox_path.with_suffix(".routes.db"),
        clock=clock,
        quota_probe=quota_probe(engine),
        limits=engine.settings.limits,
        synchronous=engine.settings.synchronous,
    )
