"""``acs-email-bridge check`` and ``render`` on config files, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from routing_helpers import FIXTURES, JPEG

from acs_email_bridge.cli import main

HEADER = """\
acs:
  sender: alerts@home.example.com
  connection_string: endpoint=https://127.0.0.1:1/;accesskey=ZGVtbw==
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def test_check_explains_each_route(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path,
        """\
presets:
  frigate: {to: owner@example.com}
routes:
  - name: doors
    topic: [home/+/door]
    to: owner@example.com
    when: [{path: state, eq: open}]
    dedup: {key: "{{ topic }}", window: 2m}
""",
    )
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid; 2 route(s)" in out
    assert "doors\n  topics: home/+/door\n  only when: payload.state eq 'open'" in out
    assert "drops repeats of {{ topic }} within 120 s" in out
    assert "one mail per {{ payload.after.id }}, after 30 s or until payload.type == 'end'" in out
    assert "subscribes to: home/+/door, frigate/events, frigate/+/+/snapshot" in out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "routes:\n  - name: a\n    topic: x/#/y\n    to: a@example.com\n",
            "line 6: routes.0.topic: 'x/#/y': '#' must be a whole level and the last one",
        ),
        (
            "routes:\n  - name: a\n    topic: x\n    to: a@example.com\n    cooldown: soon\n",
            "line 8: routes.0.cooldown.window: expected a duration",
        ),
        ("presets:\n  frigate: {to: a@example.com, digest: {max_events: 3}}\n", "presets.frigate.digest.window"),
        ("presets:\n  nest: {to: a@example.com}\n", "presets.nest: unknown preset; known: apcupsd, frigate"),
        (
            "routes:\n  - name: a\n    topic: x\n    to: a@example.com\n    subject: '{{ payload.x '\n",
            "line 5: routes[0] (a): template 'a.subject': line 1: unexpected end of template",
        ),
        ("routes:\n  - name: a\n    topic: x\n", "routes[0] (a): to is required (who gets the mail)"),
        (
            "routes:\n  - name: a\n    topic: x\n    to: [ok@example.com, not an address]\n",
            "line 5: routes[0] (a): to[1]: 'not an address': 'not an address' is not an address list",
        ),
        ("routing:\n  timezone: Europe/Berln\n", "line 5: routing.timezone: unknown time zone 'Europe/Berln'"),
        (  # no word of a bracket the user never wrote
            "routes:\n  - {name: a, topic: x, to: a@example.com, when: 'payload.x >'}\n",
            "template 'a.when': line 1: unexpected 'end of statement block'",
        ),
    ],
)
def test_check_names_file_line_and_key_of_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    path = _write(tmp_path, body)
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert message in err


def test_check_reads_the_tls_files_run_would_need_and_warns_about_routes_without_mqtt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    route = "routes:\n  - {name: a, topic: x, to: a@example.com}\n"
    path = _write(tmp_path, "mqtt:\n  tls: {ca_file: broker-ca.pem}\n" + route)
    assert main(["check", "-c", str(path)]) == 2
    missing = tmp_path / "broker-ca.pem"
    assert f"mqtt.tls.ca_file: cannot read {missing}: No such file or directory" in capsys.readouterr().err
    (tmp_path / "client.pem").write_text("not a certificate", encoding="utf-8")
    path = _write(tmp_path, "mqtt:\n  tls: {cert_file: client.pem, key_file: client.key}\n" + route)
    assert main(["check", "-c", str(path)]) == 2
    assert f"mqtt.tls.key_file: cannot read {tmp_path / 'client.key'}" in capsys.readouterr().err  # not cert_file
    path = _write(tmp_path, "smtp:\n  cert_file: relay.pem\n  key_file: relay.key\n" + route)
    assert main(["check", "-c", str(path)]) == 2
    assert f"cannot read the SMTP certificate {tmp_path / 'relay.pem'}" in capsys.readouterr().err
    path = _write(tmp_path, route)
    assert main(["check", "-c", str(path)]) == 0
    assert "warning: the routes and presets take their events from MQTT" in capsys.readouterr().err
    folded = "mqtt: {}\nroutes:\n  - name: a\n    topic: x\n    to: |\n      a@example.com,\n      b@example.com\n"
    assert main(["check", "-c", str(_write(tmp_path, folded))]) == 0  # lines are joined, as when mailed


def test_render_prints_the_mail_without_sending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "presets:\n  frigate: {to: Owner <owner@example.com>}\n")
    snapshot = tmp_path / "snapshot.jpg"
    snapshot.write_bytes(JPEG)
    args = ["render", "-c", str(path), "--route", "frigate", "--topic", "frigate/events"]
    args += ["--payload", str(FIXTURES / "frigate-new.json")]
    args += ["--companion", f"frigate/front_door/person/snapshot={snapshot}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "To: Owner <owner@example.com>\nSubject: Person at front door\n" in out
    assert f"Attachment: snapshot.jpg (image/jpeg, {len(JPEG)} bytes, inline as cid:snapshot.jpg)" in out
    assert "--- text ---\nPerson (John Smith) detected by camera front_door." in out
    assert '<img src="cid:snapshot.jpg"' in out


def test_render_explains_why_a_message_would_fail_or_be_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "presets:\n  zigbee2mqtt_leak: {to: owner@example.com}\n")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops", encoding="utf-8")
    base = ["render", "-c", str(path), "--route", "zigbee2mqtt_leak", "--topic", "zigbee2mqtt/basement"]
    assert main([*base, "--payload", str(bad)]) == 1
    assert "would fail on route zigbee2mqtt_leak: invalid JSON" in capsys.readouterr().out
    assert main([*base, "--payload", str(FIXTURES / "z2m-smoke.json")]) == 1
    assert "dropped by 'when': payload.water_leak in [True, False]" in capsys.readouterr().out
