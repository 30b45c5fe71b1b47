"""settings.py: what a config entry's data and options become for the core engine."""

from __future__ import annotations

from pathlib import Path

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.acs_email.const import DOMAIN
from custom_components.acs_email.core.dispatcher import CONFIRM_INTERVAL
from custom_components.acs_email.core.quota import PRESETS, Window
from custom_components.acs_email.settings import (
    credentials_from_data,
    default_recipients,
    engine_settings,
    notify_service_name,
)

PRINCIPAL = {
    "auth_method": "service_principal",
    "endpoint": "https://my-acs.europe.communication.azure.com",
    "tenant_id": "tenant",
    "client_id": "client",
    "client_secret": "secret",
    "sender": "DoNotReply@example.com",
}


def entry(hass: HomeAssistant, data: dict[str, str], options: dict[str, object] | None = None) -> MockConfigEntry:
    config_entry = MockConfigEntry(domain=DOMAIN, title=data["sender"], data=data, options=options or {})
    config_entry.add_to_hass(hass)
    return config_entry


async def test_defaults(hass: HomeAssistant, tmp_path: Path) -> None:
    assert Path(hass.config.config_dir).is_relative_to(tmp_path)  # each test's own config dir (conftest)
    config_entry = entry(hass, PRINCIPAL)
    settings = engine_settings(hass, config_entry)
    assert settings.outbox_path == Path(hass.config.config_dir) / DOMAIN / f"{config_entry.entry_id}.db"
    assert settings.sender == "DoNotReply@example.com"
    assert settings.quota == PRESETS["custom_domain"]
    assert (settings.retry.max_attempts, settings.retry.max_age) == (10, 72 * 3600)
    assert settings.retention == 7 * 86400
    assert settings.confirm_interval is None
    creds = settings.credentials
    assert (creds.endpoint, creds.tenant_id, creds.client_id, creds.client_secret) == (
        PRINCIPAL["endpoint"],
        "tenant",
        "client",
        "secret",
    )
    assert creds.authority is None
    assert creds.ca_file is None
    assert default_recipients(config_entry) == []


async def test_options_and_advanced(hass: HomeAssistant) -> None:
    data = {**PRINCIPAL, "authority": "https://login.microsoftonline.us", "ca_file": "certs/proxy.pem"}
    options = {
        "quota": "custom",
        "per_minute": 50,
        "per_hour": 400,
        "max_attempts": 3,
        "max_age_hours": 12,
        "retention_days": 30,
        "confirm_delivery": True,
        "default_recipients": ["owner@example.com"],
    }
    settings = engine_settings(hass, entry(hass, data, options))
    assert settings.quota.send == (Window(50, 60.0), Window(400, 3600.0))
    assert settings.quota.poll == (Window(100, 60.0), Window(800, 3600.0))
    assert (settings.retry.max_attempts, settings.retry.max_age) == (3, 12 * 3600)
    assert settings.retention == 30 * 86400
    assert settings.confirm_interval == CONFIRM_INTERVAL
    assert settings.credentials.authority == "https://login.microsoftonline.us"
    assert settings.credentials.ca_file == str(Path(hass.config.config_dir) / "certs" / "proxy.pem")
    assert engine_settings(hass, entry(hass, PRINCIPAL, {"quota": "azure_managed"})).quota == PRESETS["azure_managed"]


async def test_connection_string(hass: HomeAssistant) -> None:
    data = {
        "auth_method": "connection_string",
        "connection_string": "endpoint=https://my-acs.communication.azure.com/;accesskey=QUJD",
        "endpoint": "https://my-acs.communication.azure.com",
        "sender": "DoNotReply@example.com",
        "ca_file": "/etc/ssl/proxy.pem",
    }
    creds = credentials_from_data(hass, data)
    assert creds.auth_method == "connection_string"
    assert creds.connection_string == data["connection_string"]
    assert creds.ca_file == "/etc/ssl/proxy.pem"


async def test_notify_service_names(hass: HomeAssistant) -> None:
    first = entry(hass, PRINCIPAL)
    second = entry(hass, {**PRINCIPAL, "sender": "alerts@example.com"})
    named = entry(hass, {**PRINCIPAL, "sender": "x@example.com"}, {"notify_service": "House Mail"})
    assert notify_service_name(hass, first) == "acs_email"
    assert notify_service_name(hass, second) == "acs_email_alerts_example_com"
    assert notify_service_name(hass, named) == "house_mail"
