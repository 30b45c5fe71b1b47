"""Request body validation as the ACS Email service does it (reference §1.2, §1.4, §1.7, §4).

Each failure raises the live 400 shape "Request body validation error. See property '<path>'".
The schema follows the request's api-version: ``attachments[].contentId`` exists from 2024-07-01-preview
on, ``senderDisplayName`` only in 2025-01-15-preview.
UNCONFIRMED choices (no source says what the service does; this is our pick):
- a property the request's api-version does not define is refused (the safe side: the service may also
  ignore it, silently losing e.g. an inline image);
- ``recipients.to`` is required (the schema says so); it may be an empty list when cc/bcc have someone
  (the SDK's own live recording got 202 with only cc/bcc); a message with no recipient at all is refused;
- more than ``max_recipients`` (to+cc+bcc) is a 400 with a message naming the limit;
- a sender outside ``senders``: 400 ``DomainNotLinked`` "The specified sender domain has not been linked."
  (the SMTP relay's 5.1.7 text), whether or not another address of its domain is allowed;
- the MIME allow-list is checked on the ``contentType`` string only, not on the file extension;
- address syntax is a pragmatic ``local@domain.tld`` check, not full RFC 5321.
The reserved ``x-ms-acsemail-*`` switches are read from the message's ``headers`` map, where the ACS docs
put them (they are email headers, not HTTP request headers).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acs_email_core.mime import is_allowed

from .responses import ServiceError, bad_request

SUPPRESS_INVALID_ATTACHMENT = "x-ms-acsemail-suppress-invalid-attachment"
IGNORE_DUPLICATE_CONTENT_ID = "x-ms-acsemail-ignore-duplicate-content-id"
VALIDATE_MESSAGE_ID = "x-ms-acsemail-validate-message-id"

_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field name: printable ASCII except ':'
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_MESSAGE_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")  # RFC 2822 msg-id, as the ACS docs describe it
_RECIPIENT_KINDS = ("to", "cc", "bcc")
_MESSAGE_FIELDS = frozenset(
    {"senderAddress", "content", "recipients", "attachments", "replyTo", "headers", "userEngagementTrackingDisabled"}
)
_ATTACHMENT_FIELDS = frozenset({"name", "contentType", "contentInBase64"})
_VERSIONS_WITHOUT_CONTENT_ID = frozenset({"2023-01-15-preview", "2023-03-31"})
_VERSIONS_WITH_SENDER_DISPLAY_NAME = frozenset({"2025-01-15-preview"})


@dataclass(frozen=True)
class Schema:
    """Which optional properties the request's api-version defines (reference §1.2)."""

    content_id: bool = True
    sender_display_name: bool = False

    @classmethod
    def for_version(cls, api_version: str) -> Schema:
        return cls(
            content_id=api_version not in _VERSIONS_WITHOUT_CONTENT_ID,
            sender_display_name=api_version in _VERSIONS_WITH_SENDER_DISPLAY_NAME,
        )

    @property
    def message_fields(self) -> frozenset[str]:
        return _MESSAGE_FIELDS | ({"senderDisplayName"} if self.sender_display_name else set())

    @property
    def attachment_fields(self) -> frozenset[str]:
        return _ATTACHMENT_FIELDS | ({"contentId"} if self.content_id else set())


def _object(value: object, path: str, known: frozenset[str]) -> Mapping[str, Any]:
    """``value`` as a JSON object with only ``known`` properties, else the 400 naming the culprit."""
    if not isinstance(value, Mapping):
        raise bad_request(path)
    for key in value:
        if key not in known:
            raise bad_request(_join(path, key))
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _optional_string(value: Mapping[str, Any], key: str, path: str) -> None:
    if not isinstance(value.get(key, ""), str | None):
        raise bad_request(_join(path, key))


def is_message_id(value: str) -> bool:
    """``<id@domain>``: a caller's Message-ID that the service keeps (an invalid one is dropped)."""
    return _MESSAGE_ID.fullmatch(value.strip()) is not None


def is_address(value: object) -> bool:
    """A plain ``local@domain.tld`` address: no display name, no angle brackets, no spaces."""
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


def plain_sender(value: object) -> str:
    """The sender address; a bare ``<addr>`` is accepted like the live service (java#39910)."""
    if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if not isinstance(value, str) or not is_address(value):
        raise bad_request("senderAddress")
    return value


def _switch(payload: Mapping[str, Any], name: str) -> bool:
    """A reserved ``x-ms-acsemail-*`` header in the message is on when it says ``true``."""
    headers = payload.get("headers")
    if not isinstance(headers, Mapping):
        return False
    return any(key.lower() == name and str(value).lower() == "true" for key, value in headers.items())


def _check_sender(payload: Mapping[str, Any], senders: frozenset[str] | None) -> None:
    sender = plain_sender(payload.get("senderAddress")).lower()
    if senders is not None and sender not in senders:
        raise ServiceError(400, "DomainNotLinked", "The specified sender domain has not been linked.")
    _optional_string(payload, "senderDisplayName", "")


