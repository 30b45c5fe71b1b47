"""``python -m acs_email_bridge.emulator`` prints what a client needs, serves it, and stops cleanly on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest
import yaml
from azure.communication.email.aio import EmailClient
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from acs_email_bridge.emulator import cli
from acs_email_core.config import settings_from_config


def test_parser_defaults_match_the_documented_ones() -> None:
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.http_port, args.quota) == ("127.0.0.1", 8443, None, "none")
    assert (args.tls_dir, args.record_dir) == (Path(".acs-emulator/tls"), Path(".acs-emulator/mail"))
    assert (args.state_dir, args.senders) == (Path(".acs-emulator"), None)
    assert (args.running_for, args.retry_after, args.access_key) == (0.0, 3, None)
    args = parser.parse_args(["--senders", "a@x.example", "b@x.example", "--state-dir", ""])
    assert (args.senders, args.state_dir) == (["a@x.example", "b@x.example"], Path(""))


async def _start(tmp_path: Path, *options: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start the emulator CLI and read its banner."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "acs_email_bridge.emulator",
        "--port=0",
        f"--tls-dir={tmp_path / 'tls'}",
        f"--record-dir={tmp_path / 'mail'}",
        f"--state-dir={tmp_path / 'state'}",
        "--quota=custom_domain",
        *options,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    banner = ""
    async with asyncio.timeout(15):
        while "Ctrl+C" not in banner:
            banner += (await process.stdout.readline()).decode()
    return process, banner


async def _stop(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    assert process.stdout is not None
    async with asyncio.timeout(10):
        rest = (await process.stdout.read()).decode()
        assert await process.wait() == 0
    return rest


async def test_cli_prints_connection_string_serves_mail_and_stops_on_sigterm(tmp_path: Path, sample: dict) -> None:
    process, banner = await _start(tmp_path)
    try:
        match = re.search(r"^  connection string: (\S+)$", banner, re.MULTILINE)
        assert match is not None, banner
        connection_string = match.group(1)
        assert connection_string.startswith("endpoint=https://127.0.0.1:")
        assert f'  connection_string: "{connection_string}"' in banner  # the YAML block
        assert f'  ca_file: "{tmp_path / "tls" / "ca.pem"}"' in banner
        pasted = yaml.safe_load(banner[banner.index("\nacs:") : banner.index("Press Ctrl+C")])
        settings = settings_from_config(pasted)  # the block is a valid config as printed
        assert settings.credentials.connection_string == connection_string
        client = EmailClient.from_connection_string(
            connection_string, connection_verify=str(tmp_path / "tls" / "ca.pem"), retry_total=0
        )
        async with client:
            result = await (await client.begin_send(sample)).result()
        assert (tmp_path / "mail" / f"{result['id']}.eml").exists()
    finally:
        rest = await _stop(process)
    assert "stopped" in rest

    # A restart keeps the generated access key (kept in --tls-dir), so configs that copied it keep working, and
    # the accepted operation (kept in --state-dir); --senders makes other MailFrom addresses "not linked".
    process, banner = await _start(tmp_path, "--senders", sample["senderAddress"])
    try:
        match = re.search(r"^  connection string: endpoint=(\S+)/;accesskey=(\S+)$", banner, re.MULTILINE)
        assert match is not None, banner
        endpoint, key = match.groups()
        assert key == connection_string.split("accesskey=")[1]
        assert (tmp_path / "tls" / "access_key").stat().st_mode & 0o077 == 0
        client = EmailClient.from_connection_string(
            match.group(0).split(": ", 1)[1], connection_verify=str(tmp_path / "tls" / "ca.pem"), retry_total=0
        )
        async with client:
            url = f"{endpoint}/emails/operations/{result['id']}"
            response = await client.send_request(HttpRequest("GET", url, params={"api-version": "2025-09-01"}))
            assert (response.status_code, response.json()["status"]) == (200, "Succeeded")
            with pytest.raises(HttpResponseError, match="DomainNotLinked"):
                await client.begin_send({**sample, "senderAddress": "other@contoso.example"})
    finally:
        await _stop(process)


def test_bad_access_key_is_a_usage_error() -> None:
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    assert cli.run(parser.parse_args(["--access-key", "not base64!", "--port", "0"])) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--senders", "Alerts <alerts@example.com>"],
        ["--senders", "ok@example.com", "not-an-address"],
        ["--port", "99999"],
        ["--http-port", "-1"],
        ["--retry-after", "-5"],
        ["--running-for", "nan"],
    ],
)
def test_bad_options_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--state-dir", "--record-dir", "--tls-dir"])
async def test_a_directory_option_naming_a_file_is_refused_at_start(option: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acs_email_bridge.emulator", "--port=0", f"--tls-dir={tmp_path / 'tls'}",
        f"--state-dir={tmp_path}", f"--record-dir={tmp_path}", option, str(tmp_path / "file" / "sub"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):  # not serving, and failing each send later
            _out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2
    assert err.decode().startswith(f"emulator: {option} {tmp_path / 'file' / 'sub'}: ")
    assert len(err.splitlines()) == 1
