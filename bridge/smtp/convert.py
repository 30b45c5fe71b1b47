"""MIME as devices send it → the core's EmailMessage, as ACS will deliver it.

* Recipients come from the envelope (RCPT TO), never from headers: devices omit Bcc headers, and a header
  naming someone the device did not RCPT must not make the relay write to them. Envelope recipients named
  in To/Cc keep that role and display name; the others become Bcc (all To when the device wrote neither
  a To nor a Cc header).
* The From becomes the verified ACS sender; the device's From (or its Reply-To) is kept as Reply-To, named
  by the policy's ``display_name``, else the From's display name, else the device name.
* The text/plain and text/html parts that are not attachments are the body; every other leaf is an
  attachment, inline when it has a Content-ID (the first part with a given Content-ID: a later duplicate is a
  plain attachment). An attached mail (message/rfc822) is one text attachment, not part of the body.
  RFC 2047/2231 encoded subjects and file names are decoded by ``email.policy.default``.
* A mail without a subject gets ``(no subject)``: ACS refuses an empty one.
* Control characters are dropped from the subject and names (and NUL from the text): ACS may refuse them
  after the device had its 250, and terminal escapes have no place in a subject.
* A part whose declared type ACS refuses (``application/octet-stream`` is common) is typed by its file name;
  legacy names (``image/jpg``, ``image/pjpeg``, ``application/x-pdf``…) are read as their standard type.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator, Sequence
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

from acs_email_core.errors import ValidationError
from acs_email_core.message import Attachment, EmailAddress, EmailMessage, MessageLimits, Priority
from acs_email_core.mime import ALLOWED_BY_EXTENSION, guess_type, is_allowed

from .policy import deliverable, matches

NO_SUBJECT = "(no subject)"  # ACS refuses an empty subject; devices often send none
_PRIORITY = {"1": Priority.HIGH, "2": Priority.HIGH, "4": Priority.LOW, "5": Priority.LOW}
_IMPORTANCE = {"high": Priority.HIGH, "low": Priority.LOW}
# Type names older devices (IP cameras, scanners) still send, often on parts without a file name.
_LEGACY_TYPES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "application/x-pdf": "application/pdf",
    "application/x-zip-compressed": "application/zip",
    "text/comma-separated-values": "text/csv",
    "audio/x-wav": "audio/wav",
}
# type -> its first extension on the ACS list (".jpg", not ".jpeg"): reversed, so the first one wins
_EXTENSIONS = {type_: f".{extension}" for extension, type_ in reversed(ALLOWED_BY_EXTENSION.items())}
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _one_line(value: object) -> str:
    """A header value on one line, without control characters; raw 8-bit UTF-8 (no RFC 2047) read as UTF-8."""
    text = str(value).encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return _CONTROLS.sub("", _LINE_BREAKS.sub(" ", text).replace("\t", " ")).strip()


def _headers(message: Message, name: str) -> list[Any]:
    """Every ``name`` header, parsed; raw when CPython's header parser chokes on a malformed one."""
    try:
        return list(message.get_all(name) or ())
    except Exception:
        return [value for key, value in message.raw_items() if key.lower() == name]


def _get(message: Message, name: str) -> str:
    return _one_line(next(iter(_headers(message, name)), ""))


def _decoded(text: str) -> str:
    try:
        return str(make_header(decode_header(text)))
    except (LookupError, UnicodeError, HeaderParseError):
        return text


def _header_addresses(message: Message, name: str) -> list[EmailAddress]:
    """Addresses of every ``name`` header; malformed entries are skipped (the envelope decides anyway)."""
    result = []
    for value in _headers(message, name):
        addresses = getattr(value, "addresses", None)
        pairs: list[tuple[str, str]]
        if addresses is not None:
            pairs = [(a.display_name, a.addr_spec) for a in addresses if isinstance(a, Address)]
        else:
            pairs = [(_decoded(display), addr) for display, addr in getaddresses([str(value)])]
        for display, addr in pairs:
            if not deliverable(addr):  # ACS would refuse the whole mail, after the device had its 250
                continue
            try:
                result.append(EmailAddress(addr, _one_line(display) or None))
            except ValidationError:
                continue
    return result


def _recipients(
    message: Message, rcpt_tos: Sequence[str], sender: str
) -> tuple[list[EmailAddress], list[EmailAddress], list[EmailAddress]]:
    remaining = {a.lower(): a for a in rcpt_tos}  # insertion order = envelope order
    roles: list[list[EmailAddress]] = [[], []]
    for role, header in zip(roles, ("to", "cc"), strict=True):
        for address in _header_addresses(message, header):
            if remaining.pop(address.address.lower(), None) is not None:
                role.append(address)
    to, cc = roles
    rest = [EmailAddress(a) for a in remaining.values()]
    if "to" not in message and "cc" not in message:
        return rest, [], []  # the device wrote no recipient headers (UPS cards, scripts): nothing to hide
    if not to:
        # ACS needs a To. Naming one Bcc recipient there would show that address to the others:
        # address it to the relay's own sender instead ("undisclosed recipients").
        to = [EmailAddress(sender)]
    return to, cc, rest


