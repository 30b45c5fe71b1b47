"""Request body validation as the ACS Email service does it (reference §1.4, §1.7, §4).

Each failure raises the live 400 shape "Request body validation error. See property '<path>'".
UNCONFIRMED choices (no source says what the service does; this is our pick):
- a message with no recipient at all is rejected at ``recipients.to``; ``to`` may be empty if cc/bcc exist
  (the SDK's own live recording got 202 with only cc/bcc);
- more than ``max_recipients`` (to+cc+bcc) is a 400 with a message naming the limit;
- a sender outside ``senders``: 400 ``DomainNotLinked`` when its domain is not linked at all, else 400
  ``InvalidSenderUserName`` (SMTP says "5.1.7 The specified sender domain has not been linked.");
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
from typing import Any

from acs_email_core.mime import is_allowed

from .responses import ServiceError, bad_request

SUPPRESS_INVALID_ATTACHMENT = "x-ms-acsemail-suppress-invalid-attachment"
IGNORE_DUPLICATE_CONTENT_ID = "x-ms-acsemail-ignore-duplicate-content-id"

_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field name: printable ASCII except ':'
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_RECIPIENT_KINDS = ("to", "cc", "bcc")


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
    if senders is None or sender in senders:
        return
    domain = sender.rpartition("@")[2]
    if any(allowed.rpartition("@")[2] == domain for allowed in senders):
        raise ServiceError(
            400, "InvalidSenderUserName", "The specified sender username is not configured for the domain."
        )
    raise ServiceError(400, "DomainNotLinked", "The specified sender domain has not been linked.")


def _check_addresses(entries: object, path: str) -> int:
    """Validate a list of ``{address, displayName}``; returns how many there are."""
    if entries is None:
        return 0
    if not isinstance(entries, list):
        raise bad_request(path)
    for index, entry in enumerate(entries):
        where = f"{path}[{index}]"
        if not isinstance(entry, Mapping):
            raise bad_request(where)
        if not is_address(entry.get("address")):
            raise bad_request(f"{where}.address")
        if not isinstance(entry.get("displayName", ""), str | None):
            raise bad_request(f"{where}.displayName")
    return len(entries)


def _check_recipients(payload: Mapping[str, Any], max_recipients: int) -> None:
    recipients = payload.get("recipients")
    if not isinstance(recipients, Mapping):
        raise bad_request("recipients")
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
    content = payload.get("content")
    if not isinstance(content, Mapping):
        raise bad_request("content")
    subject = content.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise bad_request("content.subject")
    for field in ("plainText", "html"):
        if not isinstance(content.get(field, ""), str | None):
            raise bad_request(f"content.{field}")


def _check_headers(payload: Mapping[str, Any]) -> None:
    headers = payload.get("headers")
    if headers is None:
        return
    if not isinstance(headers, Mapping):
        raise bad_request("headers")
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or not isinstance(value, str) or "\r" in value or "\n" in value:
            raise bad_request(f"headers.{name}")


def decode_attachment(content: object) -> bytes | None:
    """The attachment bytes, or None when ``contentInBase64`` is not strict base64."""
    if not isinstance(content, str):
        return None
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return None


def _attachment_problem(attachment: object, where: str) -> str | None:
    """The property path that makes this attachment invalid, or None."""
    if not isinstance(attachment, Mapping):
        return where
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


def _check_attachments(payload: Mapping[str, Any]) -> frozenset[int]:
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
        problem = _attachment_problem(attachment, where)
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


def validate_message(payload: object, *, senders: frozenset[str] | None, max_recipients: int) -> frozenset[int]:
    """Raise the service's 400 for an invalid ``EmailMessage``; returns indices of suppressed attachments.

    ``senders`` must already be lower-cased (MailFrom matching is case-insensitive here: UNCONFIRMED).
    """
    if not isinstance(payload, Mapping):
        raise ServiceError(400, "BadRequest", "Request body validation error. The body must be a JSON object.")
    _check_sender(payload, senders)
    _check_recipients(payload, max_recipients)
    _check_content(payload)
    _check_headers(payload)
    _check_addresses(payload.get("replyTo"), "replyTo")
    return _check_attachments(payload)
