"""Real clients through the relay: every mail reaches the emulator with its text, HTML, attachments, recipients."""

from __future__ import annotations

import asyncio
import os
from email.message import EmailMessage

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
            client.login("scanner", relay_env.passwords["scanner"])
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
