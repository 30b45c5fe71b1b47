"""The ACS Email emulator: the data plane, the fake Entra authority and the admin API on one aiohttp app.

Faithful to reference §1, §2, §4 and §7. Order of checks for a send: quota (every request counts) ->
injected fault (before) -> api-version -> body size -> authentication and role -> content type -> JSON +
validation for that api-version -> Operation-Id (repeat?) -> accept (an injected outcome fault marks the
operation) -> injected fault (after) -> 202.
Accepted operations are kept in ``state_dir`` (``operations.jsonl``), so a restarted emulator still knows
them: ACS does not forget an accepted mail, and a client that got 404 would resend it.
UNCONFIRMED choices, made so either real answer would be handled alike:
- a missing api-version is 400 ``MissingApiVersionParameter``, an unknown one 400
  ``UnsupportedApiVersionValue`` (Azure API guidelines);
- a body over ``max_request_bytes`` is 413 ``RequestEntityTooLarge`` (the service only documents 10 MB);
- a send whose Content-Type is not JSON is 415 ``UnsupportedMediaType`` (the spec only ``consumes`` JSON);
- an ``Operation-Id`` that is not a UUID is 400 (the spec declares ``format: uuid``);
- a repeated Operation-Id follows the Azure guidelines for LROs: the same request again (a retry) answers
  202 with the existing operation and stores nothing; a different request is 400 naming ``Operation-Id``;
- quota counts every send and status request when received, refused ones (429, 401, 400, injected
  errors) included, per subscription (reference §4: "all requests, including retries");
- an unknown operation is 404 ``NotFound`` with the message users reported from the live service.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import shutil
import socket
import ssl
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from aiohttp import web

from acs_email_core.quota import Quota
from acs_email_core.waits import wait_set

from .admin import admin_routes
from .auth import Authority, HmacVerifier, authenticate, derive_secret
from .counters import DROPPED, RequestCounters
from .faults import Fault, FaultQueue, Kind, Route, Stage
from .mailbox import OperationError, ReceivedMail, export_eml, write_record
from .operations import OperationStore
from .responses import OAuthError, ServiceError, default_error, json_response
from .subscription import Subscription
from .tls import TlsFiles, ensure_tls
from .validation import validate_message

API_VERSIONS = (
    "2023-01-15-preview",
    "2023-03-31",
    "2024-07-01-preview",
    "2025-01-01-preview",
    "2025-01-15-preview",
    "2025-09-01",
)
DEMO_TENANT_ID = "00000000-0000-4000-8000-00000000ac51"
DEMO_CLIENT_ID = "00000000-0000-4000-8000-00000000ac52"
NO_ROLE_CLIENT_ID = "00000000-0000-4000-8000-00000000ac53"  # a second demo principal, without the role
TERMINAL = frozenset({"Succeeded", "Failed", "Canceled"})
_WILDCARDS = {"", "0.0.0.0", "::"}  # noqa: S104 - recognising the wildcard, not binding to it


class _Dropped(Exception):
    """The connection was closed on purpose (or the client left during a delay): no answer is sent."""


def _url_host(host: str) -> str:
    """How ``host`` appears in a URL a local client can use (wildcards become loopback)."""
    if host in _WILDCARDS:
        host = "::1" if ":" in host else "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _listen(host: str, port: int) -> socket.socket:
    return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)


def _api_version(request: web.Request) -> str:
    version = request.query.get("api-version")
    if not version:
        raise ServiceError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version not in API_VERSIONS:
        raise ServiceError(
            400,
            "UnsupportedApiVersionValue",
            f"Unsupported api-version '{version}'. The supported api-versions are '{', '.join(API_VERSIONS)}'.",
        )
    return version


# The body a stall fault already read (a typed key where aiohttp has them: HA 2025.4 pins one without).
_STALLED_BODY: Any = (
    web.RequestKey("acs_email_stalled_body", bytes) if hasattr(web, "RequestKey") else "acs_email_stalled_body"
)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without buffering them all."""
    too_large = ServiceError(
        413, "RequestEntityTooLarge", f"The request body is larger than the limit of {limit} bytes."
    )
    if (request.content_length or 0) > limit:
        raise too_large
    if _STALLED_BODY in request:
        return cast("bytes", request[_STALLED_BODY])
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _operation_id(request: web.Request) -> str:
    """Adopt the client's ``Operation-Id`` (must be a UUID), else make one."""
    given = request.headers.get("Operation-Id")
    if given is None:
        return str(uuid.uuid4())
    try:
        uuid.UUID(given)
    except ValueError:
        raise ServiceError(400, "BadRequest", "Request header validation error. See header 'Operation-Id'") from None
    return given


