"""The built-in send topic: a JSON mail request published by a script or an ESPHome device, mailed as written.

Request (``to`` and ``subject`` required, ``text`` and/or ``html``)::

    {"to": "a@example.com" | ["A <a@example.com>", ...], "cc": ..., "bcc": ..., "reply_to": ...,
     "subject": "...", "text": "...", "html": "...", "priority": "high|normal|low",
     "headers": {"X-Device": "esp32"}, "id": "your-correlation-id",
     "attachments": [{"name": "snap.jpg", "content": "<base64>", "content_type": "image/jpeg",
                      "content_id": "snap"}]}

The outcome goes to the result topic (or the request's MQTT v5 response topic, with its correlation data):
``{"id": ..., "message_id": ..., "state": "queued"|"sent"|"dead"|"failed", "reason": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import voluptuous as vol

from acs_email_core.config import EngineSettings
from acs_email_core.errors import ValidationError
from acs_email_core.message import Attachment, EmailMessage

from .events import BadEvent, InboundEvent

_ADDRESSES = vol.Any(str, [vol.Any(str, {vol.Required("address"): str, vol.Optional("name"): str})])


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise vol.Invalid("expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise vol.Invalid("is not valid base64") from None


REQUEST_SCHEMA = vol.Schema(
    {
        vol.Required("to"): _ADDRESSES,
        vol.Optional("cc"): _ADDRESSES,
        vol.Optional("bcc"): _ADDRESSES,
        vol.Optional("reply_to"): _ADDRESSES,
        vol.Required("subject"): str,
        vol.Optional("text"): str,
        vol.Optional("html"): str,
        vol.Optional("priority", default="normal"): vol.In(["high", "normal", "low"]),
        vol.Optional("headers", default={}): {str: str},
        vol.Optional("id"): vol.Any(str, int),
        vol.Optional("attachments", default=[]): [
            vol.Schema(
                {
                    vol.Required("name"): str,
                    vol.Required("content"): _base64,
                    vol.Optional("content_type"): str,
                    vol.Optional("content_id"): str,
                }
            )
        ],
    }
)


def request_id(event: InboundEvent) -> str | None:
    """The caller's ``id``, if the payload is a JSON object that has one (also for failed requests)."""
    try:
        data = json.loads(event.payload)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return None if value is None else str(value)


def _addresses(value: Any) -> Any:
    if isinstance(value, list):
        return [v if isinstance(v, str) else {"address": v["address"], "name": v.get("name", "")} for v in value]
    return value


def build_mail(event: InboundEvent, settings: EngineSettings) -> EmailMessage:
    """The mail a request describes; BadEvent naming the field when it is not a valid request."""
    data = event.json()
    if not isinstance(data, dict):
        raise BadEvent("send request must be a JSON object", route="send")
    try:
        request = REQUEST_SCHEMA(data)
    except vol.Invalid as err:
        errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
        reasons = "; ".join(f"{'.'.join(str(p) for p in e.path) or 'request'}: {e.msg}" for e in errors)
        raise BadEvent(f"invalid send request: {reasons}", route="send") from None
    try:
        attachments = [
            Attachment(a["name"], a["content"], a.get("content_type"), a.get("content_id"))
            for a in request["attachments"]
        ]
        return EmailMessage.build(
            sender=settings.sender,
            to=_addresses(request["to"]),
            cc=_addresses(request.get("cc")),
            bcc=_addresses(request.get("bcc")),
            reply_to=_addresses(request.get("reply_to")),
            subject=request["subject"],
            text=request.get("text"),
            html=request.get("html"),
            attachments=attachments,
            headers=request["headers"],
            priority=request["priority"],
            message_id=event.mail_id(0),
            limits=settings.limits,
        )
    except ValidationError as err:
        raise BadEvent(f"invalid send request: {err}", route="send") from None
