"""The ``smtp:`` section of the bridge config: listeners, TLS, lockout and one policy per device.

A device may only send to the recipients its policy names (``recipients`` has no default): the relay
cannot become an open relay by omission. Error messages name keys, never values of secrets.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol

from acs_email_core.config import EngineSettings, duration
from acs_email_core.errors import ValidationError
from acs_email_core.message import EmailAddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
_DOMAIN = re.compile(r"^(\*\.)?[^\s@*]+\.[^\s@*]+$")


def _network(value: Any) -> Network:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        raise vol.Invalid(f"{value!r} is not an IP network such as 192.168.1.0/24 or 10.0.0.7") from None


def address_pattern(value: Any) -> str:
    """``*``, an address, a domain (``example.com`` or ``@example.com``) or subdomains (``*.example.com``)."""
    text = str(value).strip().lower()
    if text.startswith("@"):
        text = text[1:]
    if text == "*" or _DOMAIN.match(text):
        return text
    try:
        return EmailAddress(text).address
    except ValidationError:
        raise vol.Invalid(f"{value!r} is not an address, a domain, *.domain or *") from None


def _device_name(value: Any) -> str:
    if not isinstance(value, str) or not DEVICE_NAME.match(value):
        raise vol.Invalid(f"{value!r} is not a device name (letters, digits, . _ @ + -; up to 64)")
    return value


def _sender(value: Any) -> str:
    try:
        return EmailAddress(str(value).strip()).address
    except ValidationError:
        raise vol.Invalid(f"{value!r} is not a plain email address (a verified MailFrom)") from None


def _port(value: Any) -> int | None:
    if value is None or value is False:
        return None
    return int(vol.All(int, vol.Range(min=0, max=65535))(value))


def _as_list(value: Any) -> list[Any]:
    """One item or a list of them (``recipients: example.com`` is fine)."""
    return list(value) if isinstance(value, list) else [value]


_PATTERNS = vol.All(_as_list, [address_pattern], vol.Length(min=1))
_NETWORKS = vol.All(_as_list, [_network])


DEVICE_SCHEMA = vol.Schema(
    {
        vol.Required("recipients"): _PATTERNS,
        vol.Optional("senders", default=["*"]): _PATTERNS,
        vol.Optional("sender"): _sender,
        vol.Optional("display_name"): vol.All(str, vol.Length(min=1, max=100)),
        vol.Optional("auth", default="password"): vol.In(["password", "none"]),
        vol.Optional("networks", default=[]): _NETWORKS,
        vol.Optional("insecure_auth", default=False): bool,
        vol.Optional("per_minute", default=30): vol.All(int, vol.Range(min=1)),
        vol.Optional("per_hour", default=300): vol.All(int, vol.Range(min=1)),
    }
)

SMTP_SCHEMA = vol.Schema(
    {
        vol.Optional("hostname", default="acs-email-relay"): vol.All(str, vol.Match(r"^[A-Za-z0-9.-]+$")),
        vol.Optional("listen", default="0.0.0.0"): str,  # noqa: S104 - a LAN relay listens on the LAN
        vol.Optional("submission_port", default=587): _port,
        vol.Optional("smtps_port", default=465): _port,
        vol.Optional("plain_port", default=None): _port,
        vol.Optional("plain_networks", default=[]): _NETWORKS,
        vol.Optional("cert_file"): str,
        vol.Optional("key_file"): str,
        vol.Optional("tls_dir", default="smtp_tls"): str,
        vol.Optional("min_tls_version", default="1.2"): vol.All(vol.Coerce(str), vol.In(list(TLS_VERSIONS))),
        vol.Optional("accounts_path", default="smtp_devices.db"): str,
        vol.Optional("max_message_size"): vol.All(int, vol.Range(min=1024)),
        vol.Optional("timeout", default=300.0): vol.All(duration, vol.Range(min=1)),
        vol.Optional("max_sessions", default=100): vol.All(int, vol.Range(min=1)),
        vol.Optional("max_sessions_per_address", default=20): vol.All(int, vol.Range(min=1)),
        vol.Optional("lockout_attempts", default=5): vol.All(int, vol.Range(min=1)),
        vol.Optional("lockout_window", default=600.0): duration,
        vol.Optional("lockout_duration", default=900.0): duration,
        vol.Optional("devices", default={}): vol.Schema({_device_name: DEVICE_SCHEMA}),
    }
)


@dataclass(frozen=True)
class DevicePolicy:
    """What one device may do: who it may write to, as whom, how often, from where, how it logs in."""

    name: str
    recipients: tuple[str, ...]
    senders: tuple[str, ...] = ("*",)
    sender: str | None = None  # the ACS MailFrom for this device; None: the engine's sender
    display_name: str | None = None
    auth: str = "password"  # or "none": identified by its source address alone
    networks: tuple[Network, ...] = ()
    insecure_auth: bool = False
    per_minute: int = 30
    per_hour: int = 300


@dataclass(frozen=True)
class SmtpSettings:
    """The validated ``smtp:`` section; paths are absolute."""

    accounts_path: Path
    tls_dir: Path
    hostname: str = "acs-email-relay"
    listen: str = "0.0.0.0"  # noqa: S104
    submission_port: int | None = 587
    smtps_port: int | None = 465
    plain_port: int | None = None
    plain_networks: tuple[Network, ...] = ()
    cert_file: Path | None = None
    key_file: Path | None = None
    min_tls_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_message_size: int = 10 * 1024 * 1024
    timeout: float = 300.0
    max_sessions: int = 100  # connections at once: idle ones must not use up the bridge's file descriptors
    max_sessions_per_address: int = 20
    lockout_attempts: int = 5
    lockout_window: float = 600.0
    lockout_duration: float = 900.0
    devices: dict[str, DevicePolicy] = field(default_factory=dict)


def _cross_checks(data: dict[str, Any]) -> dict[str, Any]:
    if data["plain_port"] is not None and not data["plain_networks"]:
        raise vol.Invalid("required when plain_port is set", path=["plain_networks"])
    if ("cert_file" in data) != ("key_file" in data):
        raise vol.Invalid("give both cert_file and key_file, or neither", path=["cert_file"])
    for name, device in data["devices"].items():
        if device["auth"] == "none" and not device["networks"]:
            raise vol.Invalid("required with auth: none", path=["devices", name, "networks"])
    return data


# The ``smtp`` section as the bridge's config loader validates it (see bridge/service.py SECTIONS).
SMTP_SECTION = vol.All(SMTP_SCHEMA, _cross_checks)


def smtp_settings(data: dict[str, Any], engine: EngineSettings, base_dir: Path) -> SmtpSettings:
    """Settings from a validated section: certificates relative to the config, state beside the outbox."""

    def beside_config(path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else base_dir / p

    def beside_outbox(path: str) -> Path:
        # The relay's own state (accounts, generated certificate) lives with the mail it queued.
        p = Path(path).expanduser()
        return p if p.is_absolute() else engine.outbox_path.parent / p

    devices = {
        name: DevicePolicy(
            name=name,
            recipients=tuple(d["recipients"]),
            senders=tuple(d["senders"]),
            sender=d.get("sender"),
            display_name=d.get("display_name"),
            auth=d["auth"],
            networks=tuple(d["networks"]),
            insecure_auth=d["insecure_auth"],
            per_minute=d["per_minute"],
            per_hour=d["per_hour"],
        )
        for name, d in data["devices"].items()
    }
    return SmtpSettings(
        accounts_path=beside_outbox(data["accounts_path"]),
        tls_dir=beside_outbox(data["tls_dir"]),
        hostname=data["hostname"],
        listen=data["listen"],
        submission_port=data["submission_port"],
        smtps_port=data["smtps_port"],
        plain_port=data["plain_port"],
        plain_networks=tuple(data["plain_networks"]),
        cert_file=beside_config(data["cert_file"]) if "cert_file" in data else None,
        key_file=beside_config(data["key_file"]) if "key_file" in data else None,
        min_tls_version=TLS_VERSIONS[data["min_tls_version"]],
        max_message_size=data.get("max_message_size", engine.limits.max_request_bytes),
        timeout=data["timeout"],
        max_sessions=data["max_sessions"],
        max_sessions_per_address=data["max_sessions_per_address"],
        lockout_attempts=data["lockout_attempts"],
        lockout_window=data["lockout_window"],
        lockout_duration=data["lockout_duration"],
        devices=devices,
    )
