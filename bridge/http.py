"""The ``http`` section: Prometheus ``/metrics`` and ``/healthz`` for the running bridge (aiohttp)."""

from __future__ import annotations

import logging
from typing import Any

import voluptuous as vol
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .config import BridgeConfig
from .sources import BridgeContext

_LOGGER = logging.getLogger(__name__)

HTTP_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default="127.0.0.1"): str,
        vol.Optional("port", default=9180): vol.All(int, vol.Range(min=0, max=65535)),
    }
)


class HttpEndpoint:
    """Serves the bridge's metrics and health; binds once at start (a reload does not move it)."""

    name = "http"

    def __init__(self, settings: dict[str, Any], context: BridgeContext) -> None:
        self._host: str = settings["host"]
        self._port: int = settings["port"]
        self._context = context
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # the bound port (useful with port 0)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        _LOGGER.info("metrics on http://%s:%s/metrics", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def reload(self, config: BridgeConfig) -> None:
        new = config.sections.get("http")
        if new is not None and (new["host"], new["port"]) != (self._host, self._port):
            _LOGGER.warning("http host/port changes take effect at the next restart")

    async def _metrics(self, _request: web.Request) -> web.Response:
        await self._context.metrics.refresh()
        return web.Response(body=self._context.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        status = await self._context.metrics.refresh()
        problems = {name: problem for name, check in self._context.health.items() if (problem := check())}
        if status is not None and status.paused:
            problems["acs"] = status.paused
        body: dict[str, Any] = {
            "status": "ok" if not problems else "unhealthy",
            "problems": problems,
            "last_error": self._context.metrics.last_error or None,
        }
        if status is not None:
            body.update(queued=status.queued, dead=status.dead, sent=status.sent_total, quota_left=status.quota_left)
        return web.json_response(body, status=200 if not problems else 503)


def create_http(config: BridgeConfig, context: BridgeContext) -> HttpEndpoint | None:
    """The HTTP endpoint, when the config has an ``http`` section."""
    settings = config.sections.get("http")
    return None if settings is None else HttpEndpoint(settings, context)
