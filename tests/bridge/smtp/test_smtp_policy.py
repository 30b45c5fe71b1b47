"""Refusals: each is a clear SMTP reply (5xx permanent, 4xx try again), counted per device, and nothing is queued."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest

from acs_email_bridge.smtp.accounts import DeviceStore
from acs_email_core.message import MessageLimits

MAIL = b"From: scanner@office.lan\r\nTo: alice@example.com\r\nSubject: scan\r\n\r\nhello\r\n"


def _login(client: smtplib.SMTP, env, user: str = "scanner", password: str | None = None) -> None:
    """STARTTLS, then one AUTH LOGIN (smtplib's ``login`` would try PLAIN, then LOGIN: two failures)."""
    client.starttls(context=env.client_context())
    client.ehlo()
    client.user, client.password = user, env.passwords[user] if password is None else password
    client.auth("LOGIN", client.auth_login, initial_response_ok=False)


def _submit(env, data: bytes = MAIL) -> tuple[int, bytes]:
    """Log in as the scanner and send ``data`` to alice; the first refusal, else the DATA reply."""
    with env.smtp() as client:
        _login(client, env)
        code, message = client.mail("scanner@office.lan")
        if code == 250:
            code, message = client.rcpt("alice@example.com")
        if code == 250:
            code, message = client.data(data)
        return code, message


async def _queued(env) -> int:
    stats = await env.engine.outbox.stats()
    return stats.queued + stats.sending + stats.sent


async def test_wrong_password_is_535_and_counted(relay_env) -> None:
    def attempt() -> smtplib.SMTPAuthenticationError:
        with relay_env.smtp() as client, pytest.raises(smtplib.SMTPAuthenticationError) as info:
            _login(client, relay_env, password="not-the-password")
        return info.value

    error = await asyncio.to_thread(attempt)
    assert error.smtp_code == 535
    assert b"5.7.8" in error.smtp_error
    assert relay_env.counter("acs_email_smtp_auth_failures_total", device="scanner") == 1


async def test_auth_without_tls_is_not_offered_and_refused_with_538(make_relay) -> None:
    env = await make_relay(smtp={"devices": {"scanner": {"recipients": ["example.com"]}}})

    def attempt() -> tuple[bool, tuple[int, bytes]]:
        with env.smtp() as client:  # port 587, no STARTTLS
            client.ehlo()
            advertised = client.has_extn("auth")
            return advertised, client.docmd("AUTH", "LOGIN " + base64.b64encode(b"scanner").decode())

    advertised, (code, message) = await asyncio.to_thread(attempt)
    assert not advertised
    fix = "use STARTTLS on the submission port or the implicit-TLS (SMTPS) port"  # the ways it has, not numbers
    assert (code, message.decode()) == (538, f"5.7.11 Encryption required: {fix}")


async def test_submission_port_never_offers_clear_text_auth(relay_env) -> None:
    """Even with an ``insecure_auth`` device configured, 587 offers AUTH only after STARTTLS."""

    def offered(listener: str) -> bool:
        with relay_env.smtp(listener) as client:
            client.ehlo()
            return client.has_extn("auth")

    assert not await asyncio.to_thread(offered, "submission")
    assert await asyncio.to_thread(offered, "plain")


async def test_plaintext_auth_only_for_devices_allowed_to(relay_env) -> None:
    """The plain port advertises AUTH (a device may use it) but only ``insecure_auth`` devices get in."""

    def attempt(user: str) -> tuple[int, bytes]:
        with relay_env.smtp("plain") as client:
            client.ehlo()
            assert client.has_extn("auth")
            client.user, client.password = user, relay_env.passwords[user]
            try:
                return client.auth("LOGIN", client.auth_login, initial_response_ok=False)
            except smtplib.SMTPAuthenticationError as err:
                return err.smtp_code, err.smtp_error

    assert (await asyncio.to_thread(attempt, "oldmfd"))[0] == 235
    code, message = await asyncio.to_thread(attempt, "scanner")
    assert code == 538 and b"Encryption required" in message


async def test_relay_to_a_domain_not_allowed_is_550(relay_env) -> None:
    def attempt() -> dict[str, tuple[int, bytes]]:
        with relay_env.smtp() as client:
            _login(client, relay_env)
            return client.sendmail("scanner@office.lan", ["alice@example.com", "mallory@elsewhere.example"], MAIL)

    refused = await asyncio.to_thread(attempt)
    assert refused == {
        "mallory@elsewhere.example": (
            550,
            b"5.7.1 Relaying to <mallory@elsewhere.example> is not allowed for device 'scanner'",
        )
    }
    [mail] = await relay_env.delivered(1)
    assert mail.recipients("to") == ["alice@example.com"] and mail.recipients("bcc") == []
    assert relay_env.counter("acs_email_smtp_refused_total", device="scanner", reason="recipient") == 1


async def test_sender_not_allowed_is_553(relay_env) -> None:
    def attempt() -> smtplib.SMTPSenderRefused:
        with relay_env.smtp() as client, pytest.raises(smtplib.SMTPSenderRefused) as info:
            _login(client, relay_env)
            client.sendmail("ceo@bank.example", ["alice@example.com"], MAIL)
        return info.value

    error = await asyncio.to_thread(attempt)
    assert error.smtp_code == 553 and b"Sender <ceo@bank.example> is not allowed" in error.smtp_error
    # An allowed envelope sender with someone else in the From header (it would become the Reply-To):
    spoof = MAIL.replace(b"From: scanner@office.lan", b"From: CEO <ceo@bank.example>")
    code, message = await asyncio.to_thread(_submit, relay_env, spoof)
    assert code == 550 and b"Header From <ceo@bank.example> is not a sender allowed" in message
    assert await _queued(relay_env) == 0


async def test_oversize_refused_by_size_parameter_and_after_data(make_relay) -> None:
    env = await make_relay(smtp={"max_message_size": 50_000})
    big = MAIL + b"x" * 60_000 + b"\r\n"

    def attempt() -> tuple[int, int, bytes]:
        with env.smtp() as client:
            _login(client, env)
            size_code, _message = client.mail("scanner@office.lan", ["SIZE=60000"])
            client.rset()
            # Without SIZE the relay reads the data to the end, then refuses it.
            client.mail("scanner@office.lan")
            client.rcpt("alice@example.com")
            code, message = client.data(big)
            return size_code, code, message

    size_code, data_code, data_message = await asyncio.to_thread(attempt)
    assert size_code == 552
    assert data_code == 552 and b"5.3.4" in data_message
    assert await _queued(env) == 0


async def test_message_over_the_acs_request_limit_after_base64_is_552(make_relay) -> None:
    env = await make_relay(
        engine={"limits": MessageLimits(max_request_bytes=20_000)}, smtp={"max_message_size": 40_000}
    )
    attachment = base64.encodebytes(b"%PDF" + bytes(range(256)) * 70)  # ~18 KB raw, ~24 KB in the ACS request
    mime = (
        b"Subject: scan\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nscan\r\n--b\r\nContent-Type: application/pdf; name=s.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--b--\r\n"
    )

    code, message = await asyncio.to_thread(_submit, env, mime)
    assert code == 552 and b"Message too big for ACS Email" in message
    assert env.counter("acs_email_smtp_refused_total", device="scanner", reason="size") == 1


async def test_plain_port_refuses_networks_not_listed(make_relay) -> None:
    env = await make_relay(smtp={"plain_networks": ["192.0.2.0/24"]})

    def attempt() -> smtplib.SMTPConnectError:
        with pytest.raises(smtplib.SMTPConnectError) as info:
            env.smtp("plain")
        return info.value

    error = await asyncio.to_thread(attempt)
    assert error.smtp_code == 554 and b"Connections from 127.0.0.1 are not accepted" in error.smtp_error


async def test_without_auth_only_from_a_device_network(make_relay) -> None:
    env = await make_relay()  # "ups": auth none, from 127.0.0.1/32

    def send(recipient: str) -> dict[str, tuple[int, bytes]]:
        with env.smtp("plain") as client:
            return client.sendmail("ups@office.lan", [recipient], b"Subject: on battery\r\n\r\nload 40%\r\n")

    assert await asyncio.to_thread(send, "ops@example.com") == {}
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asyncio.to_thread(send, "alice@example.com")  # not in the UPS's recipients
    [mail] = await env.delivered(1)
    assert (mail.subject, mail.recipients("to")) == ("on battery", ["ops@example.com"])
    assert mail.payload["replyTo"] == [{"address": "ups@office.lan", "displayName": "ups"}]

    other = await make_relay(
        smtp={"devices": {"ups": {"recipients": ["*"], "auth": "none", "networks": ["10.9.0.0/16"]}}}
    )

    def unknown() -> smtplib.SMTPSenderRefused:
        with other.smtp("plain") as client, pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.sendmail("ups@office.lan", ["ops@example.com"], b"Subject: x\r\n\r\nx\r\n")
        return info.value

    error = await asyncio.to_thread(unknown)
    assert error.smtp_code == 530 and b"Authentication required" in error.smtp_error


async def test_lockout_after_repeated_failures_then_released(make_relay, clock) -> None:
    env = await make_relay(smtp={"lockout_attempts": 3, "lockout_duration": "5m"}, clock=clock)

    def attempt(password: str | None = None) -> int:
        with env.smtp() as client:
            try:
                _login(client, env, password=password)
            except smtplib.SMTPAuthenticationError as err:
                return err.smtp_code
            return 235

    assert [await asyncio.to_thread(attempt, "wrong") for _ in range(3)] == [535, 535, 535]
    assert await asyncio.to_thread(attempt) == 454  # even the right password, while locked out
    clock.now += 301
    assert await asyncio.to_thread(attempt) == 235


async def test_rate_limit_per_device_is_451_then_recovers(make_relay, clock) -> None:
    env = await make_relay(
        smtp={"devices": {"scanner": {"recipients": ["example.com"], "per_minute": 2, "per_hour": 10}}}, clock=clock
    )

    def send() -> int:
        with env.smtp() as client:
            _login(client, env)
            try:
                client.sendmail("scanner@office.lan", ["alice@example.com"], MAIL)
            except smtplib.SMTPSenderRefused as err:
                assert b"limit" in err.smtp_error
                return err.smtp_code
            return 250

    assert [await asyncio.to_thread(send) for _ in range(3)] == [250, 250, 451]
    clock.now += 61
    assert await asyncio.to_thread(send) == 250
    await env.delivered(3)


async def test_outbox_full_is_452_and_storage_failure_451(make_relay) -> None:
    env = await make_relay(engine={"max_messages": 1}, deliver=False)

    assert (await asyncio.to_thread(_submit, env))[0] == 250
    code, message = await asyncio.to_thread(_submit, env)
    assert code == 452 and b"outbox is full" in message
    await env.engine.outbox.close()  # the outbox can no longer store anything
    code, message = await asyncio.to_thread(_submit, env)
    assert code == 451 and b"try again later" in message


async def test_device_with_an_account_but_no_policy_is_told_why(relay_env) -> None:
    store = DeviceStore(relay_env.relay.settings.accounts_path)
    password = await asyncio.to_thread(store.add, "camera")

    def attempt() -> smtplib.SMTPSenderRefused:
        with relay_env.smtp() as client, pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.starttls(context=relay_env.client_context())
            client.login("camera", password)
            client.sendmail("cam@office.lan", ["alice@example.com"], MAIL)
        return info.value

    error = await asyncio.to_thread(attempt)
    assert error.smtp_code == 550 and b"no policy" in error.smtp_error


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_minimum_tls_version_is_configurable_for_old_printers(make_relay, legacy_tls) -> None:

    def handshake(env) -> str:
        with env.smtp() as client:
            client.starttls(context=legacy_tls)
            return client.sock.version() or ""

    default = await make_relay()
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        await asyncio.to_thread(handshake, default)
    lenient = await make_relay(smtp={"min_tls_version": "1.0"})
    assert await asyncio.to_thread(handshake, lenient) in ("TLSv1", "TLSv1.1")


async def test_a_device_limited_to_networks_cannot_log_in_from_elsewhere(make_relay) -> None:
    env = await make_relay(smtp={"devices": {"scanner": {"recipients": ["example.com"], "networks": ["10.0.0.0/8"]}}})

    def attempt() -> smtplib.SMTPAuthenticationError:
        with env.smtp() as client, pytest.raises(smtplib.SMTPAuthenticationError) as info:
            _login(client, env)  # the right password, from 127.0.0.1
        return info.value

    error = await asyncio.to_thread(attempt)
    assert error.smtp_code == 535 and b"may not log in from 127.0.0.1" in error.smtp_error


async def test_auth_dialogue_errors_are_clear(relay_env) -> None:
    def dialogue() -> list[int]:
        with relay_env.smtp("smtps") as client:
            client.ehlo()
            codes = [client.docmd("AUTH", "CRAM-MD5")[0], client.docmd("AUTH", "PLAIN not-base64!")[0]]
            codes.append(client.docmd("AUTH", "LOGIN")[0])  # 334 Username:
            codes.append(client.docmd("*")[0])  # the client aborts the exchange
            client.user, client.password = "scanner", relay_env.passwords["scanner"]
            codes.append(client.auth("PLAIN", client.auth_plain)[0])
            codes.append(client.docmd("AUTH", "PLAIN")[0])  # already authenticated
            return codes

    assert await asyncio.to_thread(dialogue) == [504, 501, 334, 501, 235, 503]


async def test_lines_longer_than_the_protocol_limit_are_kept_whole(relay_env) -> None:
    html = "<p>" + "x" * 20_000 + "</p>"  # some devices write HTML or base64 without line breaks
    data = (
        "From: scanner@office.lan\r\nTo: alice@example.com\r\nSubject: long\r\nContent-Type: text/html\r\n\r\n" + html
    ).encode()
    assert (await asyncio.to_thread(_submit, relay_env, data))[0] == 250
    [mail] = await relay_env.delivered(1)
    assert mail.payload["content"]["html"].strip() == html


async def test_rate_limit_holds_for_concurrent_sessions_of_one_device(make_relay, clock) -> None:
    env = await make_relay(
        smtp={"devices": {"scanner": {"recipients": ["example.com"], "per_minute": 2}}}, clock=clock, deliver=False
    )
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(6) as clients:  # not the loop's default executor: the relay needs that one
        codes = await asyncio.gather(*(loop.run_in_executor(clients, _submit, env) for _ in range(6)))
    assert sorted(code for code, _message in codes) == [250, 250, 451, 451, 451, 451]
    assert await _queued(env) == 2
