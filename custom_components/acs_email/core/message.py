"""The email message model and its validation against what ACS Email accepts.

Everything ACS would refuse is refused here, before the message reaches the outbox, with an error that
names the field: a mail that cannot ever be sent must fail at the source, not hours later in a retry loop.
Recipient lists over the limit are refused, not split: splitting would silently change what each
recipient sees in To/Cc and turn one mail into several operations.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import getaddresses
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import ValidationError
from .mime import guess_type, is_allowed

# Pragmatic addr-spec: no spaces or angle brackets, one @, a dotted domain of letters/digits/hyphens
# (internationalised labels allowed). ACS rejects what this rejects; it may reject a few it lets through.
_ADDRESS = re.compile(
    r"^[^\s@<>()\[\],;:\"]+@(?:[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?\.)+(?:[^\W\d_]{2,}|(?i:xn--[a-z0-9-]+))$"
)
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ':' (RFC 5322 field name)
_RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "subject", "sender", "content-type", "mime-version"}
)
_PRIORITY_HEADERS = frozenset({"x-priority", "importance", "x-msmail-priority"})


class Priority(StrEnum):
    """Importance shown by mail clients; carried in the ``X-Priority`` and ``Importance`` headers."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


_PRIORITY_VALUES = {Priority.HIGH: ("1", "high"), Priority.LOW: ("5", "low")}


@dataclass(frozen=True)
class MessageLimits:
    """Service limits; raise them only when Microsoft has raised them for your resource."""

    max_recipients: int = 50
    max_request_bytes: int = 10 * 1024 * 1024


DEFAULT_LIMITS = MessageLimits()
# Attachments are base64-encoded a slice at a time: the GIL is free between slices, so an event loop in
# another thread keeps running while the outbox's thread encodes megabytes.
_BASE64_SLICE = 3 * 64 * 1024
_COMPACT = (",", ":")  # the request body is sent as serialised here; sizes are measured on it


def _base64(data: bytes) -> str:
    return "".join(
        base64.b64encode(data[i : i + _BASE64_SLICE]).decode("ascii") for i in range(0, len(data), _BASE64_SLICE)
    )


