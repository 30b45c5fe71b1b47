"""The message model: exact ACS payload shape and a ValidationError naming the field for everything ACS refuses."""

from __future__ import annotations

import base64
import json
import uuid
from email.headerregistry import Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acs_email_core.errors import ValidationError
from acs_email_core.message import (
    DEFAULT_LIMITS,
    Attachment,
    EmailAddress,
    EmailMessage,
    MessageLimits,
    Priority,
    parse_addresses,
)
from acs_email_core.mime import ALLOWED_BY_EXTENSION

SENDER = "DoNotReply@example.com"
MESSAGE_ID = "0b9e6c1e-3f1c-4c57-9a59-0d1c7f3c2a11"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def build(**overrides) -> EmailMessage:
    fields = {"sender": SENDER, "to": "ops@example.com", "subject": "UPS on battery", "text": "ups1 is OB"}
    fields.update(overrides)
    return EmailMessage.build(**fields)


def refused(field: str, **overrides) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        build(**overrides)
    assert info.value.field == field, str(info.value)
    return info.value


# ---- payload shape ---------------------------------------------------------------------------------------


def test_full_payload_shape():
    message = build(
        to=["Ops Team <ops@example.com>", "oncall@example.com"],
        cc='"Doe, Jane" <jane@example.com>',
        bcc=[EmailAddress("audit@example.com", "Audit")],
        reply_to={"address": "help@example.com", "name": "Helpdesk"},
        subject="Person at front_door",
        text="plain",
        html='<p>see <img src="cid:snap"></p>',
        attachments=[
            Attachment("snapshot.jpg", PNG, content_id="snap"),
            Attachment("report", b"%PDF-1.7", content_type="application/pdf"),
        ],
        headers={"X-Route": "frigate"},
        priority="high",
        message_id=MESSAGE_ID,
        disable_tracking=True,
    )
    assert message.to_acs_payload() == {
        "senderAddress": SENDER,
        "content": {"subject": "Person at front_door", "plainText": "plain", "html": '<p>see <img src="cid:snap"></p>'},
        "recipients": {
            "to": [{"address": "ops@example.com", "displayName": "Ops Team"}, {"address": "oncall@example.com"}],
            "cc": [{"address": "jane@example.com", "displayName": "Doe, Jane"}],
            "bcc": [{"address": "audit@example.com", "displayName": "Audit"}],
        },
        "attachments": [
            {
                "name": "snapshot.jpg",
                "contentType": "image/jpeg",
                "contentInBase64": base64.b64encode(PNG).decode(),
                "contentId": "snap",
            },
            {"name": "report", "contentType": "application/pdf", "contentInBase64": "JVBERi0xLjc="},
        ],
        "replyTo": [{"address": "help@example.com", "displayName": "Helpdesk"}],
        "headers": {"X-Route": "frigate", "X-Priority": "1", "Importance": "high"},
        "userEngagementTrackingDisabled": True,
    }
    assert message.message_id == MESSAGE_ID
    assert message.recipient_count == 4


def test_minimal_payload_has_no_optional_keys():
    assert build(html="<p>x</p>", text=None).to_acs_payload() == {
        "senderAddress": SENDER,
        "content": {"subject": "UPS on battery", "html": "<p>x</p>"},
        "recipients": {"to": [{"address": "ops@example.com"}]},
    }


@pytest.mark.parametrize(
    ("priority", "headers"),
    [
        (Priority.HIGH, {"X-Priority": "1", "Importance": "high"}),
        ("low", {"X-Priority": "5", "Importance": "low"}),
        ("normal", None),
    ],
)
def test_priority_headers(priority, headers):
    assert build(priority=priority).to_acs_payload().get("headers") == headers


def test_explicit_priority_header_wins_over_priority():
    payload = build(priority="high", headers={"x-msmail-priority": "Low"}).to_acs_payload()
    assert payload["headers"] == {"x-msmail-priority": "Low"}


