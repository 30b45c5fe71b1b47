"""Attacks on the relay's promises with raw sockets: each refusal is a clear reply and the dialogue stays in step."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from acs_email_bridge.smtp.policy import Lockout, matches


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Raw:
    """A blocking line-level SMTP client: sends exactly what the test writes, reads one reply at a time."""

    def __init__(self, env, listener: str = "submission", source: str = "127.0.0.1") -> None:
        self.env = env
        self.sock: socket.socket = socket.create_connection(
            ("127.0.0.1", env.port(listener)), timeout=30, source_address=(source, 0)
        )
        if listener == "smtps":
            self.sock = env.client_context().wrap_socket(self.sock, server_hostname="localhost")
        self.buffer = b""
        self.greeting = self.reply()

    def close(self) -> None:
        self.sock.close()

    def starttls(self) -> str:
        reply = self.cmd("STARTTLS")
        self.sock = self.env.client_context().wrap_socket(self.sock, server_hostname="localhost")
        return reply

    def _line(self) -> str:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                return "<closed>"
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().rstrip("\r")

    def reply(self) -> str:
        lines = [self._line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self._line())
        return "\n".join(lines)

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def begin_data(self, recipient: str = "alice@example.com") -> None:
        """MAIL, RCPT and DATA as the scanner: the mail's content comes next."""
        assert self.cmd("MAIL FROM:<scanner@office.lan>").startswith("250")
        assert self.cmd(f"RCPT TO:<{recipient}>").startswith("250")
        assert self.cmd("DATA").startswith("354")

    def login(self, user: str = "scanner", password: str | None = None) -> str:
        password = self.env.passwords[user] if password is None else password
        return self.cmd("AUTH PLAIN " + b64(f"\0{user}\0{password}"))


def tls_session(env, listener: str = "submission") -> Raw:
    client = Raw(env, listener)
    client.cmd("EHLO device")
    if listener == "submission":
        client.starttls()
        client.cmd("EHLO device")
    return client


async def test_auth_in_a_mail_transaction_is_refused(relay_env) -> None:
    """MAIL accepted under one device's policy (the UPS, known by address) cannot be finished as another."""

    def attempt() -> tuple[str, str]:
        client = tls_session(relay_env)
        try:
            return client.cmd("MAIL FROM:<ceo@bank.example>"), client.login()
        finally:
            client.close()

    mail, auth = await asyncio.to_thread(attempt)
    assert mail.startswith("250")
    assert auth.startswith("503 5.5.1") and "transaction" in auth


async def test_starttls_twice_is_refused_and_the_session_goes_on(relay_env, caplog) -> None:
    def attempt() -> tuple[str, str, str]:
        client = tls_session(relay_env)
        try:
            return client.cmd("STARTTLS"), client.login(), client.cmd("NOOP")
        finally:
            client.close()

    again, login, noop = await asyncio.to_thread(attempt)
    assert again.startswith("503 5.5.1") and "TLS" in again
    assert login.startswith("235") and noop.startswith("250")
    smtps = await asyncio.to_thread(lambda: tls_session(relay_env, "smtps").cmd("STARTTLS"))
    assert smtps.startswith("503 5.5.1")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_plain_authorization_identity_of_another_user_is_refused(relay_env) -> None:
    password = relay_env.passwords["scanner"]

    def attempt(blob: str) -> str:
        client = tls_session(relay_env, "smtps")
        try:
            return client.cmd("AUTH PLAIN " + b64(blob))
        finally:
            client.close()

    refused = await asyncio.to_thread(attempt, f"oldmfd\0scanner\0{password}")
    assert refused.startswith("535") and "authorization identity" in refused
    assert (await asyncio.to_thread(attempt, f"scanner\0scanner\0{password}")).startswith("235")


async def test_overlong_auth_response_is_500_and_the_dialogue_stays_in_step(relay_env, caplog) -> None:
    def attempt() -> list[str]:
        client = tls_session(relay_env, "smtps")
        try:
            replies = [client.cmd("AUTH LOGIN"), client.cmd("A" * 100_000), client.cmd("NOOP")]
            replies += [client.cmd("AUTH PLAIN"), client.cmd("B" * 5_000), client.login()]
            return replies
        finally:
            client.close()

    replies = await asyncio.to_thread(attempt)
    assert [r[:3] for r in replies] == ["334", "500", "250", "334", "500", "235"]
    assert "5.5.6" in replies[1]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_concurrent_failed_logins_cannot_outrun_the_lockout(make_relay) -> None:
    """Attempts from one address are checked one at a time: the lockout holds for parallel sessions too."""
    env = await make_relay(smtp={"lockout_attempts": 3})

    def attempt(_index: int) -> str:
        client = tls_session(env, "smtps")
        try:
            return client.login(password="wrong")[:3]
        finally:
            client.close()

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(12) as clients:
        codes = await asyncio.gather(*(loop.run_in_executor(clients, attempt, i) for i in range(12)))
    assert codes.count("535") == 3 and codes.count("454") == 9
    assert env.counter("acs_email_smtp_auth_failures_total", device="scanner") == 3


