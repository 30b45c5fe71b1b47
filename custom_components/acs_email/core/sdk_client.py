"""The half of the ACS transport that needs the Azure SDK and aiohttp, imported on first use.

Those libraries take about 30 MiB of memory: a bridge that has not had a mail to send does without them.
The SDK's own retries are off (``retry_total=0``): a throttled POST would otherwise sleep inside the SDK
for minutes, hidden from the outbox. Retrying is the outbox's job; this module only says what happened and
whether the request may have reached the service (``ambiguous``), in which case the caller asks the
operation status before resending, so that a retry never duplicates a mail.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import quote

import aiohttp
from azure.communication.email.aio import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.identity.aio import ClientSecretCredential

from .errors import ConfigError
from .transport import (
    CERTIFICATE_REFUSED,
    AcsCredentials,
    Outcome,
    OutcomeKind,
    parse_connection_string,
    retry_after_seconds,
)

_X509_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_ACCEPTED = frozenset({"notstarted", "running", "succeeded"})


class SdkClient:
    """Sends ACS request bodies and status queries through the SDK's pipeline; see :class:`AcsTransport`.

    The SDK client is built on first use, inside the event loop: its HTTP session belongs to the loop, and
    the TLS context (system store plus an optional CA file) is loaded once, in a worker thread. The SDK
    would otherwise read the CA file again, on the loop, for every request.
    """

    def __init__(
        self,
        credentials: AcsCredentials,
        endpoint: str,
        *,
        timeout: float,
        session: aiohttp.ClientSession | None,
        api_version: str,
    ) -> None:
        self._creds = credentials
        self.endpoint = endpoint
        self._timeout = timeout
        self._api_version = api_version
        self._shared_session = session
        self._client: EmailClient | None = None
        self._token_credential: ClientSecretCredential | None = None
        self._own_session: aiohttp.ClientSession | None = None
        self._building = asyncio.Lock()

    async def _ready_client(self) -> EmailClient:
        async with self._building:
            if self._client is None:
                try:
                    self._client = await self._build_client()
                except BaseException:
                    await self.close()  # no half-built client keeps an HTTP session open
                    raise
            return self._client

    async def _build_client(self) -> EmailClient:
        creds = self._creds
        session = self._shared_session
        if session is None or creds.ca_file:
            try:
                context = await asyncio.to_thread(ssl.create_default_context, cafile=creds.ca_file)
            except (OSError, ssl.SSLError) as err:
                raise ConfigError(f"cannot load ca_file {creds.ca_file}: {err.strerror or err}") from None
            session = self._own_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        credential: AzureKeyCredential | AsyncTokenCredential
        if creds.connection_string:
            credential = AzureKeyCredential(parse_connection_string(creds.connection_string)[1])
        else:
            assert creds.tenant_id and creds.client_id and creds.client_secret  # checked in __init__
            identity_kwargs: dict[str, Any] = {"transport": AioHttpTransport(session=session, session_owner=False)}
            if creds.authority:
                identity_kwargs["authority"] = creds.authority
                identity_kwargs["disable_instance_discovery"] = True
            # Entra's 5xx and 429 are the dispatcher's to retry, like ACS's (its own retries would hide them).
            identity_kwargs["retry_total"] = 0
            try:
                self._token_credential = ClientSecretCredential(
                    creds.tenant_id, creds.client_id, creds.client_secret, **identity_kwargs
                )
            except ValueError as err:  # e.g. a malformed tenant id: only a config change can help
                raise ConfigError(f"invalid service principal: {str(err).splitlines()[0]}") from None
            credential = self._token_credential
        return EmailClient(
            self.endpoint,
            credential,
            transport=AioHttpTransport(session=session, session_owner=False),
            retry_total=0,
            connection_timeout=self._timeout,
            read_timeout=self._timeout,
            api_version=self._api_version,
        )

    async def close(self) -> None:
        """Release the HTTP session (unless shared) and the token cache."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._token_credential is not None:
            await self._token_credential.close()
            self._token_credential = None
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None

    def _redact(self, text: str) -> str:
        for secret in self._creds.secrets:
            text = text.replace(secret, "***")
        return text

    async def send(self, payload: dict[str, Any] | str, operation_id: str) -> Outcome:
        """POST one mail; never raises for service or network trouble, returns the classified outcome.

        ``payload`` may be the request body already serialised (as the outbox stores it): it then goes out
        as it is, where the SDK's ``begin_send`` would serialise megabytes of attachments on the event loop.
        """
        body = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        request = HttpRequest(
            "POST",
            "/emails:send",
            params={"api-version": self._api_version},
            headers={"Operation-Id": operation_id, "Content-Type": "application/json", "Accept": "application/json"},
            content=body,
        )
        response = await self._request(request)
        if isinstance(response, Outcome):
            return response
        if response.status_code == 202:
            return Outcome(OutcomeKind.SENT, status=self._json_status(response.text()))
        return self._classify(self._error(response))

    async def status(self, operation_id: str) -> Outcome:
        """Ask ACS whether an operation exists; SENT unless it is unknown (NOT_FOUND) or ended Failed."""
        request = HttpRequest(
            "GET", f"/emails/operations/{quote(operation_id, safe='')}", params={"api-version": self._api_version}
        )
        response = await self._request(request)
        if isinstance(response, Outcome):
            return response
        code = response.status_code
        if code == 200:
            return self._operation_outcome(response.text())
        if code == 404:
            return Outcome(OutcomeKind.NOT_FOUND, "ACS has no such operation")
        return self._classify(self._error(response))

    async def _request(self, request: HttpRequest) -> AsyncHttpResponse | Outcome:
        """The answer to ``request`` (read in full), or the outcome of not getting one."""
        try:
            async with asyncio.timeout(self._timeout * 2):
                response = await (await self._ready_client()).send_request(request)
                await response.read()
        except Exception as err:
            return self._classify(err)
        return response

    @staticmethod
    def _error(response: AsyncHttpResponse) -> HttpResponseError:
        # 401 as the SDK maps it: Entra's or ACS's refusal of the credentials.
        error_type = ClientAuthenticationError if response.status_code == 401 else HttpResponseError
        error = error_type(response=response)
        error.status_code = response.status_code
        return error

    @staticmethod
    def _json_status(body: str) -> str | None:
        try:
            return str(json.loads(body)["status"])
        except (ValueError, KeyError, TypeError):
            return None

    def _operation_outcome(self, body: str) -> Outcome:
        try:
            data = json.loads(body)
            status = str(data["status"])
        except (ValueError, KeyError, TypeError):
            return Outcome(OutcomeKind.TRANSIENT, "unreadable operation status", ambiguous=True)
        if status.lower() in _ACCEPTED:
            return Outcome(OutcomeKind.SENT, status=status)
        error = data.get("error") or {}
        detail = f"{error.get('code', status)}: {error.get('message', 'operation ' + status)}"
        return Outcome(OutcomeKind.PERMANENT, self._redact(detail), status=status)

    def _classify(self, err: Exception) -> Outcome:
        if isinstance(err, ConfigError):  # like bad credentials: nothing can be sent until the config is fixed
            return Outcome(OutcomeKind.AUTH, self._redact(str(err)))
        if (refused := _certificate_error(err)) is not None:  # will not heal by itself: not an outage
            return Outcome(OutcomeKind.AUTH, self._redact(refused))
        detail = self._redact(_describe(err))
        if isinstance(err, ClientAuthenticationError):
            status = err.status_code
            if status == 429:  # Entra throttles the token requests: wait what it asks; the POST never left
                retry = retry_after_seconds(getattr(err.response, "headers", None))
                return Outcome(OutcomeKind.THROTTLED, detail, retry_after=retry)
            if (status or 0) == 408 or (status or 0) >= 500:
                return Outcome(OutcomeKind.TRANSIENT, detail)  # Entra is busy or down; the POST never left
            if (
                status is None
                and err.response is None
                and "AADSTS" not in str(err)
                and "invalid_client" not in str(err)
            ):
                # The authority could not be reached: an outage, not bad credentials.
                return Outcome(OutcomeKind.TRANSIENT, detail)
            return Outcome(OutcomeKind.AUTH, detail)
        if isinstance(err, HttpResponseError) and err.status_code is not None:
            status = err.status_code
            retry = retry_after_seconds(getattr(err.response, "headers", None))
            if status == 429:
                return Outcome(OutcomeKind.THROTTLED, detail, retry_after=retry)
            if status in (401, 403):  # 403: the principal lacks the role, or the subscription is blocked
                return Outcome(OutcomeKind.AUTH, detail)
            if status in (400, 409) and _names_operation_id(err):
                return Outcome(OutcomeKind.ID_IN_USE, detail)
            if status == 408 or status >= 500:
                return Outcome(OutcomeKind.TRANSIENT, detail, retry_after=retry, ambiguous=True)
            return Outcome(OutcomeKind.PERMANENT, detail)
        if isinstance(err, ServiceRequestTimeoutError) or (
            isinstance(err, ServiceRequestError) and isinstance(err.inner_exception, aiohttp.ClientConnectorError)
        ):
            return Outcome(OutcomeKind.TRANSIENT, detail)  # never connected: the POST cannot have arrived
        # Anything else (AzureError, OSError, aiohttp trouble, or an error nobody foresaw) may have happened
        # after the POST left: try again later, with a status check first.
        return Outcome(OutcomeKind.TRANSIENT, detail, ambiguous=True)