def test_new_messages_get_distinct_uuid_ids():
    first, second = build(), build()
    assert first.message_id != second.message_id
    assert uuid.UUID(first.message_id).version == 4


def test_uppercase_uuid_is_accepted():
    assert build(message_id=MESSAGE_ID.upper()).message_id == MESSAGE_ID.upper()


# ---- addresses -------------------------------------------------------------------------------------------


def test_address_forms():
    assert parse_addresses("a@example.com; B <b@example.com>, <c@example.com>") == (
        EmailAddress("a@example.com"),
        EmailAddress("b@example.com", "B"),
        EmailAddress("c@example.com"),
    )
    assert parse_addresses([{"address": " d@example.com ", "display_name": "D"}, "mueller@bücher.de"]) == (
        EmailAddress("d@example.com", "D"),
        EmailAddress("mueller@bücher.de"),
    )
    assert parse_addresses(None) == ()
    assert EmailAddress.parse("Ops <ops@example.com>") == EmailAddress("ops@example.com", "Ops")


@pytest.mark.parametrize(
    "address",
    [
        "plainaddress",
        "a@b",
        "a@@example.com",
        "a b@example.com",
        "a@example..com",
        "a@-example.com",
        "a@example-.com",
        "a@exam_ple.com",
        "a@example.c",
        "a@example.123",
        "@example.com",
        "a@",
        "a@example.com, b",
        "Name <a@b>",
        # getaddresses() used to repair these into other recipients, or drop one
        "Me <me@exa mple.com>",
        "a@b.com>",
        "me@example.com <x@y.com>",
        "alice@example.org)<bob@example.org>",
        "a@example.com, Bob <>",
        "Bob <bob@example.com> trailing",
        "a@example.com (a comment)",
        "undisclosed-recipients: a@example.com;",
        "a@example.com,, b@example.com",
        '"a b"@example.com',
        "a@[192.0.2.1]",
        "😀@example.com",
        "müller@example.com",
        "a@" + "x" * 64 + ".com",
        "a@" + "ü" * 62 + ".de",  # 63 characters, but longer than that as the xn-- label DNS needs
        "<",
        "a@[",
    ],
)
def test_bad_recipient_is_refused(address):
    refused("to", to=address)
    refused("cc", to="ok@example.com", cc=[address])


def test_a_list_item_is_one_address():
    with pytest.raises(ValidationError, match="not a single email address"):
        EmailAddress.parse("a@example.com, b@example.com")


def test_non_ascii_local_part_is_explained():
    assert "only ASCII before the @" in str(refused("to", to="Smile <😀@example.com>"))


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ('"Doe, Jane" <jane@example.com>', [("jane@example.com", "Doe, Jane")]),
        ('"O\\"Brien" <ob@example.com>', [("ob@example.com", 'O"Brien')]),
        ("Jürgen Groß <j@bücher.de>", [("j@bücher.de", "Jürgen Groß")]),
        ("=?utf-8?q?J=C3=BCrgen?= <j@example.com>", [("j@example.com", "Jürgen")]),
        ("ops@xn--bcher-kva.de", [("ops@xn--bcher-kva.de", None)]),
        ("a@example.com; b@example.com;", [("a@example.com", None), ("b@example.com", None)]),
        ("  a@example.com ,b@example.com  ", [("a@example.com", None), ("b@example.com", None)]),
    ],
)
def test_addresses_kept_exactly_as_written(written, expected):
    assert [(a.address, a.display_name) for a in parse_addresses(written)] == expected


def test_mapping_without_address_is_refused():
    refused("to", to=[{"display_name": "Ops"}])


@pytest.mark.parametrize("sender", ["Alerts <alerts@example.com>", "<alerts@example.com>", "alerts", " a@example.com"])
def test_sender_must_be_a_plain_address(sender):
    assert "no display name" in str(refused("sender", sender=sender))


def test_no_recipient_is_refused():
    refused("to", to="")


