"""The email message model and its validation against what ACS Email accepts.

Everything ACS would refuse is refused here, before the message reaches the outbox, with an error that
names the field: a mail that cannot ever be sent must fail at the source, not hours later in a retry loop.
Recipient lists over the limit are refused, not split: splitting would silently change what each
recipient sees in To/Cc and turn one mail into several operations.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email import _header_value_parser as rfc5322  # the stdlib's strict parser
from email.errors import NonASCIILocalPartDefect as NonAsciiLocalPart  # check_address explains it
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Any

from .errors import ValidationError
from .mime import ALLOWED_BY_EXTENSION, ALLOWED_TYPES, guess_type, is_allowed

# What ACS takes: an ASCII dot-atom local part (no quoted or non-ASCII local parts, which ACS refuses) and a
# dotted domain of letters, digits and hyphens; internationalised (IDN) labels are kept as written.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_DOMAIN = re.compile(r"(?:[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?\.)+(?:[^\W\d_]{2,}|(?i:xn--[a-z0-9-]+))")
_LIST_SYNTAX_REFUSED = frozenset({"group", "comment"})  # valid RFC 5322, but not a plain list of recipients
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


# Lone surrogates (undecodable bytes kept by ``surrogateescape``) cannot be sent as UTF-8; U+FFFD is what a
# failed decoding left behind; control characters are refused by ACS in addresses and display names.
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _check_text(field_name: str, value: str) -> None:
    """Any text ACS gets must be valid Unicode: no lone surrogates (invalid UTF-8 smuggled in)."""
    if _SURROGATE.search(value):
        raise ValidationError(field_name, "contains bytes that are not valid UTF-8 (lone surrogates)")


def _check_line(field_name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValidationError(field_name, "must not contain line breaks (CR/LF)")
    _check_text(field_name, value)
    if _CONTROL.search(value):
        raise ValidationError(field_name, "must not contain control characters")


def _check_name(field_name: str, value: str) -> None:
    """A display name: one line of printable text, and no U+FFFD (the mark of text decoded wrongly)."""
    _check_line(field_name, value)
    if "\ufffd" in value:
        raise ValidationError(field_name, "contains U+FFFD (text decoded with the wrong charset)")


def check_address(address: str) -> str:
    """``address`` itself if ACS can take it as a plain addr-spec (``user@example.com``), else ValidationError."""
    _check_line("address", address)
    local, at, domain = address.rpartition("@")
    if at and not local.isascii():
        reason = "ACS accepts only ASCII before the @"
    elif not (at and len(local) <= 64 and _LOCAL_PART.fullmatch(local) and _valid_domain(domain)):
        reason = "expected user@example.com"
    else:
        return address
    raise ValidationError("address", f"{address!r} is not a valid email address ({reason})")


def _valid_domain(domain: str) -> bool:
    if not _DOMAIN.fullmatch(domain):
        return False
    try:
        return len(domain.encode("idna")) <= 253  # also checks each IDN label converts to at most 63 characters
    except UnicodeError:
        return False


@functools.lru_cache(maxsize=1024)
def _parse_list(text: str) -> tuple[EmailAddress, ...]:
    """Every address written in ``text``, exactly: anything the RFC 5322 parser had to repair is refused.

    Cached: the parser is slow and a source mails the same few recipients over and over (the result is immutable).
    """
    _check_line("address", text)
    if not text.strip(" \t,"):
        return ()
    # Outlook separates with ';': read it as ',' when no quoted name or comment could contain one.
    parsable = text if any(c in text for c in '"\\(') else text.replace(";", ",")
    try:
        tree, rest = rfc5322.get_address_list(parsable)
    except Exception:  # besides HeaderParseError, the parser trips on some garbage ('<', 'a@[', ' .;')
        raise _list_error(text, "not parsable") from None
    defects = [d for d in tree.all_defects if not isinstance(d, NonAsciiLocalPart)]
    if rest or defects or _has_token(tree, _LIST_SYNTAX_REFUSED):
        problem = str(defects[0]) if defects else f"unexpected {rest!r}" if rest else "no groups or comments"
        raise _list_error(text, problem)
    return tuple(EmailAddress(m.addr_spec, m.display_name or None) for m in tree.all_mailboxes)


def _list_error(text: str, problem: str) -> ValidationError:
    example = "'Name <user@example.com>, other@example.com'"
    return ValidationError("address", f"{text!r} is not an address list such as {example} ({problem})")


def _has_token(token: object, types: frozenset[str]) -> bool:
    if getattr(token, "token_type", None) in types:
        return True
    return isinstance(token, list) and any(_has_token(t, types) for t in token)


@dataclass(frozen=True)
class EmailAddress:
    """An address with an optional display name."""

    address: str
    display_name: str | None = None

    def __post_init__(self) -> None:
        check_address(self.address)
        if self.display_name is not None:
            _check_name("display name", self.display_name)

    @classmethod
    def parse(cls, value: str | EmailAddress | Mapping[str, str]) -> EmailAddress:
        """Accept ``a@b``, ``Name <a@b>``, an EmailAddress or ``{"address":…, "display_name":…}``."""
        if isinstance(value, EmailAddress):
            return value
        if isinstance(value, Mapping):
            if "address" not in value:
                raise ValidationError("address", f"missing 'address' in {dict(value)!r}")
            return cls(value["address"].strip(), value.get("display_name") or value.get("name") or None)
        parsed = _parse_list(value)
        if len(parsed) != 1:
            raise ValidationError("address", f"{value!r} is not a single email address")
        return parsed[0]

    def to_acs(self) -> dict[str, str]:
        """ACS ``EmailAddress`` object."""
        result = {"address": self.address}
        if self.display_name:
            result["displayName"] = self.display_name
        return result


def parse_addresses(
    value: str | EmailAddress | Iterable[str | EmailAddress] | None,
) -> tuple[EmailAddress, ...]:
    """A comma-separated string, one address, or a list of them, as a tuple of EmailAddress.

    Parsing is strict: ``Me <me@exa mple.com>`` or ``me@example.com <x@y.com>`` is refused, not repaired
    into some other recipient (as :func:`email.utils.getaddresses` would).
    """
    if value is None:
        return ()
    if isinstance(value, EmailAddress | Mapping):
        return (EmailAddress.parse(value),)
    if isinstance(value, str):
        return _parse_list(value)
    return tuple(EmailAddress.parse(v) for v in value)


def _recipients(
    field_name: str, value: str | EmailAddress | Iterable[str | EmailAddress] | None
) -> tuple[EmailAddress, ...]:
    """:func:`parse_addresses`, its errors naming the field (``to``, ``cc``…) rather than "address"."""
    try:
        return parse_addresses(value)
    except ValidationError as err:
        reason = err.reason if err.field == "address" else f"{err.field} {err.reason}"
        raise ValidationError(field_name, reason) from None


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
                suffix = PurePath(self.name).suffix
                raise ValidationError(
                    f"attachment {self.name!r}",
                    f"{f'{suffix!r} files are' if suffix else 'a file without extension is'} not on the ACS "
                    f"attachment allow-list ({', '.join(sorted(ALLOWED_BY_EXTENSION))}); pack it in a .zip, "
                    "or give an allowed content type if the file is of one",
                )
            object.__setattr__(self, "content_type", guessed)
        elif not is_allowed(self.content_type):
            raise ValidationError(
                f"attachment {self.name!r}",
                f"content type {self.content_type!r} is not on the ACS attachment allow-list "
                f"({', '.join(sorted(ALLOWED_TYPES))})",
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
            to=_recipients("to", to),
            subject=subject,
            text=text,
            html=html,
            cc=_recipients("cc", cc),
            bcc=_recipients("bcc", bcc),
            reply_to=_recipients("reply_to", reply_to),
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
        try:
            check_address(self.sender)
        except ValidationError:
            raise ValidationError(
                "sender", f"{self.sender!r} must be a plain address of a verified domain (no display name)"
            ) from None
        _check_line("subject", self.subject)
        if not self.subject.strip():
            raise ValidationError("subject", "is empty; ACS refuses mail without a subject")
        if not self.to:
            raise ValidationError(
                "to",
                "at least one To recipient is required (ACS's schema requires one; for undisclosed recipients, "
                "put your own address in To and the others in Bcc)",
            )
        if self.recipient_count > limits.max_recipients:
            raise ValidationError(
                "recipients",
                f"{self.recipient_count} recipients; ACS accepts at most {limits.max_recipients} per mail "
                "(to + cc + bcc). Send several mails instead",
            )
        if not self.text and not self.html:
            raise ValidationError("body", "is empty; give a plain-text or an HTML body (ACS refuses mail without one)")
        _check_text("text", self.text or "")
        _check_text("html", self.html or "")
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
