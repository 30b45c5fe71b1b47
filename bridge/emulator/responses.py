"""JSON answers in the exact shapes the ACS Email data plane uses (reference §1.5-§1.7)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """Serialise like the service: compact separators, ``Content-Type`` with charset."""
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        headers={"Content-Type": JSON_CONTENT_TYPE, **(headers or {})},
    )


class ServiceError(Exception):
    """An ACS ErrorResponse; raised anywhere in a handler, answered by the emulator's middleware."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def response(self) -> web.Response:
        """``{"error":{code,message,target,details,innererror}}`` plus ``x-ms-error-code`` (live shape)."""
        headers = {"x-ms-error-code": self.code}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        body = {
            "error": {
                "code": self.code,
                "message": self.message,
                "target": None,
                "details": None,
                "innererror": None,
            }
        }
        return json_response(body, self.status, headers)


class OAuthError(Exception):
    """An Entra (AADSTS) token-endpoint error: ``{"error","error_description"}``, which MSAL surfaces."""

    def __init__(self, status: int, error: str, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.retry_after = retry_after  # Entra sends Retry-After with its 429s

    def response(self) -> web.Response:
        headers = None if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return json_response({"error": self.error, "error_description": self.description}, self.status, headers)


def bad_request(path: str) -> ServiceError:
    """The live validation error: "Request body validation error. See property '<path>'"."""
    return ServiceError(400, "BadRequest", f"Request body validation error. See property '{path}'")


# Default code/message per status for injected faults (the live texts where the reference has them).
DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Request body validation error."),
    401: ("Denied", "Denied by the resource provider."),
    403: (
        "SubscriptionBlocked",
        "All requests from this subscription are blocked due to the sender reputation that affects your "
        "delivery. Please reach out to Azure Support.",
    ),
    404: ("NotFound", "Requested message could not be located."),
    429: ("TooManyRequests", "The request was throttled; retry after the time in the Retry-After header."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "The gateway received an invalid response."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The gateway timed out."),
}


def default_error(status: int) -> tuple[str, str]:
    """Code and message an injected error of ``status`` carries unless the fault names its own."""
    return DEFAULT_ERRORS.get(status, ("Error", f"Injected error {status}."))