def test_ipv6_lockout_covers_the_whole_slash_64() -> None:
    """One IPv6 host can use any address of its /64: the lockout holds for all of them."""
    now = [0.0]
    lockout = Lockout(attempts=2, window=60, duration=60, clock=lambda: now[0])
    assert not lockout.failed("2001:db8:1:2::10")
    assert lockout.failed("2001:db8:1:2:aaaa::11")
    assert lockout.refuse("2001:db8:1:2:ffff:ffff:ffff:ffff") is not None
    assert lockout.refuse("2001:db8:1:3::10") is None
    assert lockout.refuse("192.0.2.1") is None


async def test_sessions_are_limited_in_total_and_per_address(make_relay) -> None:
    env = await make_relay(smtp={"max_sessions": 3, "max_sessions_per_address": 2})

    def attempt() -> list[str]:
        held = [Raw(env), Raw(env)]
        third = Raw(env)  # a third session from 127.0.0.1
        other = Raw(env, source="127.0.0.2")
        beyond = Raw(env, source="127.0.0.3")  # four sessions in all
        greetings = [c.greeting[:3] for c in (*held, third, other, beyond)]
        greetings.append(third.reply())  # closed after its 421
        for client in (*held, third, other, beyond):
            client.close()
        return greetings

    greetings = await asyncio.to_thread(attempt)
    assert greetings[:5] == ["220", "220", "421", "220", "421"]
    assert greetings[5] == "<closed>"
    assert env.counter("acs_email_smtp_refused_total", device="unknown", reason="sessions") == 2

    async with asyncio.timeout(30):  # the relay notices the closed sessions; a new one is served again
        while len(env.relay.state.sessions) > 0:
            await asyncio.sleep(0.02)
    client = await asyncio.to_thread(Raw, env)
    assert client.greeting.startswith("220")
    client.close()


@pytest.mark.parametrize("recipient", ["alice%evil.example@example.com", "evil.example!alice@example.com"])
async def test_sender_specified_routing_is_no_relay(relay_env, recipient: str) -> None:
    def attempt() -> str:
        client = tls_session(relay_env)
        try:
            client.login()
            client.cmd("MAIL FROM:<scanner@office.lan>")
            return client.cmd(f"RCPT TO:<{recipient}>")
        finally:
            client.close()

    reply = await asyncio.to_thread(attempt)
    assert reply.startswith("550 5.7.1") and "routing" in reply


async def test_a_password_sent_as_a_command_never_reaches_the_log(relay_env, caplog) -> None:
    """A device that ignores the 538 and sends its password anyway, or swaps user name and password."""
    caplog.set_level(logging.DEBUG)
    password = relay_env.passwords["scanner"]

    def attempt() -> None:
        client = Raw(relay_env)
        client.cmd("EHLO printer")
        client.cmd("AUTH LOGIN")
        assert client.cmd(b64("scanner")).startswith("538")
        assert client.cmd(b64(password)).startswith("500")
        client.close()
        client = tls_session(relay_env, "smtps")
        assert client.cmd("AUTH PLAIN " + b64(f"\0{password}\0scanner")).startswith("535")
        client.close()

    await asyncio.to_thread(attempt)
    logged = caplog.text.upper()
    assert password.upper() not in logged and b64(password).upper() not in logged


async def test_data_timeout_counts_from_the_last_line_not_from_the_command(make_relay) -> None:
    """A slow old printer sending a big scan is not cut off while its data keeps coming."""
    env = await make_relay(smtp={"timeout": 2})

    def attempt() -> str:
        client = tls_session(env)
        try:
            client.login()
            client.begin_data()
            client.sock.sendall(b"Subject: slow\r\n\r\n")
            for _ in range(12):  # 3 s of data, each line well within the 2 s timeout
                time.sleep(0.25)
                client.sock.sendall(b"a line of the scan\r\n")
            return client.cmd(".")
        finally:
            client.close()

    assert (await asyncio.to_thread(attempt)).startswith("250")


