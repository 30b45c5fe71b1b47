"""Diagnostics: settings, outbox counters and recent failures, with every secret and address redacted.

Keys are redacted by name, and then every string is scrubbed of the secret values themselves: service
messages can quote them (Entra's errors name the client id, a URL names the resource).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from homeassistant.components.diagnostics import REDACTED, async_redact_data
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant

from .const import (
    CONF_ADDRESSES,
    CONF_AUTHORITY,
    CONF_CA_FILE,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_CONNECTION_STRING,
    CONF_DEFAULT_RECIPIENTS,
    CONF_ENDPOINT,
    CONF_SENDER,
    CONF_TENANT_ID,
)
from .core.outbox import State
from .core.transport import parse_connection_string
from .runtime import AcsEmailConfigEntry

TO_REDACT = {
    CONF_CLIENT_SECRET,
    CONF_CONNECTION_STRING,
    CONF_TENANT_ID,
    CONF_CLIENT_ID,
    CONF_ENDPOINT,
    CONF_AUTHORITY,
    CONF_CA_FILE,
    CONF_SENDER,
    CONF_DEFAULT_RECIPIENTS,
    CONF_ADDRESSES,
    "title",
}
RECENT_FAILURES = 20


def _sensitive_values(entry: AcsEmailConfigEntry) -> set[str]:
    values: set[str] = set()
    data = entry.data
    for key in (CONF_CLIENT_SECRET, CONF_TENANT_ID, CONF_CLIENT_ID, CONF_SENDER, CONF_CONNECTION_STRING):
        if isinstance(value := data.get(key), str) and value:
            values.add(value)
    endpoint = data.get(CONF_ENDPOINT)
    if data.get(CONF_CONNECTION_STRING):
        endpoint, access_key = parse_connection_string(data[CONF_CONNECTION_STRING])
        values.add(access_key)
    for url in (endpoint, data.get(CONF_AUTHORITY)):
        if isinstance(url, str) and (host := urlsplit(url).hostname):
            values.add(host)
    values.update(entry.options.get(CONF_DEFAULT_RECIPIENTS) or [])
    for subentry in entry.subentries.values():
        values.update(subentry.data.get(CONF_ADDRESSES) or [])
        values.add(subentry.title)
    values.add(entry.title)
    return {v for v in values if len(v) >= 3}  # never scrub every "a" out of the report


def _scrub(value: Any, secrets: Iterable[str]) -> Any:
    """Replace any secret inside strings, recursively."""
    ordered = sorted(secrets, key=len, reverse=True)  # a connection string before the key inside it
    if isinstance(value, str):
        for secret in ordered:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, ordered) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, ordered) for v in value]
    return value


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: AcsEmailConfigEntry) -> dict[str, Any]:
    """What support needs to see, and nothing a reader could misuse."""
    report: dict[str, Any] = {
        "state": entry.state.value,
        "entry": {
            "title": entry.title,
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": async_redact_data(dict(entry.options), TO_REDACT),
            "subentries": [
                async_redact_data({"type": s.subentry_type, "title": s.title, **dict(s.data)}, TO_REDACT)
                for s in entry.subentries.values()
            ],
        },
    }
    if entry.state is ConfigEntryState.LOADED:
        report.update(await _engine_report(entry))
    return dict(_scrub(report, _sensitive_values(entry)))


async def _engine_report(entry: AcsEmailConfigEntry) -> dict[str, Any]:
    """The running engine: settings in effect, counters, the latest dead and queued mail (no subjects)."""
    runtime = entry.runtime_data
    engine = runtime.engine
    status = await engine.status()
    dead = await engine.outbox.list(State.DEAD, limit=RECENT_FAILURES)
    queued = await engine.outbox.list(State.QUEUED, limit=RECENT_FAILURES)
    return {
        "engine": {
            "auth_method": engine.settings.credentials.auth_method,
            "quota": engine.settings.quota.describe(),
            "notify_service": runtime.notify_service_name,
            "status": asdict(status),
        },
        "outbox": {
            state: [
                {
                    "attempts": item.attempts,
                    "recipients": item.recipients,
                    "size": item.size,
                    "age": round(max(0.0, item.updated_at - item.created_at)),
                    "source": item.source,
                    "last_error": item.last_error,
                }
                for item in items
            ]
            for state, items in (("dead", dead), ("queued", queued))
        },
    }
