"""The bridge config file: sections, file/line/key errors, !secret, and the mqtt section's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from acs_email_bridge.mqtt import mqtt_settings
from acs_email_bridge.service import read_config
from acs_email_core.errors import ConfigError

ACS = """\
acs:
  connection_string: "endpoint=https://127.0.0.1:1/;accesskey=c2VjcmV0"
  sender: DoNotReply@example.com
"""


def write(tmp_path: Path, text: str, name: str = "bridge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_errors_name_file_line_and_key_never_the_value(tmp_path):
    path = write(tmp_path, ACS + "mqtt:\n  host: broker\n  port: secret-value\n  qos: 1\n")
    with pytest.raises(ConfigError) as err:
        read_config(path)
    message = str(err.value)
    assert f"{path}, line 6: mqtt.port: expected int" in message
    assert f"{path}, line 7: mqtt.qos: extra keys not allowed" in message
    assert "secret-value" not in message


def test_engine_errors_have_lines_too(tmp_path):
    path = write(tmp_path, ACS.replace("DoNotReply@example.com", "Me <me@example.com>") + "quota: 12\n")
    with pytest.raises(ConfigError) as err:
        read_config(path)
    assert f"{path}, line 3: acs.sender:" in str(err.value)


def test_unknown_sections_are_refused_with_their_line(tmp_path):
    path = write(tmp_path, ACS + "mqt:\n  host: x\n")
    with pytest.raises(ConfigError, match=r"line 4: unknown section 'mqt' \(known: acs, quota, outbox, limits, mqtt"):
        read_config(path)


def test_secrets_come_from_secrets_yaml_beside_the_config(tmp_path):
    write(tmp_path, "mqtt_password: s3cret\nacs_cs: endpoint=https://127.0.0.1:1/;accesskey=c2VjcmV0\n", "secrets.yaml")
    path = write(
        tmp_path,
        "acs:\n  connection_string: !secret acs_cs\n  sender: a@example.com\n"
        "mqtt:\n  username: bridge\n  password: !secret mqtt_password\n",
    )
    settings = mqtt_settings(read_config(path))
    assert settings is not None
    assert (settings.username, settings.password) == ("bridge", "s3cret")
    assert "s3cret" not in repr(settings)


def test_a_missing_secret_is_named_with_its_line(tmp_path):
    write(tmp_path, "other: 1\n", "secrets.yaml")
    path = write(tmp_path, ACS + "mqtt:\n  password: !secret mqtt_password\n")
    with pytest.raises(ConfigError, match=r"line 5: secret 'mqtt_password' is not defined in .*secrets.yaml"):
        read_config(path)
    (tmp_path / "secrets.yaml").unlink()
    with pytest.raises(ConfigError, match=r"needs .*secrets.yaml, which does not exist"):
        read_config(path)


def test_mqtt_defaults_and_derived_topics(tmp_path):
    path = write(
        tmp_path,
        ACS + "outbox:\n  path: data/outbox.db\nmqtt:\n  base_topic: home/mail\n  tls: {ca_file: ca.pem}\nhttp:\n",
    )
    config = read_config(path)
    settings = mqtt_settings(config)
    assert settings is not None
    assert settings.port == 8883  # TLS
    assert settings.tls is not None and settings.tls.ca_file == str(tmp_path / "ca.pem")
    assert (settings.send_topic, settings.result_topic) == ("home/mail/send", "home/mail/result")
    assert (settings.status_topic, settings.state_topic) == ("home/mail/status", "home/mail/state")
    assert settings.state_file == tmp_path / "data" / "outbox.db.mqtt.db"
    assert settings.v5 and settings.session_expiry == 7 * 86400
    assert config.sections["http"] == {"host": "127.0.0.1", "port": 9180}


def test_send_topic_can_be_disabled_and_protocol_chosen(tmp_path):
    path = write(tmp_path, ACS + "mqtt:\n  send_topic: null\n  protocol: 3.1.1\n  session_expiry: 30d\n")
    settings = mqtt_settings(read_config(path))
    assert settings is not None
    assert settings.send_topic is None
    assert not settings.v5
    assert settings.session_expiry == 30 * 86400


def test_publish_topics_refuse_wildcards(tmp_path):
    path = write(tmp_path, ACS + "mqtt:\n  send_topic: mail/+/send\n")
    with pytest.raises(ConfigError, match=r"line 5: mqtt\.send_topic: expected a topic name without \+ or # wildcards"):
        read_config(path)
