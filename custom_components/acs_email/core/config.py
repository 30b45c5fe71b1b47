"""Validated engine settings (the ``acs``/``quota``/``outbox``/``limits`` keys users copy from the README).

The schema is voluptuous, as in Home Assistant, so the integration and the bridge validate the same way.
Secret values are wrapped as soon as they are read, and error messages name keys, never values.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

from .dispatcher import CONFIRM_INTERVAL, OUTAGE_BACKOFF, VERIFY_RECHECK
from .errors import ConfigError, ValidationError
from .message import EmailAddress, MessageLimits
from .quota import PRESETS, Quota, quota_from_config
from .retry import RetryPolicy
from .transport import AcsCredentials, parse_connection_string

# A host name (IDN letters too, as urlsplit gives it: lower case) or an IPv6 address without its brackets.
_HOST = re.compile(r"[^\W_](?:[\w.-]*[^\W_])?|[0-9a-f:.]*:[0-9a-f:.]*")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def duration(value: Any) -> float:
    """Seconds from a number or a string such as ``90``, ``30s``, ``5m``, ``72h``, ``7d``."""
    if isinstance(value, bool):
        raise vol.Invalid("expected a duration such as 30s, 5m, 72h or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise vol.Invalid("expected a duration such as 30s, 5m, 72h or 7d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds):  # nan or inf: a wait that never ends, or compares false with everything
        raise vol.Invalid("expected a duration such as 30s, 5m, 72h or 7d")
    if seconds < 0:
        raise vol.Invalid("a duration cannot be negative")
    return seconds


def _secret(value: Any) -> str:
    """A non-empty string; the error never repeats the value."""
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("expected a non-empty string (value not shown)")
    return value.strip()


def _sender(value: Any) -> str:
    """A plain address: ACS takes the display name from the MailFrom resource, not from the request."""
    if not isinstance(value, str):
        raise vol.Invalid("expected an email address")
    try:
        return EmailAddress(value.strip()).address
    except ValidationError:
        raise vol.Invalid(f"{value!r} is not a plain email address (no display name)") from None


def _url(*schemes: str) -> Callable[[Any], str]:
    """A URL with one of ``schemes`` and a host name, nothing else (no path beyond ``/``, query or user info)."""
    example = f"{schemes[0]}://my-resource.communication.azure.com"

    def check(value: Any) -> str:
        try:
            parts = urlsplit(value.strip()) if isinstance(value, str) else None
            port_ok = parts is not None and (parts.port is None or parts.port > 0)
        except ValueError:  # a port that is not a number
            parts, port_ok = None, False
        if not (
            parts is not None
            and port_ok
            and parts.scheme in schemes
            and parts.hostname
            and _HOST.fullmatch(parts.hostname)
            and parts.path in ("", "/")
            and not (parts.username or parts.query or parts.fragment)
        ):
            raise vol.Invalid(f"expected a URL such as {example}")
        return str(value).strip()

    return check


def _connection_string(value: Any) -> str:
    """``endpoint=https://…;accesskey=<base64>``; checked now, since a bad key otherwise fails only when sending."""
    secret = _secret(value)
    try:
        endpoint, access_key = parse_connection_string(secret)
    except ConfigError as err:
        raise vol.Invalid(str(err)) from None
    try:
        _url("https", "http")(endpoint)
    except vol.Invalid:
        raise vol.Invalid("its endpoint is not a URL such as https://my-resource.communication.azure.com") from None
    try:
        base64.b64decode(access_key, validate=True)
    except binascii.Error:
        raise vol.Invalid("its accesskey is not base64 (value not shown)") from None
    return secret


_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_TENANT_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")


def _tenant_id(value: Any) -> str:
    """A directory (tenant) id: a GUID, or a verified domain such as ``contoso.onmicrosoft.com``."""
    text = value.strip() if isinstance(value, str) else ""
    if not (_GUID.match(text) or _TENANT_DOMAIN.match(text)):
        raise vol.Invalid("expected the directory (tenant) id: a GUID, or a domain such as contoso.onmicrosoft.com")
    return text


def _client_id(value: Any) -> str:
    """An application (client) id, which Entra always shows as a GUID."""
    text = value.strip() if isinstance(value, str) else ""
    if not _GUID.match(text):
        raise vol.Invalid("expected the application (client) id, a GUID")
    return text


def _one_credential(acs: dict[str, Any]) -> dict[str, Any]:
    """Both kinds of credentials given: which one would be used is a guess the user should not have to make."""
    principal = [key for key in ("tenant_id", "client_id", "client_secret") if key in acs]
    if "connection_string" in acs and principal:
        raise vol.Invalid(
            f"give connection_string or the service principal, not both (remove connection_string or {principal[0]})"
        )
    return acs


def _quota(value: Any) -> Quota:
    try:
        return quota_from_config(value)
    except ConfigError as err:
        raise vol.Invalid(str(err)) from None


ACS_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("endpoint"): _url("https", "http"),
            vol.Required("sender"): _sender,
            vol.Optional("connection_string"): _connection_string,
            vol.Optional("tenant_id"): _tenant_id,
            vol.Optional("client_id"): _client_id,
            vol.Optional("client_secret"): _secret,
            vol.Optional("authority"): _url("https"),
            vol.Optional("ca_file"): str,
            vol.Optional("timeout", default=30.0): vol.All(duration, vol.Range(min=1)),
            vol.Optional("confirm_delivery", default=False): bool,
        }
    ),
    vol.Any(
        vol.Schema({vol.Required("connection_string"): object}, extra=vol.ALLOW_EXTRA),
        vol.Schema(
            {
                vol.Required("endpoint"): object,
                vol.Required("tenant_id"): object,
                vol.Required("client_id"): object,
                vol.Required("client_secret"): object,
            },
            extra=vol.ALLOW_EXTRA,
        ),
        msg="acs needs connection_string, or endpoint + tenant_id + client_id + client_secret",
    ),
    _one_credential,
)

