"""From a config entry to the core's settings: the one mapping the config flow and the runtime share.

The config flow validates credentials with :func:`credentials_from_data`; setup builds its engine with
:func:`engine_settings`. The outbox lives under the HA config directory, so HA backups include queued mail,
and is named after the entry id, so reauth, reconfigure and reloads keep it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.util import slugify

from .const import (
    AUTH_CONNECTION_STRING,
    CONF_AUTH_METHOD,
    CONF_AUTHORITY,
    CONF_CA_FILE,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_CONFIRM_DELIVERY,
    CONF_CONNECTION_STRING,
    CONF_DEFAULT_RECIPIENTS,
    CONF_ENDPOINT,
    CONF_MAX_AGE_HOURS,
    CONF_MAX_ATTEMPTS,
    CONF_NOTIFY_SERVICE,
    CONF_PER_HOUR,
    CONF_PER_MINUTE,
    CONF_QUOTA,
    CONF_RETENTION_DAYS,
    CONF_SENDER,
    CONF_TENANT_ID,
    DEFAULT_MAX_AGE_HOURS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_NOTIFY_SERVICE,
    DEFAULT_PER_HOUR,
    DEFAULT_PER_MINUTE,
    DEFAULT_QUOTA,
    DEFAULT_RETENTION_DAYS,
    DOMAIN,
    QUOTA_CUSTOM,
)
from .core.config import EngineSettings
from .core.dispatcher import CONFIRM_INTERVAL
from .core.quota import Quota, quota_from_config
from .core.retry import RetryPolicy
from .core.transport import AcsCredentials


def outbox_path(hass: HomeAssistant, entry_id: str) -> Path:
    """``<config>/acs_email/<entry_id>.db``: inside HA backups, one file per entry."""
    return Path(hass.config.path(DOMAIN, f"{entry_id}.db"))


def credentials_from_data(hass: HomeAssistant, data: Mapping[str, Any]) -> AcsCredentials:
    """ACS credentials from ``entry.data`` (or flow input of the same shape); a relative CA file is config-relative."""
    ca_file = data.get(CONF_CA_FILE) or None
    if ca_file is not None:
        ca_file = hass.config.path(ca_file)  # absolute paths stay as they are
    if data.get(CONF_AUTH_METHOD) == AUTH_CONNECTION_STRING:
        return AcsCredentials(connection_string=data[CONF_CONNECTION_STRING], ca_file=ca_file)
    return AcsCredentials(
        endpoint=data[CONF_ENDPOINT],
        tenant_id=data[CONF_TENANT_ID],
        client_id=data[CONF_CLIENT_ID],
        client_secret=data[CONF_CLIENT_SECRET],
        authority=data.get(CONF_AUTHORITY) or None,
        ca_file=ca_file,
    )


def quota_from_options(options: Mapping[str, Any]) -> Quota:
    """A preset, or the custom per-minute/per-hour numbers (status polls get twice as many, as in the core)."""
    preset = options.get(CONF_QUOTA, DEFAULT_QUOTA)
    if preset == QUOTA_CUSTOM:
        return quota_from_config(
            {
                "per_minute": options.get(CONF_PER_MINUTE, DEFAULT_PER_MINUTE),
                "per_hour": options.get(CONF_PER_HOUR, DEFAULT_PER_HOUR),
            }
        )
    return quota_from_config(preset)


def engine_settings(hass: HomeAssistant, entry: ConfigEntry) -> EngineSettings:
    """Everything the engine of ``entry`` needs; raises the core's ConfigError only for impossible options."""
    options = entry.options
    return EngineSettings(
        credentials=credentials_from_data(hass, entry.data),
        sender=entry.data[CONF_SENDER],
        outbox_path=outbox_path(hass, entry.entry_id),
        quota=quota_from_options(options),
        retry=RetryPolicy(
            max_attempts=int(options.get(CONF_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS)),
            max_age=float(options.get(CONF_MAX_AGE_HOURS, DEFAULT_MAX_AGE_HOURS)) * 3600.0,
        ),
        retention=float(options.get(CONF_RETENTION_DAYS, DEFAULT_RETENTION_DAYS)) * 86400.0,
        confirm_interval=CONFIRM_INTERVAL if options.get(CONF_CONFIRM_DELIVERY) else None,
    )


def default_recipients(entry: ConfigEntry) -> list[str]:
    """Addresses a legacy ``notify.<name>`` call without ``target`` goes to (may be empty)."""
    return list(entry.options.get(CONF_DEFAULT_RECIPIENTS) or [])


def notify_service_name(hass: HomeAssistant, entry: ConfigEntry) -> str:
    """Legacy notify service name: the configured one, else ``acs_email`` for the first entry, else per title."""
    configured = entry.options.get(CONF_NOTIFY_SERVICE)
    if configured:
        return slugify(configured)
    entries = hass.config_entries.async_entries(DOMAIN)
    if not entries or entries[0].entry_id == entry.entry_id:
        return DEFAULT_NOTIFY_SERVICE
    return slugify(f"{DOMAIN} {entry.title}")