def _reply_to(
    message: Message, mail_from: str, display_name: str | None, device: str, senders: Sequence[str]
) -> list[EmailAddress]:
    author = next(iter(_header_addresses(message, "from")), None)
    explicit = _header_addresses(message, "reply-to")
    for header, address in [("from", author), *(("reply-to", a) for a in explicit)]:
        if address is not None and not matches(address.address, senders):
            raise ValidationError(header, f"<{address.address}> is not a sender allowed for device {device!r}")
    if explicit:
        return explicit
    if author is None:
        return [EmailAddress(mail_from, display_name or device)]
    return [EmailAddress(author.address, display_name or author.display_name or device)]


def _priority(message: Message) -> Priority:
    x_priority = _get(message, "x-priority")[:1]
    if x_priority in _PRIORITY:
        return _PRIORITY[x_priority]
    return _IMPORTANCE.get(_get(message, "importance").lower(), Priority.NORMAL)


def _text(part: MimeMessage) -> str:
    """The part as text: its declared charset, else UTF-8 (devices send 8-bit text as "us-ascii"), else cp1252."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    for charset in (part.get_content_charset(), "utf-8"):
        if charset:
            try:
                return payload.decode(charset).replace("\r\n", "\n").replace("\0", "")  # CRLF or bare LF alike
            except (LookupError, UnicodeError):
                continue
    return payload.decode("cp1252", errors="replace").replace("\r\n", "\n").replace("\0", "")


def _leaves(part: MimeMessage) -> Iterator[MimeMessage]:
    """Leaf parts in order; an attached mail (message/rfc822) is one leaf, not walked into."""
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        yield part
        return
    for child in part.iter_parts():
        assert isinstance(child, MimeMessage)  # policy.default builds every part with this class
        yield from _leaves(child)


def _attached_mail(part: MimeMessage) -> Attachment | None:
    """A forwarded mail as a text file: ACS accepts no message/rfc822 or .eml attachment."""
    inner = part.get_payload(0) if part.is_multipart() else None
    if not isinstance(inner, Message):
        return None
    subject = re.sub(r"[\\/:*?\"<>|]", "_", _get(inner, "subject"))[:80].strip()
    return Attachment(f"{subject or 'attached mail'}.eml.txt", inner.as_bytes(), "text/plain")


def _attachment(part: MimeMessage, index: int, content_ids: set[str]) -> Attachment | None:
    if part.get_content_type() == "message/rfc822":
        return _attached_mail(part)
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes) or not data:
        return None
    declared = _LEGACY_TYPES.get(part.get_content_type(), part.get_content_type())
    content_id = _get(part, "content-id").strip("<>").strip() or None
    if content_id is not None and content_id.lower() in content_ids:
        content_id = None  # an HTML reference finds the first part with this id; the others are attachments
    content_ids.add((content_id or "").lower())
    name = _one_line(part.get_filename() or "")
    if not name:
        extension = _EXTENSIONS.get(declared) or mimetypes.guess_extension(declared) or ".bin"
        name = f"{content_id or f'attachment-{index}'}{extension}"
    content_type = declared if is_allowed(declared) else guess_type(name)
    if content_type is None:
        raise ValidationError(f"attachment {name!r}", f"type {declared} is not one ACS Email accepts")
    return Attachment(name, data, content_type, content_id)


def _body(message: MimeMessage) -> tuple[str | None, str | None, list[Attachment]]:
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[Attachment] = []
    content_ids: set[str] = set()
    for index, part in enumerate(_leaves(message)):
        try:
            content_type = part.get_content_type()
            filename = part.get_filename()
            is_body = part.get_content_disposition() != "attachment" and not filename and "content-id" not in part
            if is_body and content_type == "text/plain":
                texts.append(_text(part))
            elif is_body and content_type == "text/html":
                htmls.append(_text(part))
            elif (attachment := _attachment(part, index, content_ids)) is not None:
                attachments.append(attachment)
        except ValidationError:
            raise
        except Exception as err:
            raise ValidationError(f"MIME part {index}", f"cannot be read ({type(err).__name__})") from None
    html = "\n".join(htmls) if htmls else None
    text = "\n\n".join(texts) if texts else None
    if text is None and html is None:  # a scan with nothing but the attachment; ACS refuses mail without a body
        names = ", ".join(attachment.name for attachment in attachments)
        text = f"Attached: {names}" if names else "(no text)"
    return text, html, attachments


def to_email_message(
    raw: bytes,
    *,
    mail_from: str,
    rcpt_tos: Sequence[str],
    sender: str,
    device: str,
    display_name: str | None = None,
    senders: Sequence[str] = ("*",),
    limits: MessageLimits,
) -> EmailMessage:
    """Convert one received mail (CPU-bound for big attachments: run it in a thread).

    ``senders`` are the device's allowed sender patterns: a From header outside them is refused, so a
    device cannot put someone else's address in the Reply-To of the mail it relays.
    """
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, MimeMessage)  # policy.default always builds this class
        to, cc, bcc = _recipients(message, rcpt_tos, sender)
        text, html, attachments = _body(message)
        reply_to = _reply_to(message, mail_from, display_name, device, senders)
        subject, priority = _get(message, "subject") or NO_SUBJECT, _priority(message)
    except RecursionError:  # the email package parses nested parts and header comments recursively
        raise ValidationError("MIME", "parts or header comments nested too deeply") from None
    return EmailMessage.build(
        sender=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
        priority=priority,
        limits=limits,
    )
