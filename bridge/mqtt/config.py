"""The ``mqtt`` section: broker connection, persistent session, the built-in topics, ingest tuning."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import voluptuous as vol

from acs_email_core.config import duration
from acs_email_core.errors import ConfigError

from ..config import BridgeConfig

_SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
_WILDCARD = re.compile(r"[+#]")
MAX_SESSION_EXPIRY = 0xFFFFFFFF  # MQTT v5: "never expires"


def size(value: Any) -> int:
    """Bytes from a number or a string such as ``256k`` or ``14M``."""
    if isinstance(value, bool):
        raise vol.Invalid("expected a size such as 512k or 14M")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise vol.Invalid("expected a size such as 512k or 14M")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]


def _topic(value: Any) -> str:
    """A topic to publish to: no wildcards, not empty."""
    if not isinstance(value, str) or not value or _WILDCARD.search(value) or "\0" in value:
        raise vol.Invalid("expected a topic name without + or # wildcards")
    return value


def _protocol(value: Any) -> str:
    text = str(value).strip().lower().removeprefix("v").removeprefix("mqtt")
    if text in ("5", "5.0"):
        return "5"
    if text in ("3.1.1", "311", "4"):
        return "3.1.1"
    raise vol.Invalid("protocol must be 5 or 3.1.1")


TLS_SCHEMA = vol.Schema(
    {
        vol.Optional("ca_file"): str,  # default: the system's trusted CAs
        vol.Optional("cert_file"): str,  # client certificate (mutual TLS) ...
        vol.Optional("key_file"): str,  # ... and its key
        vol.Optional("key_password"): str,
        vol.Optional("insecure", default=False): bool,  # skip the host name check (self-signed test brokers)
    }
)

MQTT_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default="127.0.0.1"): str,
        vol.Optional("port"): vol.All(vol.Coerce(int), vol.Range(min=1, max=65535)),  # 1883, 8883 with tls
        vol.Optional("protocol", default="5"): _protocol,
        vol.Optional("client_id", default="acs-email-bridge"): vol.All(str, vol.Length(min=1, max=65535)),
        vol.Optional("username"): str,
        vol.Optional("password"): str,
        vol.Optional("tls"): vol.Any(vol.All(bool, lambda v: {"insecure": False} if v else None), TLS_SCHEMA),
        vol.Optional("keepalive", default=60): vol.All(duration, vol.Range(min=5, max=65535)),
        vol.Optional("session_expiry", default=7 * 86400.0): vol.All(duration, vol.Range(min=60)),
        # Unacknowledged messages the broker may send ahead (MQTT v5): the higher, the faster the ingest and the
        # more of a burst is taken from the broker's queue; memory is bounded by inbox_bytes.
        vol.Optional("receive_maximum", default=65535): vol.All(int, vol.Range(min=1, max=65535)),
        vol.Optional("inbox_bytes", default="64M"): vol.All(size, vol.Range(min=65536)),
        vol.Optional("reconnect_min", default=1.0): vol.All(duration, vol.Range(min=0.1)),
        vol.Optional("reconnect_max", default=120.0): vol.All(duration, vol.Range(min=1)),
        vol.Optional("base_topic", default="acs_email"): _topic,
        vol.Optional("send_topic"): lambda v: None if v is None else _topic(v),  # default <base>/send; null: off
        vol.Optional("result_topic"): _topic,  # default <base>/result
        vol.Optional("max_payload", default="14M"): vol.All(size, vol.Range(min=1)),
        vol.Optional("batch_size", default=1000): vol.All(int, vol.Range(min=1, max=100_000)),
        vol.Optional("state_file"): str,  # default: <outbox path>.mqtt.db
        vol.Optional("failed_keep", default=1000): vol.All(int, vol.Range(min=0)),
        vol.Optional("discovery", default=True): bool,
        vol.Optional("discovery_prefix", default="homeassistant"): _topic,
        vol.Optional("state_interval", default=30.0): vol.All(duration, vol.Range(min=1)),
    }
)


@dataclass(frozen=True)
class TlsSettings:
    """TLS towards the broker; paths are absolute."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class MqttSettings:
    """The validated ``mqtt`` section with defaults applied and paths resolved."""

    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "5"
    client_id: str = "acs-email-bridge"
    username: str | None = None
    password: str | None = None
    tls: TlsSettings | None = None
    keepalive: int = 60
    session_expiry: int = 7 * 86400
    receive_maximum: int = 65535
    inbox_bytes: int = 64 * 1024 * 1024
    reconnect_min: float = 1.0
    reconnect_max: float = 120.0
    base_topic: str = "acs_email"
    send_topic: str | None = "acs_email/send"
    result_topic: str = "acs_email/result"
    max_payload: int = 14 * 1024 * 1024
    batch_size: int = 1000
    state_file: Path = Path("acs_email_outbox.db.mqtt.db")
    failed_keep: int = 1000
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    state_interval: float = 30.0

    @property
    def status_topic(self) -> str:
        """Retained ``online``/``offline`` (the last will)."""
        return f"{self.base_topic}/status"

    @property
    def state_topic(self) -> str:
        """Retained JSON with the bridge's figures, for Home Assistant."""
        return f"{self.base_topic}/state"

    @property
    def v5(self) -> bool:
        return self.protocol == "5"

    def __repr__(self) -> str:  # never show the password
        return f"MqttSettings(host={self.host!r}, port={self.port}, client_id={self.client_id!r})"


