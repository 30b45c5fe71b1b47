"""The ``http`` section: Prometheus ``/metrics`` and ``/healthz`` for the running bridge.

Served the way prometheus-client serves metrics itself: the standard library's WSGI server on a thread of
its own (a few hundred kB, where an aiohttp server costs the idle bridge some 10 MiB). The answers are
built on the event loop, which owns the counters; the thread only does the socket work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable, Coroutine, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

import voluptuous as vol
from prometheus_client import CONTENT_TYPE_LATEST

from .config import BridgeConfig
from .sources import BridgeContext

_LOGGER = logging.getLogger(__name__)
ANSWER_WITHIN = 10.0  # seconds the loop has to build an answer before the request gets 503

HTTP_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default="127.0.0.1"): str,
        vol.Optional("port", default=9180): vol.All(int, vol.Range(min=0, max=65535)),
    }
)

Answer = tuple[str, str, bytes]  # status line, content type, body


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per request, so one slow scraper does not hold up the next."""

    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (a scrape every 15 s would fill the journal)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpEndpoint:
    """Serves the bridge's metrics and health; binds once at start (a reload does not move it)."""

    name = "http"

    def __init__(self, settings: dict[str, Any], context: BridgeContext) -> None:
        self._host: str = settings["host"]
        self._port: int = settings["port"]
        self._context = context
        self._server: _Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._routes: dict[str, Callable[[], Coroutine[Any, Any, Answer]]] = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
        }
        self.port: int | None = None  # the bound port (useful with port 0)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            server = await asyncio.to_thread(
                make_server,
                self._host,
                self._port,
                self._app,
                server_class=_Server6 if ":" in self._host else _Server,
                handler_class=_QuietHandler,
            )
        except OSError as err:  # the bare error does not say which port
            raise OSError(f"http: cannot listen on {self._host}:{self._port}: {err.strerror}") from None
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, name="acs-email-bridge http", daemon=True).start()
        _LOGGER.info("metrics on http://%s:%s/metrics", self._host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)  # returns once serve_forever has
            server.server_close()

    async def reload(self, config: BridgeConfig) -> None:
        new = config.sections.get("http")
        if new is not None and (new["host"], new["port"]) != (self._host, self._port):
            _LOGGER.warning("http host/port changes take effect at the next restart")

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Runs on the server's thread: asks the loop for the answer and waits for it."""
        route = self._routes.get(environ.get("PATH_INFO", ""))
        if environ.get("REQUEST_METHOD") != "GET":
            status, kind, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
        elif route is None or self._loop is None:
            status, kind, body = "404 Not Found", "text/plain", b"see /metrics and /healthz\n"
        else:
            try:
                status, kind, body = asyncio.run_coroutine_threadsafe(route(), self._loop).result(ANSWER_WITHIN)
            except Exception as err:  # the loop is stopping, or too busy to answer in time
                status, kind, body = "503 Service Unavailable", "text/plain", f"not answered: {err!r}\n".encode()
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]

    async def _metrics(self) -> Answer:
        await self._context.metrics.refresh()
        return "200 OK", CONTENT_TYPE_LATEST, self._context.metrics.exposition()

    async def _healthz(self) -> Answer:
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
        code = "200 OK" if not problems else "503 Service Unavailable"
        return code, "application/json", json.dumps(body).encode()


def create_http(config: BridgeConfig, context: BridgeContext) -> HttpEndpoint | None:
    """The HTTP endpoint, when the config has an ``http`` section."""
    settings = config.sections.get("http")
    return None if settings is None else HttpEndpoint(settings, context)
