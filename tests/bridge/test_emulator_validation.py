"""The emulator refuses what ACS refuses, with the live error shapes, so clients learn the real messages."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from azure.communication.email.aio import EmailClient
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from acs_email_bridge.emulator import Emulator

Sdk = Callable[..., EmailClient]
Sign = Callable[..., dict[str, str]]


def _attachment(name: str = "a.txt", content_type: str = "text/plain", content: str = "aGk=", **extra: str) -> dict:
    return {"name": name, "contentType": content_type, "contentInBase64": content, **extra}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of the sample payload at a dotted path (list indices as numbers)."""

    def mutate(payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = payload
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is None:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return mutate


INVALID = [
    ("senderAddress", "DoNotReply Team <DoNotReply@contoso.example>", "senderAddress"),
    ("recipients.to.1.address", "bob at example.org", "recipients.to[1].address"),
    ("recipients.cc.0.address", "", "recipients.cc[0].address"),
    ("attachments.0.contentType", "application/x-msdownload", "attachments[0].contentType"),
    ("attachments.0.contentInBase64", "not base64!", "attachments[0].contentInBase64"),
    ("attachments.0.name", None, "attachments[0].name"),
    ("content.subject", None, "content.subject"),
    ("content.subject", "   ", "content.subject"),
    ("recipients", {"to": [], "cc": [], "bcc": []}, "recipients.to"),
    ("headers", {"Bad Header:": "x"}, "headers.Bad Header:"),
]


@pytest.mark.parametrize(("path", "value", "property_path"), INVALID)
async def test_invalid_body_is_400_naming_the_property(
    emulator: Emulator, client: EmailClient, sample: dict[str, Any], path: str, value: Any, property_path: str
) -> None:
    _set(path, value)(sample)
    with pytest.raises(HttpResponseError) as caught:
        await client.begin_send(sample)
    error = caught.value
    assert error.status_code == 400
    assert error.error is not None and error.error.code == "BadRequest"
    assert error.error.message == f"Request body validation error. See property '{property_path}'"
    assert error.response is not None and error.response.headers["x-ms-error-code"] == "BadRequest"
    assert json.loads(error.response.text())["error"] == {
        "code": "BadRequest",
        "message": error.error.message,
        "target": None,
        "details": None,
        "innererror": None,
    }
    assert emulator.mails == []


async def test_bare_angle_bracket_sender_is_accepted(emulator: Emulator, client: EmailClient, sample: dict) -> None:
    sample["senderAddress"] = "<DoNotReply@contoso.example>"
    await (await client.begin_send(sample)).result()
    assert emulator.mails[0].to_email_message()["From"] == "DoNotReply@contoso.example"


async def test_to_is_required_but_may_be_empty_when_cc_has_someone(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    to = sample["recipients"].pop("to")
    with pytest.raises(HttpResponseError, match=r"See property 'recipients\.to'"):
        await client.begin_send(sample)
    sample["recipients"]["to"] = []
    await (await client.begin_send(sample)).result()
    assert emulator.mails[0].recipients("cc") == ["carol@example.org"]
    assert to


async def test_duplicate_content_id_is_400_unless_the_reserved_header_allows_it(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    sample["attachments"] = [_attachment(contentId="x"), _attachment("b.txt", contentId="x")]
    with pytest.raises(HttpResponseError, match=r"attachments\[1\]\.contentId"):
        await client.begin_send(sample)
    sample["headers"] = {"x-ms-acsemail-ignore-duplicate-content-id": "true"}
    await (await client.begin_send(sample)).result()
    assert len(emulator.mails) == 1


async def test_suppress_invalid_attachment_drops_it_instead_of_400(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    sample["attachments"] = [_attachment("evil.exe", "application/x-msdownload"), _attachment("ok.txt")]
    sample["headers"] = {"X-MS-ACSEmail-Suppress-Invalid-Attachment": "TRUE"}
    await (await client.begin_send(sample)).result()
    mail = emulator.mails[0]
    assert mail.payload == sample  # held as sent...
    assert [a.name for a in mail.attachments()] == ["ok.txt"]  # ...but the invalid one is not delivered
    eml = mail.to_email_message()
    assert [part.get_filename() for part in eml.iter_attachments()] == ["ok.txt"]
    assert "X-MS-ACSEmail-Suppress-Invalid-Attachment" not in eml


async def test_recipient_limit_counts_to_cc_and_bcc(make_emulator: Any, sdk: Sdk, sample: dict) -> None:
    emu = await make_emulator(max_recipients=4)
    client = sdk(emu)
    await (await client.begin_send(sample)).result()  # 2 to + 1 cc + 1 bcc
    sample["recipients"]["bcc"].append({"address": "eve@example.org"})
    with pytest.raises(HttpResponseError, match="exceeds the limit of 4") as caught:
        await client.begin_send(sample)
    assert caught.value.status_code == 400


async def test_oversize_request_is_413(make_emulator: Any, sdk: Sdk, sample: dict) -> None:
    emu = await make_emulator(max_request_bytes=4096)
    sample["attachments"] = [_attachment(content=base64.b64encode(bytes(4096)).decode())]
    with pytest.raises(HttpResponseError) as caught:
        await sdk(emu).begin_send(sample)
    assert caught.value.status_code == 413
    assert caught.value.error is not None and caught.value.error.code == "RequestEntityTooLarge"
    assert emu.mails == []


async def test_senders_list_is_case_insensitive_and_others_are_not_linked(
    make_emulator: Any, sdk: Sdk, sample: dict
) -> None:
    emu = await make_emulator(senders=["DoNotReply@Contoso.example"])
    client = sdk(emu)
    sample["senderAddress"] = "donotreply@contoso.EXAMPLE"
    await (await client.begin_send(sample)).result()
    for sender in ("alerts@contoso.example", "x@other.example"):  # same domain or not: only listed MailFroms
        sample["senderAddress"] = sender
        with pytest.raises(HttpResponseError) as caught:
            await client.begin_send(sample)
        error = caught.value.error
        assert (caught.value.status_code, error and error.code) == (400, "DomainNotLinked")
        assert error is not None and error.message == "The specified sender domain has not been linked."
    assert len(emu.mails) == 1


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/emails:send", 400, "MissingApiVersionParameter"),
        ("/emails:send?api-version=2099-01-01", 400, "UnsupportedApiVersionValue"),
        ("/emails/operations/00000000-0000-0000-0000-000000000000?api-version=2025-09-01", 404, "NotFound"),
    ],
)
async def test_api_version_is_required_and_unknown_operations_are_404(
    emulator: Emulator, client: EmailClient, sample: dict, url: str, status: int, code: str
) -> None:
    method = "POST" if "send" in url else "GET"
    request = HttpRequest(method, emulator.endpoint + url, json=sample if method == "POST" else None)
    response = await client.send_request(request)
    assert response.status_code == status
    assert response.headers["x-ms-error-code"] == code
    assert response.json()["error"]["code"] == code


async def test_body_must_be_json_and_operation_id_a_uuid(emulator: Emulator, client: EmailClient, sample: dict) -> None:
    url = f"{emulator.endpoint}/emails:send?api-version=2025-09-01"
    json_type = {"Content-Type": "application/json"}
    response = await client.send_request(HttpRequest("POST", url, content="{not json", headers=json_type))
    assert (response.status_code, response.json()["error"]["code"]) == (400, "BadRequest")
    response = await client.send_request(HttpRequest("POST", url, json=sample, headers={"Operation-Id": "msg-1"}))
    assert response.status_code == 400
    assert "Operation-Id" in response.json()["error"]["message"]
    assert emulator.mails == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_declared_json_is_415(
    emulator: Emulator, client: EmailClient, sample: dict, content_type: str | None
) -> None:
    url = f"{emulator.endpoint}/emails:send?api-version=2025-09-01"
    headers = {"Content-Type": content_type} if content_type else {}
    request = HttpRequest("POST", url, content=json.dumps(sample), headers=headers)
    response = await client.send_request(request)
    assert response.status_code == 415
    assert response.headers["x-ms-error-code"] == "UnsupportedMediaType"
    assert set(response.json()["error"]) == {"code", "message", "target", "details", "innererror"}
    assert emulator.mails == []


async def test_hmac_checks_content_hash_then_signature(
    emulator: Emulator, http: aiohttp.ClientSession, sign: Sign, sample: dict
) -> None:
    url = f"{emulator.endpoint}/emails:send?api-version=2025-09-01"
    body = json.dumps(sample).encode()
    good = sign(emulator.access_key, "POST", url, body)
    async with http.post(url, data=body, headers=good) as response:
        assert response.status == 202
    tampered = body.replace(b"Garage", b"Cellar")
    async with http.post(url, data=tampered, headers=good) as response:
        assert response.status == 401
        error = (await response.json())["error"]
    assert error["message"] == "Request 'x-ms-content-sha256' differs from generated content hash."
    forged = {**good, "x-ms-content-sha256": sign(emulator.access_key, "POST", url, tampered)["x-ms-content-sha256"]}
    async with http.post(url, data=tampered, headers=forged) as response:
        assert response.status == 401  # hash fits the body, but the signature covered the old hash
    stale = sign(emulator.access_key, "POST", url, body, **{"x-ms-date": "Mon, 01 Jan 2024 00:00:00 GMT"})
    async with http.post(url, data=body, headers=stale) as response:
        assert response.status == 401
    async with http.post(url, data=body) as response:
        assert (response.status, response.headers["x-ms-error-code"]) == (401, "Denied")
    assert len(emulator.mails) == 1
    assert emulator.requests.count("send", 401) == 4


@pytest.mark.parametrize(
    ("api_version", "mutate", "property_path"),
    [
        ("2023-03-31", _set("attachments.1.contentId", "snapshot"), "attachments[1].contentId"),
        ("2025-09-01", _set("senderDisplayName", "Garage"), "senderDisplayName"),
        ("2025-09-01", _set("importance", "high"), "importance"),
        ("2025-09-01", _set("content.body", "x"), "content.body"),
        ("2025-09-01", _set("recipients.to.0.email", "a@example.org"), "recipients.to[0].email"),
    ],
)
async def test_properties_the_api_version_does_not_define_are_refused(
    emulator: Emulator, sdk: Sdk, sample: dict, api_version: str, mutate: Callable[[dict], None], property_path: str
) -> None:
    mutate(sample)
    with pytest.raises(HttpResponseError) as caught:
        await sdk(emulator, api_version=api_version).begin_send(sample)
    assert caught.value.status_code == 400
    assert caught.value.error is not None
    assert caught.value.error.message == f"Request body validation error. See property '{property_path}'"
    assert emulator.mails == []


@pytest.mark.parametrize("api_version", ["2024-07-01-preview", "2025-01-15-preview", "2025-09-01"])
async def test_content_id_is_accepted_from_2024_07_01_preview_on(
    emulator: Emulator, sdk: Sdk, sample: dict, api_version: str
) -> None:
    if api_version == "2025-01-15-preview":
        sample["senderDisplayName"] = "Garage"  # only this preview has it
    await (await sdk(emulator, api_version=api_version).begin_send(sample)).result()
    assert emulator.mails[0].api_version == api_version
    assert [a.content_id for a in emulator.mails[0].attachments()] == [None, "snapshot"]


WRONG_TYPES = [
    ("senderAddress", 42, "senderAddress"),
    ("content", "hello", "content"),
    ("content.subject", 5, "content.subject"),
    ("content.html", ["<p>"], "content.html"),
    ("recipients", [{"address": "a@example.org"}], "recipients"),
    ("recipients.to", {"address": "a@example.org"}, "recipients.to"),
    ("recipients.to.0", "alice@example.org", "recipients.to[0]"),
    ("recipients.to.0.displayName", 7, "recipients.to[0].displayName"),
    ("replyTo", "help@contoso.example", "replyTo"),
    ("headers", ["X-Priority: 1"], "headers"),
    ("headers.X-Priority", 1, "headers.X-Priority"),
    ("attachments", {"name": "a.txt"}, "attachments"),
    ("attachments.0.contentInBase64", 123, "attachments[0].contentInBase64"),
    ("userEngagementTrackingDisabled", "yes", "userEngagementTrackingDisabled"),
]


async def test_sender_display_name_type_is_checked_where_it_exists(emulator: Emulator, sdk: Sdk, sample: dict) -> None:
    sample["senderDisplayName"] = 3
    with pytest.raises(HttpResponseError, match=r"See property 'senderDisplayName'"):
        await sdk(emulator, api_version="2025-01-15-preview").begin_send(sample)


@pytest.mark.parametrize(("path", "value", "property_path"), WRONG_TYPES)
async def test_wrong_json_types_are_400_naming_the_property(
    emulator: Emulator, client: EmailClient, sample: dict, path: str, value: Any, property_path: str
) -> None:
    _set(path, value)(sample)
    with pytest.raises(HttpResponseError) as caught:
        await client.begin_send(sample)
    assert caught.value.status_code == 400
    assert caught.value.error is not None
    assert caught.value.error.message == f"Request body validation error. See property '{property_path}'"
    assert emulator.mails == []


async def test_a_json_array_body_is_400(emulator: Emulator, client: EmailClient, sample: dict) -> None:
    url = f"{emulator.endpoint}/emails:send?api-version=2025-09-01"
    response = await client.send_request(HttpRequest("POST", url, json=[sample]))
    assert (response.status_code, response.json()["error"]["code"]) == (400, "BadRequest")
