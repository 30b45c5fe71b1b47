"""Fixtures for the emulator's own tests: a sample message, SDK clients, a raw HTTPS session, HMAC by hand.

(tests/bridge is not a package, so helpers are handed out as fixtures rather than imported.)"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from azure.communication.email.aio import EmailClient

from acs_email_bridge.emulator import Emulator

SENDER = "DoNotReply@contoso.example"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 3

_MESSAGE: dict[str, Any] = {
    "senderAddress": SENDER,
    "recipients": {
        "to": [{"address": "alice@example.org", "displayName": "Alice Ä."}, {"address": "bob@example.org"}],
        "cc": [{"address": "carol@example.org"}],
        "bcc": [{"address": "dave@example.org"}],
    },
    "content": {
        "subject": "Garage door open ✓",
        "plainText": "The garage door is open.",
        "html": '<p>The garage door is <b>open</b>.</p><img src="cid:snapshot">',
    },
    "attachments": [
        {"name": "report.pdf", "contentType": "application/pdf", "contentInBase64": base64.b64encode(PDF).decode()},
        {
            "name": "snapshot.png",
            "contentType": "image/png",
            "contentInBase64": base64.b64encode(PNG).decode(),
            "contentId": "snapshot",
        },
    ],
    "replyTo": [{"address": "help@contoso.example", "displayName": "Help"}],
    "headers": {"X-Priority": "1"},
}


@pytest.fixture
def sample() -> dict[str, Any]:
    """A fresh copy of a full EmailMessage payload: to/cc/bcc, html with an inline cid image, a PDF, replyTo."""
    return copy.deepcopy(_MESSAGE)


@pytest.fixture
async def sdk() -> AsyncIterator[Callable[..., EmailClient]]:
    """Make real async SDK clients on an emulator's connection string (CA trusted, SDK retries off)."""
    async with AsyncExitStack() as stack:

        def make(emu: Emulator, **kwargs: Any) -> EmailClient:
            kwargs.setdefault("retry_total", 0)
            conn = kwargs.pop("connection_string", emu.connection_string)
            client = EmailClient.from_connection_string(conn, connection_verify=str(emu.ca_file), **kwargs)
            stack.push_async_callback(client.close)
            return client

        yield make


@pytest.fixture
def client(emulator: Emulator, sdk: Callable[..., EmailClient]) -> EmailClient:
    return sdk(emulator)


@pytest.fixture
async def http(emulator: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session that trusts the emulator's CA (for hand-made requests)."""
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


@pytest.fixture
def sign() -> Callable[..., dict[str, str]]:
    return hmac_headers


def hmac_headers(access_key: str, method: str, url: str, body: bytes = b"", **overrides: str) -> dict[str, str]:
    """Sign like the SDK (reference §2.2); ``overrides`` replace headers after signing (to forge them)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    date = formatdate(usegmt=True)
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    to_sign = f"{method}\n{target}\n{date};{parts.netloc};{content_hash}"
    signature = base64.b64encode(hmac.new(base64.b64decode(access_key), to_sign.encode(), hashlib.sha256).digest())
    headers = {
        "x-ms-date": date,
        "x-ms-content-sha256": content_hash,
        "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature.decode()}",
        "Content-Type": "application/json",
    }
    headers.update(overrides)
    return headers
