"""Every answer ACS can give is classified the way the dispatcher needs, against the emulator and the real SDK."""

from __future__ import annotations

import base64
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_bridge.emulator.faults import Route
from acs_email_core.errors import ConfigError
from acs_email_core.message import EmailMessage
from acs_email_core.transport import AcsCredentials, AcsTransport, OutcomeKind, parse_connection_string

SENDER = "DoNotReply@t.example.com"
MakeEmulator = Callable[..., Awaitable[Emulator]]


def _message(**kwargs: object) -> EmailMessage:
    fields: dict[str, object] = {"sender": SENDER, "to": "a@example.com", "subject": "s", "text": "t"}
    fields.update(kwargs)
    return EmailMessage.build(**fields)  # type: ignore[arg-type]


def _key_transport(emu: Emulator, **kwargs: object) -> AcsTransport:
    creds = AcsCredentials(connection_string=emu.connection_string, ca_file=str(emu.ca_file))
    return AcsTransport(creds, **kwargs)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _send(transport: AcsTransport, message: EmailMessage) -> object:
    return await transport.send(message.to_acs_payload(), message.message_id)


async def test_sent_then_status_finds_operation(emulator: Emulator) -> None:
    message = _message()
    async with _key_transport(emulator) as transport:
        sent = await transport.send(message.to_acs_payload(), message.message_id)
        status = await transport.status(message.message_id)
        unknown = await transport.status("00000000-0000-4000-8000-000000000000")
    assert sent.kind is OutcomeKind.SENT
    assert status.kind is OutcomeKind.SENT and status.status in {"Running", "Succeeded"}
    assert unknown.kind is OutcomeKind.NOT_FOUND
    assert emulator.mails[0].operation_id == message.message_id


@pytest.mark.parametrize(
    ("fault", "kind", "ambiguous", "retry_after"),
    [
        (Fault.error(429, retry_after=7), OutcomeKind.THROTTLED, False, 7.0),
        (Fault.error(503, retry_after=2), OutcomeKind.TRANSIENT, True, 2.0),
        (Fault.error(500), OutcomeKind.TRANSIENT, True, None),
        (Fault.error(401, code="Denied", message="nope"), OutcomeKind.AUTH, False, None),
        (Fault.error(403, code="SubscriptionBlocked", message="blocked"), OutcomeKind.AUTH, False, None),
        (Fault.error(409, code="Conflict", message="exists"), OutcomeKind.ID_IN_USE, False, None),
        (Fault.drop(after=True), OutcomeKind.TRANSIENT, True, None),
        (Fault.delay(3.0, after=True), OutcomeKind.TRANSIENT, True, None),
    ],
)
async def test_send_outcomes(
    emulator: Emulator, fault: Fault, kind: OutcomeKind, ambiguous: bool, retry_after: float | None
) -> None:
    emulator.faults.add(fault)
    async with _key_transport(emulator, timeout=1.0) as transport:
        outcome = await _send(transport, _message())
    assert outcome.kind is kind  # type: ignore[attr-defined]
    assert outcome.ambiguous is ambiguous  # type: ignore[attr-defined]
    assert outcome.retry_after == retry_after  # type: ignore[attr-defined]


async def test_permanent_carries_service_message(emulator: Emulator) -> None:
    emulator.faults.add(Fault.error(403, code="SubscriptionBlocked", message="All requests are blocked"))
    async with _key_transport(emulator) as transport:
        outcome = await _send(transport, _message())
    assert outcome.detail == "HTTP 403 SubscriptionBlocked: All requests are blocked"  # type: ignore[attr-defined]


async def test_status_outcomes(emulator: Emulator) -> None:
    message = _message()
    emulator.faults.add(Fault.failed("EmailDropped", "Email was dropped after several attempts to deliver."))
    async with _key_transport(emulator) as transport:
        await _send(transport, message)
        failed = await transport.status(message.message_id)
        emulator.faults.add(Fault.error(429, retry_after=4, route=Route.STATUS))
        throttled = await transport.status(message.message_id)
        emulator.faults.add(Fault.error(503, route=Route.STATUS))
        unavailable = await transport.status(message.message_id)
    assert failed.kind is OutcomeKind.PERMANENT
    assert failed.detail == "EmailDropped: Email was dropped after several attempts to deliver."
    assert (throttled.kind, throttled.retry_after) == (OutcomeKind.THROTTLED, 4.0)
    assert unavailable.kind is OutcomeKind.TRANSIENT


