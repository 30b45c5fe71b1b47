"""The acs-email-bridge command as a user runs it: exit codes, messages, the outbox commands, the demo."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
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
from acs_email_bridge.config import load_yaml
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
    config.write_text(config.read_text().replace("max_attempts: 2", "max_attempts: 100"))  # 503s for 2 s
    code, _out, err = await _run(
        "send", "-c", str(config), "--to", "a@example.com", "--subject", "x", "--text", "y", "--timeout", "1"
    )
    assert code == EXIT_PENDING
    assert "still queued after 1 s (last attempt: HTTP 503" in err and "the mail is kept in" in err
    hint = err.rsplit("or now by: ", 1)[1].strip()
    code, out, err = await _run("queue", "flush", "-c", str(config), "--timeout", "1")  # no hang while ACS is down
    assert (code, out) == (EXIT_PENDING, "sent 0, dead 0\n")
    assert err.startswith("1 mail(s) still queued after 1 s; they are kept in ") and "--timeout 0" in err
    assert _build_parser().parse_args(["queue", "flush", "-c", "x"]).timeout == DEFAULT_SEND_TIMEOUT
    emu.faults.clear()
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
    hint = out.getvalue().rsplit("the outbox: ", 1)[1].strip()  # run as printed
    listing = await asyncio.create_subprocess_exec(*shlex.split(hint), stdout=asyncio.subprocess.PIPE)
    listed, _ = await listing.communicate()
    assert listing.returncode == 0 and "sent 5, dead 0" in listed.decode()


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
    assert (code, out.strip()) == (EXIT_INVALID, "purged 0 dead mail(s)"), err  # it is queued now, not dead
    assert err == f"{message_id} is queued, not dead: left as it is\n"


async def test_an_id_that_names_no_such_mail_is_reported(emu: Emulator, tmp_path: Path) -> None:
    config = _config(tmp_path, emu, sender="other@cli.example.com")  # not a linked sender: dead
    code, out, _err = await _run("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y")
    message_id = out.split()[1]
    typo = message_id[:-1] + ("0" if message_id[-1] != "0" else "1")
    code, out, err = await _run("queue", "retry", "--config", str(config), message_id, typo)
    assert (code, out) == (EXIT_INVALID, "requeued 1 dead letter(s)\n")  # the good one is requeued all the same
    assert err == f"no mail with id {typo!r} in {tmp_path / 'outbox.db'}\n"


async def test_sent_mail_does_not_show_an_old_error_as_current(emu: Emulator, tmp_path: Path) -> None:
    emu.faults.add(Fault.error(503, retry_after=0))
    config = _config(tmp_path, emu)
    code, _out, err = await _run("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y")
    assert code == EXIT_SENT, err
    code, out, _err = await _run("queue", "list", "-c", str(config))
    (line,) = [line for line in out.splitlines()[1:-1] if line.split()[1] == "sent"]
    assert "[earlier attempt: " in line  # the old error is labelled as such, not shown as the current one


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


async def _process(*argv: str, interrupt: Callable[[], Awaitable[object]] | None = None) -> tuple[int, str, str]:
    """Run the CLI as a user does, in its own process; with ``interrupt``, press Ctrl+C (SIGINT) once it has
    printed "queued" and ``interrupt()`` returned (whatever the SIGINT disposition this test run inherited)."""
    code = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); " + (
        "from acs_email_bridge.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    out = b""
    async with asyncio.timeout(60):
        if interrupt is not None:
            out = await process.stdout.readline()
            assert out.startswith(b"queued "), out
            await interrupt()
            process.send_signal(signal.SIGINT)
        rest, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (out + rest).decode(), err.decode()


async def test_a_dead_mail_is_reported_once_with_what_to_fix(emu: Emulator, tmp_path: Path) -> None:
    config = _config(tmp_path, emu, sender="other@cli.example.com")  # not a linked sender: 400
    code, _out, err = await _process("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y")
    assert code == EXIT_DEAD
    assert err.count("DomainNotLinked") == 1, err  # not also as the engine's log line
    assert err.startswith("dead ") and "acs.sender must be a MailFrom address of a domain linked" in err


async def test_ctrl_c_while_the_request_is_in_flight_says_it_was_sent(emu: Emulator, tmp_path: Path) -> None:
    emu.faults.add(Fault.delay(3, after=True))  # accepted, then the answer takes 3 s
    config = _config(tmp_path, emu, timeout=5)

    async def accepted() -> None:
        while not emu.mails:
            await asyncio.sleep(0.05)

    code, out, err = await _process(
        "send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y", interrupt=accepted
    )
    message_id = out.split()[1]
    assert code == 130
    assert err.strip() == f"interrupted; {message_id} is sent (queue list --config {config} shows it)"
    assert len(emu.mails) == 1


async def test_ctrl_c_while_acs_is_down_keeps_the_mail_and_says_how_it_goes_out(emu: Emulator, tmp_path: Path) -> None:
    emu.faults.add(Fault.error(503, times=1_000))
    config = _config(tmp_path, emu)

    async def refused() -> None:
        while not emu.requests.count("send", 503):
            await asyncio.sleep(0.05)

    code, out, err = await _process(
        "send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y", interrupt=refused
    )
    message_id = out.split()[1]
    assert code == 130
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted; {message_id} stays queued in ") and "queue flush --config" in last
    emu.faults.clear()
    assert await _run("queue", "flush", "-c", str(config)) == (EXIT_SENT, "sent 1, dead 0\n", "")
    assert len(emu.mails) == 1


async def test_an_attachment_too_large_to_send_is_refused_without_reading_it_whole(
    emu: Emulator, tmp_path: Path
) -> None:
    video = tmp_path / "camera.mp4"
    with video.open("wb") as file:
        file.truncate(64 * 1024 * 1024)  # sparse: costs no disk
    code, out, err = await _run(
        "send", "-c", str(_config(tmp_path, emu)), "--to", "a@example.com", "-s", "x", "-t", "y", "--attach", str(video)
    )
    assert code == EXIT_INVALID and "queued" not in out
    assert err == (
        f"error: attachment {str(video)!r}: is over 7,864,320 bytes, more than a request can carry after base64 "
        "(limits.max_request_bytes: 10,485,760)\n"
    )


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [("--to", "Me <me@exa mple.com>", "to"), ("--cc", "a@b.com>", "cc"), ("--reply-to", "x", "reply_to")],
)
async def test_an_address_error_names_the_option(
    emu: Emulator, tmp_path: Path, option: str, value: str, field: str
) -> None:
    argv = ["send", "-c", str(_config(tmp_path, emu)), "-s", "x", "-t", "y", option, value]
    if option != "--to":
        argv += ["--to", "a@example.com"]
    code, _out, err = await _run(*argv)
    assert code == EXIT_INVALID
    assert err.startswith(f"error: {field}: {value!r} is not ")


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (
            lambda d: (d / "acs.yaml").write_bytes(b"acs:\n  sender: \xff\xfe\n"),
            "config file {d}/acs.yaml is not UTF-8",
        ),
        (
            lambda d: (d / "secret.txt").write_bytes(b"\x89PNG\r\n\xff"),
            "acs.yaml, line 5: secret file {d}/secret.txt is",
        ),
        (lambda d: (d / "secret.txt").unlink(), "acs.yaml, line 5: cannot read secret file {d}/secret.txt"),
    ],
)
async def test_unreadable_config_or_secret_is_one_line(emu: Emulator, tmp_path: Path, write, expected: str) -> None:
    config = _config(tmp_path, emu)
    assert config.read_text().splitlines()[4].strip() == "client_secret: !file secret.txt"  # line 5
    write(tmp_path)
    code, _out, err = await _run("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y")
    assert code == EXIT_INVALID
    assert expected.format(d=tmp_path) in err and len(err.splitlines()) == 1, err


async def test_a_key_given_twice_is_refused_not_silently_overridden(emu: Emulator, tmp_path: Path) -> None:
    config = _config(tmp_path, emu)
    config.write_text(config.read_text() + "outbox:\n  path: elsewhere.db\n")  # a second outbox: block pasted
    code, out, err = await _run("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y")
    assert code == EXIT_INVALID and "queued" not in out
    line = len(config.read_text().splitlines()) - 1
    assert err == f"error: {config}, line {line}: 'outbox' is given twice; only one can apply\n"
    merged = tmp_path / "merge.yaml"  # YAML merge keys may still override what they bring in
    merged.write_text("base: &base {path: a.db, max_attempts: 3}\nother: {<<: *base, path: b.db}\n")
    assert load_yaml(merged)["other"] == {"path": "b.db", "max_attempts": 3}


async def test_demo_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    code, _out, err = await _run("demo", "--dir", str(tmp_path / "file" / "demo"))
    assert code == EXIT_INVALID
    assert err == f"error: --dir {tmp_path / 'file' / 'demo'}: Not a directory\n"


async def test_a_principal_without_the_role_is_told_to_get_one(emu: Emulator, tmp_path: Path) -> None:
    (_tenant, client), secret = next(item for item in emu.clients.items() if item[0][1] in emu.without_role)
    (tmp_path / "no-role.txt").write_text(secret)
    config = _config(tmp_path, emu, secret_tag="!file no-role.txt", client_id=client)
    code, _out, err = await _run("send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y")
    assert code == EXIT_AUTH
    first, second = err.splitlines()
    assert first.startswith("authentication failed: HTTP 403 AuthorizationFailed")
    assert "give the service principal a role on the ACS resource" in second and secret not in err
    code, out, _err = await _run("queue", "list", "-c", str(config))
    assert "queued 1" in out  # kept, not dead
