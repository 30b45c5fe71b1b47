"""The mail that lists held events: a digest window, a quiet night, or a stretch of short quota."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from acs_email_core.message import Attachment

from .compose import Recipients, Rendered

_TITLES = {"digest": "Digest", "quiet": "While you were away", "quota": "Digest (quota was short)"}
_MAX_TEXT = 2000  # characters of each event's text kept in a digest


@dataclass(frozen=True)
class HeldEvent:
    """One event waiting in a digest (its mail already rendered) or a collapse group (its payload kept)."""

    id: str
    kind: str
    grp: str
    due_at: float
    at: float
    topic: str
    payload: bytes
    subject: str
    text: str | None
    qos: int
    retained: bool


@dataclass(frozen=True)
class Extras:
    """What a digest adds to each event: its attachments (renamed to be unique) and notes about them."""

    attachments: tuple[Attachment, ...] = ()
    notes: Mapping[str, Sequence[str]] = field(default_factory=dict)  # event id → lines


def digest_mail(
    route: str,
    kind: str,
    recipients: Recipients,
    events: Sequence[HeldEvent],
    local: Sequence[datetime],
    *,
    extras: Extras | None = None,
) -> Rendered:
    """One event is mailed as it was rendered; several become a list, oldest first, in text and HTML."""
    extras = extras or Extras()
    if len(events) == 1:
        only = events[0]
        notes = "".join(f"\n{line}" for line in extras.notes.get(only.id, ()))
        return Rendered(
            recipients, only.subject, (only.text or only.subject) + notes, None, "normal", extras.attachments
        )
    first, last = local[0], local[-1]
    span = f"{first:%H:%M}-{last:%H:%M}" if first.date() == last.date() else f"{first:%d %b %H:%M} - {last:%d %b %H:%M}"
    subject = f"{_TITLES.get(kind, 'Digest')}: {len(events)} events from {route} ({span})"
    lines = [subject, ""]
    rows = []
    for event, when in zip(events, local, strict=True):
        lines.append(f"{when:%Y-%m-%d %H:%M:%S}  {event.subject}")
        body = "\n".join([(event.text or "").strip()[:_MAX_TEXT], *extras.notes.get(event.id, ())]).strip()
        lines.extend(f"    {line}" for line in body.splitlines())
        lines.append("")
        rows.append(
            f'<tr><td style="white-space:nowrap;vertical-align:top">{when:%Y-%m-%d %H:%M:%S}</td>'
            f"<td><b>{escape(event.subject)}</b>"
            f'<pre style="margin:0;white-space:pre-wrap">{escape(body)}</pre></td></tr>'
        )
    html = f'<p>{escape(subject)}</p>\n<table cellpadding="4">\n' + "\n".join(rows) + "\n</table>\n"
    return Rendered(recipients, subject, "\n".join(lines), html, "normal", extras.attachments)
