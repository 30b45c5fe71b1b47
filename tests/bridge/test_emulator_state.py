"""Accepted operations outlive the emulator process: a restart never answers 404 for a mail it accepted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.communication.email.aio import EmailClient
from azure.core.rest import HttpRequest

from acs_email_bridge.emulator import Emulator, Fault
from acs_email_core.message import EmailMessage
from acs_email_core.transport import AcsCredentials, AcsTransport, OutcomeKind

Sdk = Callable[..., EmailClient]


async def _restarted(emu: Emulator, tmp_path: Path, **options: Any) -> Emulator:
    """Stop ``emu`` and start a new process-like emulator on the same port, key, certificates and state."""
    port = int(emu.endpoint.rsplit(":", 1)[1])
    await emu.stop()
    again = Emulator(emu.access_key, tls_dir=tmp_path / "tls", state_dir=tmp_path / "state", **options)
    await again.start(port=port)
    return again


async def _status(client: EmailClient, emu: Emulator, operation_id: str) -> tuple[int, dict[str, Any]]:
    url = f"{emu.endpoint}/emails/operations/{operation_id}?api-version=2025-09-01"
    response = await client.send_request(HttpRequest("GET", url))
    result: dict[str, Any] = response.json()
    return response.status_code, result


async def test_a_restart_keeps_operations_their_outcome_and_the_repeat_rule(
    tmp_path: Path, sdk: Sdk, sample: dict
) -> None:
    first = Emulator(tls_dir=tmp_path / "tls", state_dir=tmp_path / "state")
    await first.start()
    try:
        accepted = await (await sdk(first).begin_send(sample, polling=False)).result()
        first.add_fault(Fault.failed("EmailDropped", "Email was dropped after several attempts to deliver."))
        dropped = await (await sdk(first).begin_send(sample, polling=False)).result()
        second = await _restarted(first, tmp_path)
    finally:
        await first.stop()
    try:
        client = sdk(second)
        assert await _status(client, second, accepted["id"]) == (
            200,
            {"id": accepted["id"], "status": "Succeeded", "error": None},
        )
        code, body = await _status(client, second, dropped["id"])
        assert (code, body["status"], body["error"]["code"]) == (200, "Failed", "EmailDropped")
        assert [mail.operation_id for mail in second.mails] == [accepted["id"], dropped["id"]]
        assert second.mails[0].payload == sample

        await client.begin_send(sample, operation_id=accepted["id"], polling=False)  # a retry after the restart
        assert (len(second.mails), second.duplicates) == (2, 1)

        await second.reset()  # forgets the kept operations too
        assert (await _status(client, second, accepted["id"]))[0] == 404
    finally:
        await second.stop()
    third = Emulator(tls_dir=tmp_path / "tls", state_dir=tmp_path / "state")
    async with third:
        assert third.mails == []


async def test_the_client_finds_its_mail_after_a_restart_instead_of_resending(tmp_path: Path) -> None:
    first = Emulator(tls_dir=tmp_path / "tls", state_dir=tmp_path / "state", retry_after=0)
    await first.start()
    message = EmailMessage.build(sender="a@restart.example.com", to="b@example.com", subject="s", text="t")
    credentials = AcsCredentials(connection_string=first.connection_string, ca_file=str(first.ca_file))
    async with AcsTransport(credentials, timeout=5.0) as transport:
        try:
            first.add_fault(Fault.drop(after=True))  # accepted, then the answer is lost: the client must ask
            lost = await transport.send(message.to_acs_payload(), message.message_id)
            second = await _restarted(first, tmp_path, retry_after=0)
        finally:
            await first.stop()
        try:
            found = await transport.status(message.message_id)
            unknown = await transport.status(str(uuid.uuid4()))
        finally:
            await second.stop()
    assert (lost.kind, lost.ambiguous) == (OutcomeKind.TRANSIENT, True)
    assert found.kind is OutcomeKind.SENT
    assert unknown.kind is OutcomeKind.NOT_FOUND


async def test_a_torn_last_line_is_skipped(tmp_path: Path, sdk: Sdk, sample: dict) -> None:
    async with Emulator(tls_dir=tmp_path / "tls", state_dir=tmp_path / "state") as first:
        await sdk(first).begin_send(sample, polling=False)
    with (tmp_path / "state" / "operations.jsonl").open("a") as log:
        log.write('{"operation_id": "cut sh')  # a crash in the middle of a write
    async with Emulator(tls_dir=tmp_path / "tls", state_dir=tmp_path / "state") as second:
        assert len(second.mails) == 1
        await sdk(second).begin_send(sample, polling=False)  # written on a line of its own
    async with Emulator(tls_dir=tmp_path / "tls", state_dir=tmp_path / "state") as third:
        assert len(third.mails) == 2
