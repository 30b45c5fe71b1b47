"""Another process can inspect and steer a running emulator through its unauthenticated /_emulator API."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import aiohttp
import pytest
from azure.communication.email.aio import EmailClient
from azure.core.exceptions import HttpResponseError

from acs_email_bridge.emulator import Emulator


async def test_summary_lists_mails_duplicates_counters_and_faults(
    emulator: Emulator, client: EmailClient, http: aiohttp.ClientSession, sample: dict
) -> None:
    operation_id = "7f1c3a52-4d0b-4c55-9d9e-2a6f7a0f1b11"
    await (await client.begin_send(sample, operation_id=operation_id)).result()
    await client.begin_send(sample, operation_id=operation_id, polling=False)
    async with http.get(f"{emulator.endpoint}/_emulator") as response:
        summary = await response.json()
    assert summary["duplicates"] == 1
    assert summary["requests"]["send"] == {"202": 2}
    (mail,) = summary["mails"]
    assert mail["operation_id"] == operation_id
    assert mail["status"] == "Succeeded"
    assert (mail["from"], mail["subject"]) == (sample["senderAddress"], sample["content"]["subject"])
    assert mail["to"] == ["alice@example.org", "bob@example.org"]
    assert mail["attachments"] == ["report.pdf", "snapshot.png"]
    assert emulator.access_key not in str(summary)


async def test_posted_fault_applies_to_the_next_send(
    emulator: Emulator, client: EmailClient, http: aiohttp.ClientSession, sample: dict
) -> None:
    fault = {"kind": "error", "status": 503, "retry_after": 2}
    async with http.post(f"{emulator.endpoint}/_emulator/faults", json=fault) as response:
        assert response.status == 201
    async with http.get(f"{emulator.endpoint}/_emulator") as response:
        assert (await response.json())["faults"][0]["remaining"] == 1
    with pytest.raises(HttpResponseError) as caught:
        await client.begin_send(sample)
    assert caught.value.status_code == 503
    async with http.post(f"{emulator.endpoint}/_emulator/faults", json={"kind": "explode"}) as response:
        assert response.status == 400


async def test_posted_hold_keeps_the_operation_running_for_good(
    emulator: Emulator, client: EmailClient, http: aiohttp.ClientSession, sample: dict
) -> None:
    fault = {"kind": "hold", "operation_status": "Running", "seconds": None}
    async with http.post(f"{emulator.endpoint}/_emulator/faults", json=fault) as response:
        assert response.status == 201
    await client.begin_send(sample, polling=False)
    async with http.get(f"{emulator.endpoint}/_emulator") as response:
        summary = await response.json()
    assert [mail["status"] for mail in summary["mails"]] == ["Running"]
    assert {p["client_id"]: p["role"] for p in summary["principals"]} == {
        emulator.client_id: True,
        **{client: False for client in emulator.without_role},
    }


async def test_eml_download_and_reset(
    emulator: Emulator, client: EmailClient, http: aiohttp.ClientSession, sample: dict
) -> None:
    result = await (await client.begin_send(sample)).result()
    async with http.get(f"{emulator.endpoint}/_emulator/mails/{result['id']}.eml") as response:
        assert response.content_type == "message/rfc822"
        eml = email.message_from_bytes(await response.read(), policy=email.policy.default)
    assert eml["Subject"] == sample["content"]["subject"]
    async with http.delete(f"{emulator.endpoint}/_emulator") as response:
        assert response.status == 204
    assert (emulator.mails, emulator.duplicates, emulator.requests.count()) == ([], 0, 0)
    async with http.get(f"{emulator.endpoint}/_emulator/mails/{result['id']}.eml") as response:
        assert response.status == 404


async def test_admin_api_is_served_on_the_plain_http_listener_too(make_emulator: Any) -> None:
    emu = await make_emulator()
    await emu.stop()
    await emu.start(http_port=0)
    async with aiohttp.ClientSession() as session, session.get(f"{emu.http_endpoint}/_emulator") as response:
        assert (await response.json())["mails"] == []
