"""The real azure-communication-email SDK sends through the emulator and the emulator holds exactly what was sent."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from azure.communication.email.aio import EmailClient
from azure.core.credentials import AccessToken, AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.identity.aio import ClientSecretCredential

from acs_email_bridge.emulator import Emulator

Sdk = Callable[..., EmailClient]


def _principal(emu: Emulator, secret: str | None = None) -> ClientSecretCredential:
    return ClientSecretCredential(
        emu.tenant_id,
        emu.client_id,
        secret or emu.client_secret,
        authority=emu.authority,
        disable_instance_discovery=True,
        connection_verify=str(emu.ca_file),
    )


def _assert_holds_message(emu: Emulator, operation_id: str, sent: dict[str, Any]) -> None:
    assert [mail.operation_id for mail in emu.mails] == [operation_id]
    mail = emu.mails[0]
    assert mail.payload == sent
    assert json.loads(mail.raw_body) == sent
    assert "authorization" not in {name.lower() for name in mail.headers}
    eml = mail.to_email_message()
    assert eml["Subject"] == "Garage door open ✓"
    assert [(a.display_name, a.addr_spec) for a in eml["To"].addresses] == [
        ("Alice Ä.", "alice@example.org"),
        ("", "bob@example.org"),
    ]
    assert eml["Bcc"] == "dave@example.org"
    assert eml["Reply-To"] == "Help <help@contoso.example>"
    assert eml["X-Priority"] == "1"
    parts = {part.get_filename(): part for part in eml.walk() if part.get_filename()}
    pdf, png = (base64.b64decode(a["contentInBase64"]) for a in sent["attachments"])
    assert parts["report.pdf"].get_payload(decode=True) == pdf
    assert parts["report.pdf"].get_content_disposition() == "attachment"
    assert parts["snapshot.png"].get_payload(decode=True) == png
    assert parts["snapshot.png"]["Content-ID"] == "<snapshot>"
    assert parts["snapshot.png"].get_content_disposition() == "inline"


async def test_connection_string_send_arrives_byte_for_byte(
    emulator: Emulator, client: EmailClient, sample: dict[str, Any]
) -> None:
    poller = await client.begin_send(sample)
    result = await poller.result()
    assert result["status"] == "Succeeded"
    assert result["error"] is None
    _assert_holds_message(emulator, result["id"], sample)


async def test_service_principal_send_arrives_byte_for_byte(emulator: Emulator, sample: dict[str, Any]) -> None:
    credential = _principal(emulator)
    async with credential, EmailClient(emulator.endpoint, credential, connection_verify=str(emulator.ca_file)) as c:
        result = await (await c.begin_send(sample)).result()
    assert result["status"] == "Succeeded"
    _assert_holds_message(emulator, result["id"], sample)
    assert emulator.requests.count("token", 200) == 1


async def test_plain_http_listener_accepts_hmac(make_emulator: Any, sample: dict[str, Any]) -> None:
    emu = await make_emulator(retry_after=1)
    assert emu.http_endpoint is None
    await emu.stop()
    await emu.start(http_port=0)
    assert emu.http_endpoint is not None and emu.http_endpoint.startswith("http://127.0.0.1:")
    locations: list[str] = []
    async with EmailClient(emu.http_endpoint, AzureKeyCredential(emu.access_key), retry_total=0) as c:
        poller = await c.begin_send(sample, raw_response_hook=_record_location(locations))
        assert (await poller.result())["status"] == "Succeeded"
    assert locations[0].startswith(emu.http_endpoint + "/emails/operations/")


def _record_location(into: list[str]) -> Any:
    def hook(response: PipelineResponse[Any, Any]) -> None:
        if "Operation-Location" in response.http_response.headers:
            into.append(response.http_response.headers["Operation-Location"])

    return hook


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_operation_location_echoes_scheme_host_and_api_version(
    emulator: Emulator, sdk: Sdk, sample: dict[str, Any], host: str
) -> None:
    port = emulator.endpoint.rsplit(":", 1)[1]
    locations: list[str] = []
    conn = f"endpoint=https://{host}:{port}/;accesskey={emulator.access_key}"
    c = sdk(emulator, connection_string=conn, api_version="2023-03-31")
    del sample["attachments"][1]["contentId"]  # not in the 2023-03-31 schema
    poller = await c.begin_send(sample, raw_response_hook=_record_location(locations))
    result = await poller.result()
    assert locations == [f"https://{host}:{port}/emails/operations/{result['id']}?api-version=2023-03-31"]


async def test_operation_id_is_adopted_a_repeat_is_a_duplicate_and_another_request_is_refused(
    emulator: Emulator, client: EmailClient, sample: dict[str, Any]
) -> None:
    operation_id = str(uuid.uuid4())
    first = await (await client.begin_send(sample, operation_id=operation_id)).result()
    again = await (await client.begin_send(sample, operation_id=operation_id)).result()  # a retry: same request
    assert first["id"] == again["id"] == operation_id
    changed = {**sample, "content": {"subject": "changed", "plainText": "x"}}
    with pytest.raises(HttpResponseError) as caught:  # Azure guidelines: 400 unless the request is identical
        await client.begin_send(changed, operation_id=operation_id)
    assert caught.value.status_code == 400
    assert caught.value.error is not None and "Operation-Id" in caught.value.error.message
    assert len(emulator.mails) == 1
    assert emulator.mails[0].payload == sample
    assert emulator.duplicates == 1
    assert emulator.requests.count("send", 202) == 2


async def test_running_operation_sends_retry_after_until_it_succeeds(
    make_emulator: Any, sdk: Sdk, sample: dict[str, Any]
) -> None:
    emu = await make_emulator(retry_after=1, running_for=0.3)
    seen: list[tuple[str, str | None]] = []

    def hook(response: PipelineResponse[Any, Any]) -> None:
        if response.http_request.method == "GET":
            seen.append((response.http_response.json()["status"], response.http_response.headers.get("Retry-After")))

    result = await (await sdk(emu).begin_send(sample, raw_response_hook=hook)).result()
    assert result["status"] == "Succeeded"
    assert seen == [("Running", "1"), ("Succeeded", None)]


async def test_wrong_access_key_is_client_authentication_error(
    emulator: Emulator, sdk: Sdk, sample: dict[str, Any]
) -> None:
    wrong = base64.b64encode(b"x" * 64).decode()
    c = sdk(emulator, connection_string=f"endpoint={emulator.endpoint}/;accesskey={wrong}")
    with pytest.raises(ClientAuthenticationError) as caught:
        await c.begin_send(sample)
    assert caught.value.status_code == 401
    assert caught.value.error is not None and caught.value.error.code == "Denied"
    assert wrong not in str(caught.value)
    assert emulator.mails == []


async def test_wrong_client_secret_is_client_authentication_error(emulator: Emulator, sample: dict[str, Any]) -> None:
    credential = _principal(emulator, secret="not-the-secret")
    async with credential, EmailClient(emulator.endpoint, credential, connection_verify=str(emulator.ca_file)) as c:
        with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
            await c.begin_send(sample)
    assert emulator.requests.count("token", 401) == 1
    assert emulator.requests.count("send") == 0


class _StaticToken:
    """An AsyncTokenCredential handing out a fixed token (one the authority did not issue, or an expired one)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, 2**31)

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("kind", ["foreign", "expired"])
async def test_bearer_tokens_must_be_issued_by_the_authority_and_unexpired(
    emulator: Emulator, sample: dict[str, Any], kind: str
) -> None:
    if kind == "expired":
        token = emulator._authority.issue(emulator.tenant_id, emulator.client_id, lifetime=-1)
    else:
        token = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJodHRwczovL2NvbW11bmljYXRpb24uYXp1cmUuY29tIn0.forged"
    credential = _StaticToken(token)
    async with EmailClient(emulator.endpoint, credential, connection_verify=str(emulator.ca_file), retry_total=0) as c:
        with pytest.raises(ClientAuthenticationError):
            await c.begin_send(sample)
    assert emulator.mails == []
