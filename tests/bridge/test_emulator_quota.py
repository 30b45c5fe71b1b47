"""Quotas as the service enforces them: sliding windows per subscription, sends and polls counted apart."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest
from azure.communication.email.aio import EmailClient
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.rest import HttpRequest

from acs_email_bridge.emulator import Fault, Route, Subscription
from acs_email_core.quota import PRESETS, Quota, Window

Sdk = Callable[..., EmailClient]


async def test_send_quota_answers_429_with_retry_after_until_the_window_frees(
    make_emulator: Any, sdk: Sdk, sample: dict
) -> None:
    # azure_managed (5/min, 10/h sends; 10/min, 20/h polls) with a minute compressed to 0.5 s.
    emu = await make_emulator(quota=PRESETS["azure_managed"].scaled(0.5 / 60))
    client = sdk(emu)
    for _ in range(5):
        await client.begin_send(sample, polling=False)
    with pytest.raises(HttpResponseError) as caught:
        await client.begin_send(sample, polling=False)
    error = caught.value
    assert (error.status_code, error.error and error.error.code) == (429, "TooManyRequests")
    assert error.response is not None and error.response.headers["Retry-After"] == "1"
    assert emu.requests.count(status=429) == 1
    assert len(emu.mails) == 5  # the refused request stored nothing...

    await asyncio.sleep(1)  # obey Retry-After: the minute window has room again
    for _ in range(4):  # ...but it counted: the hour window (10) holds 6 requests, so 4 more fit
        await client.begin_send(sample, polling=False)
    with pytest.raises(HttpResponseError) as caught:
        await client.begin_send(sample, polling=False)
    assert caught.value.response is not None
    assert 1 < int(caught.value.response.headers["Retry-After"]) <= 30
    assert len(emu.mails) == 9


async def test_every_request_counts_refused_ones_included(make_emulator: Any, sdk: Sdk, sample: dict) -> None:
    emu = await make_emulator(quota=Quota(send=(Window(3, 60.0),), poll=(Window(10, 60.0),)))
    wrong_key = f"endpoint={emu.endpoint}/;accesskey={base64.b64encode(b'x' * 32).decode()}"
    with pytest.raises(ClientAuthenticationError):  # 401: counted
        await sdk(emu, connection_string=wrong_key).begin_send(sample, polling=False)
    client = sdk(emu)
    with pytest.raises(HttpResponseError, match=r"content\.subject"):  # 400: counted
        await client.begin_send({**sample, "content": {"subject": ""}}, polling=False)
    await client.begin_send(sample, polling=False)
    for _ in range(2):  # 429s count too: a client that ignores Retry-After stays throttled
        with pytest.raises(HttpResponseError, match="TooManyRequests"):
            await client.begin_send(sample, polling=False)
    assert emu.requests.as_dict()["send"] == {"202": 1, "400": 1, "401": 1, "429": 2}
    assert len(emu.mails) == 1


async def test_resources_of_one_subscription_share_its_quota(make_emulator: Any, sdk: Sdk, sample: dict) -> None:
    subscription = Subscription(Quota(send=(Window(3, 60.0),), poll=(Window(10, 60.0),)))
    first, second = [await make_emulator(subscription=subscription) for _ in range(2)]
    assert first.quota is second.quota is subscription.quota
    await sdk(first).begin_send(sample, polling=False)
    await sdk(second).begin_send(sample, polling=False)
    await sdk(second).begin_send(sample, polling=False)
    with pytest.raises(HttpResponseError, match="TooManyRequests"):
        await sdk(first).begin_send(sample, polling=False)
    assert (len(first.mails), len(second.mails)) == (1, 2)


async def test_sends_and_polls_are_counted_separately(make_emulator: Any, sdk: Sdk, sample: dict) -> None:
    emu = await make_emulator(quota=Quota(send=(Window(2, 60.0),), poll=(Window(3, 60.0),)))
    client = sdk(emu)
    first = await client.begin_send(sample, polling=False)
    url = f"{emu.endpoint}/emails/operations/{(await first.result())['id']}?api-version=2025-09-01"
    polls = [(await client.send_request(HttpRequest("GET", url))).status_code for _ in range(4)]
    assert polls == [200, 200, 200, 429]
    await client.begin_send(sample, polling=False)  # exhausted polls do not block sends
    with pytest.raises(HttpResponseError, match="TooManyRequests"):
        await client.begin_send(sample, polling=False)
    assert (emu.requests.count("status", 429), emu.requests.count("send", 429)) == (1, 1)


async def test_a_stalled_request_is_charged_when_it_arrives(make_emulator: Any, sdk: Sdk, sample: dict) -> None:
    """ACS counts a request on arrival: while one is stalled, the window is already used."""
    emu = await make_emulator(quota=Quota(send=(Window(1, 60.0),), poll=(Window(10, 60.0),)))
    emu.faults.add(Fault.stall(1.0))
    client = sdk(emu)
    stalled = asyncio.ensure_future(client.begin_send(sample, polling=False))
    async with asyncio.timeout(10):
        while emu.subscription is None or emu.subscription.remaining(Route.SEND) > 0:
            await asyncio.sleep(0.01)
    with pytest.raises(HttpResponseError, match="TooManyRequests"):  # the stalled one holds the only slot
        await client.begin_send(sample, polling=False)
    await stalled
    assert len(emu.mails) == 1 and emu.requests.as_dict()["send"] == {"202": 1, "429": 1}
