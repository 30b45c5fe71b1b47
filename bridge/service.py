"""``acs-email-bridge run``: one process with the engine, the router and every configured source.

A *source* is anything that feeds the outbox (the MQTT client, the SMTP relay) or serves the running bridge
(the HTTP endpoint). Each comes from a factory that reads its own config section and returns None when that
section is absent; the service starts them after the engine, stops them first (so inputs stop before the
engine does), and hands them the new config on SIGHUP. SIGTERM and SIGINT stop gracefully: sources stop
accepting, the engine finishes in-flight sends and keeps the rest queued on disk.

To add a source: a schema in ``SECTIONS`` and a factory in ``SOURCES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from acs_email_core.dispatcher import pause_cause
from acs_email_core.engine import Engine
from acs_email_core.errors import AcsEmailError, ConfigError

from .config import BridgeConfig, SectionSchema, load_config
from .http import HTTP_SCHEMA, create_http
from .metrics import Metrics
from .mqtt import MQTT_SCHEMA, create_mqtt_source
from .routing.service import SECTIONS as ROUTING_SECTIONS
from .routing.service import create_router
from .smtp.config import SMTP_SECTION
from .smtp.source import create_smtp_source
from .sources import BridgeContext, RouterFactory, Source, SourceFactory

_LOGGER = logging.getLogger(__name__)


# Config sections beyond the engine's, and the sources built from them.
SECTIONS: dict[str, SectionSchema] = {
    "mqtt": MQTT_SCHEMA,
    "http": HTTP_SCHEMA,
    "smtp": SMTP_SECTION,
    **ROUTING_SECTIONS,
}
# Listeners first: a port in use fails the start before the MQTT connection takes over the broker session of a
# bridge already running with the same client id. Stopped in reverse: MQTT input ends first, /healthz last.
SOURCES: list[SourceFactory] = [create_http, create_smtp_source, create_mqtt_source]
ROUTER: RouterFactory = create_router


def read_config(path: str | Path, sections: Mapping[str, SectionSchema] | None = None) -> BridgeConfig:
    """Load and validate a bridge config file (blocking)."""
    return load_config(path, SECTIONS if sections is None else sections)


class Service:
    """Engine + router + sources, started and stopped in order."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        sources: Sequence[SourceFactory] | None = None,
        router: RouterFactory | None = None,
    ) -> None:
        self.config = config
        self.metrics = Metrics()
        self.engine = Engine(config.engine, on_auth_failure=self._auth_failed)
        self.metrics.engine = self.engine
        self.router = (router or ROUTER)(config, self.engine, self.metrics)
        self.context = BridgeContext(self.engine, self.metrics, self.router)
        built = [factory(config, self.context) for factory in (SOURCES if sources is None else sources)]
        self.sources: list[Source] = [s for s in built if s is not None]
        self._started: list[Source] = []

    def _auth_failed(self, reason: str) -> None:
        # The dispatcher logs it once, naming the cause (credentials, role, or the server's certificate).
        self.metrics.error(f"{pause_cause(reason)}: {reason}")

    async def start(self) -> None:
        """Engine first (sources submit into it), then the router, then each source."""
        await self.engine.start()
        try:
            await self.router.start()
            for source in self.sources:
                await source.start()
                self._started.append(source)
        except BaseException:
            await self.stop()
            raise
        names = ", ".join(s.name for s in self.sources) or "no sources"
        _LOGGER.info("bridge running (%s); outbox %s", names, self.config.engine.outbox_path)

    async def stop(self) -> None:
        """Sources first (no new input), then the router, then the engine (in-flight sends finish)."""
        for source in reversed(self._started):
            try:
                await source.stop()
            except Exception:
                _LOGGER.exception("stopping %s failed", source.name)
        self._started.clear()
        with contextlib.suppress(Exception):
            await self.router.stop()
        await self.engine.stop()

    async def reload(self) -> bool:
        """Re-read the config file; on an error keep running with the old one. True when applied."""
        try:
            config = await asyncio.to_thread(read_config, self.config.path)
        except AcsEmailError as err:
            _LOGGER.error("reload refused, still running with the previous config:\n%s", err)
            self.metrics.error(f"reload refused: {err}")
            return False
        if config.engine != self.config.engine:
            _LOGGER.warning("acs/quota/outbox/limits changes take effect at the next restart")
        await self.router.reload(config)
        failed = []
        for source in reversed(self._started):  # MQTT first: routes and topics follow the router at once
            try:
                await source.reload(config)
            except Exception as err:  # a port in use, say: the other sources still take the new config
                _LOGGER.error("reload: %s could not apply the new config: %s", source.name, err)
                self.metrics.error(f"reload: {source.name}: {err}")
                failed.append(source.name)
        self.config = config
        if failed:
            _LOGGER.warning("configuration reloaded from %s, except for %s", config.path, ", ".join(failed))
        else:
            _LOGGER.info("configuration reloaded from %s", config.path)
        return not failed


async def run_service(path: str | Path) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit status (1: a source could not start, 2: config)."""
    config = await asyncio.to_thread(read_config, path)
    service = Service(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[bool]] = set()

    def hangup() -> None:
        task = asyncio.create_task(service.reload(), name="acs-email-bridge reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for signum, handler in ((signal.SIGTERM, stop.set), (signal.SIGINT, stop.set), (signal.SIGHUP, hangup)):
        loop.add_signal_handler(signum, handler)
    try:
        try:
            await service.start()
        except OSError as err:  # a port in use…
            _LOGGER.error("cannot start: %s", err)
            return 1
        except ConfigError as err:  # a TLS file missing: starting again will not help until the config changes
            _LOGGER.error("cannot start: %s", err)
            return 2
        await stop.wait()
        _LOGGER.warning("stopping: queued mail stays in the outbox")
    finally:
        for task in list(reloads):
            with contextlib.suppress(BaseException):
                await task
        await service.stop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    return 0
