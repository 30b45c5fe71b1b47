"""Outcomes of send-topic requests, published to the result topic (or the request's MQTT v5 response topic).

``queued`` (or ``failed``) is published as soon as the request is handled; ``sent``/``dead`` once the engine
settles the mail. Requests waiting for their final state are rows in the journal, so a restart publishes them
too; at most ``WINDOW`` are watched at a time (mail leaves the outbox roughly in order), which keeps a burst of
requests from costing a task each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from acs_email_core.engine import Engine
from acs_email_core.outbox import State

from .events import InboundEvent
from .journal import Journal, PendingResult
from .link import MqttLink
from .send import request_id

WINDOW = 64


class Results:
    """See the module docstring."""

    def __init__(self, link: MqttLink, journal: Journal, engine: Engine, topic: str) -> None:
        self._link = link
        self._journal = journal
        self._engine = engine
        self.topic = topic
        self._cursor = 0  # journal rowid of the newest request watched so far
        self._watching: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    def pending(self, event: InboundEvent, message_id: str | None) -> PendingResult:
        """Where and how to answer this request."""
        return PendingResult(
            message_id or "", event.response_topic or self.topic, request_id(event), event.correlation_data
        )

    def publish(self, result: PendingResult, state: str, reason: str | None = None) -> None:
        body: dict[str, Any] = {"id": result.request_id, "message_id": result.message_id or None, "state": state}
        if reason:
            body["reason"] = reason
        props: dict[str, Any] = {}
        if result.correlation is not None:
            props["CorrelationData"] = result.correlation
        self._link.publish(result.topic, json.dumps(body), qos=1, **props)

    def recorded(self) -> None:
        """New requests are in the journal: watch them when there is room."""
        self._wake.set()

    def start(self) -> None:
        self._pump = asyncio.create_task(self._run(), name="acs-email-mqtt results")
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._pump, *self._watching) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pump = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            room = WINDOW - len(self._watching)
            if room <= 0:
                continue
            for rowid, result in await self._journal.pending_results(after=self._cursor, limit=room):
                self._cursor = max(self._cursor, rowid)
                task = asyncio.create_task(self._final(result), name="acs-email-mqtt result")
                self._watching.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._watching.discard(task)
        self._wake.set()

    async def _final(self, result: PendingResult) -> None:
        try:
            state: State | None = await self._engine.wait_for(result.message_id)
        except KeyError:  # purged meanwhile
            state = None
        reason = None
        if state is State.DEAD:
            entry = await self._engine.outbox.get(result.message_id)
            reason = entry.last_error if entry else None
        self.publish(result, state.value if state else "unknown", reason)
        await self._journal.result_published(result.message_id)
