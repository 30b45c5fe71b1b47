"""MIME → core message: encodings, parts, recipients from the envelope, Reply-To and priority."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acs_email_bridge.smtp.convert import to_email_message
from acs_email_core.errors import ValidationError
from acs_email_core.message import DEFAULT_LIMITS, MessageLimits, Priority

SENDER = "relay@devices.example.com"


def convert(raw: bytes, rcpt: list[str] | None = None, **kwargs):
    options = {
        "mail_from": "scanner@office.lan",
        "rcpt_tos": rcpt or ["alice@example.com"],
        "sender": SENDER,
        "device": "scanner",
        "limits": DEFAULT_LIMITS,
    }
    options.update(kwargs)
    return to_email_message(raw.replace(b"\n", b"\r\n"), **options)


def multipart(*parts: bytes, headers: bytes = b"To: alice@example.com\nSubject: x\n") -> bytes:
    body = b"".join(b"--B\n" + part + b"\n" for part in parts)
    return headers + b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B"\n\n' + body + b"--B--\n"


def test_encoded_subject_display_names_and_file_names_are_decoded() -> None:
    raw = multipart(
        b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe",
        b'Content-Type: application/pdf; name="=?UTF-8?B?w6ljcmFuLnBkZg==?="\nContent-Disposition: attachment; '
        b'filename="=?UTF-8?B?w6ljcmFuLnBkZg==?="\nContent-Transfer-Encoding: base64\n\naGVsbG8=',
        b"Content-Type: application/pdf\nContent-Disposition: attachment; filename*=UTF-8''%C3%A9t%C3%A9.pdf\n"
        b"Content-Transfer-Encoding: base64\n\naGVsbG8=",
        headers=b"From: =?UTF-8?Q?B=C3=BCro_Scanner?= <scanner@office.lan>\n"
        b"To: =?UTF-8?B?w4Rsw68=?= <alice@example.com>\nSubject: =?UTF-8?Q?Scan_f=C3=BCr_dich_=E2=9C=93?=\n",
    )
    message = convert(raw)
    assert message.subject == "Scan für dich ✓"
    assert message.text == "Grüße"
    assert [(a.address, a.display_name) for a in message.to] == [("alice@example.com", "Älï")]
    assert [(a.address, a.display_name) for a in message.reply_to] == [("scanner@office.lan", "Büro Scanner")]
    assert [a.name for a in message.attachments] == ["écran.pdf", "été.pdf"]


def test_inline_image_keeps_its_content_id_and_html_its_reference() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    related = (
        b'Content-Type: multipart/related; boundary="R"\n\n--R\nContent-Type: text/html; charset=utf-8\n\n'
        b'<p>Motion</p><img src="cid:snap@cam">\n--R\nContent-Type: image/png\nContent-ID: <snap@cam>\n'
        b"Content-Disposition: inline\nContent-Transfer-Encoding: base64\n\n" + base64.b64encode(png) + b"\n--R--"
    )
    message = convert(multipart(related))
    assert message.html is not None and 'src="cid:snap@cam"' in message.html
    assert message.text is None
    [image] = message.attachments
    assert (image.content_id, image.content_type, image.data, image.name) == (
        "snap@cam",
        "image/png",
        png,
        "snap@cam.png",
    )


def test_recipients_come_from_the_envelope_only() -> None:
    headers = b"To: Alice <alice@example.com>, eve@evil.example\nCc: Bob <bob@example.com>\nSubject: x\n"
    message = convert(headers + b"\nhi\n", rcpt=["bob@example.com", "alice@example.com", "carol@example.com"])
    assert [a.address for a in message.to] == ["alice@example.com"]  # eve is in the header, not the envelope
    assert [(a.address, a.display_name) for a in message.cc] == [("bob@example.com", "Bob")]
    assert [a.address for a in message.bcc] == ["carol@example.com"]


def test_undisclosed_recipients_are_not_shown_to_each_other() -> None:
    message = convert(b"To: undisclosed-recipients:;\nSubject: x\n\nhi\n", rcpt=["a@example.com", "b@example.com"])
    assert [a.address for a in message.to] == [SENDER]
    assert [a.address for a in message.bcc] == ["a@example.com", "b@example.com"]


def test_no_recipient_headers_at_all_means_everyone_in_to() -> None:
    message = convert(b"Subject: UPS on battery\n\nload 40%\n", rcpt=["ops@example.com"])
    assert [a.address for a in message.to] == ["ops@example.com"] and message.bcc == ()


def test_octet_stream_is_typed_by_file_name_and_unknown_types_are_refused() -> None:
    part = b"Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=%s\n\ndata"
    message = convert(multipart(b"Content-Type: text/plain\n\nscan", part % b"scan.pdf"))
    assert [(a.name, a.content_type) for a in message.attachments] == [("scan.pdf", "application/pdf")]
    with pytest.raises(ValidationError, match="not one ACS Email accepts"):
        convert(multipart(b"Content-Type: text/plain\n\nscan", part % b"firmware.bin"))


def test_reply_to_and_display_name_rules() -> None:
    assert [(a.address, a.display_name) for a in convert(b"Subject: x\n\nhi\n").reply_to] == [
        ("scanner@office.lan", "scanner")  # no From: the envelope sender, named after the device
    ]
    explicit = convert(b"From: a@office.lan\nReply-To: Helpdesk <help@example.com>\nSubject: x\n\nhi\n")
    assert [(a.address, a.display_name) for a in explicit.reply_to] == [("help@example.com", "Helpdesk")]
    named = convert(b"From: MFD <mfd@office.lan>\nSubject: x\n\nhi\n", display_name="Front desk printer")
    assert [(a.address, a.display_name) for a in named.reply_to] == [("mfd@office.lan", "Front desk printer")]
    assert named.sender == SENDER


def test_priority_from_x_priority_or_importance() -> None:
    assert convert(b"X-Priority: 1 (Highest)\nSubject: x\n\nhi\n").priority is Priority.HIGH
    assert convert(b"Importance: low\nSubject: x\n\nhi\n").priority is Priority.LOW
    assert convert(b"Subject: x\n\nhi\n").priority is Priority.NORMAL


def test_attachment_only_and_unknown_charset_still_convert() -> None:
    pdf_only = (
        b"Subject: scan\nContent-Type: application/pdf; name=s.pdf\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n"
    )
    message = convert(pdf_only)
    assert message.text == "Attached: s.pdf" and [a.data for a in message.attachments] == [b"hello"]
    odd = convert(b"Subject: x\nContent-Type: text/plain; charset=x-unknown-printer\n\nstatus ok\n")
    assert odd.text is not None and "status ok" in odd.text


def test_size_over_the_acs_limit_is_a_size_error() -> None:
    big = multipart(
        b"Content-Type: application/pdf; name=big.pdf\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(bytes(30_000))
    )
    with pytest.raises(ValidationError) as info:
        convert(big, limits=MessageLimits(max_request_bytes=20_000))
    assert info.value.field == "size"


def test_raw_8bit_utf8_headers_and_undeclared_8bit_body_are_read_as_utf8() -> None:
    raw = "From: Jörg Büro <scanner@office.lan>\nTo: a@example.com\nSubject: Scan vom Büro\n\nGrüße\n".encode()
    message = convert(raw, rcpt=["a@example.com"])
    assert message.subject == "Scan vom Büro" and message.text == "Grüße\n"
    assert [a.display_name for a in message.reply_to] == ["Jörg Büro"]
    latin = convert(b"Subject: x\nContent-Type: text/plain; charset=us-ascii\n\nGr\xfc\xdfe\n")
    assert latin.text == "Grüße\n"


_HEADERS = st.sampled_from(
    [
        b"Subject: =?utf-8?q?broken",
        b"Subject: =?unknown-charset?B?aGVsbG8=?=",
        b"To: <<<@@>>>, ,;",
        b"Cc: undisclosed-recipients:;",
        b"From: \xff\xfe <x@",
        b"Reply-To: =?utf-8?b?////?= <a@b>",
        b"Content-Type: multipart/mixed",  # no boundary
        b'Content-Type: multipart/mixed; boundary="Z"',
        b'Content-Type: text/plain; charset="utf-8\x00"',
        b"Content-Transfer-Encoding: base64",
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Disposition: attachment; filename*=bogus''%ZZ.pdf",
        b"Content-ID: <>",
        b"X-Priority: \xff",
    ]
)


@settings(max_examples=150, deadline=None)
@given(headers=st.lists(_HEADERS, max_size=6), body=st.binary(max_size=300))
def test_any_input_converts_or_is_refused_with_a_validation_error(headers: list[bytes], body: bytes) -> None:
    """Whatever a device sends, conversion gives a message or a ValidationError (a 5xx), never a crash."""
    raw = b"\n".join([b"To: alice@example.com", *headers]) + b"\n\n" + body + b"\n--Z\n\n" + body + b"\n--Z--\n"
    try:
        message = convert(raw)
    except ValidationError:
        return
    message.validate()


def test_reply_to_outside_the_device_senders_is_refused() -> None:
    """A device limited to some senders cannot make replies go elsewhere through a Reply-To header."""
    raw = b"From: scanner@office.lan\nReply-To: Support <support@evil.example>\nSubject: x\n\nhi\n"
    with pytest.raises(ValidationError) as info:
        convert(raw, senders=["office.lan"])
    assert info.value.field == "reply-to" and "support@evil.example" in info.value.reason
    allowed = convert(raw.replace(b"evil.example", b"office.lan"), senders=["office.lan"])
    assert [a.address for a in allowed.reply_to] == ["support@office.lan"]


def test_duplicate_content_ids_keep_the_first_inline_and_the_others_as_attachments() -> None:
    def image(data: bytes) -> bytes:
        return b"Content-Type: image/png\nContent-ID: <img1>\nContent-Transfer-Encoding: base64\n\n" + base64.b64encode(
            data
        )

    raw = multipart(b'Content-Type: text/html\n\n<img src="cid:img1">', image(b"first"), image(b"second"))
    message = convert(raw)
    assert [(a.data, a.content_id) for a in message.attachments] == [(b"first", "img1"), (b"second", None)]


def test_control_characters_never_reach_subject_names_or_text() -> None:
    raw = (
        b"From: =?utf-8?q?Front=00desk=07?= <scanner@office.lan>\nSubject: =?utf-8?q?alarm=00=1B[31m_red?=\n"
        b"Content-Type: text/plain; charset=utf-8\n\nline\x00one\n"
    )
    message = convert(raw)
    assert message.subject == "alarm[31m red"
    assert [a.display_name for a in message.reply_to] == ["Frontdesk"]
    assert message.text == "lineone\n"


def test_an_attached_message_is_an_attachment_not_part_of_the_body() -> None:
    inner = b"Content-Type: message/rfc822\n\nFrom: a@b.example\nSubject: inner\n\ninner body\n"
    message = convert(multipart(b"Content-Type: text/plain\n\nouter body", inner))
    assert message.text == "outer body"
    [attachment] = message.attachments
    assert attachment.name == "inner.eml.txt" and attachment.content_type == "text/plain"
    assert b"Subject: inner" in attachment.data and b"inner body" in attachment.data


def test_header_addresses_acs_would_refuse_are_not_used() -> None:
    """A From or Reply-To with invalid UTF-8 would make ACS refuse the whole mail after its 250."""
    message = convert(b"From: Scanner <sc\xffanner@office.lan>\nReply-To: r\xffx@office.lan\nSubject: x\n\nhi\n")
    assert [(a.address, a.display_name) for a in message.reply_to] == [("scanner@office.lan", "scanner")]


@pytest.mark.parametrize("header", [b"", b"Subject:   \n", b"Subject: =?utf-8?q?=00=07?=\n"])
def test_a_mail_without_a_subject_gets_one(header: bytes) -> None:
    """ACS refuses an empty subject: the device's 250 would have been a dead letter."""
    assert convert(b"From: scanner@office.lan\n" + header + b"\nscan attached\n").subject == "(no subject)"


