"""``acs-email-bridge smtp …``: the password is shown once and works, devices list their activity, cert fingerprint."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from acs_email_bridge.cli import main
from acs_email_bridge.smtp.accounts import DeviceStore


def _config(directory: Path, smtp: dict | None) -> Path:
    config = {
        "acs": {"connection_string": "endpoint=https://acs.example/;accesskey=a2V5", "sender": "relay@example.com"},
        "outbox": {"path": "state/outbox.db"},
    }
    if smtp is not None:
        config["smtp"] = smtp
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_device_add_prints_a_working_password_once_and_refuses_a_second_add(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, {"devices": {"scanner": {"recipients": ["example.com"]}}})
    assert main(["smtp", "device", "add", "scanner", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    password = re.search(r"^    (\w{24})$", out, re.MULTILINE)
    assert password is not None, out
    store = DeviceStore(tmp_path / "state" / "smtp_devices.db")  # beside the outbox
    assert store.verify("scanner", password.group(1).encode())
    assert not store.verify("scanner", b"guess")
    assert password.group(1) not in store.path.read_bytes().decode("latin-1")  # only the hash is stored

    assert main(["smtp", "device", "add", "scanner", "-c", str(config)]) == 2
    assert "--replace" in capsys.readouterr().err
    assert main(["smtp", "device", "add", "scanner", "--replace", "-c", str(config)]) == 0
    assert not store.verify("scanner", password.group(1).encode())  # the old password stops working


def test_a_device_allowed_to_log_in_without_tls_is_told_the_plain_port(tmp_path: Path, capsys) -> None:
    old_mfd = {"recipients": ["example.com"], "insecure_auth": True}
    smtp = {"plain_port": 2526, "plain_networks": ["192.168.1.0/24"], "devices": {"old-mfd": old_mfd, "new": old_mfd}}
    config = _config(tmp_path, smtp)
    assert main(["smtp", "device", "add", "old-mfd", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "port 587 (STARTTLS) or 465 (SSL/TLS) or 2526 (no encryption; this device may log in without TLS)" in out
    smtp["devices"]["new"] = {"recipients": ["example.com"]}
    config = _config(tmp_path, smtp)
    assert main(["smtp", "device", "add", "new", "-c", str(config)]) == 0
    assert "port 587 (STARTTLS) or 465 (SSL/TLS),\n" in capsys.readouterr().out  # the others need TLS


def test_device_without_policy_gets_a_hint(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, {})
    assert main(["smtp", "device", "add", "camera", "-c", str(config)]) == 0
    assert "has no policy yet" in capsys.readouterr().err


def test_devices_lists_accounts_policies_and_last_activity(tmp_path: Path, capsys) -> None:
    config = _config(
        tmp_path,
        {
            "devices": {
                "scanner": {"recipients": ["example.com"]},
                "ups": {"recipients": ["ops@example.com"], "auth": "none", "networks": ["10.0.0.7"]},
            }
        },
    )
    assert main(["smtp", "device", "add", "scanner", "-c", str(config)]) == 0
    assert main(["smtp", "device", "add", "orphan", "-c", str(config)]) == 0
    DeviceStore(tmp_path / "state" / "smtp_devices.db").touch("scanner", "192.168.1.20", accepted=3)
    capsys.readouterr()
    assert main(["smtp", "devices", "-c", str(config)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["scanner"][:2] == ["scanner", "password"] and rows["scanner"][2] == "yes"
    assert rows["scanner"][-2:] == ["192.168.1.20", "3"]
    assert rows["ups"][1:4] == ["network", "yes", "never"]
    assert rows["orphan"][2] == "NO"


def test_device_remove(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, {})
    assert main(["smtp", "device", "add", "nas", "-c", str(config)]) == 0
    assert main(["smtp", "device", "remove", "nas", "-c", str(config)]) == 0
    assert main(["smtp", "device", "remove", "nas", "-c", str(config)]) == 2


def test_cert_is_generated_once_and_its_fingerprint_shown(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, {"hostname": "relay.home.lan"})
    assert main(["smtp", "cert", "-c", str(config)]) == 0
    first = capsys.readouterr().out
    assert main(["smtp", "cert", "-c", str(config)]) == 0
    assert capsys.readouterr().out == first  # kept, not regenerated
    assert re.search(r"SHA-256 fingerprint: ([0-9A-F]{2}:){31}[0-9A-F]{2}", first)
    key = tmp_path / "state" / "smtp_tls" / "smtp-key.pem"
    assert key.stat().st_mode & 0o077 == 0


def test_a_start_killed_while_generating_the_cert_leaves_files_that_the_next_start_mends(
    tmp_path: Path, capsys
) -> None:
    """Killed after the key, before the certificate: no half file stops the relay, the next start makes both."""
    config = _config(tmp_path, {"hostname": "relay.home.lan"})
    tls = tmp_path / "state" / "smtp_tls"
    tls.mkdir(parents=True)
    (tls / "smtp-key.pem").write_bytes(b"-----BEGIN RSA PRIVATE KEY-----\nhalf")  # what a crash left
    (tls / ".smtp-cert.pem.tmp").write_bytes(b"-----BEGIN CERT")
    assert main(["smtp", "cert", "-c", str(config)]) == 0
    assert re.search(r"SHA-256 fingerprint: ([0-9A-F]{2}:){31}[0-9A-F]{2}", capsys.readouterr().out)
    assert b"half" not in (tls / "smtp-key.pem").read_bytes()
    assert sorted(p.name for p in tls.iterdir()) == ["smtp-cert.pem", "smtp-key.pem"]


def test_config_without_smtp_section_or_with_a_bad_one_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["smtp", "devices", "-c", str(_config(tmp_path, None))]) == 2
    assert "no smtp: section" in capsys.readouterr().err
    bad = _config(tmp_path, {"devices": {"scanner": {"senders": ["a@b.example"]}}, "plain_port": 25})
    assert main(["smtp", "devices", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "smtp.devices.scanner.recipients" in err


def test_cross_field_config_errors_name_the_key(tmp_path: Path, capsys) -> None:
    cases = {
        "plain_networks": {"plain_port": 2525},
        "cert_file": {"cert_file": "relay.pem"},
        "devices.ups.networks": {"devices": {"ups": {"recipients": ["a@example.com"], "auth": "none"}}},
        "devices.x.recipients.0": {"devices": {"x": {"recipients": ["not an address"]}}},
        "min_tls_version": {"min_tls_version": "0.9"},
    }
    for key, smtp in cases.items():
        assert main(["smtp", "devices", "-c", str(_config(tmp_path, smtp))]) == 2
        assert f"smtp.{key}" in capsys.readouterr().err, key
