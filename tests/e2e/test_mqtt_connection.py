"""Broker connection options end to end: TLS with a client certificate and a password, MQTT 3.1.1, signals."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
from pathlib import Path

import trustme
import yaml

from acs_email_bridge.mosquitto import Mosquitto

from .mqtt_helpers import (
    BridgeProcess,
    Listener,
    bridge_config,
    kill_leftover_bridges,  # noqa: F401 - autouse fixture
    send_request,
    wait_until,
)


def _tls_broker(tmp_path: Path) -> tuple[Mosquitto, dict[str, str]]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("acs-email-bridge")
    files = {
        "ca": tmp_path / "ca.pem",
        "server": tmp_path / "server.pem",
        "server_key": tmp_path / "server.key",
        "client": tmp_path / "client.pem",
        "client_key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "bridge", "pässword 1"], check=True)
    broker = Mosquitto(
        tmp_path / "tls-broker",
        [
            f"cafile {files['ca']}",
            f"certfile {files['server']}",
            f"keyfile {files['server_key']}",
            "require_certificate true",
            "allow_anonymous false",
            f"password_file {passwd}",
            "max_queued_messages 0",
        ],
    )
    broker.client_args = [
        "--cafile", str(files["ca"]), "--cert", str(files["client"]), "--key", str(files["client_key"]),
        "-u", "bridge", "-P", "pässword 1",
    ]  # fmt: skip
    return broker, {k: str(v) for k, v in files.items()}


async def test_tls_with_client_certificate_and_password_from_secrets(tmp_path, emu):
    broker, files = _tls_broker(tmp_path)
    await broker.start()
    try:
        (tmp_path / "secrets.yaml").write_text('mqtt_password: "pässword 1"\n', encoding="utf-8")
        tls = {"ca_file": files["ca"], "cert_file": files["client"], "key_file": files["client_key"]}
        config = bridge_config(tmp_path, emu, broker.port, mqtt_extra={"username": "bridge", "tls": tls})
        text = config.read_text(encoding="utf-8").replace("  port:", "  password: !secret mqtt_password\n  port:", 1)
        config.write_text(text, encoding="utf-8")
        bridge = BridgeProcess(config)
        await bridge.start()
        await broker.publish("acs_email/send", send_request(1))
        await wait_until(lambda: len(emu.mails) == 1, 30, lambda: bridge.log)
        assert emu.mails[0].subject == "event 1"
        assert await bridge.stop() == 0
        assert "pässword" not in bridge.log

        wrong = config.read_text(encoding="utf-8").replace("!secret mqtt_password", "wrong")
        config.write_text(wrong, encoding="utf-8")
        await bridge.start(wait_connected=False)
        await wait_until(lambda: "refused the connection" in bridge.log, 30, lambda: bridge.log)
        assert await bridge.stop() == 0
    finally:
        await broker.stop()


async def test_mqtt_311_keeps_a_persistent_session(tmp_path, emu, broker):
    config = bridge_config(tmp_path, emu, broker.port, mqtt_extra={"protocol": "3.1.1"})
    bridge = BridgeProcess(config)
    await bridge.start()
    assert await bridge.stop() == 0
    await broker.publish_lines("acs_email/send", [send_request(i) for i in range(20)])
    await bridge.start()
    await wait_until(lambda: len(emu.mails) == 20, 30, lambda: bridge.log)
    assert "session resumed" in bridge.log
    assert await bridge.stop() == 0
    assert sorted(m.subject for m in emu.mails) == sorted(f"event {i}" for i in range(20))


async def test_sighup_reloads_and_sigterm_stops_cleanly(tmp_path, emu, broker):
    config = bridge_config(tmp_path, emu, broker.port)
    status = await Listener(broker.port, "acs_email/status").ready()
    bridge = BridgeProcess(config)
    await bridge.start()
    await wait_until(lambda: b"online" in [p for _t, p, _r in status.messages], 10)

    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["mqtt"]["send_topic"] = "home/mail/send"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    bridge.signal(signal.SIGHUP)
    await wait_until(lambda: "configuration reloaded" in bridge.log, 20, lambda: bridge.log)
    await broker.publish("home/mail/send", json.dumps({"to": "a@example.com", "subject": "after reload", "text": "x"}))
    await wait_until(lambda: [m.subject for m in emu.mails] == ["after reload"], 20, lambda: bridge.log)

    config.write_text("acs: [broken\n", encoding="utf-8")
    bridge.signal(signal.SIGHUP)
    await wait_until(lambda: "reload refused" in bridge.log, 20, lambda: bridge.log)
    await broker.publish("home/mail/send", json.dumps({"to": "a@example.com", "subject": "still running", "text": "x"}))
    await wait_until(lambda: len(emu.mails) == 2, 20, lambda: bridge.log)

    assert await bridge.stop(signal.SIGTERM) == 0
    await asyncio.sleep(0.2)
    assert [p for _t, p, _r in status.messages][-1] == b"offline"  # a clean stop, not the last will
    assert "stopping: queued mail stays in the outbox" in bridge.log
    status.close()


async def test_a_port_in_use_ends_the_start_with_a_clear_error(tmp_path, emu, broker):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = bridge_config(tmp_path, emu, broker.port, http={"port": taken.getsockname()[1]})
        bridge = BridgeProcess(config)
        await bridge.start(wait_connected=False)
        port = taken.getsockname()[1]
        assert await bridge.stop(signal.SIGCONT) == 1  # it ends by itself (SIGCONT: a no-op signal)
    assert f"cannot start: http: cannot listen on 127.0.0.1:{port}: Address already in use" in bridge.log
    assert "Traceback" not in bridge.log


async def test_unreadable_tls_files_and_an_unreachable_broker_are_reported(tmp_path, emu, broker):
    config = bridge_config(tmp_path, emu, broker.port, mqtt_extra={"tls": {"ca_file": "missing-ca.pem"}})
    bridge = BridgeProcess(config)
    await bridge.start(wait_connected=False)
    assert await bridge.stop(signal.SIGCONT) == 2  # a config error: restarting will not help
    missing = tmp_path / "missing-ca.pem"
    assert f"cannot start: mqtt.tls.ca_file: cannot read {missing}: No such file or directory" in bridge.log
    assert "Traceback" not in bridge.log

    await broker.stop()  # nobody listens there now
    config = bridge_config(tmp_path, emu, broker.port)
    await bridge.start(wait_connected=False)
    await wait_until(
        lambda: bridge.log.count(f"cannot connect to 127.0.0.1:{broker.port}") >= 2, 30, lambda: bridge.log
    )
    await broker.start()
    await wait_until(lambda: "MQTT: connected" in bridge.log, 30, lambda: bridge.log)
    assert await bridge.stop() == 0


async def test_sighup_during_a_stream_loses_nothing(tmp_path, emu, broker):
    config = bridge_config(tmp_path, emu, broker.port)
    bridge = BridgeProcess(config)
    await bridge.start()
    publishing = asyncio.create_task(broker.publish_lines("acs_email/send", [send_request(i) for i in range(600)]))
    for _ in range(3):
        bridge.signal(signal.SIGHUP)
        await asyncio.sleep(0.05)
    await publishing
    await wait_until(lambda: len(emu.mails) >= 600, 60, lambda: bridge.log[-2000:])
    assert bridge.log.count("configuration reloaded") == 3
    assert await bridge.stop() == 0
    assert sorted(int(m.subject.split()[1]) for m in emu.mails) == list(range(600))