async def test_commands_pipelined_after_starttls_in_clear_text_are_discarded(relay_env) -> None:
    """STARTTLS command injection: what was sent before the handshake is not run inside TLS."""
    injected = "AUTH PLAIN " + b64(f"\0scanner\0{relay_env.passwords['scanner']}")

    def attempt() -> tuple[str, str]:
        client = Raw(relay_env)
        try:
            client.cmd("EHLO device")
            client.sock.sendall(f"STARTTLS\r\n{injected}\r\nMAIL FROM:<scanner@office.lan>\r\n".encode())
            assert client.reply().startswith("220")
            client.sock = relay_env.client_context().wrap_socket(client.sock, server_hostname="localhost")
            client.buffer = b""
            client.cmd("EHLO device")
            return client.cmd("RCPT TO:<alice@example.com>"), client.cmd("NOOP")
        finally:
            client.close()

    rcpt, noop = await asyncio.to_thread(attempt)
    assert rcpt.startswith("503") and noop.startswith("250")  # no MAIL ran, no stray replies


async def test_reload_with_new_listeners_does_not_wait_for_open_sessions(relay_env) -> None:
    """A SIGHUP that changes a listener setting returns at once; a device mid-session finishes its mail."""
    old = await asyncio.to_thread(tls_session, relay_env)
    await asyncio.to_thread(old.login)
    async with asyncio.timeout(10):  # Python >= 3.12: Server.wait_closed() waits for open connections
        await relay_env.relay.reload(dataclasses.replace(relay_env.relay.settings, timeout=120.0))

    def finish_and_connect() -> tuple[str, str]:
        try:
            old.begin_data()
            queued = old.cmd("Subject: across a reload\r\n\r\nhello\r\n.")
        finally:
            old.close()
        new = tls_session(relay_env)
        try:
            return queued, new.login()
        finally:
            new.close()

    queued, login = await asyncio.to_thread(finish_and_connect)
    assert queued.startswith("250") and login.startswith("235")
    [mail] = await relay_env.delivered(1)
    assert mail.subject == "across a reload"


async def test_smtp_smuggling_with_mixed_line_endings_stays_in_the_mail(relay_env) -> None:
    """A client that writes CRLF ends its data with CRLF.CRLF only: a "\\n.\\r\\n" or "\\r\\n.\\n" inside a
    mail (put there by whoever wrote it, passed on by an upstream server) cannot start a second, smuggled mail."""
    smuggled = "MAIL FROM:<ceo@office.lan>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"

    def attempt() -> tuple[str, str]:
        client = tls_session(relay_env)
        try:
            client.login()
            client.begin_data()
            payload = f"Subject: outer\r\n\r\nhello\n.\r\n{smuggled}.\n{smuggled}\r\n.\r\n"
            client.sock.sendall(payload.encode())
            return client.reply(), client.cmd("NOOP")
        finally:
            client.close()

    queued, noop = await asyncio.to_thread(attempt)
    assert queued.startswith("250") and noop.startswith("250")
    [mail] = await relay_env.delivered(1)
    assert mail.subject == "outer" and mail.payload["content"]["plainText"].count("MAIL FROM:<ceo@office.lan>") == 2


