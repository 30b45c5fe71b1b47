"""Credential checks and the test mail of the config flow, on the core's ACS transport.

The check asks ACS for the status of a random operation id: ``404 NotFound`` proves that the token (or
access key) and the endpoint work, and nothing is sent. Every outcome maps to a translated form error;
``detail`` carries the service's own reason (Entra's AADSTS code, ACS's error code), never a secret.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .core.errors import ConfigError
from .core.message import EmailMessage
from .core.transport import AcsTransport, Outcome, OutcomeKind
from .settings import credentials_from_data

_LOGGER = logging.getLogger(__name__)

TIMEOUT = 15.0  # seconds per request while the user waits in the flow
STATUS_POLLS = 5  # how often the test mail's operation is asked about before reporting "still running"
STATUS_INTERVAL = 2.0  # seconds between those polls (ACS suggests a few seconds)
_RUNNING = ("notstarted", "running")
_SENDER_CODES = ("DomainNotLinked", "InvalidSenderUserName", "SenderNotLinked")


class CheckFailed(Exception):
    """A check failed: ``error`` is a key of ``config.error`` in strings.json, ``detail`` says why."""

    def __init__(self, error: str, detail: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class TestMailResult:
    """What became of the test mail: ACS's operation status (``Succeeded``, ``Running``…) and its id."""

    status: str
    operation_id: str


def _error_key(outcome: Outcome) -> str:
    """Form error for a failed request."""
    if outcome.detail.startswith("HTTP 403"):  # a token, but no role on the resource (paused, not refused)
        return "forbidden"
    if outcome.kind is OutcomeKind.AUTH:
        return "invalid_auth"
    if outcome.kind is OutcomeKind.THROTTLED:
        return "throttled"
    if outcome.kind is OutcomeKind.TRANSIENT:
        return "cannot_connect"
    if any(code in outcome.detail for code in _SENDER_CODES):
        return "sender_not_linked"
    return "rejected"


async def _transport(hass: HomeAssistant, data: Mapping[str, Any]) -> AcsTransport:
    """A transport for ``data``; HA's shared HTTP session unless a CA file is configured."""
    credentials = credentials_from_data(hass, data)
    if credentials.ca_file is not None and not await hass.async_add_executor_job(Path(credentials.ca_file).is_file):
        raise CheckFailed("invalid_ca_file", credentials.ca_file)
    session = None if credentials.ca_file else async_get_clientsession(hass)
    try:
        return AcsTransport(credentials, timeout=TIMEOUT, session=session)
    except ConfigError as err:  # e.g. a blank tenant or client id
        raise CheckFailed("invalid_auth", str(err)) from None


async def async_check_credentials(hass: HomeAssistant, data: Mapping[str, Any]) -> None:
    """Raise :class:`CheckFailed` unless ACS accepts these credentials at this endpoint (nothing is sent)."""
    async with await _transport(hass, data) as transport:
        try:
            outcome = await transport.status(str(uuid.uuid4()))
        except Exception as err:
            _LOGGER.exception("Unexpected error while checking the ACS credentials")
            raise CheckFailed("unknown", type(err).__name__) from None
    if outcome.kind in (OutcomeKind.NOT_FOUND, OutcomeKind.SENT):
        return
    raise CheckFailed(_error_key(outcome), outcome.detail)


async def async_send_test_mail(hass: HomeAssistant, data: Mapping[str, Any], recipient: str) -> TestMailResult:
    """Send one short mail now (not through the outbox) and wait a few seconds for its final status."""
    message = EmailMessage.build(
        sender=data["sender"],
        to=recipient,
        subject="ACS Email test from Home Assistant",
        text=(
            "This test mail was sent while setting up the ACS Email integration in Home Assistant.\n"
            "If you can read it, Home Assistant can send you email through Azure Communication Services."
        ),
    )
    async with await _transport(hass, data) as transport:
        try:
            outcome = await transport.send(message.to_acs_payload(), message.message_id)
            # The 202 only says "accepted": the operation's status says whether ACS took the sender.
            for poll in range(STATUS_POLLS if outcome.kind is OutcomeKind.SENT else 0):
                if poll:
                    await asyncio.sleep(STATUS_INTERVAL)
                outcome = await transport.status(message.message_id)
                if outcome.kind is not OutcomeKind.SENT or (outcome.status or "").lower() not in _RUNNING:
                    break
        except Exception as err:
            _LOGGER.exception("Unexpected error while sending the test mail")
            raise CheckFailed("unknown", type(err).__name__) from None
    if outcome.kind is not OutcomeKind.SENT:
        raise CheckFailed(_error_key(outcome), outcome.detail)
    return TestMailResult(outcome.status or "Running", message.message_id)