def test_bcc_only_mail_is_refused_with_advice():
    """ACS's schema requires ``recipients.to``; whether the service takes a mail without one is unconfirmed."""
    error = refused("to", to=[], bcc="audit@example.com")
    assert "own address in To and the others in Bcc" in str(error)


# ---- line breaks (header injection) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("subject", {"subject": "UPS\r\nBcc: evil@example.org"}),
        ("subject", {"subject": "trailing\n"}),
        ("sender", {"sender": SENDER + "\n"}),
        ("to", {"to": "ops@example.com\r\nBcc: evil@example.org"}),
        ("to", {"to": ["Ops\n <ops@example.com>"]}),
        ("to", {"to": [{"address": "ops@example.com", "display_name": "Ops\r\nBcc: evil@example.org"}]}),
        ("reply_to", {"reply_to": [{"address": "ops@example.com", "name": "Ops\n"}]}),
        ("header 'X-Route'", {"headers": {"X-Route": "a\r\nBcc: evil@example.org"}}),
        ("header 'X-Route\\n'", {"headers": {"X-Route\n": "a"}}),
    ],
)
def test_line_breaks_are_refused(field, overrides):
    refused(field, **overrides)


def test_line_break_in_display_name_is_refused():
    with pytest.raises(ValidationError) as info:
        EmailAddress("ops@example.com", "Ops\rBcc: evil@example.org")
    assert info.value.field == "display name"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "a\r\n.png"}, "attachment 'a\\r\\n.png'"),
        ({"content_type": "image/png;\r\nX-Evil: 1"}, "attachment 'a.png' content type"),
        ({"content_id": "snap\n"}, "attachment 'a.png' content id"),
    ],
)
def test_line_breaks_in_attachments_are_refused(kwargs, field):
    with pytest.raises(ValidationError) as info:
        Attachment(**{"name": "a.png", "data": PNG, **kwargs})
    assert info.value.field == field


# ---- recipients limit ------------------------------------------------------------------------------------


def addresses(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(n)]


def test_fifty_recipients_over_to_cc_bcc_are_accepted_and_fifty_one_refused():
    ok = build(to=addresses(20, "t"), cc=addresses(20, "c"), bcc=addresses(10, "b"))
    assert ok.recipient_count == 50
    error = refused("recipients", to=addresses(20, "t"), cc=addresses(20, "c"), bcc=addresses(11, "b"))
    assert "51 recipients" in str(error)
    assert "at most 50" in str(error)


def test_reply_to_does_not_count_as_recipient():
    assert build(to=addresses(50, "t"), reply_to=addresses(3, "r")).recipient_count == 50


def test_raised_recipient_limit():
    raised = MessageLimits(max_recipients=60)
    message = build(to=addresses(60, "t"), limits=raised)
    message.validate(raised)
    with pytest.raises(ValidationError, match="at most 50"):
        message.validate()
    refused("recipients", to=addresses(61, "t"), limits=raised)


# ---- size ------------------------------------------------------------------------------------------------


def test_size_limit_is_exact_on_the_serialised_request():
    message = build(attachments=[Attachment("a.bin", b"x" * 300, "application/zip")])
    size = len(json.dumps(message.to_acs_payload(), separators=(",", ":")))  # the body as sent
    message.validate(MessageLimits(max_request_bytes=size))
    with pytest.raises(ValidationError) as info:
        message.validate(MessageLimits(max_request_bytes=size - 1))
    assert info.value.field == "size"
    assert f"{size:,} bytes" in str(info.value)


def test_size_counts_attachments_after_base64():
    raw = 3000  # fits the limit raw, not after base64 (4000 characters)
    limits = MessageLimits(max_request_bytes=3600)
    refused("size", attachments=[Attachment("a.zip", b"\0" * raw)], limits=limits)


