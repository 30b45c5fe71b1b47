"""The client against what the emulator answers like ACS: it pauses, asks or settles; it never dead-letters blindly."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme
import yaml
from azure.communication.email.aio import EmailClient
from azure.core.exceptions import HttpResponseError
from azure.identity.aio import ClientSecretCredential

from acs_email_bridge.cli import EXIT_AUTH, main
from acs_email_bridge.emulator import Emulator, Fault
from acs_email_core.config import EngineSettings
from acs_email_core.engine import Engine
from acs_email_core.message import EmailMessage
from acs_email_core.outbox import State
from acs_email_core.transport import AcsCredentials, AcsTransport, OutcomeKind

SENDER = "DoNotReply@client.example.com"
MakeEmulator = Callable[..., Awaitable[Emulator]]
SettingsFactory = Callable[..., EngineSettings]


def _message(subject: str = "s") -> EmailMessage:
    return EmailMessage.build(sender=SENDER, to="a@example.com", subject=subject, text="t")


@pytest.fixture
def foreign_ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    """A CA that did not sign the emulator's certificate, written where a ca_file could point."""
    ca = trustme.CA()
    path = tmp_path / "foreign-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture
async def wrong_host(foreign_ca: tuple[trustme.CA, Path]) -> AsyncIterator[str]:
    """An HTTPS endpoint on 127.0.0.1 whose (trusted) certificate names another host."""
    ca, _path = foreign_ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("elsewhere.example").configure_cert(context)

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=context)
    async with server:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def _principal(emu: Emulator, *, role: bool = True, ca_file: str | None = None) -> AcsCredentials:
    (tenant, client), secret = next((key, s) for key, s in emu.clients.items() if (key[1] in emu.without_role) != role)
    return AcsCredentials(
        endpoint=emu.endpoint, tenant_id=tenant, client_id=client, client_secret=secret,
        authority=emu.authority, ca_file=ca_file or str(emu.ca_file),
    )  # fmt: skip


# ---- certificates: not an outage --------------------------------------------------------------------------------
@pytest.mark.parametrize("auth", ["connection_string", "service_principal"])
async def test_a_ca_file_that_does_not_match_is_a_pause_not_an_outage(
    emulator: Emulator, foreign_ca: tuple[trustme.CA, Path], auth: str
) -> None:
    ca_file = str(foreign_ca[1])
    if auth == "connection_string":
        credentials = AcsCredentials(connection_string=emulator.connection_string, ca_file=ca_file)
    else:
        credentials = _principal(emulator, ca_file=ca_file)
    async with AcsTransport(credentials, timeout=5.0) as transport:
        outcome = await transport.send(_message().to_acs_payload(), str(uuid.uuid4()))
    assert outcome.kind is OutcomeKind.AUTH
    port = emulator.endpoint.rsplit(":", 1)[1]
    assert outcome.detail == (
        f"certificate not trusted: TLS certificate of 127.0.0.1:{port} refused (CERTIFICATE_VERIFY_FAILED: unable "
        "to get local issuer certificate); check ca_file (the CA that signed the server's certificate)"
    )
    assert emulator.mails == []


async def test_a_certificate_for_another_host_is_a_pause_not_an_outage(
    wrong_host: str, foreign_ca: tuple[trustme.CA, Path]
) -> None:
    credentials = AcsCredentials(connection_string=f"endpoint={wrong_host}/;accesskey=a2V5", ca_file=str(foreign_ca[1]))
    async with AcsTransport(credentials, timeout=5.0) as transport:
        outcome = await transport.send(_message().to_acs_payload(), str(uuid.uuid4()))
    assert outcome.kind is OutcomeKind.AUTH
    assert outcome.detail.startswith("host name mismatch: TLS certificate of 127.0.0.1:")
    assert "mismatch, certificate is not valid for '127.0.0.1'" in outcome.detail
    assert outcome.detail.endswith("check the host name in the endpoint")


async def _send_via_cli(endpoint: str, ca_file: Path, tmp_path: Path) -> tuple[int, str]:
    config = tmp_path / "acs.yaml"
    acs = {"connection_string": f"endpoint={endpoint}/;accesskey=a2V5", "ca_file": str(ca_file), "sender": SENDER}
    config.write_text(yaml.safe_dump({"acs": acs, "outbox": {"path": str(tmp_path / "outbox.db")}}))
    out, err = io.StringIO(), io.StringIO()

    def send() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            argv = ["send", "-c", str(config), "--to", "a@example.com", "-s", "x", "-t", "y", "--timeout", "60"]
            return main(argv)

    code = await asyncio.wait_for(asyncio.to_thread(send), 60)
    return code, err.getvalue()


async def test_send_exits_4_and_says_the_certificate_is_not_trusted(
    emulator: Emulator, foreign_ca: tuple[trustme.CA, Path], tmp_path: Path
) -> None:
    code, err = await _send_via_cli(emulator.endpoint, foreign_ca[1], tmp_path)
    assert code == EXIT_AUTH  # at once, not after a backoff
    first, second = err.splitlines()
    assert first.startswith("certificate not trusted: TLS certificate of 127.0.0.1:")
    assert "CERTIFICATE_VERIFY_FAILED" in first and "check ca_file" in first
    assert "authentication" not in err and "fix acs.ca_file or the endpoint, then run:" in second
    assert emulator.mails == []


