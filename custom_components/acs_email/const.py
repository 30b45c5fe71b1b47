"""Constants for the ACS Email integration.

Config keys are shared by the config flow (which writes them) and the runtime (which reads them through
``settings.py``). Append new keys; do not rename existing ones (they are stored in config entries).
"""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "acs_email"

# ---- entry.data: how to reach ACS (written by the user, reauth and reconfigure steps)
CONF_AUTH_METHOD: Final = "auth_method"
AUTH_SERVICE_PRINCIPAL: Final = "service_principal"
AUTH_CONNECTION_STRING: Final = "connection_string"
CONF_ENDPOINT: Final = "endpoint"
CONF_TENANT_ID: Final = "tenant_id"
CONF_CLIENT_ID: Final = "client_id"
CONF_CLIENT_SECRET: Final = "client_secret"  # noqa: S105 - a key name, not a secret
# Optional ISO date (YYYY-MM-DD) on which the client secret expires.
CONF_SECRET_EXPIRY: Final = "secret_expiry"  # noqa: S105 - a key name
CONF_CONNECTION_STRING: Final = "connection_string"
CONF_SENDER: Final = "sender"  # MailFrom address of a verified domain
# Advanced, optional: Entra authority host (sovereign clouds, the emulator) and an extra CA file (TLS-inspecting
# proxies, the emulator). Absent means login.microsoftonline.com and the system trust store.
CONF_AUTHORITY: Final = "authority"
CONF_CA_FILE: Final = "ca_file"

# ---- entry.options: how to send (options flow; the user step writes the quota)
CONF_QUOTA: Final = "quota"  # one of QUOTA_PRESETS
QUOTA_AZURE_MANAGED: Final = "azure_managed"
QUOTA_CUSTOM_DOMAIN: Final = "custom_domain"
QUOTA_CUSTOM: Final = "custom"
QUOTA_PRESETS: Final = (QUOTA_CUSTOM_DOMAIN, QUOTA_AZURE_MANAGED, QUOTA_CUSTOM)
CONF_PER_MINUTE: Final = "per_minute"  # custom quota only
CONF_PER_HOUR: Final = "per_hour"  # custom quota only
CONF_MAX_ATTEMPTS: Final = "max_attempts"
CONF_MAX_AGE_HOURS: Final = "max_age_hours"  # give up on a mail this long after it was queued
CONF_RETENTION_DAYS: Final = "retention_days"  # keep sent and dead mail this long in the outbox
CONF_CONFIRM_DELIVERY: Final = "confirm_delivery"  # poll each operation to its end (uses poll quota)
CONF_DEFAULT_RECIPIENTS: Final = "default_recipients"  # list of addresses for notify calls without target
CONF_NOTIFY_SERVICE: Final = "notify_service"  # legacy notify service name (notify.<name>); empty = default

DEFAULT_QUOTA: Final = QUOTA_CUSTOM_DOMAIN
DEFAULT_PER_MINUTE: Final = 30
DEFAULT_PER_HOUR: Final = 100
DEFAULT_MAX_ATTEMPTS: Final = 10
DEFAULT_MAX_AGE_HOURS: Final = 72
DEFAULT_RETENTION_DAYS: Final = 7
DEFAULT_NOTIFY_SERVICE: Final = DOMAIN  # notify.acs_email for the first entry

# ---- recipient subentries: title = display name, data[CONF_ADDRESSES] = list of addresses
SUBENTRY_RECIPIENT: Final = "recipient"
CONF_ADDRESSES: Final = "addresses"