def _check_addresses(entries: object, path: str) -> int:
    """Validate a list of ``{address, displayName}``; returns how many there are."""
    if entries is None:
        return 0
    if not isinstance(entries, list):
        raise bad_request(path)
    for index, item in enumerate(entries):
        where = f"{path}[{index}]"
        entry = _object(item, where, frozenset({"address", "displayName"}))
        if not is_address(entry.get("address")):
            raise bad_request(f"{where}.address")
        _optional_string(entry, "displayName", where)
    return len(entries)


def _check_recipients(payload: Mapping[str, Any], max_recipients: int) -> None:
    recipients = _object(payload.get("recipients"), "recipients", frozenset(_RECIPIENT_KINDS))
    if not isinstance(recipients.get("to"), list):
        raise bad_request("recipients.to")
    total = sum(_check_addresses(recipients.get(kind), f"recipients.{kind}") for kind in _RECIPIENT_KINDS)
    if total == 0:
        raise bad_request("recipients.to")
    if total > max_recipients:
        raise ServiceError(
            400,
            "BadRequest",
            f"Request body validation error. Total number of recipients ({total}) exceeds the limit of "
            f"{max_recipients}.",
        )


def _check_content(payload: Mapping[str, Any]) -> None:
    content = _object(payload.get("content"), "content", frozenset({"subject", "plainText", "html"}))
    subject = content.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise bad_request("content.subject")
    for field in ("plainText", "html"):
        _optional_string(content, field, "content")


def _check_headers(payload: Mapping[str, Any]) -> None:
    headers = payload.get("headers")
    if headers is None:
        return
    if not isinstance(headers, Mapping):
        raise bad_request("headers")
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or not isinstance(value, str) or "\r" in value or "\n" in value:
            raise bad_request(f"headers.{name}")
        if name.lower() == "message-id" and not is_message_id(value) and _switch(payload, VALIDATE_MESSAGE_ID):
            raise bad_request(f"headers.{name}")


def decode_attachment(content: object) -> bytes | None:
    """The attachment bytes, or None when ``contentInBase64`` is not strict base64."""
    if not isinstance(content, str):
        return None
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return None


def _attachment_problem(attachment: object, where: str, schema: Schema) -> str | None:
    """The property path that makes this attachment invalid, or None."""
    if not isinstance(attachment, Mapping):
        return where
    unknown = sorted(set(attachment) - schema.attachment_fields)
    if unknown:
        return f"{where}.{unknown[0]}"
    name = attachment.get("name")
    if not isinstance(name, str) or not name:
        return f"{where}.name"
    content_type = attachment.get("contentType")
    if not isinstance(content_type, str) or not is_allowed(content_type):
        return f"{where}.contentType"
    if decode_attachment(attachment.get("contentInBase64")) is None:
        return f"{where}.contentInBase64"
    if not isinstance(attachment.get("contentId", ""), str | None):
        return f"{where}.contentId"
    return None


def _check_attachments(payload: Mapping[str, Any], schema: Schema) -> frozenset[int]:
    attachments = payload.get("attachments")
    if attachments is None:
        return frozenset()
    if not isinstance(attachments, list):
        raise bad_request("attachments")
    suppress = _switch(payload, SUPPRESS_INVALID_ATTACHMENT)
    ignore_duplicates = _switch(payload, IGNORE_DUPLICATE_CONTENT_ID)
    dropped: set[int] = set()
    content_ids: set[str] = set()
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        problem = _attachment_problem(attachment, where, schema)
        if problem is not None:
            if not suppress:
                raise bad_request(problem)
            dropped.add(index)
            continue
        content_id = attachment.get("contentId")
        if content_id:
            if content_id in content_ids and not ignore_duplicates:
                raise bad_request(f"{where}.contentId")
            content_ids.add(content_id)
    return frozenset(dropped)


def validate_message(
    payload: object, *, senders: frozenset[str] | None, max_recipients: int, api_version: str
) -> frozenset[int]:
    """Raise the service's 400 for an invalid ``EmailMessage``; returns indices of suppressed attachments.

    ``senders`` must already be lower-cased (MailFrom matching is case-insensitive here: UNCONFIRMED).
    """
    if not isinstance(payload, Mapping):
        raise ServiceError(400, "BadRequest", "Request body validation error. The body must be a JSON object.")
    schema = Schema.for_version(api_version)
    _object(payload, "", schema.message_fields)
    _check_sender(payload, senders)
    _check_recipients(payload, max_recipients)
    _check_content(payload)
    _check_headers(payload)
    _check_addresses(payload.get("replyTo"), "replyTo")
    if not isinstance(payload.get("userEngagementTrackingDisabled", False), bool | None):
        raise bad_request("userEngagementTrackingDisabled")
    return _check_attachments(payload, schema)
