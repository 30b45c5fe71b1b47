"""Injected failures look to the real SDK exactly like the service's own, including the ambiguous ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from azure.communication.email.aio import EmailClient
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest
from azure.identity.aio import ClientSecretCredential

from acs_email_bridge.emulator import Emulator, Fault, Route

Sdk = Callable[..., EmailClient]


async def _status(client: EmailClient, emu: Emulator, operation_id: str) -> dict[str, Any]:
    """Ask for an operation's status by id, as a client does after an ambiguous failure."""
    url = f"{emu.endpoint}/emails/operations/{operation_id}?api-version=2025-09-01"
    response = await client.send_request(HttpRequest("GET", url))
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize(
    ("status", "code"), [(500, "InternalServerError"), (503, "ServiceUnavailable"), (403, "SubscriptionBlocked")]
)
async def test_error_fault_answers_that_status_once(
    emulator: Emulator, client: EmailClient, sample: dict, status: int, code: str
) -> None:
    emulator.faults.add(Fault.error(status, retry_after=7))
    with pytest.raises(HttpResponseError) as caught:
        await client.begin_send(sample)
    assert (caught.value.status_code, caught.value.error and caught.value.error.code) == (status, code)
    assert caught.value.response is not None and caught.value.response.headers["Retry-After"] == "7"
    assert emulator.mails == []
    await (await client.begin_send(sample)).result()  # used up: the next send goes through
    assert len(emulator.mails) == 1