def _causes(err: BaseException) -> list[BaseException]:
    """``err`` and what it wraps (azure-core's ``inner_exception``, ``__cause__``, ``__context__``)."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    return chain


def _certificate_error(err: Exception) -> str | None:
    """Why the server's certificate was refused (unknown CA, wrong host name, expired), if that is the cause.

    The text starts with one of :data:`CERTIFICATE_REFUSED`, so that it is not taken for a credentials problem.
    """
    chain = _causes(err)
    host = next((f" of {c.host}:{c.port}" for c in chain if isinstance(c, aiohttp.ClientConnectorError)), "")
    refused = [c for c in chain if isinstance(c, ssl.SSLCertVerificationError)]  # aiohttp's wrapper is one too
    if not refused:
        return None
    cause = refused[-1]  # the ssl module's own error, with the verification message
    message = getattr(cause, "verify_message", None)
    why = f"{getattr(cause, 'reason', None)}: {message}" if message else str(cause)
    if getattr(cause, "verify_code", None) in _X509_NAME_MISMATCH:
        what, advice = CERTIFICATE_REFUSED[1], "check the host name in the endpoint"
    else:
        what, advice = CERTIFICATE_REFUSED[0], "check ca_file (the CA that signed the server's certificate)"
    return f"{what}: TLS certificate{host} refused ({why}); {advice}"


def _names_operation_id(err: HttpResponseError) -> bool:
    """A refusal about the ``Operation-Id`` header: the id is already used (Azure: 400 unless a retry; or 409)."""
    service_error = err.error
    text = f"{service_error.code} {service_error.message}" if service_error is not None else str(err.message)
    return err.status_code == 409 or "operation-id" in text.lower() or "operationid" in text.lower()


def _describe(err: Exception) -> str:
    """One line: HTTP status and the service's own code and message when there are some."""
    if isinstance(err, HttpResponseError) and err.status_code is not None:
        service_error = err.error
        if service_error is not None and service_error.code:
            return f"HTTP {err.status_code} {service_error.code}: {service_error.message}"
        if isinstance(err, ClientAuthenticationError) and err.message:  # Entra's answer, e.g. AADSTS7000215
            return f"HTTP {err.status_code} {err.message.splitlines()[0]}"
        reason = err.reason or ""
        return f"HTTP {err.status_code} {reason}".strip()
    if isinstance(err, TimeoutError):
        return "timed out"
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    return f"{type(err).__name__}: {message.splitlines()[0]}"