def test_size_counts_non_ascii_text_as_escaped():
    limits = MessageLimits(max_request_bytes=400)
    build(text="a" * 200, limits=limits)
    refused("size", text="€" * 200, limits=limits)  # \u20ac: 6 bytes each in the request


def test_realistic_ten_megabyte_boundary():
    """7.5 MiB raw is exactly 10 MiB of base64, so with the JSON around it it no longer fits."""
    assert DEFAULT_LIMITS.max_request_bytes == 10 * 1024 * 1024
    build(attachments=[Attachment("a.zip", bytes(7_863_296))])  # 7.5 MiB - 1 KiB
    refused("size", attachments=[Attachment("a.zip", bytes(7_864_320))])


# ---- attachments -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("Snapshot.JPG", "image/jpeg"),
        ("clip.mp4", "video/mp4"),
        ("ups.log.txt", "text/plain"),
        ("x.gz", "application/gzip"),
    ],
)
def test_type_is_guessed_from_file_name(name, content_type):
    assert Attachment(name, b"x").content_type == content_type


@pytest.mark.parametrize("name", ["setup.exe", "snapshot", "script.sh", "archive.tar.xz"])
def test_unknown_type_without_content_type_is_refused_with_the_allowed_types(name):
    with pytest.raises(ValidationError, match="not on the ACS attachment allow-list") as info:
        Attachment(name, b"x")
    assert info.value.field == f"attachment {name!r}"
    assert "pdf, png, ppsm" in info.value.reason and ".zip" in info.value.reason


@pytest.mark.parametrize("content_type", ["application/x-msdownload", "text/html", "application/octet-stream"])
def test_disallowed_explicit_type_is_refused(content_type):
    with pytest.raises(ValidationError, match="not on the ACS attachment allow-list") as info:
        Attachment("file.pdf", b"x", content_type)
    assert info.value.field == "attachment 'file.pdf'"
    assert "application/pdf" in info.value.reason


@pytest.mark.parametrize("content_type", ["text/xml", "TEXT/Plain; charset=utf-8", "image/png"])
def test_explicit_allowed_type_is_kept_as_given(content_type):
    assert Attachment("data.bin", b"x", content_type).content_type == content_type


@pytest.mark.parametrize(("name", "field"), [("   ", "attachment"), ("empty.png", "attachment 'empty.png'")])
def test_empty_attachment_or_name_is_refused(name, field):
    with pytest.raises(ValidationError) as info:
        Attachment(name, b"")
    assert info.value.field == field


def test_blank_content_id_is_refused():
    with pytest.raises(ValidationError, match="content id is empty"):
        Attachment("a.png", PNG, content_id=" ")


def test_duplicate_content_ids_are_refused():
    attachments = [Attachment("a.png", PNG, content_id="snap"), Attachment("b.png", PNG, content_id="snap")]
    assert "['snap']" in str(refused("attachments", attachments=attachments))


def test_attachment_from_path(tmp_path):
    path = tmp_path / "snapshot.png"
    path.write_bytes(PNG)
    attachment = Attachment.from_path(path, content_id="snap")
    assert attachment == Attachment("snapshot.png", PNG, "image/png", "snap")


# ---- other fields ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["From", "to", "CC", "bcc", "Reply-To", "subject", "Sender", "Content-Type", "MIME-Version"]
)
def test_reserved_headers_are_refused(name):
    assert "set by ACS" in str(refused(f"header {name!r}", headers={name: "x"}))


@pytest.mark.parametrize("name", ["X Route", "X:Route", "", "X-Räume", "X-Route\r"])
def test_invalid_header_names_are_refused(name):
    assert "not a valid header name" in str(refused(f"header {name!r}", headers={name: "x"}))


@pytest.mark.parametrize(("text", "html"), [(None, None), ("", None), (None, ""), ("", "")])
def test_missing_or_empty_body_is_refused(text, html):
    refused("body", text=text, html=html)


def test_empty_text_beside_html_is_kept():
    assert build(text="", html="<p>x</p>").to_acs_payload()["content"]["plainText"] == ""


