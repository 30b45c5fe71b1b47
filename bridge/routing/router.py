"""The router: one MQTT event in, mails (or digest entries, or counted drops) durably out.

``handle`` returns only once the outbox and the router's state store hold what it decided, so the source
may acknowledge the message then. Crash safety without duplicates rests on three rules:

* before a mail is queued, its message id is written to a journal under the event's hash; when the broker
  redelivers the event (MQTT DUP flag), the mail is rebuilt with the same id, which the outbox ignores if it
  already holds it;
* routes with flood state (change-only, dedup, cooldown, collapse) handle one event at a time, and write that
  state only after the outbox has the mail, so a crash can only make the router decide the same thing again;
* held events (digests, collapsed events) have ids derived from the event, and a digest mail's id from its
  first event, so holding or flushing twice stores or sends once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from acs_email_core.engine import Engine
from acs_email_core.errors import AcsEmailError, OutboxFullError, TemplateError, ValidationError
from acs_email_core.message import DEFAULT_LIMITS, EmailMessage, MessageLimits

from . import compose
from .compose import ComposeError, Parsed, Recipients, Rendered
from .digest import HeldEvent, digest_mail
from .event import Event, Outcome, OutcomeKind, RouteResult
from .payload import PayloadError
from .routes import Route, RoutingConfig
from .store import Statement, StateStore
from .topics import matches

_LOGGER = logging.getLogger(__name__)
_NAMESPACE = uuid.UUID("5f0c43a2-8f0e-4d7c-9a57-3c1f2b6e9d10")
_JOURNAL_RECENT = 10_000  # event hashes kept in memory for redeliveries; older ones are looked up on disk
JOURNAL_RETENTION = 7 * 86400.0
PRUNE_EVERY = 600.0
FAILED_KEPT = 1000
COMPANIONS = "(companions)"
NO_ROUTE = "(none)"

Submit = Callable[[EmailMessage, str], Awaitable[str]]
QuotaProbe = Callable[[], Awaitable[bool]]
_BAD_INPUT = (PayloadError, ComposeError, TemplateError, ValidationError)


@dataclass
class _Group:
    route: str
    kind: str
    grp: str
    due_at: float
    events: list[HeldEvent] = field(default_factory=list)


@dataclass
class _Work:
    """What one event does to the router's state, applied after its mails are in the outbox."""

    statements: list[Statement] = field(default_factory=list)
    memory: list[Callable[[], None]] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # route → held event id, journaled with the event


