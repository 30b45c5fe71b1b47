"""The acs-email-bridge command as a user runs it: exit codes, messages, the outbox commands, the demo."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from acs_email_bridge import command
from acs_email_bridge.cli import (
    DEFAULT_SEND_TIMEOUT,
    EXIT_AUTH,
    EXIT_DEAD,
    EXIT_INVALID,
    EXIT_PENDING,
    EXIT_SENT,
    _build_parser,
    main,
)
from acs_email_bridge.demo import run_demo
from acs_email_bridge.emulator import Emulator, Fault

SENDER = "DoNotReply@cli.example.com"


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tls_dir=tmp_path / "tls", senders=[SENDER], retry_after=0) as emulator:
        yield emulator


def _config(
    tmp_path: Path, emu: Emulator, *, sender: str = SENDER, secret_tag: str | None = None, **acs_overrides: object
) -> Path:
    (tmp_path / "secret.txt").write_text(emu.client_secret + "\n")
    acs: dict[str, object] = {
        "endpoint": emu.endpoint,
        "sender": sender,
        "tenant_id": emu.tenant_id,
        "client_id": emu.client_id,
        "client_secret": "SECRET_PLACEHOLDER",
        "authority": emu.authority,
        "ca_file": str(emu.ca_file),
        "timeout": 2,
    }
    acs.update(acs_overrides)
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
    assert "HTTP 400 DomainNotLinked" in err

    code, out, _err = await _run("queue", "list", "-c", str(config), "--state", "dead")
    assert code == 0
    assert "DomainNotLinked" in out and "dead 1" in out

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
    assert "still queued after 1 s (last attempt: HTTP 503" in err and "the mail is kept in" in err
    emu.faults.clear()
    hint = err.rsplit("or now by: ", 1)[1].strip()
    flush = await asyncio.create_subprocess_exec(*shlex.split(hint), stdout=asyncio.subprocess.PIPE)
    out, _ = await flush.communicate()
    assert flush.returncode == EXIT_SENT, out
    assert len(emu.mails) == 1


def test_send_waits_two_minutes_by_default_and_0_means_no_limit() -> None:
    parse = _build_parser().parse_args
    required = ["send", "-c", "acs.yaml", "--to", "a@example.com", "-s", "x"]
    assert parse(required).timeout == DEFAULT_SEND_TIMEOUT == 120
    assert parse([*required, "--timeout", "0"]).timeout == 0
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parse([*required, "--timeout", "-1"])


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
    assert len(emls) == 4  # the sample, then three alerts through a 503, a cut connection and a 429
    (sample,) = [path for path, text in emls.items() if "ups-load.csv" in text]
    assert "status-icon" in emls[sample]
    assert str(sample) in out.getvalue()
    assert "3/3 sent" in out.getvalue() and "0 duplicate(s)" in out.getvalue()
    secret = (tmp_path / "client_secret.txt").read_text().strip()
    assert secret not in (tmp_path / "config.yaml").read_text()
    hint = out.getvalue().rsplit("the outbox: ", 1)[1].strip()  # run as printed
    listing = await asyncio.create_subprocess_exec(*shlex.split(hint), stdout=asyncio.subprocess.PIPE)
    listed, _ = await listing.communicate()
    assert listing.returncode == 0 and "sent 4, dead 0" in listed.decode()


def test_hints_name_the_program_as_it_can_be_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = tmp_path / "venv" / "bin" / "acs-email-bridge"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["venv/bin/acs-email-bridge", "demo"])  # as `make demo` starts it
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert command.config_hint("list", "a b.yaml") == "venv/bin/acs-email-bridge queue list --config 'a b.yaml'"
    monkeypatch.setenv("PATH", f"{program.parent}:/usr/bin")
    assert command.program() == "acs-email-bridge"
    monkeypatch.setattr(sys, "argv", ["/somewhere/pytest"])
    assert command.program() == f"{sys.executable} -m acs_email_bridge"


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


async def _outbox_is_empty(config: Path) -> bool:
    code, out, _err = await _run("queue", "list", "-c", str(config))
    return code == 0 and "queued 0, sending 0, sent 0, dead 0" in out


async def test_retry_takes_ids_after_the_config_option(emu: Emulator, tmp_path: Path) -> None:
    """As the README writes it: ``queue retry --config acs.yaml ID``."""
    config = _config(tmp_path, emu, sender="other@cli.example.com")  # not a linked sender: dead
    code, out, _err = await _run("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y")
    assert code == EXIT_DEAD
    message_id = out.split()[1]
    code, out, err = await _run("queue", "retry", "--config", str(config), message_id)
    assert (code, out.strip()) == (0, "requeued 1 dead letter(s)"), err
    code, out, err = await _run("queue", "purge", "--config", str(config), message_id, "--state", "dead")
    assert (code, out.strip()) == (0, "purged 0 dead mail(s)"), err  # it is queued now, not dead


async def test_sent_mail_does_not_show_an_old_error_as_current(emu: Emulator, tmp_path: Path) -> None:
    emu.faults.add(Fault.error(503, retry_after=0))
    config = _config(tmp_path, emu)
    code, _out, err = await _run("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y")
    assert code == EXIT_SENT, err
    code, out, _err = await _run("queue", "list", "-c", str(config))
    (line,) = [line for line in out.splitlines()[1:-1] if line.split()[1] == "sent"]
    assert "[earlier attempt: HTTP 503" in line


@pytest.mark.parametrize(
    ("acs", "expected"),
    [
        ({"connection_string": "endpoint=https://x.example/;accesskey=not*base64"}, "connection_string: its accesskey"),
        ({"ca_file": "missing.pem"}, "acs.ca_file: cannot read"),
        ({"ca_file": "secret.txt"}, "acs.ca_file:"),
        ({"endpoint": "my-resource.communication.azure.com"}, "acs.endpoint: expected a URL"),
    ],
)  # fmt: skip
async def test_configuration_errors_exit_2_before_anything_is_queued(
    emu: Emulator, tmp_path: Path, acs: dict[str, str], expected: str
) -> None:
    config = _config(tmp_path, emu, **acs)
    code, out, err = await _run("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y")
    assert code == EXIT_INVALID
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert "not*base64" not in err and emu.client_secret not in err
    assert "queued" not in out and not (tmp_path / "outbox.db").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--to", "Me <me@exa mple.com>"], "'Me <me@exa mple.com>' is not an address list"),
        (["--to", "me@example.com <x@y.com>"], "is not an address list"),
        (["--bcc", "a@example.com"], "own address in To and the others in Bcc"),
        (["--to", "a@example.com", "--subject", ""], "subject: is empty"),
        (["--to", "a@example.com", "--text", ""], "body: is empty"),
        (["--to", "a@example.com", "--attach", "nowhere.pdf"], "attachment 'nowhere.pdf': cannot read it"),
    ],
)
async def test_bad_input_exits_2_with_one_clear_line(
    emu: Emulator, tmp_path: Path, argv: list[str], expected: str
) -> None:
    code, _out, err = await _run("send", "-c", str(_config(tmp_path, emu)), "-s", "x", "-t", "y", *argv)
    assert code == EXIT_INVALID
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not (tmp_path / "outbox.db").exists()


async def test_refused_attachment_type_says_how_to_send_it(emu: Emulator, tmp_path: Path) -> None:
    (tmp_path / "setup.exe").write_bytes(b"MZ")
    code, _out, err = await _run(
        "send", "-c", str(_config(tmp_path, emu)), "--to", "a@example.com", "-s", "x", "-t", "y",
        "--attach", str(tmp_path / "setup.exe"),
    )  # fmt: skip
    assert code == EXIT_INVALID
    assert "'.exe' files are not on the ACS attachment allow-list" in err
    assert "pdf, png" in err and ".zip" in err and "--attach FILE:TYPE" in err


async def test_attach_with_an_explicit_type(emu: Emulator, tmp_path: Path) -> None:
    (tmp_path / "firmware.bin").write_bytes(b"PK\x03\x04 zipped")
    (tmp_path / "odd:name.csv").write_text("a,b\n")
    code, _out, err = await _run(
        "send", "-c", str(_config(tmp_path, emu)), "--to", "a@example.com", "-s", "x", "-t", "y",
        "--attach", f"{tmp_path / 'firmware.bin'}:application/zip", "--attach", str(tmp_path / "odd:name.csv"),
    )  # fmt: skip
    assert code == EXIT_SENT, err
    (mail,) = emu.mails
    assert [(a["name"], a["contentType"]) for a in mail.payload["attachments"]] == [
        ("firmware.bin", "application/zip"),
        ("odd:name.csv", "text/csv"),
    ]


async def test_wrong_client_secret_is_reported_once(emu: Emulator, tmp_path: Path) -> None:
    """Entra's AADSTS message appears once: not also as azure.identity's warning and the engine's error."""
    (tmp_path / "wrong.txt").write_text("not-the-secret\n")
    config = _config(tmp_path, emu, secret_tag="!file wrong.txt")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acs_email_bridge", "send", "-c", str(config), "--to", "a@example.com", "-s", "x",
        "-t", "y", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _out, err_bytes = await process.communicate()
    err = err_bytes.decode()
    assert process.returncode == EXIT_AUTH, err
    assert err.count("AADSTS7000215") == 1, err
    assert err.startswith("authentication failed: HTTP 401") and "queue flush --config" in err