@pytest.mark.parametrize("subject", ["", "   ", "\t"])
def test_empty_subject_is_refused(subject):
    assert "without a subject" in str(refused("subject", subject=subject))


def test_unknown_priority_is_refused():
    refused("priority", priority="urgent")


@pytest.mark.parametrize(
    "message_id",
    ["42", "not-a-uuid", "{" + MESSAGE_ID + "}", "urn:uuid:" + MESSAGE_ID, MESSAGE_ID.replace("-", "")],
)
def test_non_uuid_message_id_is_refused(message_id):
    refused("message_id", message_id=message_id)


# ---- properties ------------------------------------------------------------------------------------------

_extension = st.sampled_from([*ALLOWED_BY_EXTENSION, "exe", "", "PNG"])
_attachment_args = st.fixed_dictionaries(
    {
        "name": st.builds(lambda stem, ext: f"{stem}.{ext}" if ext else stem, st.text(max_size=8), _extension),
        "data": st.binary(max_size=64),
        "content_type": st.none() | st.sampled_from(["image/png", "application/pdf", "text/html", "x\r\ny"]),
        "content_id": st.none() | st.sampled_from(["a", "b", "", "c\n"]),
    }
)
_header_name = st.sampled_from(["X-Priority", "Importance", "From", "X Bad"]) | st.from_regex(
    r"X-[!-9;-~]{1,8}", fullmatch=True
)
_address = st.emails() | st.sampled_from(["Ops <ops@example.com>", '"Doe, J" <j@example.com>', "bad"])


def _attachment_or_none(args: dict) -> Attachment | None:
    try:
        return Attachment(**args)
    except ValidationError:
        return None


@settings(max_examples=120, deadline=None)
@given(
    subject=st.text(max_size=40),
    text=st.none() | st.text(max_size=40),
    html=st.none() | st.text(max_size=40),
    to=st.lists(_address, min_size=1, max_size=2),
    cc=st.lists(_address, max_size=2),
    attachments=st.lists(_attachment_args, max_size=3),
    headers=st.dictionaries(_header_name, st.text(max_size=8), max_size=2),
    priority=st.sampled_from(["high", "normal", "low"]),
)
def test_built_messages_round_trip_and_keep_attachment_bytes(
    subject, text, html, to, cc, attachments, headers, priority
):
    built_attachments = [a for a in map(_attachment_or_none, attachments) if a is not None]
    try:
        message = EmailMessage.build(
            sender=SENDER,
            to=to,
            cc=cc,
            subject=subject,
            text=text,
            html=html,
            attachments=built_attachments,
            headers=headers,
            priority=priority,
        )
    except ValidationError:
        return
    payload = message.to_acs_payload()
    assert json.loads(json.dumps(payload)) == payload
    assert [base64.b64decode(a["contentInBase64"], validate=True) for a in payload.get("attachments", [])] == [
        a.data for a in built_attachments
    ]
    assert payload["content"]["subject"] == subject
    headers_out = payload.get("headers", {})
    for value in [
        *headers_out,
        *headers_out.values(),
        subject,
        *(a["contentType"] for a in payload.get("attachments", [])),
    ]:
        assert "\r" not in value and "\n" not in value
    for recipient in [*payload["recipients"]["to"], *payload["recipients"].get("cc", [])]:
        assert "\n" not in recipient["address"] and "\n" not in recipient.get("displayName", "")


@settings(max_examples=100, deadline=None)
@given(before=st.text(max_size=20), breaks=st.text(alphabet="\r\n", min_size=1, max_size=3), after=st.text(max_size=20))
def test_line_break_anywhere_in_subject_is_always_refused(before, breaks, after):
    with pytest.raises(ValidationError) as info:
        build(subject=before + breaks + after)
    assert info.value.field == "subject"


