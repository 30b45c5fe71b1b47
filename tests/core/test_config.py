"""Settings validation: what users copy from the README works, mistakes are named, secrets never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from acs_email_core.config import duration, settings_from_config
from acs_email_core.errors import ConfigError
from acs_email_core.quota import PRESETS

SECRET = "s3cr3t-value-that-must-not-leak"
SECRET_KEY = "czNjcjN0LWtleS10aGF0LW11c3Qtbm90LWxlYWs="  # base64, as ACS access keys are


def _principal(**acs: object) -> dict[str, object]:
    base: dict[str, object] = {
        "endpoint": "https://res.communication.azure.com",
        "sender": "DoNotReply@mail.example.com",
        "tenant_id": "00000000-0000-0000-0000-000000000000",
        "client_id": "11111111-1111-1111-1111-111111111111",
        "client_secret": SECRET,
    }
    base.update(acs)
    return {"acs": base}


def test_readme_example_with_defaults(tmp_path: Path) -> None:
    settings = settings_from_config(_principal(), base_dir=tmp_path)
    assert settings.quota == PRESETS["custom_domain"]
    assert settings.outbox_path == tmp_path / "acs_email_outbox.db"
    assert settings.credentials.auth_method == "service_principal"
    assert settings.limits.max_recipients == 50
    assert settings.synchronous == "FULL"
    assert settings.confirm_interval is None  # a 202 counts as sent unless confirmation is asked for
    assert SECRET not in repr(settings)
    assert settings_from_config(_principal(confirm_delivery=True)).confirm_interval == 3.0


def test_full_config_values(tmp_path: Path) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = _principal(ca_file="ca.pem", timeout="10s")
    config["quota"] = {"per_minute": 60, "per_hour": 1000}
    config["outbox"] = {"path": "/tmp/x.db", "max_age": "72h", "retry_initial": "1m", "retention": "7d",
                        "synchronous": "NORMAL", "max_attempts": 3}  # fmt: skip
    config["limits"] = {"max_recipients": 100}
    settings = settings_from_config(config, base_dir=tmp_path)
    assert settings.credentials.ca_file == str(tmp_path / "ca.pem")
    assert settings.timeout == 10
    assert [w.limit for w in settings.quota.send] == [60, 1000]
    assert settings.retry.max_age == 72 * 3600
    assert settings.retry.initial_delay == 60
    assert settings.retry.max_attempts == 3
    assert settings.retention == 7 * 86400
    assert settings.synchronous == "NORMAL"
    assert settings.outbox_path == Path("/tmp/x.db")
    assert settings.limits.max_recipients == 100


def test_connection_string_alone_is_enough() -> None:
    config = _connection_string(f"endpoint=https://x/;accesskey={SECRET_KEY}")
    settings = settings_from_config(config)
    assert settings.credentials.auth_method == "connection_string"
    assert SECRET_KEY not in repr(settings.credentials)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "acs"),
        ({"acs": {"sender": "a@example.com"}}, "connection_string, or endpoint + tenant_id"),
        (_principal(client_secret=""), "client_secret"),
        (_principal(sender="Home <a@example.com>"), "acs.sender"),
        (_principal(endpoint="ftp://x"), "acs.endpoint: expected a URL such as https://"),
        (_principal(endpoint="https://"), "acs.endpoint: expected a URL"),
        (_principal(endpoint="res.communication.azure.com"), "acs.endpoint: expected a URL"),
        (_principal(endpoint="https://my resource.communication.azure.com"), "acs.endpoint: expected a URL"),
        (_principal(endpoint="https://res.communication.azure.com:port"), "acs.endpoint: expected a URL"),
        (_principal(endpoint="https://res.communication.azure.com/?x=1"), "acs.endpoint: expected a URL"),
        (_principal(endpoint="https://res.communication.azure.com/emails:send"), "acs.endpoint: expected a URL"),
        (_principal(endpoint=42), "acs.endpoint: expected a URL"),
        (_principal(authority="http://login"), "acs.authority: expected a URL such as https://"),
        ({**_principal(), "quota": "premium"}, "unknown quota preset 'premium'"),
        ({**_principal(), "quota": {"per_minute": 5}}, "per_minute and per_hour"),
        ({**_principal(), "outbox": {"max_age": "three days"}}, "outbox.max_age"),
        ({**_principal(), "outbox": {"synchronous": "off"}}, "outbox.synchronous"),
        ({**_principal(), "outbox": {"retry_initial": float("nan")}}, "outbox.retry_initial: expected a duration"),
        ({**_principal(), "acs": {**_principal()["acs"], "timeout": float("inf")}}, "acs.timeout: expected a duration"),
        ({**_principal(), "quota": {"per_minute": 5, "per_hour": 9, "burst": 2}}, "quota: unknown key 'burst'"),
        (
            {"acs": {**_principal()["acs"], "connection_string": f"endpoint=https://x/;accesskey={SECRET_KEY}"}},
            "acs: give connection_string or the service principal, not both (remove connection_string or tenant_id)",
        ),
    ],
)
def test_mistakes_are_named(config: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as info:
        settings_from_config(config)
    assert expected in str(info.value)


def test_secret_never_in_error() -> None:
    config = _principal(client_secret=12345)
    config["acs"]["connection_string"] = ["not", SECRET]  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        settings_from_config(config)
    assert SECRET not in str(info.value)
    assert "12345" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "seconds"), [(90, 90), ("30s", 30), ("5m", 300), ("72h", 259200), ("1.5d", 129600), ("250ms", 0.25)]
)
def test_durations(value: object, seconds: float) -> None:
    assert duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-5s", True, "5 weeks", float("nan"), float("inf"), -1.0])
def test_bad_durations(value: object) -> None:
    import voluptuous as vol

    with pytest.raises(vol.Invalid):
        duration(value)


@pytest.mark.parametrize(
    "endpoint",
    ["https://res.communication.azure.com", "https://res.communication.azure.com/", "http://127.0.0.1:8080",
     "https://[::1]:8443", "https://bücher.example"],
)  # fmt: skip
def test_endpoints_that_are_urls(endpoint: str) -> None:
    assert settings_from_config(_principal(endpoint=endpoint)).credentials.endpoint == endpoint


def _connection_string(value: str) -> dict[str, object]:
    return {"acs": {"sender": "a@example.com", "connection_string": value}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"endpoint=https://x.example/;accesskey={SECRET}", "acs.connection_string: its accesskey is not base64"),
        ("endpoint=https://x.example/;accesskey=c2VjcmV0!", "acs.connection_string: its accesskey is not base64"),
        (f"endpoint=x.example;accesskey={SECRET}", "acs.connection_string: its endpoint is not a URL"),
        (f"accesskey={SECRET}", "acs.connection_string: connection string must look like"),
    ],
)
def test_connection_string_is_checked_up_front(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_config(_connection_string(value))
    assert expected in str(info.value)
    assert SECRET not in str(info.value) and "c2VjcmV0" not in str(info.value)


def test_base64_access_key_is_taken() -> None:
    settings = settings_from_config(_connection_string("endpoint=https://x.example/;accesskey=c2VjcmV0"))
    assert settings.credentials.auth_method == "connection_string"


@pytest.mark.parametrize(
    ("content", "expected"), [(None, "cannot read"), (b"", "no PEM certificate"), (b"not a certificate\n", "no PEM")]
)
def test_ca_file_must_hold_pem_certificates(tmp_path: Path, content: bytes | None, expected: str) -> None:
    if content is not None:
        (tmp_path / "ca.pem").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        settings_from_config(_principal(ca_file="ca.pem"), base_dir=tmp_path)
    assert "acs.ca_file:" in str(info.value) and expected in str(info.value)
    assert str(tmp_path / "ca.pem") in str(info.value)