@dataclass
class _Mail:
    route: Route
    message: EmailMessage


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
    ) -> None:
        self.config = config
        self._submit = submit
        self._sender = sender
        self._clock = clock
        self._quota_probe = quota_probe
        self._limits = limits
        self._store = StateStore(state_path)
        self._locks: dict[str, asyncio.Lock] = {}
        self._flood: dict[tuple[str, str, str], tuple[str | None, float]] = {}
        self._companions: dict[str, bytes] = {}
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._journal: collections.OrderedDict[bytes, dict[str, str]] = collections.OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[None]] = {}
        self._counters: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.quota_short = False
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
            group = self._groups.setdefault(
                (row["route"], row["kind"], row["grp"]), _Group(row["route"], row["kind"], row["grp"], row["due_at"])
            )
            group.events.append(_held_from_row(row))
        if self._groups:
            _LOGGER.info("router: %d held event group(s) restored", len(self._groups))
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

    def reload(self, config: RoutingConfig) -> None:
        """Use new routes from now on; held events of removed routes wait on disk until the route returns."""
        gone = {g.route for g in self._groups.values()} - {r.name for r in config.routes}
        if gone:
            _LOGGER.warning("router: held events of removed route(s) %s stay on disk", ", ".join(sorted(gone)))
        self.config = config
        self._wake.set()

    def subscriptions(self) -> list[str]:
        return self.config.subscriptions()

    def counters(self) -> dict[tuple[str, str, str], int]:
        """(route, outcome kind, rule or reason class) → events, since start; for metrics."""
        return dict(self._counters)

    def held(self) -> int:
        """Events waiting in digests and collapse groups."""
        return sum(len(g.events) for g in self._groups.values())

    # ---- events --------------------------------------------------------------------------------------------
    async def handle(self, event: Event) -> Outcome:
        """Decide and store durably; never raises for bad input (the outcome says failed, with the reason)."""
        key = hashlib.sha256(event.topic.encode() + b"\0" + event.payload).digest()[:16]
        forced: dict[str, str] = {}
        if event.duplicate:
            if key in self._inflight:
                await asyncio.shield(self._inflight[key])
            forced = await self._journal_ids(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        try:
            outcome = await self._handle(event, key, forced)
        finally:
            del self._inflight[key]
            done.set_result(None)
        for result in outcome.results:
            rule = result.rule or ""
            self._counters[(result.route, result.kind.value, rule)] += 1
        return outcome

    async def _handle(self, event: Event, key: bytes, forced: dict[str, str]) -> Outcome:
        now = self._clock()
        work = _Work()
        results: list[RouteResult] = []
        if any(matches(f, event.topic) for f in self.config.companion_filters):
            results.append(self._store_companion(event, now, work))
        routes = [r for r in self.config.routes if r.accepts(event.topic)]
        locks = [self._locks.setdefault(r.name, asyncio.Lock()) for r in routes if _stateful(r)]
        mails: list[_Mail] = []
        async with contextlib.AsyncExitStack() as stack:
            for lock in locks:  # in route order, so two events never wait on each other's locks
                await stack.enter_async_context(lock)
            for route in routes:
                result = await self._route(route, event, key, now, forced, work, mails)
                if result is not None:
                    results.append(result)
            try:
                ids = await self._queue(key, mails)
            except (OutboxFullError, OSError, AcsEmailError) as err:
                return self._transient(event, results, mails, err)
            for mail in mails:
                results.append(RouteResult(mail.route.name, OutcomeKind.MAILED, message_ids=(ids[mail.route.name],)))
            if work.held:
                ids = {**ids, **work.held}
                self._remember(key, ids)
                work.statements.append(_journal(key, ids, self._clock()))
            for apply in work.memory:
                apply()
            try:
                await self._store.write(work.statements)
            except Exception as err:  # disk full, I/O error: the broker must deliver the event again
                return self._transient(event, results, [], err)
        if not results:
            results.append(RouteResult(NO_ROUTE, OutcomeKind.DROPPED, "no-route"))
        return Outcome(tuple(results))

    def _transient(self, event: Event, results: list[RouteResult], mails: list[_Mail], err: Exception) -> Outcome:
        _LOGGER.warning("event on %s not stored, to be delivered again: %s", event.topic, err)
        failed = [RouteResult(m.route.name, OutcomeKind.FAILED, "transient", reason=str(err)) for m in mails]
        return Outcome(
            tuple(results + failed) or (RouteResult(NO_ROUTE, OutcomeKind.FAILED, "transient", reason=str(err)),),
            retry=True,
        )

    async def _queue(self, key: bytes, mails: list[_Mail]) -> dict[str, str]:
        """Journal the ids first, then queue: a redelivered event reuses them and the outbox ignores repeats."""
        if not mails:
            return {}
        ids = {m.route.name: m.message.message_id for m in mails}
        await self._store.write([_journal(key, ids, self._clock())])
        self._remember(key, ids)
        await asyncio.gather(*(self._submit(m.message, f"mqtt:{m.route.name}") for m in mails))
        return ids

    def _remember(self, key: bytes, ids: dict[str, str]) -> None:
        self._journal[key] = ids
        self._journal.move_to_end(key)
        while len(self._journal) > _JOURNAL_RECENT:
            self._journal.popitem(last=False)

    async def _journal_ids(self, key: bytes) -> dict[str, str]:
        if key in self._journal:
            return self._journal[key]
        rows = await self._store.query("SELECT ids FROM journal WHERE key = ?", (key,))
        return dict(json.loads(rows[0]["ids"])) if rows else {}

    def _store_companion(self, event: Event, now: float, work: _Work) -> RouteResult:
        if len(event.payload) > self.config.companion_max_payload:
            reason = f"payload of {len(event.payload):,} bytes is over the {self.config.companion_max_payload:,} byte companion limit"
            self._log_failure(COMPANIONS, event, reason, work)
            return RouteResult(COMPANIONS, OutcomeKind.FAILED, "bad-input", reason=reason)
        self._companions[event.topic] = event.payload
        work.statements.append(
            (
                "INSERT OR REPLACE INTO companions (topic, payload, at) VALUES (?, ?, ?)",
                (event.topic, event.payload, now),
            )
        )
        return RouteResult(COMPANIONS, OutcomeKind.STORED)

    def _latest(self, topic: str) -> bytes | None:
        return self._companions.get(topic)

    def _log_failure(self, route: str, event: Event, reason: str, work: _Work) -> None:
        _LOGGER.warning("route %s: event on %s failed: %s", route, event.topic, reason)
        work.statements.append(
            (
                "INSERT INTO failed (at, route, topic, reason, payload) VALUES (?, ?, ?, ?, ?)",
                (self._clock(), route, event.topic, reason, event.payload[:65536]),
            )
        )

    # ---- one route -----------------------------------------------------------------------------------------
    async def _route(
        self,
        route: Route,
        event: Event,
        key: bytes,
        now: float,
        forced: dict[str, str],
        work: _Work,
        mails: list[_Mail],
    ) -> RouteResult | None:
        """The route's decision; None when it mails (the caller reports it once the outbox has it)."""
        try:
            parsed = compose.parse(event, route)
            context = compose.variables(event, route, parsed, self.config.renderer, self._latest)
            if not all(condition.holds(context) for condition in route.when):
                return RouteResult(route.name, OutcomeKind.DROPPED, "when")
            return await self._flood_control(route, event, key, now, context, parsed, forced, work, mails)
        except _BAD_INPUT as err:
            self._log_failure(route.name, event, str(err), work)
            return RouteResult(route.name, OutcomeKind.FAILED, "bad-input", reason=str(err))

    async def _flood_control(
        self,
        route: Route,
        event: Event,
        key: bytes,
        now: float,
        context: dict[str, Any],
        parsed: Parsed,
        forced: dict[str, str],
        work: _Work,
        mails: list[_Mail],
    ) -> RouteResult | None:
        name = route.name
        if route.change_only:
            change_key = route.change_only.key.render(context)
            value = route.change_only.value.render(context)
            previous = self._flood.get((name, "change", change_key), (route.change_only.initial, 0.0))[0]
            context["previous"], context["value"] = previous, value
            if value == previous:
                return RouteResult(name, OutcomeKind.DROPPED, "change_only")
            self._set(work, name, "change", change_key, value, now)
        if route.dedup:
            dedup_key = route.dedup.key.render(context)
            seen = self._flood.get((name, "dedup", dedup_key))
            if seen is not None and now - seen[1] < route.dedup.window:
                return RouteResult(name, OutcomeKind.DROPPED, "dedup")
            self._set(work, name, "dedup", dedup_key, None, now)
        if route.collapse:
            return await self._collapse(route, event, now, context, forced, work)
        return await self._deliver(route, event, key, now, context, forced, work, mails)

    async def _collapse(
        self, route: Route, event: Event, now: float, context: dict[str, Any], forced: dict[str, str], work: _Work
    ) -> RouteResult:
        """Hold the latest event per key until ``until`` holds or ``max_wait`` passed; later ones are dropped."""
        assert route.collapse is not None
        collapse_key = route.collapse.key.render(context)
        if not collapse_key:
            raise ComposeError("the collapse key rendered empty")
        done = self._flood.get((route.name, "collapsed", collapse_key))
        if done is not None and now - done[1] < route.collapse.keep:
            return RouteResult(route.name, OutcomeKind.DROPPED, "collapse")
        attachments = await compose.attachments(route, context, self._latest, self._limits)
        rendered = compose.render(route, context, attachments)  # fails now, not at flush, if the payload is unusable
        finish = route.collapse.until is not None and route.collapse.until.holds(context)
        group = self._groups.get((route.name, "collapse", collapse_key))
        due = now if finish else (group.due_at if group else now + route.collapse.max_wait)
        held = self._held(route, "collapse", collapse_key, due, event, rendered, forced, work, keep_payload=True)
        if group is not None:
            work.statements.append(
                ("DELETE FROM held WHERE route = ? AND kind = 'collapse' AND grp = ?", (route.name, collapse_key))
            )
        work.statements.extend(_insert_held(route.name, held))
        work.memory.append(lambda: self._replace_group(route.name, "collapse", collapse_key, due, held))
        return RouteResult(route.name, OutcomeKind.DIGESTED, "collapse")

    async def _deliver(
        self,
        route: Route,
        event: Event,
        key: bytes,
        now: float,
        context: dict[str, Any],
        forced: dict[str, str],
        work: _Work,
        mails: list[_Mail],
    ) -> RouteResult | None:
        """Cooldown, quiet hours, digests, then the mail itself."""
        name = route.name
        if route.cooldown:
            cooldown_key = route.cooldown.key.render(context)
            last = self._flood.get((name, "cooldown", cooldown_key))
            if last is not None and now - last[1] < route.cooldown.window:
                return RouteResult(name, OutcomeKind.DROPPED, "cooldown")
        hold = self._hold_kind(route, now)
        attachments = () if hold else await compose.attachments(route, context, self._latest, self._limits)
        rendered = compose.render(route, context, attachments)
        if hold is not None:
            kind, due = hold
            grp = rendered.recipients.key()
            group = self._groups.get((name, kind, grp))
            if group is not None:
                due = group.due_at
            if (
                kind == "digest"
                and route.digest
                and group is not None
                and len(group.events) + 1 >= route.digest.max_events
            ):
                due = now
            held = self._held(route, kind, grp, due, event, rendered, forced, work, keep_payload=False)
            work.statements.extend(_insert_held(name, held))
            work.memory.append(lambda: self._add_to_group(name, kind, grp, due, held))
            return RouteResult(name, OutcomeKind.DIGESTED, {"quiet": "quiet_hours"}.get(kind, kind))
        if route.cooldown:
            self._set(work, name, "cooldown", route.cooldown.key.render(context), None, now)
        message_id = forced.get(name) or str(uuid.uuid4())
        mails.append(
            _Mail(route, compose.build(rendered, sender=self._sender, message_id=message_id, limits=self._limits))
        )
        return None

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
        self,
        route: Route,
        kind: str,
        grp: str,
        due: float,
        event: Event,
        rendered: Rendered,
        forced: dict[str, str],
        work: _Work,
        *,
        keep_payload: bool,
    ) -> HeldEvent:
        # A redelivered event gets the id journaled the first time, so holding it again stores it once.
        held_id = work.held[route.name] = forced.get(route.name) or str(uuid.uuid4())
        text = rendered.text if rendered.text is not None else _strip_html(rendered.html or "")
        return HeldEvent(
            id=held_id,
            kind=kind,
            grp=grp,
            due_at=due,
            at=self._clock(),
            topic=event.topic,
            payload=event.payload if keep_payload else b"",
            subject=rendered.subject,
            text=text,
            qos=event.qos,
            retained=event.retained,
        )

    def _set(self, work: _Work, route: str, kind: str, key: str, value: str | None, now: float) -> None:
        work.statements.append(
            (
                "INSERT OR REPLACE INTO flood (route, kind, key, value, at) VALUES (?, ?, ?, ?, ?)",
                (route, kind, key, value, now),
            )
        )
        work.memory.append(lambda: self._flood.__setitem__((route, kind, key), (value, now)))

    def _add_to_group(self, route: str, kind: str, grp: str, due: float, held: HeldEvent) -> None:
        group = self._groups.setdefault((route, kind, grp), _Group(route, kind, grp, due))
        group.due_at = min(group.due_at, due)
        if all(e.id != held.id for e in group.events):
            group.events.append(held)
        self._wake.set()

    def _replace_group(self, route: str, kind: str, grp: str, due: float, held: HeldEvent) -> None:
        self._groups[(route, kind, grp)] = _Group(route, kind, grp, due, [held])
        self._wake.set()

    def _local(self, when: float) -> datetime:
        return (
            datetime.fromtimestamp(when, self.config.timezone)
            if self.config.timezone
            else datetime.fromtimestamp(when).astimezone()
        )

    # ---- timers --------------------------------------------------------------------------------------------
    async def flush_due(self) -> list[str]:
        """Mail every held group that is due (digest window over, quiet hours ended, collapse finished)."""
        now = self._clock()
        sent: list[str] = []
        for group_key, group in list(self._groups.items()):
            if group.due_at > now or self._groups.get(group_key) is not group:
                continue
            route = next((r for r in self.config.routes if r.name == group.route), None)
            if route is None:
                continue
            async with self._locks.setdefault(route.name, asyncio.Lock()):
                if self._groups.get(group_key) is not group:
                    continue
                try:
                    sent.extend(await self._flush(route, group, now))
                except (OutboxFullError, OSError, AcsEmailError) as err:
                    if isinstance(err, _BAD_INPUT):
                        raise
                    _LOGGER.warning("route %s: %s mail not queued yet, retried later: %s", route.name, group.kind, err)
        return sent

    async def _flush(self, route: Route, group: _Group, now: float) -> list[str]:
        delete = ("DELETE FROM held WHERE route = ? AND kind = ? AND grp = ?", (route.name, group.kind, group.grp))
        if group.kind == "collapse":
            return await self._flush_collapse(route, group, now, delete)
        local = [self._local(e.at) for e in group.events]
        rendered = digest_mail(route.name, group.kind, Recipients.from_key(group.grp), group.events, local)
        message_id = str(uuid.uuid5(_NAMESPACE, f"{route.name}\0{group.kind}\0{group.grp}\0{group.events[0].id}"))
        message = compose.build(rendered, sender=self._sender, message_id=message_id, limits=self._limits)
        await self._submit(message, f"mqtt:{route.name}:{group.kind}")
        await self._store.write([delete])
        del self._groups[(group.route, group.kind, group.grp)]
        self._count(route.name, OutcomeKind.MAILED, group.kind)
        return [message_id]

    async def _flush_collapse(self, route: Route, group: _Group, now: float, delete: Statement) -> list[str]:
        """The latest event of the group goes on as if it had just arrived: cooldown, quiet hours, digest, mail."""
        assert route.collapse is not None
        held = group.events[-1]
        event = Event(held.topic, held.payload, held.qos, held.retained, held.at)
        key = hashlib.sha256(event.topic.encode() + b"\0" + event.payload).digest()[:16]
        work = _Work(statements=[delete])
        self._set(work, route.name, "collapsed", group.grp, None, now)
        mails: list[_Mail] = []
        forced = {route.name: str(uuid.uuid5(_NAMESPACE, f"{route.name}\0collapse\0{group.grp}\0{group.events[0].id}"))}
        try:
            parsed = compose.parse(event, route)
            context = compose.variables(event, route, parsed, self.config.renderer, self._latest)
            result = await self._deliver(route, event, key, now, context, forced, work, mails)
        except _BAD_INPUT as err:
            self._log_failure(route.name, event, str(err), work)
            result = RouteResult(route.name, OutcomeKind.FAILED, "bad-input", reason=str(err))
        for mail in mails:
            await self._submit(mail.message, f"mqtt:{route.name}")
        for apply in work.memory:
            apply()
        await self._store.write(work.statements)
        if self._groups.get((group.route, group.kind, group.grp)) is group:
            del self._groups[(group.route, group.kind, group.grp)]
        if result is not None:
            self._count(route.name, result.kind, result.rule or "")
            return []
        self._count(route.name, OutcomeKind.MAILED, "collapse")
        return [m.message.message_id for m in mails]

    def _count(self, route: str, kind: OutcomeKind, rule: str) -> None:
        self._counters[(route, f"{kind.value}", rule)] += 1

    async def refresh_quota(self) -> None:
        """Ask the probe whether the quota is short (digest instead of mailing while it is)."""
        if self._quota_probe is None:
            return
        short = await self._quota_probe()
        if short != self.quota_short:
            _LOGGER.info(
                "router: quota %s; routes with quota_digest %s",
                "short" if short else "recovered",
                "collect digests" if short else "mail directly again",
            )
        self.quota_short = short

    async def prune(self) -> None:
        """Forget flood state whose window is over, journal entries past retention, old failed events."""
        now = self._clock()
        windows = {}
        for route in self.config.routes:
            if route.dedup:
                windows[(route.name, "dedup")] = route.dedup.window
            if route.cooldown:
                windows[(route.name, "cooldown")] = route.cooldown.window
            if route.collapse:
                windows[(route.name, "collapsed")] = route.collapse.keep
        expired = [
            k for k, (_v, at) in self._flood.items() if (k[0], k[1]) in windows and now - at >= windows[(k[0], k[1])]
        ]
        statements: list[Statement] = [
            ("DELETE FROM flood WHERE route = ? AND kind = ? AND key = ?", k) for k in expired
        ]
        statements.append(("DELETE FROM journal WHERE at < ?", (now - JOURNAL_RETENTION,)))
        statements.append(("DELETE FROM failed WHERE id <= (SELECT MAX(id) FROM failed) - ?", (FAILED_KEPT,)))
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
            due = min((g.due_at for g in self._groups.values()), default=None)
            delay = 1.0 if due is None else max(0.0, min(1.0, due - self._clock()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def failed_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent failed events, kept for inspection (payload capped at 64 KiB)."""
        rows = await self._store.query(
            "SELECT at, route, topic, reason, payload FROM failed ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [dict(row) for row in rows]


def _journal(key: bytes, ids: dict[str, str], now: float) -> Statement:
    return ("INSERT OR REPLACE INTO journal (key, ids, done, at) VALUES (?, ?, 0, ?)", (key, json.dumps(ids), now))


def _stateful(route: Route) -> bool:
    return bool(route.change_only or route.dedup or route.cooldown or route.collapse)


def _insert_held(route: str, held: HeldEvent) -> Iterable[Statement]:
    yield (
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


def _strip_html(html: str) -> str:
    import re  # noqa: PLC0415 - only for routes with an HTML body and no text body

    return re.sub(r"<[^>]+>", "", html).strip()


def quota_probe(engine: Engine) -> QuotaProbe:
    """Short while the mails already queued would use up what the quota allows now."""

    async def probe() -> bool:
        status = await engine.status()
        return status.paused is None and status.queued >= max(1, status.quota_left)

    return probe


def engine_router(config: RoutingConfig, engine: Engine, *, clock: Callable[[], float] = time.time) -> Router:
    """A router that queues into ``engine``; its state file sits next to the outbox unless configured."""
    outbox = engine.settings.outbox_path
    return Router(
        config,
        submit=lambda message, source: engine.submit(message, source=source),
        sender=engine.settings.sender,
        state_path=config.state_path or outbox.with_suffix(".routes.db"),
        clock=clock,
        quota_probe=quota_probe(engine),
        limits=engine.settings.limits,
    )