def _require_json(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise ServiceError(
            415,
            "UnsupportedMediaType",
            f"The request's Content-Type '{request.content_type}' is not supported; use 'application/json'.",
        )


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise ServiceError(
            400, "BadRequest", "Request body validation error. The request body is not valid JSON."
        ) from None


class Emulator:
    """A local stand-in for one ACS resource ("subscription"), driven by the real SDK over HTTPS."""

    def __init__(
        self,
        access_key: str | None = None,
        quota: Quota | None = None,
        *,
        tls_dir: Path | None = None,
        record_dir: Path | None = None,
        senders: Sequence[str] | None = None,
        retry_after: int = 3,
        running_for: float = 0.0,
        max_recipients: int = 50,
        max_request_bytes: int = 10 * 1024 * 1024,
        clients: Mapping[tuple[str, str], str] | None = None,
        without_role: Sequence[str] = (),
        state_dir: Path | None = None,
        subscription: Subscription | None = None,
    ) -> None:
        """``quota`` makes a subscription of its own; ``subscription`` shares one with other emulators.

        ``clients`` maps (tenant, client id) to a client secret; those in ``without_role`` get tokens the
        data plane refuses (403). By default: the demo principal, and a second one without the role.
        ``state_dir`` keeps accepted operations across restarts.
        """
        self.access_key = access_key or base64.b64encode(secrets.token_bytes(64)).decode()
        try:
            key = base64.b64decode(self.access_key, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("access_key must be base64") from None
        if subscription is None and quota is not None:
            subscription = Subscription(quota)
        self.subscription = subscription
        self.quota = None if subscription is None else subscription.quota
        self.tls_dir = tls_dir
        self.record_dir = record_dir
        self.retry_after = retry_after
        self.running_for = running_for
        self.max_recipients = max_recipients
        self.max_request_bytes = max_request_bytes
        self._senders = None if senders is None else frozenset(s.lower() for s in senders)
        if clients is None:
            clients = {
                (DEMO_TENANT_ID, client): base64.urlsafe_b64encode(derive_secret(key, purpose)).decode().rstrip("=")
                for client, purpose in (
                    (DEMO_CLIENT_ID, "demo-client-secret"),
                    (NO_ROLE_CLIENT_ID, "no-role-client-secret"),
                )
            }
            without_role = (NO_ROLE_CLIENT_ID,)
        self.clients = dict(clients)
        self.without_role = frozenset(without_role)
        (self.tenant_id, self.client_id), self.client_secret = next(iter(clients.items()))
        self._authority = Authority(clients, derive_secret(key, "token-signing"), self.without_role)
        self._hmac = HmacVerifier(key)
        self.faults = FaultQueue()
        self.requests = RequestCounters()
        self.mails: list[ReceivedMail] = []
        self.duplicates = 0
        self._operations: dict[str, ReceivedMail] = {}
        self._store = None if state_dir is None else OperationStore(state_dir / "operations.jsonl")
        self._runner: web.AppRunner | None = None
        self._tls: TlsFiles | None = None
        self._temp_dir: Path | None = None
        self._stopping = asyncio.Event()
        self._endpoint: str | None = None
        self._http_endpoint: str | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0, http_port: int | None = None) -> None:
        """Listen with HTTPS on ``host:port`` (0 = any free port), plus plain http when ``http_port`` is set."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        tls_dir = self.tls_dir
        if tls_dir is None:
            self._temp_dir = tls_dir = Path(tempfile.mkdtemp(prefix="acs-emulator-tls-"))
        extra = [socket.gethostname()] if host in _WILDCARDS else [host]
        self._tls = await asyncio.to_thread(ensure_tls, tls_dir, extra)
        if self._store is not None and not self._operations:
            for mail in await asyncio.to_thread(self._store.load):
                self._operations[mail.operation_id] = mail
                self.mails.append(mail)
        ssl_context = await asyncio.to_thread(self._tls.server_context)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sockets: list[tuple[socket.socket, ssl.SSLContext | None]] = [(_listen(host, port), ssl_context)]
        if http_port is not None:
            sockets.append((_listen(host, http_port), None))
        endpoints = []
        for sock, context in sockets:
            await web.SockSite(self._runner, sock, ssl_context=context).start()
            scheme = "https" if context else "http"
            endpoints.append(f"{scheme}://{_url_host(host)}:{sock.getsockname()[1]}")
        self._endpoint = endpoints[0]
        self._http_endpoint = endpoints[1] if http_port is not None else None

    async def stop(self) -> None:
        """Stop listening; injected delays still sleeping are cut short."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._endpoint = self._http_endpoint = None
        if self._temp_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._temp_dir, True)
            self._temp_dir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ---- what clients need -----------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            raise RuntimeError("the emulator is not running")
        return self._endpoint

    @property
    def http_endpoint(self) -> str | None:
        return self._http_endpoint

    @property
    def authority(self) -> str:
        """The fake Entra authority host (``ClientSecretCredential(..., authority=emu.authority)``)."""
        return self.endpoint

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint}/;accesskey={self.access_key}"

    @property
    def ca_file(self) -> Path:
        if self._tls is None:
            raise RuntimeError("the emulator has not been started")
        return self._tls.ca

    # ---- inspection and control ------------------------------------------------------------------------------
    def mail(self, operation_id: str) -> ReceivedMail | None:
        return self._operations.get(operation_id)

    def status_of(self, mail: ReceivedMail) -> str:
        """The operation status a poll would report now."""
        now = time.time()
        if mail.held is not None and (mail.held_until is None or now < mail.held_until):
            return mail.held
        if now - mail.received_at.timestamp() < self.running_for:
            return "Running"
        return mail.end

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def export_eml(self, directory: Path) -> list[Path]:
        """Write every accepted mail as ``<operation_id>.eml`` into ``directory`` (blocking)."""
        return export_eml(directory, self.mails)

    def summary(self) -> dict[str, Any]:
        return {
            "endpoint": self._endpoint,
            "mails": [{**mail.summary(), "status": self.status_of(mail)} for mail in self.mails],
            "duplicates": self.duplicates,
            "requests": self.requests.as_dict(),
            "faults": self.faults.pending(),
            "principals": [
                {
                    "tenant_id": tenant,
                    "client_id": client,
                    "client_secret": secret,
                    "role": client not in self.without_role,
                }
                for (tenant, client), secret in self.clients.items()
            ],
        }

    async def reset(self) -> None:
        """Forget mails, operations (kept ones too), counters, queued faults and the subscription's quota use."""
        self.mails.clear()
        self._operations.clear()
        self.duplicates = 0
        self.requests.clear()
        self.faults.clear()
        if self.subscription is not None:
            self.subscription.reset()
        if self._store is not None:
            await asyncio.to_thread(self._store.clear)

    # ---- the aiohttp app -------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.post("/emails:send", self._with_faults(Route.SEND, self._send), name="send"),
                web.get(
                    "/emails/operations/{operation_id}",
                    self._with_faults(Route.STATUS, self._status),
                    name="status",
                ),
                web.get(
                    "/{tenant}/v2.0/.well-known/openid-configuration",
                    self._authority.openid_configuration,
                    name="openid",
                ),
                web.post(
                    "/{tenant}/oauth2/v2.0/token",
                    self._with_faults(Route.TOKEN, self._authority.token),
                    name="token",
                ),
                *admin_routes(self),
            ]
        )
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Turn raised service errors into their JSON answers and count every non-admin request."""
        route = request.match_info.route.name or "other"
        try:
            response = await handler(request)
        except (ServiceError, OAuthError) as error:
            response = error.response()
        except _Dropped:
            self.requests.add(route, DROPPED)
            return web.Response()  # the transport is gone; nothing reaches the client
        except web.HTTPException as error:
            self.requests.add(route, error.status)
            raise
        if not route.startswith("admin"):
            self.requests.add(route, response.status)
        if route in ("send", "status"):
            response.headers["x-ms-request-id"] = str(uuid.uuid4())
            if "x-ms-client-request-id" in request.headers:
                response.headers["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]
            response.headers["api-supported-versions"] = ", ".join(API_VERSIONS)
        return response

    def _with_faults(
        self, route: Route, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def faulted(request: web.Request) -> web.StreamResponse:
            if self.subscription is not None:
                self.subscription.admit(route)  # first: every request counts, whatever answer it gets
            fault = self.faults.take(route, Stage.BEFORE)
            if fault is not None:
                await self._inject(request, fault, route)
            response = await handler(request)
            fault = self.faults.take(route, Stage.AFTER)  # reached only when the handler did not raise
            if fault is not None:
                await self._inject(request, fault, route)
            return response

        return faulted

    async def _inject(self, request: web.Request, fault: Fault, route: Route) -> None:
        if fault.kind is Kind.ERROR:
            code, message = default_error(fault.status)
            if route is Route.TOKEN:
                raise OAuthError(
                    fault.status,
                    fault.code or "temporarily_unavailable",
                    fault.message or message,
                    retry_after=fault.retry_after,
                )
            raise ServiceError(
                fault.status, fault.code or code, fault.message or message, retry_after=fault.retry_after
            )
        if fault.kind in (Kind.DELAY, Kind.STALL):
            if fault.kind is Kind.STALL:  # take the whole request now: it is processed even if the client leaves
                request[_STALLED_BODY] = await _read_body(request, self.max_request_bytes)
            await wait_set(self._stopping, fault.seconds)
            if (
                fault.kind is Kind.DELAY
                and fault.stage is Stage.BEFORE
                and (request.transport is None or request.transport.is_closing())
            ):
                raise _Dropped  # the client gave up while we stalled: nothing was processed
        if fault.kind is Kind.DROP:
            if request.transport is not None:
                request.transport.abort()
            raise _Dropped

    # ---- data plane ------------------------------------------------------------------------------------------
    async def _authenticated_body(self, request: web.Request) -> tuple[str, bytes]:
        api_version = _api_version(request)
        body = await _read_body(request, self.max_request_bytes)
        authenticate(request, body, self._hmac, self._authority)
        return api_version, body

    async def _send(self, request: web.Request) -> web.Response:
        api_version, body = await self._authenticated_body(request)
        _require_json(request)
        payload = _parse_json(body)
        suppressed = validate_message(
            payload, senders=self._senders, max_recipients=self.max_recipients, api_version=api_version
        )
        operation_id = _operation_id(request)
        mail = self._operations.get(operation_id)
        if mail is not None:
            if mail.payload != payload:
                raise ServiceError(
                    400,
                    "BadRequest",
                    "Request header validation error. See header 'Operation-Id': an operation with this id "
                    "exists, and this request is not a repeat of the one that started it.",
                )
            self.duplicates += 1
        else:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
            mail = self._outcome(
                ReceivedMail(operation_id, payload, body, headers, datetime.now(UTC), None, suppressed, api_version)
            )
            self._operations[operation_id] = mail
            self.mails.append(mail)
            await asyncio.to_thread(self._keep, mail)
        location = f"{request.scheme}://{request.host}/emails/operations/{operation_id}?api-version={api_version}"
        return json_response(
            {"id": operation_id, "status": "Running", "error": None},
            202,
            {"Operation-Location": location, "Retry-After": str(self.retry_after)},
        )

    def _outcome(self, mail: ReceivedMail) -> ReceivedMail:
        """Apply an injected outcome fault (Failed, Canceled, held NotStarted/Running) to a new operation."""
        fault = self.faults.take(Route.SEND, Stage.OUTCOME)
        if fault is None:
            return mail
        if fault.kind is Kind.HOLD:
            until = None if fault.seconds is None else mail.received_at.timestamp() + fault.seconds
            return replace(mail, held=fault.operation_status, held_until=until)
        if fault.kind is Kind.CANCEL:
            error = None if fault.code is None else OperationError(fault.code, fault.message or "")
            return replace(mail, end="Canceled", error=error)
        return replace(mail, end="Failed", error=OperationError(fault.code or "EmailDropped", fault.message or ""))

    def _keep(self, mail: ReceivedMail) -> None:
        """Store a new operation (state dir) and its mail (record dir). Blocking: run in a thread."""
        if self._store is not None:
            self._store.append(mail)
        if self.record_dir is not None:
            write_record(self.record_dir, mail)

    async def _status(self, request: web.Request) -> web.Response:
        await self._authenticated_body(request)
        operation_id = request.match_info["operation_id"]
        mail = self._operations.get(operation_id)
        if mail is None:
            raise ServiceError(
                404,
                "NotFound",
                f"Requested message could not be located. Couldn't find a record with the messageID: {operation_id}",
            )
        status = self.status_of(mail)
        error = None if mail.error is None or status not in TERMINAL else asdict(mail.error)
        headers = {} if status in TERMINAL else {"Retry-After": str(self.retry_after)}
        return json_response({"id": operation_id, "status": status, "error": error}, 200, headers)