OUTBOX_SCHEMA = vol.Schema(
    {
        vol.Optional("path", default="acs_email_outbox.db"): str,
        vol.Optional("max_messages", default=10_000): vol.All(int, vol.Range(min=1)),
        vol.Optional("max_attempts", default=10): vol.All(int, vol.Range(min=1)),
        vol.Optional("max_age", default=3 * 86400.0): duration,
        vol.Optional("retry_initial", default=30.0): duration,
        vol.Optional("retry_max", default=3600.0): duration,
        vol.Optional("retention", default=7 * 86400.0): duration,
        vol.Optional("synchronous", default="full"): vol.All(vol.Lower, vol.In(["full", "normal"])),
        vol.Optional("concurrency", default=2): vol.All(int, vol.Range(min=1, max=16)),
    }
)

LIMITS_SCHEMA = vol.Schema(
    {
        vol.Optional("max_recipients", default=50): vol.All(int, vol.Range(min=1)),
        vol.Optional("max_request_bytes", default=10 * 1024 * 1024): vol.All(int, vol.Range(min=1024)),
    }
)

ENGINE_SCHEMA = vol.Schema(
    {
        vol.Required("acs"): ACS_SCHEMA,
        vol.Optional("quota", default="custom_domain"): _quota,
        vol.Optional("outbox", default={}): OUTBOX_SCHEMA,
        vol.Optional("limits", default={}): LIMITS_SCHEMA,
    },
    extra=vol.ALLOW_EXTRA,  # the bridge adds its own sections (mqtt, smtp, routes)
)


@dataclass(frozen=True)
class EngineSettings:
    """Everything the engine needs, already validated."""

    credentials: AcsCredentials
    sender: str
    outbox_path: Path
    quota: Quota = PRESETS["custom_domain"]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_messages: int = 10_000
    retention: float = 7 * 86400.0
    synchronous: str = "FULL"
    concurrency: int = 2
    timeout: float = 30.0
    limits: MessageLimits = field(default_factory=MessageLimits)
    outage_backoff: RetryPolicy = OUTAGE_BACKOFF
    confirm_interval: float | None = None  # None: a 202 counts as sent; else poll the operation to its end
    verify_recheck: float = VERIFY_RECHECK
    resend_after: float | None = None  # None: three timeouts after the last POST started (see dispatcher)


def _describe_invalid(err: vol.Invalid) -> str:
    errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.path) or "config"
        parts.append(f"{where}: {error.msg}")
    return "; ".join(parts)


def _check_ca_file(path: Path) -> str:
    """The path, once it is known to hold PEM certificates: a bad CA file would otherwise fail every send."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError:  # before OSError, its base class
        raise ConfigError(f"invalid configuration: acs.ca_file: {path} holds no PEM certificate") from None
    except OSError as err:
        raise ConfigError(f"invalid configuration: acs.ca_file: cannot read {path}: {err.strerror}") from None
    return str(path)


def settings_from_config(config: dict[str, Any], *, base_dir: Path | None = None) -> EngineSettings:
    """Validate a config mapping; relative paths are resolved against ``base_dir`` (the config file's folder).

    Blocking (it reads ``ca_file``): call it before the event loop runs, or in an executor.
    """
    try:
        data = ENGINE_SCHEMA(config)
    except vol.Invalid as err:
        raise ConfigError(f"invalid configuration: {_describe_invalid(err)}") from None
    acs, outbox, limits = data["acs"], data["outbox"], data["limits"]

    def resolve(path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() or base_dir is None else base_dir / p

    ca_file = _check_ca_file(resolve(acs["ca_file"])) if "ca_file" in acs else None
    credentials = AcsCredentials(
        endpoint=acs.get("endpoint"),
        connection_string=acs.get("connection_string"),
        tenant_id=acs.get("tenant_id"),
        client_id=acs.get("client_id"),
        client_secret=acs.get("client_secret"),
        authority=acs.get("authority"),
        ca_file=ca_file,
    )
    try:
        retry = RetryPolicy(
            initial_delay=outbox["retry_initial"],
            max_delay=max(outbox["retry_max"], outbox["retry_initial"]),
            max_attempts=outbox["max_attempts"],
            max_age=outbox["max_age"] or 1.0,
        )
    except ConfigError as err:
        raise ConfigError(f"invalid configuration: outbox: {err}") from None
    return EngineSettings(
        credentials=credentials,
        sender=acs["sender"],
        outbox_path=resolve(outbox["path"]),
        quota=data["quota"],
        retry=retry,
        max_messages=outbox["max_messages"],
        retention=outbox["retention"],
        synchronous=outbox["synchronous"].upper(),
        concurrency=outbox["concurrency"],
        timeout=acs["timeout"],
        confirm_interval=CONFIRM_INTERVAL if acs["confirm_delivery"] else None,
        limits=MessageLimits(limits["max_recipients"], limits["max_request_bytes"]),
    )
