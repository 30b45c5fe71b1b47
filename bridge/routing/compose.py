"""Turning one event into the mail a route describes: template variables, recipients, bodies, attachments."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from acs_email_core.errors import AcsEmailError, TemplateError, ValidationError
from acs_email_core.message import (
    DEFAULT_LIMITS,
    Attachment,
    EmailAddress,
    EmailMessage,
    MessageLimits,
    parse_addresses,
)
from acs_email_core.templates import TemplateRenderer

from ..mqtt.events import InboundEvent
from .payload import MISSING, PayloadError, decode, lookup, split_path
from .routes import AttachmentSpec, Route
from .tmpl import Tmpl

Latest = Callable[[str], bytes | None]

_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"GIF8", "image/gif", ".gif"),
    (b"%PDF", "application/pdf", ".pdf"),
)


class ComposeError(AcsEmailError):
    """This event cannot become this route's mail (bad payload, failing template, unreadable file)."""


class MissingFileError(ComposeError):
    """The file an attachment names is not there (``missing_ok`` attachments are then left out)."""


@dataclass(frozen=True)
class Parsed:
    """An event's payload decoded once per format, shared by the routes that match it."""

    value: Any
    text: str | None


def parse(event: InboundEvent, route: Route, decoded: dict[str, Parsed] | None = None) -> Parsed:
    """Size check and decoding (once per format when ``decoded`` is shared); PayloadError says what is wrong.

    Routes may share the decoded value: templates run in an immutable sandbox.
    """
    if len(event.payload) > route.max_payload:
        raise PayloadError(
            f"payload of {len(event.payload):,} bytes is over this route's {route.max_payload:,} byte limit"
        )
    if decoded is not None and route.fmt in decoded:
        return decoded[route.fmt]
    parsed = Parsed(*decode(event.payload, route.fmt))
    if decoded is not None:
        decoded[route.fmt] = parsed
    return parsed


def latest_value(latest: Latest) -> Callable[[str], Any]:
    """``latest(topic)`` for templates: the last payload seen on a companion topic, decoded, or None."""

    def get(topic: str) -> Any:
        data = latest(topic)
        if data is None:
            return None
        try:
            return decode(data, "auto")[0]
        except PayloadError:
            return data

    return get


def variables(
    event: InboundEvent, route: Route, parsed: Parsed, renderer: TemplateRenderer, latest: Latest
) -> dict[str, Any]:
    """What ``when`` and templates see (``vars:`` are added by :func:`add_vars` once ``when`` holds)."""
    result: dict[str, Any] = {
        "topic": event.topic,
        "topic_parts": event.topic.split("/"),
        "payload": parsed.value,
        "raw": parsed.text,
        "time": renderer.to_datetime(event.received_at),
        "received": event.received_at,
        "qos": event.qos,
        "retained": event.retain,
        "event_id": event.event_id,
        "route": route.name,
        "latest": latest_value(latest),
        "previous": None,
        "value": None,
        "attachments": [],
    }
    return result


def add_vars(route: Route, context: dict[str, Any]) -> None:
    """Render the route's ``vars:`` in order (each may use the ones before it)."""
    for name, template in route.variables:
        context[name] = template.render(context)


def _render_list(field: str, templates: tuple[Tmpl, ...], context: Mapping[str, Any]) -> tuple[EmailAddress, ...]:
    result: list[EmailAddress] = []
    for template in templates:
        text = template.render(context)
        try:
            result.extend(parse_addresses(text or None))
        except ValidationError as err:
            raise ComposeError(f"{field} rendered {text!r}: {err.reason}") from None
    return tuple(result)


@dataclass(frozen=True)
class Recipients:
    to: tuple[EmailAddress, ...]
    cc: tuple[EmailAddress, ...]
    bcc: tuple[EmailAddress, ...]
    reply_to: tuple[EmailAddress, ...]

    def key(self) -> str:
        """Digest group: events for the same recipients share one digest mail."""
        parts = (self.to, self.cc, self.bcc, self.reply_to)
        return json.dumps([[[a.address, a.display_name] for a in part] for part in parts])

    @classmethod
    def from_key(cls, key: str) -> Recipients:
        to, cc, bcc, reply_to = (tuple(EmailAddress(a, n) for a, n in part) for part in json.loads(key))
        return cls(to, cc, bcc, reply_to)


def recipients(route: Route, context: Mapping[str, Any]) -> Recipients:
    result = Recipients(
        _render_list("to", route.to, context),
        _render_list("cc", route.cc, context),
        _render_list("bcc", route.bcc, context),
        _render_list("reply_to", route.reply_to, context),
    )
    if not result.to:
        raise ComposeError("the 'to' templates rendered no recipient")
    return result


@dataclass(frozen=True)
class Rendered:
    """A mail's parts before it becomes an EmailMessage (or a digest line)."""

    recipients: Recipients
    subject: str
    text: str | None
    html: str | None
    priority: str
    attachments: tuple[Attachment, ...]


