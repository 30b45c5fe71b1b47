"""Accepted mail is kept as .eml files a person can open, and certificates survive restarts."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

from azure.communication.email.aio import EmailClient

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
