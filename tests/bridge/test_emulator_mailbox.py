"""Accepted mail is kept as .eml files a person can open, and certificates survive restarts."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

import pytest
from azure.communication.email.aio import EmailClient
from azure.core.exceptions import HttpResponseError

from acs_email_bridge.emulator import Emulator


def _read_eml(path: Path) -> email.message.EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


async def test_record_dir_gets_eml_and_raw_json_per_mail(
    make_emulator: Any, sdk: Any, sample: dict, tmp_path: Path
) -> None:
    emu = await make_emulator(record_dir=tmp_path / "mail")
    result = await (await sdk(emu).begin_send(sample)).result()
    eml_path, json_path = (tmp_path / "mail" / f"{result['id']}{ext}" for ext in (".eml", ".json"))
    assert json_path.read_bytes() == emu.mails[0].raw_body
    eml = _read_eml(eml_path)
    assert eml["Subject"] == sample["content"]["subject"]
    assert eml.get_body(("html",)) is not None
    names = sorted(part.get_filename() for part in eml.walk() if part.get_filename())
    assert names == ["report.pdf", "snapshot.png"]


async def test_export_eml_writes_every_mail_in_order(
    emulator: Emulator, client: EmailClient, sample: dict, tmp_path: Path
) -> None:
    for subject in ("first", "second"):
        sample["content"] = {"subject": subject, "html": "<p>hi</p>"}
        await client.begin_send(sample, polling=False)
    paths = emulator.export_eml(tmp_path / "out")
    assert [_read_eml(path)["Subject"] for path in paths] == ["first", "second"]
    assert [path.stem for path in paths] == [mail.operation_id for mail in emulator.mails]


async def test_tls_material_is_reused_across_restarts(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    async with Emulator(tls_dir=tls) as first:
        ca, cert = first.ca_file.read_bytes(), (tls / "server.pem").read_bytes()
    assert {p.name for p in tls.iterdir()} >= {"ca.pem", "server.pem", "server.key"}
    assert oct((tls / "server.key").stat().st_mode & 0o777) == "0o600"
    async with Emulator(tls_dir=tls) as second:
        assert (second.ca_file.read_bytes(), (tls / "server.pem").read_bytes()) == (ca, cert)
    # A host the certificate does not cover: a new server certificate, still signed by the same CA.
    second = Emulator(tls_dir=tls)
    await second.start(host="127.0.0.2")
    try:
        assert second.ca_file.read_bytes() == ca
        assert (tls / "server.pem").read_bytes() != cert
    finally:
        await second.stop()


async def test_without_tls_dir_the_temporary_ca_is_removed_on_stop() -> None:
    async with Emulator() as emu:
        ca_file = emu.ca_file
        assert ca_file.exists()
    assert not ca_file.exists()


async def test_custom_headers_never_replace_what_the_service_sets(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    sample["headers"] = {
        "From": "ceo@bank.example",
        "Subject": "Urgent wire transfer",
        "To": "victim@example.org",
        "Cc": "other@example.org",
        "Bcc": "hidden@example.org",
        "Reply-To": "thief@example.net",
        "Date": "Mon, 01 Jan 2001 00:00:00 +0000",
        "Message-ID": "not a message id",
        "Content-Type": "text/plain",
        "X-Custom": "kept",
    }
    result = await (await client.begin_send(sample)).result()
    eml = emulator.mails[0].to_email_message()
    for name in ("From", "Subject", "To", "Cc", "Bcc", "Reply-To", "Date", "Message-ID", "Content-Type"):
        assert len(eml.get_all(name) or []) == 1, name
    assert eml["From"] == "DoNotReply@contoso.example"
    assert eml["Subject"] == "Garage door open ✓"
    assert [a.addr_spec for a in eml["To"].addresses] == ["alice@example.org", "bob@example.org"]
    assert eml["Cc"] == "carol@example.org"
    assert eml["Bcc"] == "dave@example.org"
    assert eml["Reply-To"] == "Help <help@contoso.example>"
    assert eml["Date"] != "Mon, 01 Jan 2001 00:00:00 +0000"
    assert eml["Message-ID"] == f"<{result['id']}@acs-emulator.invalid>"  # an invalid id is dropped
    assert eml.get_content_type() == "multipart/mixed"
    assert eml["X-Custom"] == "kept"


async def test_a_valid_message_id_is_kept_and_validation_can_be_asked_for(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    sample["headers"] = {"Message-ID": "<thread-1@home.example>"}
    await (await client.begin_send(sample)).result()
    assert emulator.mails[0].to_email_message().get_all("Message-ID") == ["<thread-1@home.example>"]
    sample["headers"] = {"Message-ID": "thread-2", "x-ms-acsemail-validate-message-id": "true"}
    with pytest.raises(HttpResponseError, match=r"See property 'headers\.Message-ID'"):
        await client.begin_send(sample)
    assert len(emulator.mails) == 1