async def test_send_exits_4_and_says_the_host_name_does_not_match(
    wrong_host: str, foreign_ca: tuple[trustme.CA, Path], tmp_path: Path
) -> None:
    code, err = await _send_via_cli(wrong_host, foreign_ca[1], tmp_path)
    assert code == EXIT_AUTH
    assert err.startswith("host name mismatch: TLS certificate of 127.0.0.1:"), err
    assert "authentication" not in err and len(err.splitlines()) == 2


# ---- a principal without the role: pause, keep the mail -----------------------------------------------------------
async def test_principal_without_role_gets_tokens_but_403_from_the_data_plane(emulator: Emulator, sample: dict) -> None:
    creds = _principal(emulator, role=False)
    assert creds.client_id and creds.tenant_id and creds.client_secret
    credential = ClientSecretCredential(
        creds.tenant_id, creds.client_id, creds.client_secret, authority=emulator.authority,
        disable_instance_discovery=True, connection_verify=str(emulator.ca_file),
    )  # fmt: skip
    async with credential, EmailClient(emulator.endpoint, credential, connection_verify=str(emulator.ca_file)) as c:
        with pytest.raises(HttpResponseError) as caught:
            await c.begin_send(sample)
    assert caught.value.status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "AuthorizationFailed"
    assert (emulator.requests.count("token", 200), emulator.mails) == (1, [])


async def test_engine_pauses_on_a_missing_role_and_keeps_the_queue(
    emulator: Emulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    settings = engine_settings(
        emulator, tmp_path / "o.db", SENDER, credentials=_principal(emulator, role=False), concurrency=1
    )
    paused = asyncio.Event()
    async with Engine(settings, on_auth_failure=lambda _reason: paused.set()) as engine:
        ids = [await engine.submit(_message(f"m{i}")) for i in range(3)]
        async with asyncio.timeout(30):
            await paused.wait()
        assert engine.dispatcher.paused is not None and "AuthorizationFailed" in engine.dispatcher.paused
        states = {(await engine.outbox.get(i)).state for i in ids}  # type: ignore[union-attr]
    assert states == {State.QUEUED}
    assert emulator.mails == []


# ---- an Operation-Id ACS already has: its status decides ----------------------------------------------------------
@pytest.mark.parametrize("earlier", ["accepted", "failed"])
async def test_an_id_taken_by_an_earlier_attempt_is_settled_by_its_status(
    emulator: Emulator, tmp_path: Path, engine_settings: SettingsFactory, earlier: str
) -> None:
    message = _message("final text")
    earlier_attempt = _message("first draft").to_acs_payload()
    if earlier == "failed":
        emulator.faults.add(Fault.failed("EmailDropped", "Email was dropped after several attempts to deliver."))
    settings = engine_settings(emulator, tmp_path / "o.db", SENDER)
    async with AcsTransport(settings.credentials) as transport:
        assert (await transport.send(earlier_attempt, message.message_id)).kind is OutcomeKind.SENT
        refused = await transport.send(message.to_acs_payload(), message.message_id)
    assert refused.kind is OutcomeKind.ID_IN_USE
    async with Engine(settings) as engine:
        await engine.submit(message)
        async with asyncio.timeout(30):
            state = await engine.wait_for(message.message_id)
        entry = await engine.outbox.get(message.message_id)
    assert entry is not None
    if earlier == "accepted":
        assert state is State.SENT
    else:
        assert state is State.DEAD
        assert entry.last_error == "EmailDropped: Email was dropped after several attempts to deliver."
    assert len(emulator.mails) == 1
    assert emulator.requests.count("status", 200) == 1  # asked, once, instead of dead-lettering the 400


# ---- operations that end Canceled, or stay Running ----------------------------------------------------------------
async def test_confirmation_dead_letters_a_canceled_operation_and_accepts_a_held_one(
    make_emulator: MakeEmulator, tmp_path: Path, engine_settings: SettingsFactory
) -> None:
    emu = await make_emulator(retry_after=0)
    emu.faults.add(Fault.canceled())
    emu.faults.add(Fault.held("NotStarted"))
    settings = engine_settings(emu, tmp_path / "o.db", SENDER, confirm_interval=0.01, concurrency=1)
    async with Engine(settings) as engine:
        canceled, held = _message("canceled"), _message("held")
        await engine.submit(canceled)
        async with asyncio.timeout(30):
            assert await engine.wait_for(canceled.message_id) is State.DEAD
            await engine.submit(held)
            assert await engine.wait_for(held.message_id) is State.SENT  # accepted; it just never finished
        entry = await engine.outbox.get(canceled.message_id)
    assert entry is not None and entry.last_error == "Canceled: operation Canceled"
    assert emu.status_of(emu.mails[1]) == "NotStarted"