@pytest.mark.parametrize(
    ("declared", "expected", "extension"),
    [
        ("image/jpg", "image/jpeg", ".jpg"),
        ("image/pjpeg", "image/jpeg", ".jpg"),
        ("application/x-pdf", "application/pdf", ".pdf"),
    ],
)
def test_legacy_type_names_without_a_file_name_are_understood(declared: str, expected: str, extension: str) -> None:
    """Cameras and old scanners send ``image/jpg``, ``image/pjpeg`` or ``application/x-pdf``, often unnamed."""
    part = f"Content-Type: {declared}\nContent-ID: <snap>\nContent-Transfer-Encoding: base64\n\naGVsbG8=".encode()
    [attachment] = convert(multipart(b'Content-Type: text/html\n\n<img src="cid:snap">', part)).attachments
    assert (attachment.content_type, attachment.name, attachment.content_id) == (expected, f"snap{extension}", "snap")


@pytest.mark.parametrize("where", ["parts", "from", "reply-to"])
def test_mime_nested_too_deeply_is_a_validation_error_not_a_crash(where: str) -> None:
    """Thousands of nested multiparts or header comments fit in a few kB; Python's parser recurses:
    a clear 554, no traceback."""
    raw = b"Subject: deep\n"
    if where == "parts":
        for level in range(3000):
            raw += b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (level, level)
    else:
        raw += where.encode() + b": " + b"(" * 3000 + b")" * 3000 + b" <scanner@office.lan>\n\n"
    with pytest.raises(ValidationError) as info:
        convert(raw + b"Content-Type: text/plain\n\nleaf\n")
    assert "nested" in info.value.reason