def _base64_size(data: bytes) -> int:
    return 4 * -(-len(data) // 3)


def _check_line(field_name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValidationError(field_name, "must not contain line breaks (CR/LF)")


@dataclass(frozen=True)
class EmailAddress:
    """An address with an optional display name."""

    address: str
    display_name: str | None = None

    def __post_init__(self) -> None:
        _check_line("address", self.address)
        if not _ADDRESS.match(self.address):
            raise ValidationError("address", f"{self.address!r} is not a valid email address")
        if self.display_name is not None:
            _check_line("display name", self.display_name)

    @classmethod
    def parse(cls, value: str | EmailAddress | Mapping[str, str]) -> EmailAddress:
        """Accept ``a@b``, ``Name <a@b>``, an EmailAddress or ``{"address":…, "display_name":…}``."""
        if isinstance(value, EmailAddress):
            return value
        if isinstance(value, Mapping):
            if "address" not in value:
                raise ValidationError("address", f"missing 'address' in {dict(value)!r}")
            return cls(value["address"].strip(), value.get("display_name") or value.get("name") or None)
        _check_line("address", value)
        parsed = getaddresses([value])
        if len(parsed) != 1 or not parsed[0][1]:
            raise ValidationError("address", f"{value!r} is not a single email address")
        name, address = parsed[0]
        return cls(address, name or None)

    def to_acs(self) -> dict[str, str]:
        """ACS ``EmailAddress`` object."""
        result = {"address": self.address}
        if self.display_name:
            result["displayName"] = self.display_name
        return result


def parse_addresses(
    value: str | EmailAddress | Iterable[str | EmailAddress] | None,
) -> tuple[EmailAddress, ...]:
    """A comma-separated string, one address, or a list of them, as a tuple of EmailAddress."""
    if value is None:
        return ()
    if isinstance(value, EmailAddress | Mapping):
        return (EmailAddress.parse(value),)
    if isinstance(value, str):
        _check_line("address", value)
        parsed = [EmailAddress(addr, name or None) for name, addr in getaddresses([value]) if addr]
        if not parsed and value.strip():
            raise ValidationError("address", f"{value!r} is not a valid email address list")
        return tuple(parsed)
    return tuple(EmailAddress.parse(v) for v in value)


@dataclass(frozen=True)
class Attachment:
    """A file to attach; with ``content_id`` it is inline (``<img src="cid:…">`` in the HTML body)."""

    name: str
    data: bytes
    content_type: str | None = None
    content_id: str | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValidationError("attachment", "needs a file name")
        _check_line(f"attachment {self.name!r}", self.name)
        if self.content_type is not None:
            _check_line(f"attachment {self.name!r} content type", self.content_type)
        if self.content_type is None:
            guessed = guess_type(self.name)
            if guessed is None:
                raise ValidationError(
                    f"attachment {self.name!r}",
                    "type cannot be guessed from the file name and is not on the ACS allow-list; "
                    "give content_type explicitly or rename the file",
                )
            object.__setattr__(self, "content_type", guessed)
        elif not is_allowed(self.content_type):
            raise ValidationError(
                f"attachment {self.name!r}", f"content type {self.content_type!r} is not allowed by ACS Email"
            )
        if not self.data:
            raise ValidationError(f"attachment {self.name!r}", "is empty")
        if self.content_id is not None:
            _check_line(f"attachment {self.name!r} content id", self.content_id)
            if not self.content_id.strip():
                raise ValidationError(f"attachment {self.name!r}", "content id is empty")

    @classmethod
    def from_path(
        cls, path: str | Path, *, content_id: str | None = None, content_type: str | None = None
    ) -> Attachment:
        """Read a file (blocking: call it in an executor from async code)."""
        p = Path(path)
        return cls(p.name, p.read_bytes(), content_type, content_id)

    def to_acs_meta(self) -> dict[str, str]:
        """ACS attachment object without its content (cheap)."""
        result = {"name": self.name, "contentType": self.content_type or ""}
        if self.content_id:
            result["contentId"] = self.content_id
        return result

    def to_acs(self) -> dict[str, str]:
        """ACS attachment object, content in base64."""
        return {**self.to_acs_meta(), "contentInBase64": _base64(self.data)}


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class EmailMessage:
    """One mail = one ACS send operation; ``message_id`` doubles as the operation id, making retries idempotent."""

    sender: str
    to: tuple[EmailAddress, ...]
    subject: str
    text: str | None = None
    html: str | None = None
    cc: tuple[EmailAddress, ...] = ()
    bcc: tuple[EmailAddress, ...] = ()
    reply_to: tuple[EmailAddress, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    message_id: str = field(default_factory=_new_id)
    disable_tracking: bool = False

    @classmethod
    def build(
        cls,
        *,
        sender: str,
        to: str | EmailAddress | Iterable[str | EmailAddress],
        subject: str,
        text: str | None = None,
        html: str | None = None,
        cc: str | EmailAddress | Iterable[str | EmailAddress] | None = None,
        bcc: str | EmailAddress | Iterable[str | EmailAddress] | None = None,
        reply_to: str | EmailAddress | Iterable[str | EmailAddress] | None = None,
        attachments: Iterable[Attachment] = (),
        headers: Mapping[str, str] | None = None,
        priority: Priority | str = Priority.NORMAL,
        message_id: str | None = None,
        disable_tracking: bool = False,
        limits: MessageLimits = DEFAULT_LIMITS,
    ) -> EmailMessage:
        """Build from loose inputs (comma-separated strings, lists) and validate everything at once."""
        try:
            prio = Priority(priority)
        except ValueError:
            raise ValidationError("priority", f"{priority!r} is not one of high, normal, low") from None
        message = cls(
            sender=sender,
            to=parse_addresses(to),
            subject=subject,
            text=text,
            html=html,
            cc=parse_addresses(cc),
            bcc=parse_addresses(bcc),
            reply_to=parse_addresses(reply_to),
            attachments=tuple(attachments),
            headers=dict(headers or {}),
            priority=prio,
            message_id=message_id or _new_id(),
            disable_tracking=disable_tracking,
        )
        message.validate(limits)
        return message

    @property
    def recipient_count(self) -> int:
        """To + Cc + Bcc, the number ACS limits per request."""
        return len(self.to) + len(self.cc) + len(self.bcc)

    def validate(self, limits: MessageLimits = DEFAULT_LIMITS) -> None:
        """Raise ValidationError for anything ACS would refuse.

        Cheap enough for an event loop whatever the attachments: the size after base64 is computed, not
        encoded (the outbox encodes in its own thread).
        """
        self._check_fields(limits)
        base64_size = sum(_base64_size(a.data) for a in self.attachments)  # ASCII: JSON adds no escapes
        self._check_size(self._payload([""] * len(self.attachments)), limits, base64_size)

    def _check_fields(self, limits: MessageLimits) -> None:
        try:
            canonical = str(uuid.UUID(self.message_id)) == self.message_id.lower()
        except ValueError:
            canonical = False
        if not canonical:
            raise ValidationError("message_id", f"{self.message_id!r} is not a UUID (ACS operation ids are)")
        if not _ADDRESS.match(self.sender) or "\n" in self.sender or "\r" in self.sender:
            raise ValidationError(
                "sender", f"{self.sender!r} must be a plain address of a verified domain (no display name)"
            )
        _check_line("subject", self.subject)
        if not self.to:
            raise ValidationError("to", "at least one recipient is required")
        if self.recipient_count > limits.max_recipients:
            raise ValidationError(
                "recipients",
                f"{self.recipient_count} recipients; ACS accepts at most {limits.max_recipients} per mail "
                "(to + cc + bcc). Send several mails instead",
            )
        if self.text is None and self.html is None:
            raise ValidationError("body", "give a plain text or an HTML body")
        content_ids = [a.content_id for a in self.attachments if a.content_id]
        duplicates = sorted({c for c in content_ids if content_ids.count(c) > 1})
        if duplicates:
            raise ValidationError("attachments", f"duplicate content ids {duplicates}")
        for name, value in self.headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValidationError(f"header {name!r}", "is not a valid header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValidationError(f"header {name!r}", "is set by ACS from the message fields; use those")
            _check_line(f"header {name!r}", value)

    def _headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.priority in _PRIORITY_VALUES and not any(k.lower() in _PRIORITY_HEADERS for k in headers):
            x_priority, importance = _PRIORITY_VALUES[self.priority]
            headers["X-Priority"] = x_priority
            headers["Importance"] = importance
        return headers

    def to_acs_payload(self, limits: MessageLimits = DEFAULT_LIMITS) -> dict[str, Any]:
        """The ACS ``EmailMessage`` request body, validated, including the size limit after base64.

        Encodes every attachment: megabytes of work, for a worker thread rather than an event loop.
        """
        self._check_fields(limits)
        payload = self._payload()
        self._check_size(payload, limits)
        return payload

    def to_acs_json(self, limits: MessageLimits = DEFAULT_LIMITS) -> str:
        """The request body as sent (compact JSON, ASCII), validated; the work of the outbox's thread.

        Attachments are encoded in slices and spliced into the JSON text, never passed through the JSON
        encoder: megabytes of base64 would hold the GIL, and so stall the event loop, for one long call.
        """
        self._check_fields(limits)
        marks = [f"acs-email-content-{uuid.uuid4().hex}" for _ in self.attachments]
        text = json.dumps(self._payload(marks), separators=_COMPACT)
        base64_size = sum(_base64_size(a.data) for a in self.attachments)
        self._check_size_of(len(text) - sum(map(len, marks)) + base64_size, limits)
        parts, position = [], 0
        for mark, attachment in zip(marks, self.attachments, strict=True):
            found = text.index(mark, position)
            parts += [text[position:found], _base64(attachment.data)]
            position = found + len(mark)
        parts.append(text[position:])
        return "".join(parts)

    def _payload(self, contents: list[str] | None = None) -> dict[str, Any]:
        """The request body; ``contents`` stand in for the attachments' base64 (for sizing and splicing)."""
        content: dict[str, str] = {"subject": self.subject}
        if self.text is not None:
            content["plainText"] = self.text
        if self.html is not None:
            content["html"] = self.html
        recipients: dict[str, list[dict[str, str]]] = {"to": [a.to_acs() for a in self.to]}
        if self.cc:
            recipients["cc"] = [a.to_acs() for a in self.cc]
        if self.bcc:
            recipients["bcc"] = [a.to_acs() for a in self.bcc]
        payload: dict[str, Any] = {"senderAddress": self.sender, "content": content, "recipients": recipients}
        if self.attachments:
            if contents is None:
                payload["attachments"] = [a.to_acs() for a in self.attachments]
            else:
                pairs = zip(self.attachments, contents, strict=True)
                payload["attachments"] = [{**a.to_acs_meta(), "contentInBase64": c} for a, c in pairs]
        if self.reply_to:
            payload["replyTo"] = [a.to_acs() for a in self.reply_to]
        headers = self._headers()
        if headers:
            payload["headers"] = headers
        if self.disable_tracking:
            payload["userEngagementTrackingDisabled"] = True
        return payload

    @classmethod
    def _check_size(cls, payload: dict[str, Any], limits: MessageLimits, not_encoded: int = 0) -> None:
        """``not_encoded``: bytes of content left out of ``payload`` that the request will carry."""
        cls._check_size_of(len(json.dumps(payload, separators=_COMPACT)) + not_encoded, limits)  # ASCII: chars == bytes

    @staticmethod
    def _check_size_of(size: int, limits: MessageLimits) -> None:
        if size > limits.max_request_bytes:
            raise ValidationError(
                "size",
                f"request is {size:,} bytes after base64, over the {limits.max_request_bytes:,} byte limit "
                "(attachments grow by a third in base64)",
            )
