"""The MQTT source: events in, mails durably in the outbox, then (and only then) the PUBACK.

Ingest runs in batches (group commit): whatever arrived while the previous batch was being committed forms
the next one. Per batch: one journal commit (event ids that survive redelivery), the router per event in
arrival order, one outbox commit for all their mails, failed events kept, then the acks in arrival order.
A full outbox holds the batch (nothing acked, the broker's in-flight window fills, it stops sending) and
retries with backoff; bad input is logged, counted, kept and acked, so it never blocks the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from acs_email_core.errors import OutboxFullError, ValidationError
from acs_email_core.outbox import State
from acs_email_core.waits import wait_set

from ..config import BridgeConfig
from ..log_budget import LogBudget
from ..sources import BridgeContext
from .config import MqttSettings, mqtt_settings
from .discovery import StatePublisher
from .events import BadEvent, Disposition, InboundEvent, Outcome
from .journal import FailedEvent, Incoming, Journal, digest
from .link import OVERHEAD, ConnectionState, MqttLink, Received
from .results import Results
from .send import build_mail

_LOGGER = logging.getLogger(__name__)
_SUBSCRIBED = "subscribed"  # journal meta: the filters the broker's session holds, once confirmed
SOURCE = "mqtt"
HOLD_BACKOFF = (0.5, 30.0)
TAKEOVER_HINT = 10.0  # seconds: a connection lost this soon may have been taken over by a client with our id
# Settings used when the connection opens (or by the journal): a reload keeps them until the next restart.
CONNECTION_FIELDS = (
    "host", "port", "protocol", "client_id", "username", "password", "tls", "keepalive", "session_expiry",
    "receive_maximum", "inbox_bytes", "reconnect_min", "reconnect_max", "base_topic", "state_file",
)  # fmt: skip  # seconds: first and longest wait while the outbox refuses a batch


@dataclass(slots=True)
class _Item:
    """One message on its way through a batch."""

    received: Received
    event: InboundEvent
    seq: int | None  # journal row (QoS 1 only)
    outcome: Outcome = field(default_factory=lambda: Outcome(Disposition.IGNORED))


class MqttSource:
    """See the module docstring; created by ``create_mqtt_source`` when the config has an ``mqtt`` section."""

    name = SOURCE

    def __init__(self, settings: MqttSettings, context: BridgeContext, config: BridgeConfig) -> None:
        self.settings = settings
        self._context = context
        self._engine = context.engine
        self._metrics = context.metrics
        self._router = context.router
        self._config = config
        self._work = asyncio.Event()
        self.journal = Journal(settings.state_file, synchronous=config.engine.synchronous)
        self.link = MqttLink(settings, on_messages=self._work.set, on_state=self._state_changed)
        self._state = StatePublisher(settings, self.link, context)
        self._results = Results(self.link, self.journal, self._engine, settings.result_topic)
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # connect handlers
        self._acked: deque[tuple[int, int, float]] = deque()  # (epoch, highest seq, when) awaiting confirmation
        self._confirm_after = 2.0 * settings.keepalive
        self._qos0_topics: set[str] = set()
        self._connected_once = False
        self._connected_at = -TAKEOVER_HINT  # monotonic time of the last CONNACK
        self.settled = asyncio.Event()  # set once a connection's subscriptions are in place (tests, demo)
        self._log_budget = LogBudget()  # failed events: a few lines per route (or topic) and minute
        self.ingested = 0  # events fully handled (acked or not needing it); for benchmarks and tests
        context.health[SOURCE] = self._health

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def _filters(self) -> list[str]:
        filters = list(self._router.topics())
        if self.settings.send_topic:
            filters.append(self.settings.send_topic)
        return list(dict.fromkeys(filters))

    async def start(self) -> None:
        await self.journal.open()
        try:
            # Forgotten until this run's SUBACK: a crash before it must not skip a subscription the broker lacks.
            self.link.session_filters = tuple(json.loads(await self.journal.get_meta(_SUBSCRIBED) or "[]"))
            await self.journal.set_meta(_SUBSCRIBED, "[]")
            await self.link.start(self._filters())  # TLS files unreadable: ConfigError
        except BaseException:
            await self.journal.close()
            raise
        self._consumer = asyncio.create_task(self._consume(), name="acs-email-mqtt ingest")
        self._results.start()
        self._state.start()
        s = self.settings
        _LOGGER.info("MQTT: connecting to %s:%s as %s (MQTT %s)", s.host, s.port, s.client_id, s.protocol)

    async def stop(self) -> None:
        self._stopping = True
        self._stop_requested.set()
        self._work.set()
        if self._consumer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        await self._state.stop()
        confirmed = max((seq for epoch, seq, _at in self._acked if epoch == self.link.epoch), default=None)
        connected = self.link.connected
        await self.link.stop()
        await self._results.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if confirmed is not None and connected:  # a clean DISCONNECT follows the PUBACKs: the broker has them
            await self.journal.confirm(confirmed)
        await self.journal.close()

    async def reload(self, config: BridgeConfig) -> None:
        """Routes, the send and result topics, limits and discovery change now; the connection at a restart."""
        new = mqtt_settings(config)
        if new is not None:
            kept = {name: getattr(self.settings, name) for name in CONNECTION_FIELDS}
            if any(getattr(new, name) != value for name, value in kept.items()):
                changed = ", ".join(n for n, v in kept.items() if getattr(new, n) != v)
                _LOGGER.warning("mqtt: %s change at the next restart; routes and topics change now", changed)
            self.settings = dataclasses.replace(new, **kept)
            self._state.settings = self.settings
            self._results.topic = self.settings.result_topic
        self._config = config
        added = await self.link.set_filters(self._filters())
        await self.journal.set_meta("filters", json.dumps(self._filters()))
        held = (*self.link.session_filters, *added)
        await self._held_filters([f for f in self._filters() if f in held])

    async def _held_filters(self, filters: Sequence[str]) -> None:
        """Record what the broker's session is subscribed to (an MQTT 3.1.1 reconnect subscribes only the rest)."""
        self.link.session_filters = tuple(filters)
        await self.journal.set_meta(_SUBSCRIBED, json.dumps(list(filters)))

    def _health(self) -> str | None:
        if not self.link.connected:
            return f"not connected to the MQTT broker {self.settings.host}:{self.settings.port}"
        return None

    # ---- connection events ---------------------------------------------------------------------------------
    def _state_changed(self, state: ConnectionState) -> None:
        if self._stopping:
            return
        self._metrics.mqtt_connected.set(int(state.connected))
        self.settled.clear()
        if state.connected:
            self._connected_at = time.monotonic()
        if state.connected and not self._stopping:  # a CONNACK read while stopping: the journal may be closed
            task = asyncio.create_task(self._on_connected(state), name="acs-email-mqtt connected")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif state.attempt:
            s = self.settings
            _LOGGER.warning("MQTT: cannot connect to %s:%s (%s); retrying", s.host, s.port, state.reason)
            self._metrics.error(f"MQTT: cannot connect: {state.reason}")
        elif state.reason:
            hint = ""
            lasted = time.monotonic() - self._connected_at
            if lasted < TAKEOVER_HINT:  # a takeover looks like any lost connection, but comes at once
                client_id = self.settings.client_id
                hint = f", {lasted:.0f} s after connecting (is another client using the client id {client_id!r}?)"
            _LOGGER.warning("MQTT: disconnected from %s (%s)%s; reconnecting", self.settings.host, state.reason, hint)
            self._metrics.error(f"MQTT disconnected: {state.reason}")
            # The broker may lose the session meanwhile: a crash before the next SUBACK subscribes everything.
            task = asyncio.create_task(self.journal.set_meta(_SUBSCRIBED, "[]"), name="acs-email-mqtt unsettled")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _on_connected(self, state: ConnectionState) -> None:
        s = self.settings
        known = await self.journal.get_meta("session")
        session = f"{s.host}:{s.port}/{s.client_id}"
        if state.session_present:
            _LOGGER.info("MQTT: connected to %s:%s, session resumed", s.host, s.port)
        elif known == session or self._connected_once:
            _LOGGER.warning(
                "MQTT: the broker %s:%s had lost the session of %s: messages published while the bridge was away "
                "are gone (session expired, broker restarted without persistence, or another client used this id)",
                s.host, s.port, s.client_id,
            )  # fmt: skip
            self._metrics.mqtt_session_lost.inc()
            self._metrics.error("MQTT session lost by the broker")
        else:
            _LOGGER.info("MQTT: connected to %s:%s, new session", s.host, s.port)
        self._connected_once = True
        await self.journal.set_meta("session", session)
        previous = await self.journal.get_meta("filters")
        current = self._filters()
        if previous and state.session_present:  # subscriptions of an earlier config still live in the session
            stale = [f for f in json.loads(previous) if f not in current]
            if stale:
                _LOGGER.info("MQTT: unsubscribing filters no longer configured: %s", ", ".join(stale))
                await self.link.unsubscribe(stale)
        await self.journal.set_meta("filters", json.dumps(current))
        await self.link.subscribed()
        if self.link.subscriptions_accepted(state.epoch):
            await self._held_filters(current)
        self._state.connected()
        self.settled.set()

    # ---- ingest --------------------------------------------------------------------------------------------
    async def _consume(self) -> None:
        inbox = self.link.inbox
        while not self._stopping:
            await self._work.wait()
            self._work.clear()
            while inbox and not self._stopping:
                batch = [inbox.popleft() for _ in range(min(len(inbox), self.settings.batch_size))]
                self.link.taken(sum(len(r.payload) + OVERHEAD for r in batch))
                try:
                    await self._process(batch)
                except Exception:  # a disk error, say: nothing acked, the broker redelivers; keep the source alive
                    _LOGGER.exception("MQTT: a batch of %d events could not be stored; retrying", len(batch))
                    self._metrics.error("MQTT batch could not be stored")
                    for r in batch:
                        r.retried = True  # the router may have seen it: it is told, as for a redelivery
                    inbox.extendleft(reversed(batch))
                    self.link.taken(-sum(len(r.payload) + OVERHEAD for r in batch))
                    await self._pause(HOLD_BACKOFF[0])

    async def _pause(self, seconds: float) -> None:
        """Wait before a retry; a stop ends the wait."""
        await wait_set(self._stop_requested, seconds)

    def _confirmable(self, now: float) -> int | None:
        """The highest journal row whose PUBACK has surely reached the broker (see journal)."""
        upto = None
        epoch = self.link.epoch
        while self._acked and (self._acked[0][0] != epoch or self._acked[0][2] <= now - self._confirm_after):
            acked_epoch, seq, _at = self._acked.popleft()
            if acked_epoch == epoch and self.link.connected:
                upto = seq
        return upto

    async def _process(self, batch: list[Received]) -> None:
        items = await self._identify(batch)
        routed = []
        for item in items:  # send requests and oversized payloads are decided here, without a task each
            outcome = self._decide_here(item.event)
            if outcome is None:
                routed.append(item)
            else:
                item.outcome = outcome
        # The rest all at once: the router keeps call order per stateful route, and its state writes for the
        # batch share commits (digests, quiet hours).
        outcomes = await asyncio.gather(*(self._route(item.event) for item in routed))
        for item, outcome in zip(routed, outcomes, strict=True):
            item.outcome = outcome
        pending = items
        delay = HOLD_BACKOFF[0]
        while pending:
            done, pending = await self._store(pending)
            await self._finish(done)
            if pending:
                await self._pause(delay)
                if self._stopping:
                    return  # not acked: the broker delivers them again after the restart
                delay = min(delay * 2, HOLD_BACKOFF[1])

    async def _identify(self, batch: list[Received]) -> list[_Item]:
        """Event ids: from the journal for QoS 1 (stable across redelivery), fresh for QoS 0.

        The ids stay with the messages: a batch retried after an error keeps them (no second mail).
        """
        new = [r for r in batch if r.event_id is None]
        durable = [r for r in new if r.qos]
        assigned = await self.journal.assign(
            [Incoming(digest(r.topic, r.payload), r.dup, r.received_at, r.epoch) for r in durable],
            self._confirmable(time.time()),
        )
        redelivered = 0
        for r, a in zip(durable, assigned, strict=True):
            r.event_id, r.seq = a.event_id, a.seq
            redelivered += a.redelivered
        for r in new:
            if r.event_id is None:  # QoS 0: never redelivered
                r.event_id = str(uuid.uuid4())
                self._qos0(r.topic)
        items = []
        for r in batch:
            event = InboundEvent(
                r.topic, r.payload, r.qos, r.retain, r.received_at, r.event_id or "", r.dup or r.retried,
                r.user_properties, r.response_topic, r.correlation_data,
            )  # fmt: skip
            items.append(_Item(r, event, r.seq))
        if redelivered:
            _LOGGER.info("MQTT: %d redelivered message(s) recognised: same event ids, no second mail", redelivered)
            self._metrics.mqtt_redelivered.inc(redelivered)
        return items

    def _qos0(self, topic: str) -> None:
        self._metrics.mqtt_qos0.inc()
        if topic not in self._qos0_topics and len(self._qos0_topics) < 1000:
            self._qos0_topics.add(topic)
            _LOGGER.warning(
                "MQTT: %s arrives at QoS 0: the broker keeps nothing for the bridge while it is away; "
                "publish it at QoS 1 (or set queue_qos0_messages true in mosquitto.conf)",
                topic,
            )

    def _decide_here(self, event: InboundEvent) -> Outcome | None:
        """The outcome of a send request or of an oversized payload; None: the router decides."""
        route = "send" if event.topic == self.settings.send_topic else None
        try:
            if len(event.payload) > self.settings.max_payload:
                raise BadEvent(
                    f"payload of {len(event.payload):,} bytes is over max_payload ({self.settings.max_payload:,})"
                )
            return Outcome.mailed([build_mail(event, self._config.engine)], route="send") if route else None
        except Exception as err:  # bad input (or a bug) becomes a failed outcome, never an exception
            return self._failure(err, event, route)

    async def _route(self, event: InboundEvent) -> Outcome:
        """The router's outcome; bad input becomes a failed outcome, never an exception."""
        try:
            return await self._router(event)
        except Exception as err:  # a bug in a route must not stop the others
            return self._failure(err, event, None)

    @staticmethod
    def _failure(err: Exception, event: InboundEvent, route: str | None) -> Outcome:
        if isinstance(err, BadEvent):
            return Outcome.failed(err.reason, route=err.route or route)
        _LOGGER.error("MQTT: routing the event on %s raised", event.topic, exc_info=err)
        return Outcome.failed(f"internal error: {type(err).__name__}: {err}", route=route)

    async def _store(self, items: Sequence[_Item]) -> tuple[list[_Item], list[_Item]]:
        """Commit the mails of ``items`` (one outbox commit); returns (stored, held from the first outbox refusal)."""
        with_mail = [item for item in items if item.outcome.mails]
        if not with_mail:
            return list(items), []
        try:  # the usual case: all of them in one transaction
            await self._engine.submit_many([m for item in with_mail for m in item.outcome.mails], source=SOURCE)
        except (ValidationError, OutboxFullError):  # find out which: one savepoint per event, still one commit
            pass
        else:
            return list(items), []
        results = await asyncio.gather(
            *(self._engine.submit_many(item.outcome.mails, source=SOURCE) for item in with_mail),
            return_exceptions=True,
        )
        errors = {id(item): r for item, r in zip(with_mail, results, strict=True) if isinstance(r, BaseException)}
        for index, item in enumerate(items):
            error = errors.get(id(item))
            if error is None:
                continue
            if isinstance(error, ValidationError):
                item.outcome = Outcome.failed(f"the mail is not valid: {error}", route=item.outcome.route)
                continue
            if isinstance(error, OutboxFullError):
                _LOGGER.warning("MQTT: %s; holding %d event(s), the broker keeps the rest", error, len(items) - index)
            else:
                _LOGGER.error("MQTT: cannot store mail of the event on %s: %s", item.event.topic, error)
            self._metrics.error(str(error))
            return list(items[:index]), list(items[index:])
        return list(items), []

    async def _finish(self, items: list[_Item]) -> None:
        """Keep failures and send results, PUBACK, count and log."""
        if not items:
            return
        failed = [
            (i, self._failed(i)) for i in items if i.outcome.disposition is Disposition.FAILED or i.outcome.failures
        ]
        sends = [i for i in items if i.outcome.route == "send" and i.outcome.mails]
        results = [self._results.pending(i.event, i.outcome.mails[0].message_id) for i in sends]
        await self.journal.record([f for _i, f in failed], results, self.settings.failed_keep)
        self.link.ack(i.received for i in items)
        seqs = [i.seq for i in items if i.seq is not None]
        if seqs:
            self._acked.append((items[0].received.epoch, max(seqs), time.time()))
        self._metrics.ingest_batches.inc()
        self._account(items)
        for item, event in failed:
            self._failed_event(item, event)
        for result in results:
            self._results.publish(result, State.QUEUED.value)
        if results:
            self._results.recorded()
        self.ingested += len(items)

    @staticmethod
    def _failed(item: _Item) -> FailedEvent:
        e, outcome = item.event, item.outcome
        reason, route = outcome.reason, outcome.route
        if outcome.disposition is not Disposition.FAILED:  # mailed by some routes, failed on these
            reason = "; ".join(f"route {name}: {why}" for name, why in outcome.failures)
            route = ",".join(name for name, _why in outcome.failures)
        return FailedEvent(e.event_id, e.topic, reason, route, e.received_at, e.qos, e.retain, e.payload)

    def _account(self, items: list[_Item]) -> None:
        """Count a batch's outcomes (one metric update per kind)."""
        kinds = Counter((i.outcome.disposition.value, i.outcome.route, i.outcome.rule) for i in items)
        for (disposition, route, rule), count in kinds.items():
            self._metrics.event(SOURCE, disposition, route, rule, count)
        mails = sum(len(i.outcome.mails) for i in items)
        if mails:
            self._metrics.mails_queued.labels(SOURCE).inc(mails)

    def _failed_event(self, item: _Item, failed: FailedEvent) -> None:
        """Log (within the budget) and answer a failed event, as kept in the journal."""
        outcome = item.outcome
        verdict = self._log_budget.take(failed.route or failed.topic)
        if verdict.log:
            _LOGGER.warning(
                "MQTT: event on %s failed%s: %s (kept in %s)%s",
                failed.topic,
                f" (route {failed.route})" if failed.route else "",
                failed.reason,
                self.settings.state_file,
                verdict.note,
            )
        self._metrics.error(f"{failed.topic}: {failed.reason}")
        if outcome.disposition is Disposition.FAILED and outcome.route == "send":
            self._results.publish(self._results.pending(item.event, None), Disposition.FAILED.value, outcome.reason)


def create_mqtt_source(config: BridgeConfig, context: BridgeContext) -> MqttSource | None:
    """The MQTT source, when the config has an ``mqtt`` section."""
    settings = mqtt_settings(config)
    return None if settings is None else MqttSource(settings, context, config)