async def test_sdk_retries_an_injected_429_after_its_retry_after(emulator: Emulator, sdk: Sdk, sample: dict) -> None:
    emulator.faults.add(Fault.error(429, retry_after=1, times=2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await (await sdk(emulator, retry_total=3).begin_send(sample)).result()
    assert result["status"] == "Succeeded"
    assert loop.time() - started >= 2.0
    assert emulator.requests.count("send", 429) == 2
    assert len(emulator.mails) == 1


async def test_401_fault_is_an_authentication_error(emulator: Emulator, client: EmailClient, sample: dict) -> None:
    emulator.faults.add(Fault.error(401))
    with pytest.raises(ClientAuthenticationError):
        await client.begin_send(sample)


async def test_delay_before_lets_a_patient_client_through(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    emulator.faults.add(Fault.delay(0.3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.begin_send(sample, polling=False)
    assert loop.time() - started >= 0.3
    assert len(emulator.mails) == 1


async def test_delay_before_with_client_timeout_accepts_nothing(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    emulator.faults.add(Fault.delay(0.5))
    with pytest.raises(ServiceResponseError):
        await client.begin_send(sample, read_timeout=0.1)
    await asyncio.sleep(0.6)  # the emulator finishes its stall and finds the client gone
    assert emulator.mails == []
    assert emulator.requests.count("send", 0) == 1


async def test_delay_after_timeout_is_ambiguous_the_mail_did_arrive(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    emulator.faults.add(Fault.delay(5, after=True))
    with pytest.raises(ServiceResponseError):
        await client.begin_send(sample, read_timeout=0.2)
    assert len(emulator.mails) == 1
    assert (await _status(client, emulator, emulator.mails[0].operation_id))["status"] == "Succeeded"


@pytest.mark.parametrize("after", [False, True])
async def test_dropped_connection_before_or_after_accepting(
    emulator: Emulator, client: EmailClient, sample: dict, after: bool
) -> None:
    emulator.faults.add(Fault.drop(after=after))
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        await client.begin_send(sample)
    assert len(emulator.mails) == int(after)
    assert emulator.requests.count("send", 0) == 1


async def test_failed_operation_surfaces_the_service_code(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    emulator.faults.add(Fault.failed())
    poller = await client.begin_send(sample)
    with pytest.raises(HttpResponseError) as caught:
        await poller.result()
    assert caught.value.status_code == 200
    assert caught.value.error is not None and caught.value.error.code == "EmailDroppedAllRecipientsSuppressed"
    assert emulator.mails[0].error is not None


async def test_faults_at_different_stages_stack_on_one_request(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    emulator.faults.add(Fault.drop(after=True))
    emulator.faults.add(Fault.failed("EmailDropped", "Email was dropped after several attempts to deliver."))
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        await client.begin_send(sample)
    status = await _status(client, emulator, emulator.mails[0].operation_id)
    assert status["status"] == "Failed"
    assert status["error"] == {
        "code": "EmailDropped",
        "message": "Email was dropped after several attempts to deliver.",
    }


async def test_status_route_faults_break_polling(emulator: Emulator, client: EmailClient, sample: dict) -> None:
    emulator.faults.add(Fault.error(500, route=Route.STATUS))
    poller = await client.begin_send(sample)
    with pytest.raises(HttpResponseError):
        await poller.result()
    assert len(emulator.mails) == 1
    assert emulator.requests.count("status", 500) == 1


async def test_token_route_fault_fails_the_credential(emulator: Emulator, sample: dict) -> None:
    emulator.faults.add(Fault.error(503, route=Route.TOKEN))
    credential = ClientSecretCredential(
        emulator.tenant_id,
        emulator.client_id,
        emulator.client_secret,
        authority=emulator.authority,
        disable_instance_discovery=True,
        connection_verify=str(emulator.ca_file),
        retry_total=0,
    )
    async with credential, EmailClient(emulator.endpoint, credential, connection_verify=str(emulator.ca_file)) as c:
        with pytest.raises(ClientAuthenticationError):
            await c.begin_send(sample)
    assert emulator.requests.count("token", 503) == 1
    assert emulator.mails == []


async def test_canceled_operation_ends_the_poller_with_its_status(
    emulator: Emulator, client: EmailClient, sample: dict
) -> None:
    emulator.faults.add(Fault.canceled())
    emulator.faults.add(Fault.canceled("OperationCanceled", "The send was canceled."))
    poller = await client.begin_send(sample)
    with pytest.raises(HttpResponseError) as caught:
        await poller.result()
    assert caught.value.status_code == 200
    assert await _status(client, emulator, emulator.mails[0].operation_id) == {
        "id": emulator.mails[0].operation_id,
        "status": "Canceled",
        "error": None,
    }
    await client.begin_send(sample, polling=False)
    status = await _status(client, emulator, emulator.mails[1].operation_id)
    assert (status["status"], status["error"]) == (
        "Canceled",
        {"code": "OperationCanceled", "message": "The send was canceled."},
    )


@pytest.mark.parametrize("held", ["NotStarted", "Running"])
async def test_held_operation_reports_its_status_until_released(
    emulator: Emulator, client: EmailClient, sample: dict, held: str
) -> None:
    emulator.faults.add(Fault.held(held))  # for good
    emulator.faults.add(Fault.held(held, seconds=0.3))
    await client.begin_send(sample, polling=False)
    statuses = [await _status(client, emulator, emulator.mails[0].operation_id) for _ in range(3)]
    assert {(s["status"], s["error"]) for s in statuses} == {(held, None)}
    url = f"{emulator.endpoint}/emails/operations/{emulator.mails[0].operation_id}?api-version=2025-09-01"
    assert (await client.send_request(HttpRequest("GET", url))).headers["Retry-After"] == "1"

    result = await (await client.begin_send(sample)).result()  # polls every Retry-After until released
    assert result["status"] == "Succeeded"
    assert emulator.requests.count("status", 200) >= 5


@pytest.mark.parametrize(
    "make",
    [
        lambda: Fault.error(200),
        lambda: Fault.error(500, times=0),
        lambda: Fault(kind="fail", route="status"),  # type: ignore[arg-type]
        lambda: Fault(kind="error", stage="after"),  # type: ignore[arg-type]
        lambda: Fault.from_dict({"kind": "drop", "bogus": 1}),
        lambda: Fault.held("Succeeded"),
        lambda: Fault(kind="hold", route="send"),  # type: ignore[arg-type]
        lambda: Fault(kind="cancel", route="token"),  # type: ignore[arg-type]
        lambda: Fault(kind="delay", seconds=None),  # type: ignore[arg-type]
    ],
)
def test_impossible_faults_are_refused(make: Callable[[], Fault]) -> None:
    with pytest.raises(ValueError):
        make()
