"""What the emulator received: one record per accepted mail, and its RFC 5322 rendering (.eml).

Custom headers are added to the rendered mail but never replace what the service sets itself (From,
Sender, To, Cc, Bcc, Reply-To, Subject, Date, MIME and content headers). A caller's ``Message-ID`` is kept
when it is a valid ``<id@domain>`` and dropped otherwise, as the ACS docs describe for
``x-ms-acsemail-validate-message-id``; there is never more than one.
"""

from __future__ import annotations

import base64
import email.policy
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, NamedTuple

from .validation import decode_attachment, is_message_id, plain_sender

_RESERVED_HEADER_PREFIX = "x-ms-acsemail-"
_SERVICE_HEADERS = frozenset(
    {
        "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version",
        "content-type", "content-transfer-encoding", "content-disposition", "content-id",
    }
)  # fmt: skip


@dataclass(frozen=True)
class OperationError:
    """Why an operation ended ``Failed`` (the status body's ``error``)."""

    code: str
    message: str


class Attachment(NamedTuple):
    name: str
    content_type: str
    content: bytes
    content_id: str | None


def _one_line(text: str) -> str:
    """Header-safe text: the service would fold a multi-line subject/display name, never inject headers."""
    return " ".join(text.splitlines())


def _addresses(entries: Iterable[Mapping[str, Any]] | None) -> list[Address]:
    return [
        Address(display_name=_one_line(entry.get("displayName") or ""), addr_spec=entry["address"])
        for entry in entries or ()
    ]


@dataclass(frozen=True)
class ReceivedMail:
    """A mail the emulator answered 202 for, exactly as it was POSTed."""

    operation_id: str
    payload: dict[str, Any]
    raw_body: bytes
    headers: dict[str, str]  # HTTP request headers, without Authorization
    received_at: datetime
    error: OperationError | None = None  # the status body's error (injected Failed or Canceled outcome)
    suppressed_attachments: frozenset[int] = field(default_factory=frozenset)
    api_version: str = ""
    end: str = "Succeeded"  # the terminal status: Succeeded, Failed or Canceled (injected)
    held: str | None = None  # NotStarted/Running reported instead, while held (injected)
    held_until: float | None = None  # epoch seconds; None holds for good

    def to_record(self) -> dict[str, Any]:
        """A JSON-friendly record, so the operation survives a restart of the emulator."""
        return {
            "operation_id": self.operation_id,
            "body": base64.b64encode(self.raw_body).decode("ascii"),
            "headers": self.headers,
            "received_at": self.received_at.isoformat(),
            "error": None if self.error is None else asdict(self.error),
            "suppressed_attachments": sorted(self.suppressed_attachments),
            "api_version": self.api_version,
            "end": self.end,
            "held": self.held,
            "held_until": self.held_until,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ReceivedMail:
        body = base64.b64decode(record["body"])
        error = record.get("error")
        return cls(
            record["operation_id"],
            json.loads(body),
            body,
            dict(record["headers"]),
            datetime.fromisoformat(record["received_at"]),
            None if error is None else OperationError(**error),
            frozenset(record.get("suppressed_attachments", ())),
            record.get("api_version", ""),
            record.get("end", "Succeeded"),
            record.get("held"),
            record.get("held_until"),
        )

    @property
    def sender(self) -> str:
        return plain_sender(self.payload["senderAddress"])

    @property
    def subject(self) -> str:
        subject: str = self.payload["content"]["subject"]
        return subject

    def recipients(self, kind: str = "to") -> list[str]:
        """Addresses of ``to``, ``cc`` or ``bcc``."""
        return [entry["address"] for entry in self.payload["recipients"].get(kind) or ()]

    def attachments(self) -> list[Attachment]:
        """Decoded attachments, minus those dropped by ``x-ms-acsemail-suppress-invalid-attachment``."""
        result = []
        for index, item in enumerate(self.payload.get("attachments") or ()):
            if index in self.suppressed_attachments:
                continue
            content = decode_attachment(item["contentInBase64"])
            assert content is not None  # validated before the mail was accepted
            result.append(Attachment(item["name"], item["contentType"], content, item.get("contentId") or None))
        return result

    def to_email_message(self) -> EmailMessage:
        """The RFC 5322 message ACS would hand on: alternatives, inline ``cid:`` parts, attachments.

        Bcc is kept as a header (like a sent-items copy) so the record shows every recipient.
        """
        payload = self.payload
        msg = EmailMessage()
        msg["From"] = self.sender
        recipients = payload["recipients"]
        for header, kind in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
            if recipients.get(kind):
                msg[header] = _addresses(recipients[kind])
        if payload.get("replyTo"):
            msg["Reply-To"] = _addresses(payload["replyTo"])
        msg["Subject"] = _one_line(self.subject)
        msg["Date"] = format_datetime(self.received_at)
        message_id = f"<{self.operation_id}@acs-emulator.invalid>"
        for name, value in (payload.get("headers") or {}).items():
            lowered = name.lower()
            if lowered == "message-id" and is_message_id(value):
                message_id = value.strip()
            elif not lowered.startswith(_RESERVED_HEADER_PREFIX) and lowered not in _SERVICE_HEADERS:
                msg[name] = value
        msg["Message-ID"] = message_id
        self._set_body(msg)
        return msg

    def _set_body(self, msg: EmailMessage) -> None:
        content = self.payload["content"]
        plain, html = content.get("plainText"), content.get("html")
        if plain or not html:
            msg.set_content(plain or "")
        if html:
            if plain:
                msg.add_alternative(html, subtype="html")
            else:
                msg.set_content(html, subtype="html")
        html_part = msg.get_body(("html",)) if html else None
        # Inline parts first: once the message is multipart/mixed its html body can no longer become related.
        attachments = sorted(self.attachments(), key=lambda a: not (a.content_id and html_part is not None))
        for attachment in attachments:
            maintype, _, subtype = attachment.content_type.split(";", 1)[0].strip().lower().partition("/")
            cid = f"<{attachment.content_id}>" if attachment.content_id else None
            if cid and isinstance(html_part, EmailMessage):
                html_part.add_related(
                    attachment.content, maintype, subtype, cid=cid, filename=attachment.name, disposition="inline"
                )
            else:
                msg.add_attachment(attachment.content, maintype, subtype, cid=cid, filename=attachment.name)

    def eml_bytes(self) -> bytes:
        return self.to_email_message().as_bytes(policy=email.policy.SMTP)

    def summary(self) -> dict[str, Any]:
        """A compact, secret-free description for the admin API."""
        return {
            "operation_id": self.operation_id,
            "received_at": self.received_at.isoformat(),
            "from": self.sender,
            "to": self.recipients("to"),
            "cc": self.recipients("cc"),
            "bcc": self.recipients("bcc"),
            "subject": self.subject,
            "attachments": [attachment.name for attachment in self.attachments()],
            "error": None if self.error is None else {"code": self.error.code, "message": self.error.message},
        }


def write_record(directory: Path, mail: ReceivedMail) -> None:
    """``<operation_id>.eml`` plus ``<operation_id>.json`` (the raw request body). Blocking: run in a thread."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{mail.operation_id}.eml").write_bytes(mail.eml_bytes())
    (directory / f"{mail.operation_id}.json").write_bytes(mail.raw_body)


def export_eml(directory: Path, mails: Iterable[ReceivedMail]) -> list[Path]:
    """Write one ``<operation_id>.eml`` per mail; returns the paths in the mails' order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for mail in mails:
        path = directory / f"{mail.operation_id}.eml"
        path.write_bytes(mail.eml_bytes())
        paths.append(path)
    return paths
