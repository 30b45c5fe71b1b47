"""The acs-email-bridge command as a user runs it: exit codes, messages, the outbox commands, the demo."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from acs_email_bridge.cli import EXIT_AUTH, EXIT_DEAD, EXIT_INVALID, EXIT_PENDING, EXIT_SENT, main
from acs_email_bridge.demo import run_demo
from acs_email_bridge.emulator import Emulator, Fault

SENDER = "DoNotReply@cli.example.com"


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], retry_after=0) as emulator:
        yield emulator


def _config(tmp_path: Path, emu: Emulator, *, sender: str = SENDER, secret_tag: str | None = None) -> Path:
    (tmp_path / "secret.txt").write_text(emu.client_secret + "\n")
    acs = {
        "endpoint": emu.endpoint,
        "sender": sender,
        "tenant_id": emu.tenant_id,
        "client_id": emu.client_id,
        "client_secret": "SECRET_PLACEHOLDER",
        "authority": emu.authority,
        "ca_file": str(emu.ca_file),
        "timeout": 2,
    }
    config = {"acs": acs, "outbox": {"path": "outbox.db", "retry_initial": 0.05, "max_attempts": 2}}
    text = yaml.safe_dump(config).replace("SECRET_PLACEHOLDER", secret_tag or "!file secret.txt")
    path = tmp_path / "acs.yaml"
    path.write_text(text)
    return path


async def _run(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in a thread (it starts its own event loop), capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(list(argv))

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


async def test_send_with_attachment(emu: Emulator, tmp_path: Path) -> None:
    report = tmp_path / "scan.pdf"
    report.write_bytes(b"%PDF-1.7 scanned page")
    config = _config(tmp_path, emu)
    code, out, err = await _run(
        "send", "-c", str(config), "--to", "Owner <owner@example.com>", "--subject", "Scan", "--text", "attached",
        "--attach", str(report), "--priority", "high",
    )  # fmt: skip
    assert code == EXIT_SENT, err
    assert "sent" in out
    (mail,) = emu.mails
    attachment = mail.payload["attachments"][0]
    assert (attachment["name"], attachment["contentType"]) == ("scan.pdf", "application/pdf")
    assert mail.payload["headers"]["X-Priority"] == "1"
    assert emu.client_secret not in out + err


async def test_bad_address_is_refused_before_queueing(emu: Emulator, tmp_path: Path) -> None:
    config = _config(tmp_path, emu)
    code, _out, err = await _run("send", "-c", str(config), "--to", "not-an-address", "--subject", "x", "--text", "y")
    assert code == EXIT_INVALID
    assert "not-an-address" in err and "address" in err
    assert not (tmp_path / "outbox.db").exists() or emu.mails == []


async def test_unknown_attachment_type_is_refused(emu: Emulator, tmp_path: Path) -> None:
    binary = tmp_path / "firmware.bin"
    binary.write_bytes(b"\x00\x01")
    code, _out, err = await _run(
        "send", "-c", str(_config(tmp_path, emu)), "--to", "a@example.com", "--subject", "x", "--text", "y",
        "--attach", str(binary),
    )  # fmt: skip
    assert code == EXIT_INVALID
    assert "firmware.bin" in err and "allow-list" in err


async def test_missing_secret_variable_is_named(emu: Emulator, tmp_path: Path) -> None:
    os.environ.pop("ACS_TEST_SECRET_UNSET", None)
    config = _config(tmp_path, emu, secret_tag="!env_var ACS_TEST_SECRET_UNSET")
    code, _out, err = await _run("send", "-c", str(config), "--to", "a@example.com", "--subject", "x", "--text", "y")
    assert code == EXIT_INVALID
    assert "ACS_TEST_SECRET_UNSET is not set" in err


async def test_secret_from_environment(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACS_TEST_SECRET", emu.client_secret)
    config = _config(tmp_path, emu, secret_tag="!env_var ACS_TEST_SECRET")
    code, out, err = await _run(
        "-v", "send", "-c", str(config), "--to", "a@example.com", "--subject", "x", "--text", "y"
    )
    assert code == EXIT_SENT, err
    assert emu.client_secret not in out + err


async def test_refused_mail_is_dead_then_requeued_and_purged(emu: Emulator, tmp_path: Path) -> None:
    config = _config(tmp_path, emu, sender="other@cli.example.com")  # not a linked sender: 400
    code, _out, err = await _run("send", "-c", str(config), "--to", "a@example.com", "--subject", "x", "--text", "y")
    assert code == EXIT_DEAD
    assert "HTTP 400 InvalidSenderUserName" in err

    code, out, _err = await _run("queue", "list", "-c", str(config), "--state", "dead")
    assert code == 0
    assert "InvalidSenderUserName" in out and "dead 1" in out

    code, out, _err = await _run("queue", "retry", "-c", str(config))
    assert (code, out.strip()) == (0, "requeued 1 dead letter(s)")
    code, out, _err = await _run("queue", "list", "-c", str(config))
    assert "queued 1" in out

    code, out, _err = await _run("queue", "flush", "-c", str(config))
    assert code == EXIT_DEAD  # refused again
    code, out, _err = await _run("queue", "purge", "-c", str(config))
    assert (code, out.strip()) == (0, "purged 1 dead mail(s)")
    code, out, _err = await _run("queue", "list", "-c", str(config))
    assert "dead 0" in out


async def test_timeout_leaves_mail_queued(emu: Emulator, tmp_path: Path) -> None:
    emu.faults.add(Fault.error(503, times=1_000))
    config = _config(tmp_path, emu)
    code, _out, err = await _run(
        "send", "-c", str(config), "--to", "a@example.com", "--subject", "x", "--text", "y", "--timeout", "1"
    )
    assert code == EXIT_PENDING
    assert "still queued" in err
    emu.faults.clear()
    code, _out, _err = await _run("queue", "flush", "-c", str(config))
    assert code == EXIT_SENT
    assert len(emu.mails) == 1


async def test_bad_config_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("acs: [unclosed\n")
    code, _out, err = await _run("queue", "list", "-c", str(path))
    assert code == EXIT_INVALID
    assert "not valid YAML" in err and "line" in err


async def test_demo_delivers_sample_mail_and_rides_out_trouble(tmp_path: Path) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await run_demo(tmp_path) == 0
    emls = {path: path.read_text() for path in (tmp_path / "mail").glob("*.eml")}
    # the sample, three alerts through a 503, a cut connection and a 429, a scan by SMTP, six from the MQTT bridge
    assert len(emls) == 11
    (scan,) = [text for text in emls.values() if "scan0001.pdf" in text]
    assert "Reply-To: Office scanner <scanner@office.lan>" in scan
    (sample,) = [path for path, text in emls.items() if "ups-load.csv" in text]
    assert "status-icon" in emls[sample]
    assert str(sample) in out.getvalue()
    assert "3/3 sent" in out.getvalue() and "0 duplicate(s)" in out.getvalue()
    assert "6 mail(s) arrived at the emulator (expected 6)" in out.getvalue()
    (camera,) = [text for text in emls.values() if "Subject: Person at front door" in text]
    assert "snapshot.jpg" in camera
    (scan,) = [text for text in emls.values() if "invoice-2026-12.pdf" in text and "Subject: Scan from office" in text]
    assert "application/pdf" in scan
    secret = (tmp_path / "client_secret.txt").read_text().strip()
    assert secret not in (tmp_path / "config.yaml").read_text()


async def test_refused_credentials_end_the_wait_and_keep_the_mail(emu: Emulator, tmp_path: Path) -> None:
    (tmp_path / "wrong.txt").write_text("not-the-secret\n")
    config = _config(tmp_path, emu, secret_tag="!file wrong.txt")
    code, _out, err = await _run("send", "-c", str(config), "--to", "a@example.com", "--subject", "x", "--text", "y")
    assert code == EXIT_AUTH
    assert "authentication failed" in err and "AADSTS7000215" in err
    assert "not-the-secret" not in err
    code, out, _err = await _run("queue", "list", "-c", str(config))
    assert "queued 1" in out
    code, _out, err = await _run("queue", "flush", "-c", str(config))
    assert code == EXIT_AUTH
    assert emu.mails == []