async def test_nothing_listening_is_transient_and_not_ambiguous() -> None:
    key = base64.b64encode(b"k" * 32).decode()
    creds = AcsCredentials(connection_string=f"endpoint=http://127.0.0.1:{_free_port()};accesskey={key}")
    async with AcsTransport(creds, timeout=2.0) as transport:
        outcome = await _send(transport, _message())
    assert outcome.kind is OutcomeKind.TRANSIENT  # type: ignore[attr-defined]
    assert outcome.ambiguous is False  # type: ignore[attr-defined]
    assert key not in outcome.detail  # type: ignore[attr-defined]


async def test_plain_http_endpoint_keeps_its_scheme(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(senders=[SENDER])
    await emu.stop()
    await emu.start(http_port=0)
    assert emu.http_endpoint is not None
    _endpoint, key = parse_connection_string(emu.connection_string)
    creds = AcsCredentials(connection_string=f"endpoint={emu.http_endpoint}/;accesskey={key}")
    async with AcsTransport(creds) as transport:
        assert transport.endpoint == emu.http_endpoint
        assert (await _send(transport, _message())).kind is OutcomeKind.SENT  # type: ignore[attr-defined]


async def test_service_principal_and_wrong_secret(emulator: Emulator) -> None:
    good = AcsCredentials(
        endpoint=emulator.endpoint, tenant_id=emulator.tenant_id, client_id=emulator.client_id,
        client_secret=emulator.client_secret, authority=emulator.authority, ca_file=str(emulator.ca_file),
    )  # fmt: skip
    async with AcsTransport(good) as transport:
        assert (await _send(transport, _message())).kind is OutcomeKind.SENT  # type: ignore[attr-defined]
    bad = AcsCredentials(**{**good.__dict__, "client_secret": "definitely-wrong"})
    async with AcsTransport(bad) as transport:
        outcome = await _send(transport, _message())
    assert outcome.kind is OutcomeKind.AUTH  # type: ignore[attr-defined]
    assert "definitely-wrong" not in outcome.detail  # type: ignore[attr-defined]
    assert "definitely-wrong" not in repr(bad)


async def test_unreachable_authority_is_an_outage_not_bad_credentials(emulator: Emulator) -> None:
    creds = AcsCredentials(
        endpoint=emulator.endpoint, tenant_id="t", client_id="c", client_secret="s",
        authority=f"https://127.0.0.1:{_free_port()}", ca_file=str(emulator.ca_file),
    )  # fmt: skip
    async with AcsTransport(creds, timeout=2.0) as transport:
        outcome = await _send(transport, _message())
    assert outcome.kind is OutcomeKind.TRANSIENT  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["endpoint=https://x", "accesskey=abc", "garbage", "endpoint=;accesskey=k"])
def test_bad_connection_strings(value: str) -> None:
    with pytest.raises(ConfigError, match="connection string must look like"):
        parse_connection_string(value)


def test_missing_credentials_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="connection_string or tenant_id"):
        AcsTransport(AcsCredentials(endpoint="https://x", tenant_id="t"))
    with pytest.raises(ConfigError, match="endpoint is required"):
        AcsTransport(AcsCredentials(tenant_id="t", client_id="c", client_secret="s"))


def test_secrets_listed_for_redaction() -> None:
    creds = AcsCredentials(connection_string="endpoint=https://x/;accesskey=KEY==")
    assert set(creds.secrets) == {"endpoint=https://x/;accesskey=KEY==", "KEY=="}


async def test_unreadable_ca_file_pauses_like_bad_credentials(emulator: Emulator, tmp_path: Path) -> None:
    creds = AcsCredentials(connection_string=emulator.connection_string, ca_file=str(tmp_path / "missing.pem"))
    async with AcsTransport(creds) as transport:
        outcome = await _send(transport, _message())
    assert outcome.kind is OutcomeKind.AUTH  # type: ignore[attr-defined]
    assert "cannot load ca_file" in outcome.detail and "missing.pem" in outcome.detail  # type: ignore[attr-defined]
    assert emulator.mails == []