def render(route: Route, context: dict[str, Any], attachments: tuple[Attachment, ...] = ()) -> Rendered:
    """Render every template of the route; TemplateError and ValidationError propagate."""
    context["attachments"] = [a.name for a in attachments]
    priority = route.priority.render(context).strip().lower() if route.priority else "normal"
    return Rendered(
        recipients=recipients(route, context),
        subject=route.subject.render(context) or route.name,
        text=route.text.render(context) if route.text else None,
        html=route.html.render(context) if route.html else None,
        priority=priority or "normal",
        attachments=attachments,
    )


def build(
    rendered: Rendered, *, sender: str, message_id: str | None, limits: MessageLimits = DEFAULT_LIMITS
) -> EmailMessage:
    r = rendered.recipients
    return EmailMessage.build(
        sender=sender,
        to=r.to,
        cc=r.cc,
        bcc=r.bcc,
        reply_to=r.reply_to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        attachments=rendered.attachments,
        priority=rendered.priority,
        message_id=message_id,
        limits=limits,
    )


# ---- attachments ---------------------------------------------------------------------------------------------
def sniff(data: bytes) -> tuple[str | None, str]:
    """(content type, file extension) from the first bytes; (None, '') when unknown."""
    for magic, content_type, extension in _MAGIC:
        if data.startswith(magic):
            return content_type, extension
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return None, ""


def _make(spec: AttachmentSpec, context: Mapping[str, Any], data: bytes, default_name: str) -> Attachment:
    name = spec.name.render(context).strip() if spec.name else ""
    name = PurePosixPath(name.replace("\\", "/")).name.strip(". ")  # a payload's "../x.pdf" or "C:\\x.pdf": x.pdf
    name = name or default_name
    content_type = spec.content_type
    sniffed, extension = sniff(data)
    if not PurePosixPath(name).suffix and extension:
        name += extension
    if content_type is None and sniffed and not PurePosixPath(name).suffix:
        content_type = sniffed
    return Attachment(name, data, content_type, name if spec.inline else None)


def _read_inside(path_text: str, allowed: tuple[Path, ...], limit: int) -> tuple[bytes, str]:
    """Read a file only if its real path (symlinks resolved) lies inside an allowed directory."""
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        raise ComposeError(f"attachment path {path_text!r} is not absolute")
    real = path.resolve()
    roots = [a.resolve() for a in allowed]
    if not any(real == root or real.is_relative_to(root) for root in roots):
        raise ComposeError(f"attachment {path_text!r} is outside the allowed directories")
    try:
        # Non-blocking open and a check on the opened file: a FIFO or device named by a payload must not hang
        # the event (and every acknowledgement after it); a file growing after the check is read to the limit.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ComposeError(f"attachment {path_text!r} is not a regular file")
            data = file.read(limit + 1)
        if len(data) > limit:
            raise ComposeError(f"attachment {path_text!r} is over the {limit:,} byte mail limit")
        return data, real.name
    except FileNotFoundError:
        raise MissingFileError(f"attachment {path_text!r} does not exist") from None
    except OSError as err:
        raise ComposeError(f"cannot read attachment {path_text!r}: {err.strerror}") from None


async def attachments(
    route: Route, context: Mapping[str, Any], latest: Latest, limits: MessageLimits = DEFAULT_LIMITS
) -> tuple[Attachment, ...]:
    """Attachments of one event; optional ones are skipped when their source is absent (empty or never seen)."""
    result: list[Attachment] = []
    for spec in route.attachments:
        try:
            ref = spec.ref.render(context).strip()
        except TemplateError as err:
            if spec.optional and (err.variable or "").startswith("payload"):  # a field this payload lacks
                continue
            raise
        if spec.source == "base64":
            value = lookup(context.get("payload"), split_path(ref)) if ref else MISSING
            if value is MISSING or value in (None, ""):
                if spec.optional:
                    continue
                raise ComposeError(f"payload has no {ref!r} field to attach")
            try:
                data = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                raise ComposeError(f"payload field {ref!r} is not valid base64") from None
            result.append(_make(spec, context, data, "attachment"))
        elif spec.source == "file":
            if not ref:
                if spec.optional:
                    continue
                raise ComposeError("the attachment path rendered empty")
            try:
                data, name = await asyncio.to_thread(_read_inside, ref, route.allowed_dirs, limits.max_request_bytes)
            except MissingFileError:
                if spec.missing_ok:
                    continue
                raise
            result.append(_make(spec, context, data, name))
        else:
            data_or_none = latest(ref)
            if data_or_none is None:
                if spec.optional:
                    continue
                raise ComposeError(f"nothing was received yet on companion topic {ref!r}")
            result.append(_make(spec, context, data_or_none, ref.rsplit("/", 1)[-1]))
    return tuple(result)