# Addresses ACS takes, written the way mail clients write them (quoted names where needed, IDN domains).
_local_part = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\.[A-Za-z0-9_-]{1,5}){0,2}", fullmatch=True)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True) | st.sampled_from(["bücher", "日本"])
_domain = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_label, min_size=1, max_size=3),
    st.sampled_from(["com", "de", "org", "xn--p1ai", "рф"]),
)
_word = st.text(alphabet="abcXYZäßé日09,.;:'\"()<>@\\[]", min_size=1, max_size=8)
_display_name = st.none() | st.lists(_word, min_size=1, max_size=3).map(" ".join)
_written = st.lists(st.tuples(_display_name, _local_part, _domain), min_size=1, max_size=4)


def _render(addresses: list[tuple[str | None, str, str]]) -> str:
    return ", ".join(str(Address(name or "", local, domain)) for name, local, domain in addresses)


@settings(max_examples=200, deadline=None)
@given(written=_written)
def test_written_addresses_parse_back_exactly(written):
    parsed = parse_addresses(_render(written))
    assert [(a.display_name, a.address) for a in parsed] == [
        (name, f"{local}@{domain}") for name, local, domain in written
    ]


@settings(max_examples=400, deadline=None)
@given(written=_written, noise=st.sampled_from('<>()"@[]\\,;:'), where=st.floats(0, 1))
def test_a_stray_character_never_yields_other_recipients(written, noise, where):
    """One stray structural character: refused, or the very same addresses (a name may change)."""
    text = _render(written)
    at = round(where * len(text))
    try:
        parsed = parse_addresses(text[:at] + noise + text[at:])
    except ValidationError:
        return
    assert [a.address for a in parsed] == [f"{local}@{domain}" for _name, local, domain in written]


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet='ab@.<>()[]"\\,;: \tü', max_size=20))
def test_any_text_is_parsed_or_refused_cleanly(text):
    """The stdlib parser raises odd errors on some cut-off input; callers only ever see a ValidationError."""
    try:
        parsed = parse_addresses(text)
    except ValidationError:
        return
    assert all(a.address in text for a in parsed)


@pytest.mark.parametrize(
    "address",
    [
        "ops@exa\ufffdmple.com",
        "ops@example.c\ufffdom",
        "ops@exam\x00ple.com",
        "o\x01ps@example.com",
        "ops@ex\udcffample.com",
        "ops@exa\ud800mple.com",
        "ops@example.com\x7f",
        "ops@exa\x85mple.com",
    ],
)
def test_addresses_acs_refuses_are_refused(address):
    """U+FFFD, control characters and undecodable bytes (lone surrogates) never reach ACS in an address."""
    refused("to", to=address)
    refused("to", to={"address": address})
    refused("reply_to", reply_to=address)


@pytest.mark.parametrize(
    "name", ["Ops\x00Desk", "Ops\x1bDesk", "Ops\x7fDesk", "Ops\x9bDesk", "Ops\ufffdDesk", "Ops\udcffDesk"]
)
def test_display_names_acs_refuses_are_refused(name):
    """A display name is part of the address header: control characters, U+FFFD and lone surrogates are refused."""
    refused("to", to={"address": "ops@example.com", "display_name": name})
    refused("to", to=f'"{name}" <ops@example.com>')


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("subject", {"subject": "UPS\x00 on battery"}),
        ("subject", {"subject": "UPS \udcff on battery"}),
        ("header 'X-Device'", {"headers": {"X-Device": "ups\x1b1"}}),
        ("text", {"text": "battery \udcff low"}),
        ("html", {"html": "<p>battery \ud800 low</p>"}),
    ],
)
def test_text_that_cannot_be_sent_is_refused(field, overrides):
    """Lone surrogates are not UTF-8 (ACS would refuse the whole request); controls break header lines."""
    refused(field, **overrides)


def test_tab_and_replacement_character_in_subject_are_kept():
    assert build(subject="UPS\tstatus \ufffd").subject == "UPS\tstatus \ufffd"
