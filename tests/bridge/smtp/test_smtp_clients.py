"""Real clients through the relay: every mail reaches the emulator with its text, HTML, attachments, recipients."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def _rich_message() -> EmailMessage:
    """HTML with an inline image, a text alternative, a PDF with a non-ASCII (RFC 2231) name."""
    msg = EmailMessage()
    msg["From"] = "Office Scanner <scanner@office.lan>"
    msg["To"] = "Alice <alice@example.com>"
    msg["Cc"] = "boss@other.example.org"
    msg["Subject"] = "Scan from Büro 2 ✓"
    msg.set_content("Your scan is attached.")
    msg.add_alternative('<p>Your scan is attached.</p><img src="cid:logo">', subtype="html")
    msg.get_payload()[1].add_related(PNG, "image", "png", cid="<logo>")
    msg.add_attachment(b"%PDF-1.4\n" + os.urandom(2048), "application", "pdf", filename="Übersicht.pdf")
    return msg


async def test_starttls_login_delivers_text_html_inline_image_and_attachment(relay_env) -> None:
    msg = _rich_message()

    def send() -> None:
        with relay_env.smtp("submission") as client:
            client.starttls(context=relay_env.client_context())
            client.user, client.password = "scanner", relay_env.passwords["scanner"]
            client.ehlo()  # smtplib.auth takes a 503 "send EHLO first" for "already authenticated"
            client.auth("LOGIN", client.auth_login, initial_response_ok=False)
            client.send_message(msg, to_addrs=["alice@example.com", "boss@other.example.org", "carol@example.com"])

    await asyncio.to_thread(send)
    [mail] = await relay_env.delivered(1)
    assert mail.sender == relay_env.engine.settings.sender
    assert mail.subject == "Scan from Büro 2 ✓"
    assert mail.recipients("to") == ["alice@example.com"]
    assert mail.recipients("cc") == ["boss@other.example.org"]
    assert mail.recipients("bcc") == ["carol@example.com"]  # not in any header: rebuilt from RCPT TO
    assert mail.payload["content"]["plainText"].strip() == "Your scan is attached."
    assert '<img src="cid:logo">' in mail.payload["content"]["html"]
    assert mail.payload["replyTo"] == [{"address": "scanner@office.lan", "displayName": "Office Scanner"}]
    attachments = {a.name: a for a in mail.attachments()}
    assert attachments["Übersicht.pdf"].content_type == "application/pdf"
    assert attachments["Übersicht.pdf"].content.startswith(b"%PDF-1.4\n")
    inline = [a for a in mail.attachments() if a.content_id]
    assert [(a.content_id, a.content, a.content_type) for a in inline] == [("logo", PNG, "image/png")]
    assert relay_env.counter("acs_email_smtp_accepted_total", device="scanner") == 1


async def test_implicit_tls_plain_auth_advertised_and_delivered(relay_env) -> None:
    def send() -> tuple[str, dict[str, str]]:
        with relay_env.smtp("smtps") as client:
            client.ehlo()
            features = dict(client.esmtp_features)
            client.login("scanner", relay_env.passwords["scanner"])  # smtplib prefers PLAIN over LOGIN
            client.sendmail("scanner@office.lan", ["alice@example.com"], b"Subject: ups\r\n\r\non battery\r\n")
            return client.sock.version() or "", features

    version, features = await asyncio.to_thread(send)
    assert version.startswith("TLSv1.")
    assert "PLAIN" in features["auth"].split() and "LOGIN" in features["auth"].split()
    for extension in ("size", "8bitmime", "smtputf8", "pipelining"):
        assert extension in features
    [mail] = await relay_env.delivered(1)
    assert (mail.subject, mail.payload["content"]["plainText"]) == ("ups", "on battery\n")
    assert mail.recipients("to") == ["alice@example.com"]


async def test_swaks_starttls_login_with_html_and_attachment(relay_env, tmp_path: Path) -> None:
    report = tmp_path / "monthly-report.pdf"
    report.write_bytes(b"%PDF-1.7\n" + os.urandom(100_000))
    process = await asyncio.create_subprocess_exec(
        "swaks", "--server", f"127.0.0.1:{relay_env.port('submission')}", "--tls", "--pipeline",
        "--auth", "LOGIN", "--auth-user", "scanner", "--auth-password", relay_env.passwords["scanner"],
        "--from", "nas@office.lan", "--to", "alice@example.com,bob@example.com",
        "--header", "Subject: NAS report", "--header", "From: NAS <nas@office.lan>",
        "--header", "To: alice@example.com",
        "--attach-type", "text/plain", "--attach-body", "Report attached.",
        "--attach-type", "text/html", "--attach-body", "<h1>Report</h1>",
        "--attach-type", "application/octet-stream", "--attach", f"@{report}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert b"250 2.0.0 Queued as" in output
    assert b"~> DATA\n<~  250 2.1.0 Sender OK" in output  # MAIL, RCPT, RCPT, DATA pipelined in one write
    [mail] = await relay_env.delivered(1)
    assert mail.subject == "NAS report"
    assert (mail.recipients("to"), mail.recipients("bcc")) == (["alice@example.com"], ["bob@example.com"])
    assert mail.payload["content"]["plainText"].strip() == "Report attached."
    assert "<h1>Report</h1>" in mail.payload["content"]["html"]
    [attachment] = mail.attachments()
    assert (attachment.name, attachment.content_type) == ("monthly-report.pdf", "application/pdf")
    assert attachment.content == report.read_bytes()
    assert mail.payload["replyTo"] == [{"address": "nas@office.lan", "displayName": "NAS"}]


class _Mfd:
    """A multifunction printer's SMTP client: bare LF everywhere, lowercase ``auth login``, no Date/Message-ID."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname="relay.test")
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode()
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return "\n".join(lines)

    def command(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _scan_mime(pdf: bytes) -> bytes:
    encoded = base64.encodebytes(pdf).decode()  # 76-column lines
    return (
        'From: "Scanner 3rd floor" <scanner@office.lan>\n'
        "To: alice@example.com\n"
        "Subject: Scanned image from MX-3071\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="==MFD=="\n'
        "\n"
        "--==MFD==\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "Reply to: scanner@office.lan\n.dotted line stays\n"
        "--==MFD==\n"
        'Content-Type: application/pdf; name="scan0042.pdf"\n'
        "Content-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="scan0042.pdf"\n'
        "\n" + encoded + "--==MFD==--\n"
    ).encode()


def _dot_stuff(data: bytes) -> bytes:
    return b"\n".join(b"." + line if line.startswith(b".") else line for line in data.split(b"\n"))


async def test_multifunction_printer_bare_lf_lowercase_auth_3mb_pdf_no_bcc_header(relay_env) -> None:
    pdf = b"%PDF-1.4\n" + os.urandom(3 * 1024 * 1024)

    def scan() -> list[str]:
        mfd = _Mfd(relay_env.port("smtps"), relay_env.client_context())
        try:
            replies = [mfd.command("EHLO MX-3071"), mfd.command("auth login")]
            replies.append(mfd.command(base64.b64encode(b"scanner").decode()))
            replies.append(mfd.command(base64.b64encode(relay_env.passwords["scanner"].encode()).decode()))
            replies.append(mfd.command("MAIL FROM:<scanner@office.lan>"))
            replies.append(mfd.command("RCPT TO:<alice@example.com>"))
            replies.append(mfd.command("RCPT TO:<boss@other.example.org>"))
            replies.append(mfd.command("DATA"))
            mfd.sock.sendall(_dot_stuff(_scan_mime(pdf)) + b".\n")
            replies.append(mfd.reply())
            replies.append(mfd.command("QUIT"))
            return replies
        finally:
            mfd.close()

    replies = await asyncio.to_thread(scan)
    ehlo, auth, user, password, mail_from, rcpt1, rcpt2, data, queued, _quit = replies
    assert "250-AUTH LOGIN PLAIN" in ehlo
    assert auth == "334 " + base64.b64encode(b"Username:").decode()
    assert user == "334 " + base64.b64encode(b"Password:").decode()
    assert password.startswith("235 ")
    assert [r[:3] for r in (mail_from, rcpt1, rcpt2, data)] == ["250", "250", "250", "354"]
    assert queued.startswith("250 2.0.0 Queued as"), queued
    [mail] = await relay_env.delivered(1)
    assert mail.subject == "Scanned image from MX-3071"
    assert (mail.recipients("to"), mail.recipients("bcc")) == (["alice@example.com"], ["boss@other.example.org"])
    assert mail.payload["content"]["plainText"] == "Reply to: scanner@office.lan\n.dotted line stays"
    [attachment] = mail.attachments()
    assert (attachment.name, attachment.content_type, attachment.content) == ("scan0042.pdf", "application/pdf", pdf)
    assert mail.payload["replyTo"] == [{"address": "scanner@office.lan", "displayName": "Scanner 3rd floor"}]


async def test_certificate_from_files_is_used_and_its_fingerprint_reported(make_relay, tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("relay.test", "127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "relay.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "relay.key"))
    env = await make_relay(smtp={"cert_file": str(tmp_path / "relay.pem"), "key_file": str(tmp_path / "relay.key")})
    assert env.relay.certificate is not None and not env.relay.certificate.generated
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def handshake() -> bytes:
        with env.smtp() as client:
            client.starttls(context=context)  # verified against the trustme CA, host name included
            return client.sock.getpeercert(binary_form=True) or b""

    der = await asyncio.to_thread(handshake)
    fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert env.relay.certificate.sha256 == fingerprint


async def test_a_port_in_use_names_the_setting_to_change(make_relay) -> None:
    """The relay does not start half-way: the error names smtp.smtps_port, and the port already opened is closed."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as raised:
            await make_relay(smtp={"submission_port": 0, "smtps_port": port})
    message = str(raised.value)
    assert f"smtp.smtps_port: cannot listen on 127.0.0.1:{port}: Address already in use" in message
    assert "set another port, or null to turn it off" in message


async def test_an_address_not_on_this_host_names_smtp_listen(make_relay) -> None:
    with pytest.raises(
        OSError, match=r"smtp\.listen: cannot listen on 192\.0\.2\.1:\d+: .*give an address of this host"
    ):
        await make_relay(smtp={"listen": "192.0.2.1", "submission_port": 0})
