"""The engine: one object the HA integration, the bridge and the CLI start, feed and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from .config import EngineSettings
from .dispatcher import Dispatcher, DispatcherStatus
from .errors import OutboxError
from .message import EmailMessage
from .outbox import Outbox, State
from .transport import AcsTransport

if TYPE_CHECKING:
    import aiohttp

_LOGGER = logging.getLogger(__name__)
TAKEOVER_POLL = 0.5  # seconds between checks whether the process delivering from our outbox is gone


class Engine:
    """Outbox + dispatcher + ACS transport, wired from :class:`EngineSettings`.

    ``submit`` returns once the mail is on disk; delivery happens in the background at the pace the quota
    allows. Callers acknowledge their own input (an MQTT message, an SMTP DATA) only after ``submit``.
    """

    def __init__(
        self,
        settings: EngineSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        on_auth_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = Outbox(
            settings.outbox_path,
            max_messages=settings.max_messages,
            retry=settings.retry,
            retention=settings.retention,
            synchronous="NORMAL" if settings.synchronous == "NORMAL" else "FULL",
            limits=settings.limits,
        )
        self.transport = AcsTransport(settings.credentials, timeout=settings.timeout, session=session)
        self.dispatcher = Dispatcher(
            self.outbox,
            self.transport,
            settings.quota,
            concurrency=settings.concurrency,
            on_auth_failure=on_auth_failure,
            outage_backoff=settings.outage_backoff,
            confirm_interval=settings.confirm_interval,
            verify_recheck=settings.verify_recheck,
            # The transport gives up after two timeouts; ACS may take one more to act on what it received.
            request_horizon=2 * settings.timeout,
            resend_after=3 * settings.timeout if settings.resend_after is None else settings.resend_after,
        )
        self._started = False
        self._delivering = False
        self._takeover: asyncio.Task[None] | None = None

    async def start(self, *, deliver: bool = True) -> None:
        """Open the outbox (recovering after a crash) and, unless ``deliver`` is False, start sending.

        Only one process delivers from an outbox file (it holds the owner lock, so quotas are counted in
        one place). When another one, such as a running bridge, already does, this engine queues and
        takes over delivery as soon as that process is gone.
        """
        await self.outbox.open()
        self._started = True
        if not deliver:
            return
        if await self._try_deliver():
            _LOGGER.info("delivering from %s within %s", self.outbox.path, self.settings.quota.describe())
        else:
            _LOGGER.info("another process delivers from %s; this one takes over when it stops", self.outbox.path)
            self._takeover = asyncio.create_task(self._take_over_later(), name="acs_email takeover")

    async def _try_deliver(self) -> bool:
        if not self._delivering and await self.outbox.take_ownership():
            await self.dispatcher.start()
            self._delivering = True
        return self._delivering

    async def _take_over_later(self) -> None:
        # Another process holds a file lock: nothing in this process can signal its release.
        while True:
            try:
                if await self._try_deliver():
                    return
            except OutboxError as err:  # e.g. the disk is full right now: keep waiting, keep trying
                _LOGGER.warning("cannot take over delivery yet: %s", err)
            await asyncio.sleep(TAKEOVER_POLL)

    async def stop(self, grace: float = 10.0) -> None:
        """Finish in-flight sends (up to ``grace`` seconds), keep the rest queued on disk."""
        if not self._started:
            return
        self._started = False
        if self._takeover is not None:
            self._takeover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._takeover
            self._takeover = None
        try:
            await self.dispatcher.stop(grace)
        finally:  # whatever failed, the HTTP session, the database and the owner lock are released
            self._delivering = False
            try:
                await self.transport.close()
            finally:
                await self.outbox.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def submit(self, message: EmailMessage, *, source: str = "") -> str:
        """Validate and store durably; returns the message id once committed."""
        return await self.outbox.enqueue(message, source=source)

    async def submit_many(self, messages: Sequence[EmailMessage], *, source: str = "") -> list[str]:
        """All or nothing, in one commit."""
        return await self.outbox.enqueue_many(messages, source=source)

    async def wait_for(self, message_id: str) -> State:
        """Wait until the message is sent or dead, by whichever process delivers it."""
        while not self._delivering:
            entry = await self.outbox.get(message_id)
            if entry is None:
                raise KeyError(message_id)
            if entry.state in (State.SENT, State.DEAD):
                return entry.state
            await asyncio.sleep(TAKEOVER_POLL)
        return await self.dispatcher.wait_for(message_id)

    async def status(self) -> DispatcherStatus:
        """Counters for sensors and diagnostics."""
        return await self.dispatcher.status()
