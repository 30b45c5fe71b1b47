"""ACS Email transport: what the dispatcher sees of a request (a classified outcome), and the transport itself.

The transport imports the Azure SDK and aiohttp (``sdk_client``) only when it first talks to ACS, and in a
worker thread: a bridge or CLI that has nothing to send stays small, and the event loop never waits for
that import.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    import aiohttp

    from .sdk_client import SdkClient

API_VERSION = "2025-09-01"
# How the detail of a refused server certificate starts (an AUTH outcome that new credentials cannot fix).
CERTIFICATE_REFUSED = ("certificate not trusted", "host name mismatch")


class OutcomeKind(StrEnum):
    """What a request to ACS amounted to."""

    SENT = "sent"  # accepted by ACS (202, or an operation that exists and did not fail)
    THROTTLED = "throttled"  # 429: wait Retry-After, nothing was accepted
    TRANSIENT = "transient"  # 5xx, timeout, connection trouble: try again later
    AUTH = "auth"  # 401/403, a refused token request, an untrusted certificate: needs the configuration fixed
    PERMANENT = "permanent"  # 400/…, or an operation that ended Failed: retrying cannot help
    NOT_FOUND = "not_found"  # status query: ACS has no such operation, so the mail was never accepted
    ID_IN_USE = "id_in_use"  # send: the Operation-Id is taken (by an earlier attempt?): ask its status


@dataclass(frozen=True)
class Outcome:
    """Classified result; ``detail`` is safe to log and store (no secrets)."""

    kind: OutcomeKind
    detail: str = ""
    retry_after: float | None = None
    ambiguous: bool = False
    status: str | None = None


@dataclass(frozen=True)
class AcsCredentials:
    """Where and how to authenticate: a connection string, or an Entra service principal."""

    endpoint: str | None = None
    connection_string: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    authority: str | None = None
    ca_file: str | None = None

    def __repr__(self) -> str:
        return f"AcsCredentials(endpoint={self.endpoint!r}, auth={self.auth_method})"

    @property
    def auth_method(self) -> str:
        return "connection_string" if self.connection_string else "service_principal"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs or errors."""
        values: list[str] = [self.client_secret or ""]
        if self.connection_string:
            values.append(self.connection_string)
            values.append(parse_connection_string(self.connection_string)[1])
        return tuple(v for v in values if v)


def parse_connection_string(value: str) -> tuple[str, str]:
    """``endpoint=…;accesskey=…`` → (endpoint, access key); keeps the scheme as written (the SDK forces https)."""
    parts: dict[str, str] = {}
    for segment in value.split(";"):
        name, _, val = segment.strip().partition("=")
        if name:
            parts[name.strip().lower()] = val.strip()
    endpoint, access_key = parts.get("endpoint"), parts.get("accesskey")
    if not endpoint or not access_key:
        raise ConfigError("connection string must look like 'endpoint=https://<resource>…/;accesskey=<key>'")
    return endpoint.rstrip("/"), access_key


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms``/``x-ms-retry-after-ms``/``Retry-After`` (whichever is present)."""
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name) if headers is not None else None
        if raw:
            with contextlib.suppress(ValueError):
                return max(0.0, float(raw) / scale)
    return None


class AcsTransport:
    """Sends ACS request bodies with ``operation_id`` = message id and asks operation status by id.

    Credentials are checked here, at once; the SDK client behind it (:class:`~.sdk_client.SdkClient`) is
    built on the first request.
    """

    def __init__(
        self,
        credentials: AcsCredentials,
        *,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        api_version: str = API_VERSION,
    ) -> None:
        if credentials.connection_string:
            endpoint = credentials.endpoint or parse_connection_string(credentials.connection_string)[0]
        else:
            if not (credentials.tenant_id and credentials.client_id and credentials.client_secret):
                raise ConfigError("give either a connection_string or tenant_id + client_id + client_secret")
            if not credentials.endpoint:
                raise ConfigError("endpoint is required with a service principal")
            endpoint = credentials.endpoint
        self.endpoint = endpoint.rstrip("/")
        self._options: dict[str, Any] = {"timeout": timeout, "session": session, "api_version": api_version}
        self._creds = credentials
        self._client: SdkClient | None = None
        self._loading = asyncio.Lock()

    async def _sdk(self) -> SdkClient:
        async with self._loading:
            if self._client is None:
                module = await asyncio.to_thread(importlib.import_module, ".sdk_client", __package__)
                self._client = module.SdkClient(self._creds, self.endpoint, **self._options)
            return self._client

    async def __aenter__(self) -> AcsTransport:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the HTTP session (unless shared) and the token cache."""
        if self._client is not None:
            await self._client.close()

    async def send(self, payload: dict[str, Any] | str, operation_id: str) -> Outcome:
        """POST one mail; never raises for service or network trouble, returns the classified outcome.

        ``payload`` may be the request body already serialised (as the outbox stores it): it then goes out
        as it is, where the SDK's ``begin_send`` would serialise megabytes of attachments on the event loop.
        """
        return await (await self._sdk()).send(payload, operation_id)

    async def status(self, operation_id: str) -> Outcome:
        """Ask ACS whether an operation exists; SENT unless it is unknown (NOT_FOUND) or ended Failed."""
        return await (await self._sdk()).status(operation_id)