async def test_silent_connections_on_the_implicit_tls_port_count_against_the_limits(make_relay, caplog) -> None:
    """Connections that never start their TLS handshake (port 465) are limited like any other session."""
    env = await make_relay(smtp={"max_sessions": 3, "max_sessions_per_address": 2})

    def silent(source: str = "127.0.0.1") -> socket.socket:
        return socket.create_connection(("127.0.0.1", env.port("smtps")), timeout=30, source_address=(source, 0))

    def tls_greeting(source: str, opened: list[Raw]) -> str:
        try:
            client = Raw(env, "smtps", source=source)
        except (OSError, ssl.SSLError):
            return "closed"
        opened.append(client)
        return client.greeting[:3]

    def attempt() -> list[str]:
        held, opened = [silent(), silent()], []
        try:
            async_wait_for(lambda: len(env.relay.state.handshakes) == 2)
            return [tls_greeting(source, opened) for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3")]
        finally:
            for sock in held:
                sock.close()
            for client in opened:
                client.close()

    def async_wait_for(condition) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.02)

    assert await asyncio.to_thread(attempt) == ["closed", "220", "closed"]
    assert env.counter("acs_email_smtp_refused_total", device="unknown", reason="sessions") == 2
    async with asyncio.timeout(30):
        while env.relay.state.handshakes or env.relay.state.sessions:
            await asyncio.sleep(0.02)
    opened: list[Raw] = []
    assert await asyncio.to_thread(tls_greeting, "127.0.0.1", opened) == "220"
    opened[0].close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_addresses_acs_would_refuse_are_refused_at_once_not_after_the_250(relay_env, caplog) -> None:
    """Invalid UTF-8 or symbols in an address: refused in the dialogue, never a dead letter after a 250."""

    def attempt() -> list[str]:
        client = tls_session(relay_env)
        try:
            client.login()
            replies = []
            for line in (b"MAIL FROM:<sc\xffanner@office.lan>", b"MAIL FROM:<scanner@office.lan>"):
                client.sock.sendall(line + b"\r\n")
                replies.append(client.reply())
            for line in (b"RCPT TO:<al\xffice@example.com>", "RCPT TO:<al\ufffdice@example.com>".encode()):
                client.sock.sendall(line + b"\r\n")
                replies.append(client.reply())
            replies.append(client.cmd("NOOP"))
            return replies
        finally:
            client.close()

    replies = await asyncio.to_thread(attempt)
    assert [r[:9] for r in replies] == ["553 5.1.7", "250 2.1.0", "553 5.1.3", "553 5.1.3", "250 OK"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_mail_without_subject_is_delivered(relay_env) -> None:
    def attempt() -> str:
        client = tls_session(relay_env)
        try:
            client.login()
            client.begin_data()
            return client.cmd("From: scanner@office.lan\r\n\r\nscan attached\r\n.")
        finally:
            client.close()

    assert (await asyncio.to_thread(attempt)).startswith("250")
    [mail] = await relay_env.delivered(1)
    assert mail.subject == "(no subject)"


async def test_a_recipient_storm_gets_452_and_a_full_bcc_mail_still_fits_acs(relay_env) -> None:
    """10,000 RCPTs: 452 beyond the limit, one reply each, and the mail that was accepted is deliverable
    even when every recipient is hidden (the relay's own address is then its To, and counts)."""
    limit = relay_env.engine.settings.limits.max_recipients

    def attempt() -> tuple[dict[str, int], str]:
        client = tls_session(relay_env)
        try:
            client.login()
            client.cmd("MAIL FROM:<scanner@office.lan>")
            client.sock.sendall("".join(f"RCPT TO:<u{i}@example.com>\r\n" for i in range(10_000)).encode())
            codes: dict[str, int] = {}
            for _ in range(10_000):
                code = client.reply()[:3]
                codes[code] = codes.get(code, 0) + 1
            client.cmd("DATA")
            return codes, client.cmd("To: undisclosed-recipients:;\r\nSubject: to many\r\n\r\nhello\r\n.")
        finally:
            client.close()

    codes, queued = await asyncio.to_thread(attempt)
    assert codes == {"250": limit - 1, "452": 10_000 - limit + 1}
    assert queued.startswith("250")
    [mail] = await relay_env.delivered(1)
    assert mail.recipients("to") == ["relay@devices.example.com"] and len(mail.recipients("bcc")) == limit - 1


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_a_device_with_too_old_tls_gets_a_one_line_warning_with_the_fix(relay_env, caplog, legacy_tls) -> None:
    """An old printer's failed handshake (port 587 or 465) is a warning naming min_tls_version, not a traceback."""

    def handshakes() -> None:
        client = Raw(relay_env)
        client.cmd("EHLO printer")
        assert client.cmd("STARTTLS").startswith("220")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            legacy_tls.wrap_socket(client.sock, server_hostname="localhost")
        client.close()
        sock = socket.create_connection(("127.0.0.1", relay_env.port("smtps")), timeout=30)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            legacy_tls.wrap_socket(sock, server_hostname="localhost")
        sock.close()

    await asyncio.to_thread(handshakes)
    async with asyncio.timeout(30):
        while len([r for r in caplog.records if "min_tls_version" in r.getMessage()]) < 2:
            await asyncio.sleep(0.02)
    warnings = [r for r in caplog.records if "min_tls_version" in r.getMessage()]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert relay_env.counter("acs_email_smtp_refused_total", device="unknown", reason="tls") == 2


def test_policies_match_internationalised_domains_in_either_form() -> None:
    """``bücher.example`` in the config and ``xn--bcher-kva.example`` on the wire (or the reverse) are one domain."""
    assert matches("a@xn--bcher-kva.example", ["bücher.example"])
    assert matches("a@BÜCHER.example", ["xn--bcher-kva.example"])
    assert matches("a@scan.xn--bcher-kva.example", ["*.bücher.example"])
    assert matches("ä@bücher.example", ["ä@xn--bcher-kva.example"])
    assert not matches("a@xn--bcher-kva.example.evil", ["bücher.example"])
    assert not matches("a@bucher.example", ["bücher.example"])


async def test_the_auth_parameter_of_mail_is_accepted(relay_env) -> None:
    """RFC 4954: a server offering AUTH takes ``MAIL FROM:<…> AUTH=<>`` (Exim as a smarthost client sends it)."""

    def attempt() -> list[str]:
        client = tls_session(relay_env)
        try:
            client.login()
            replies = [client.cmd("MAIL FROM:<scanner@office.lan> SIZE=100 AUTH=<>")]
            replies += [client.cmd("RSET"), client.cmd("MAIL FROM:<scanner@office.lan> auth=scanner+40office.lan")]
            return replies
        finally:
            client.close()

    assert [r[:3] for r in await asyncio.to_thread(attempt)] == ["250", "250", "250"]