def mqtt_settings(config: BridgeConfig) -> MqttSettings | None:
    """The ``mqtt`` section of a loaded config, or None when it has none."""
    raw = config.sections.get("mqtt")
    if raw is None:
        return None
    tls = None
    if raw.get("tls"):
        t = raw["tls"]

        def path(key: str) -> str | None:
            return str(config.resolve(t[key])) if t.get(key) else None

        tls = TlsSettings(path("ca_file"), path("cert_file"), path("key_file"), t.get("key_password"), t["insecure"])
    base = raw["base_topic"]
    state_file = raw.get("state_file")
    return MqttSettings(
        host=raw["host"],
        port=raw.get("port") or (8883 if tls else 1883),
        protocol=raw["protocol"],
        client_id=raw["client_id"],
        username=raw.get("username"),
        password=raw.get("password"),
        tls=tls,
        keepalive=int(raw["keepalive"]),
        session_expiry=min(int(raw["session_expiry"]), MAX_SESSION_EXPIRY),
        receive_maximum=raw["receive_maximum"],
        inbox_bytes=raw["inbox_bytes"],
        reconnect_min=raw["reconnect_min"],
        reconnect_max=max(raw["reconnect_max"], raw["reconnect_min"]),
        base_topic=base,
        send_topic=raw.get("send_topic", f"{base}/send"),
        result_topic=raw.get("result_topic") or f"{base}/result",
        max_payload=raw["max_payload"],
        batch_size=raw["batch_size"],
        state_file=config.resolve(state_file) if state_file else Path(f"{config.engine.outbox_path}.mqtt.db"),
        failed_keep=raw["failed_keep"],
        discovery=raw["discovery"],
        discovery_prefix=raw["discovery_prefix"],
        state_interval=raw["state_interval"],
    )


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """The client TLS context: CA, client certificate and key read from disk (blocking); ConfigError names the key."""
    key = "ca_file"
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            for key in ("cert_file", "key_file"):  # ``key`` names the file in an error below
                path = getattr(tls, key)
                if path is not None:
                    with open(path, "rb"):  # which file is missing: OpenSSL does not say
                        pass
            key = "key_password" if tls.key_password else "cert_file"
            # A callable, never None: an encrypted key without key_password must not prompt on the terminal.
            context.load_cert_chain(tls.cert_file, tls.key_file, tls.key_password or (lambda: ""))
    except ssl.SSLError as err:  # before OSError, its base class
        what = "does not open that key" if key == "key_password" else f"{getattr(tls, key)} is not a usable PEM file"
        raise ConfigError(f"mqtt.tls.{key}: {what} ({err.reason or err})") from None
    except OSError as err:
        path = err.filename or getattr(tls, key)
        raise ConfigError(f"mqtt.tls.{key}: cannot read {path}: {err.strerror}") from None
    if tls.insecure:
        context.check_hostname = False
    return context
