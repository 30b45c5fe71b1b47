"""Repair issues for problems the user can fix: paused sending, refused mail, a client secret about to expire.

Each issue id carries the entry id, so two accounts never share one; each is removed again as soon as the
condition is gone. The fix flows (``repairs.py``) start a re-authentication or retry the dead letters.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN

if TYPE_CHECKING:
    from .runtime import AcsEmailConfigEntry

FIX_REAUTH = "reauth"
FIX_RETRY = "retry"
FIX_RESUME = "resume"
SENDING_PAUSED = "sending_paused"
SENDER_NOT_LINKED = "sender_not_linked"
PERMISSION_DENIED = "permission_denied"
SECRET_EXPIRING = "secret_expiring"  # noqa: S105 - 30 days before (an issue key)
SECRET_EXPIRING_SOON = "secret_expiring_soon"  # noqa: S105 - 7 days before
SECRET_EXPIRED = "secret_expired"  # noqa: S105 - an issue key
EXPIRY_STAGES = (SECRET_EXPIRED, SECRET_EXPIRING_SOON, SECRET_EXPIRING)

# Why ACS refused a mail (the dead letter's reason), mapped to the issue that tells the user what to do.
_FIXABLE = (
    (
        re.compile(r"DomainNotLinked|InvalidSenderUserName|InvalidSenderDomain|sender domain has not been linked"),
        SENDER_NOT_LINKED,
    ),
    (re.compile(r"^HTTP 403\b|AuthorizationFailed|Forbidden"), PERMISSION_DENIED),
)


def issue_id(kind: str, entry: ConfigEntry) -> str:
    """Issue ids are per entry: ``<kind>_<entry_id>``."""
    return f"{kind}_{entry.entry_id}"


def _placeholders(entry: ConfigEntry, **extra: str) -> dict[str, str]:
    return {"title": entry.title, **extra}


@callback
def needs_new_credentials(reason: str) -> bool:
    """Whether a pause is fixed by entering credentials here (not by granting a role in Azure)."""
    return fixable_kind(reason) != PERMISSION_DENIED


def async_sending_paused(hass: HomeAssistant, entry: ConfigEntry, reason: str | None) -> None:
    """Show (reason set) or remove (None) the issue that says why sending waits (mail stays queued).

    A missing role is fixed in Azure, then sending resumes; anything else needs new credentials here.
    """
    if reason is None:
        for kind in (SENDING_PAUSED, PERMISSION_DENIED):
            ir.async_delete_issue(hass, DOMAIN, issue_id(kind, entry))
        return
    kind, fix = (SENDING_PAUSED, FIX_REAUTH) if needs_new_credentials(reason) else (PERMISSION_DENIED, FIX_RESUME)
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(kind, entry),
        is_fixable=True,
        is_persistent=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=kind,
        translation_placeholders=_placeholders(entry, reason=reason),
        data={"entry_id": entry.entry_id, "fix": fix},
    )


def fixable_kind(reason: str) -> str | None:
    """The issue kind for a dead letter's reason, when the user can fix its cause in Azure."""
    for pattern, kind in _FIXABLE:
        if pattern.search(reason):
            return kind
    return None


@callback
def async_mail_refused(hass: HomeAssistant, entry: AcsEmailConfigEntry, reason: str) -> None:
    """A mail died: raise an issue when the cause is one the user can fix (then retry the dead letters)."""
    kind = fixable_kind(reason)
    if kind is None:
        return
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(kind, entry),
        is_fixable=True,
        severity=ir.IssueSeverity.ERROR,
        translation_key=kind,
        translation_placeholders=_placeholders(entry, reason=reason, sender=entry.runtime_data.sender),
        data={"entry_id": entry.entry_id, "fix": FIX_RETRY},
    )


@callback
def async_clear_refused(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Dead letters were retried or purged: their issues no longer apply."""
    for kind in (SENDER_NOT_LINKED, PERMISSION_DENIED):
        ir.async_delete_issue(hass, DOMAIN, issue_id(kind, entry))


def expiry_stage(expiry: date, today: date) -> str | None:
    """Which secret-expiry issue applies today: 30 days ahead, 7 days ahead, expired, or none."""
    days = (expiry - today).days
    if days < 0:
        return SECRET_EXPIRED
    if days <= 7:
        return SECRET_EXPIRING_SOON
    if days <= 30:
        return SECRET_EXPIRING
    return None


@callback
def async_check_secret_expiry(hass: HomeAssistant, entry: ConfigEntry, expiry: date | None, today: date) -> None:
    """Keep exactly the issue of the current stage (a new stage shows even if the previous one was ignored)."""
    stage = None if expiry is None else expiry_stage(expiry, today)
    for kind in EXPIRY_STAGES:
        if kind != stage:
            ir.async_delete_issue(hass, DOMAIN, issue_id(kind, entry))
    if stage is None or expiry is None:
        return
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(stage, entry),
        is_fixable=True,
        severity=ir.IssueSeverity.WARNING if stage == SECRET_EXPIRING else ir.IssueSeverity.ERROR,
        translation_key=stage,
        translation_placeholders=_placeholders(entry, date=expiry.isoformat(), days=str(max((expiry - today).days, 0))),
        data={"entry_id": entry.entry_id, "fix": FIX_REAUTH},
    )


@callback
def async_delete_all(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """The entry is removed: none of its issues apply any more."""
    for kind in (SENDING_PAUSED, SENDER_NOT_LINKED, PERMISSION_DENIED, *EXPIRY_STAGES):
        ir.async_delete_issue(hass, DOMAIN, issue_id(kind, entry))
