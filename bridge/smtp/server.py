"""The SMTP dialogue: aiosmtpd plus what real devices need, and the relay's policy at each command.

aiosmtpd is kept for the protocol; these commands are replaced or extended:
* EHLO (through the handler hook): PIPELINING and ENHANCEDSTATUSCODES added; AUTH advertised on TLS
  (implicit TLS included, aiosmtpd#281), and in clear text only on the plain port when a device may use it.
* AUTH: mechanism names in any case (aiosmtpd#542), ``Username:``/``Password:`` challenges (Xerox and
  others break on aiosmtpd's ``User Name\\0``), scrypt checked off the event loop, one check at a time per
  client and a brute-force lockout, never in a mail transaction, over-long answers refused in step.
* STARTTLS: refused once TLS is on (aiosmtpd would start a second handshake and drop the connection).
* MAIL: the AUTH= parameter of RFC 4954 is accepted (and ignored).
* DATA: bare LF line endings and a ``\\n.\\n`` terminator, as sent by old printers, instead of waiting
  forever for CRLF; but not from a client that writes CRLF (no SMTP smuggling); timeout per line.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import re
import sqlite3
from base64 import b64decode, b64encode
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException, syntax

from acs_email_core.errors import AcsEmailError, OutboxFullError, ValidationError

from .config import DevicePolicy, Network
from .convert import to_email_message
from .metrics import UNKNOWN
from .policy import deliverable, in_networks, printable, refuse_recipient, refuse_sender

if TYPE_CHECKING:
    from .relay import RelayState

_LOGGER = logging.getLogger(__name__)
_COMMANDS = frozenset(
    ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP", "AUTH", "STARTTLS"]
)
_AUTH_PARAMETER = re.compile(r"\s+AUTH=\S*", re.IGNORECASE)


class _HideClientText(logging.Filter):
    """aiosmtpd logs unknown command lines (and echoes them in its 500 reply): a device that sends its
    password out of turn, after a refusal, would have it logged. Only known commands are shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args:
            return True
        line = args[-1] if isinstance(args[-1], bytes) else str(args[-1]).encode(errors="replace")
        if record.msg == "%r << %r":
            hidden = line.startswith(b'500 Error: command "')
        else:
            hidden = record.msg in ("%r >> %r", "_handle_client readline: %r", "%r unrecognised: %s")
            hidden = hidden and line.split(b" ", 1)[0].strip().upper().decode(errors="replace") not in _COMMANDS
        if hidden:
            record.args = (*args[:-1], f"({len(line)} bytes not shown)")
        return True


_AIOSMTPD_LOG = logging.getLogger("mail.log")
if not any(isinstance(f, _HideClientText) for f in _AIOSMTPD_LOG.filters):
    _AIOSMTPD_LOG.addFilter(_HideClientText())


@dataclass(frozen=True)
class Listener:
    """One listening port: ``starttls`` offers STARTTLS, ``implicit_tls`` is TLS from the first byte."""

    name: str
    implicit_tls: bool = False
    starttls: bool = False
    networks: tuple[Network, ...] = ()  # empty: any source address


class RelaySMTP(SMTP):
    """One SMTP connection."""

    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, state: RelayState, listener: Listener, **kwargs: Any) -> None:
        super().__init__(RelayHandler(state), **kwargs)
        self.state = state
        self.listener = listener
        self.device: DevicePolicy | None = None  # set by AUTH, or at MAIL for devices known by address
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.device = None  # also after STARTTLS: nothing learnt in clear text carries over (RFC 3207)

    def connection_lost(self, error: Exception | None) -> None:
        if self.session is None:  # its TLS handshake on port 465 failed: it was never connected
            return
        super().connection_lost(error)

    @property
    def secure(self) -> bool:
        return self.listener.implicit_tls or self._tls_protocol is not None

    @property
    def peer_ip(self) -> str:
        peer = self.session.peer if self.session is not None else None
        return str(peer[0]) if isinstance(peer, tuple) else str(peer)

    async def _handle_client(self) -> None:
        networks = self.listener.networks
        if networks and not in_networks(self.peer_ip, networks):
            refusal: str | None = f"554 5.7.1 Connections from {self.peer_ip} are not accepted on this port"
            reason = "network"
        else:
            refusal, reason = self.state.sessions_refusal(self.peer_ip), "sessions"
        if refusal is not None:
            self.state.metrics.on_refused(UNKNOWN, reason)
            await self.push(refusal)
            assert self.transport is not None
            self.transport.close()
            return
        self.state.sessions.add(self)
        try:
            await super()._handle_client()
        finally:
            self.state.sessions.discard(self)

    async def handle_exception(self, error: Exception) -> str:
        """A failed STARTTLS handshake is a warning line (aiosmtpd closes the connection); anything else
        is our bug: logged with its traceback, and a temporary reply so the device tries again."""
        if isinstance(error, TLSSetupException):
            self.state.tls_failed(self.peer_ip, error.__cause__)
            return ""
        _LOGGER.error("SMTP session with %s failed", self.peer_ip, exc_info=error)
        return "451 4.3.0 Internal error of the relay (see its log); try again later"

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        # RFC 4954: a server that offers AUTH takes MAIL's AUTH= parameter (Exim sends "AUTH=<>"); aiosmtpd
        # refuses it with 555. The relay decides the sender by its own policy: the value is dropped.
        await super().smtp_MAIL(_AUTH_PARAMETER.sub("", arg) if arg else arg)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.secure:
            await self.push("503 5.5.1 TLS is already active")
            return
        await super().smtp_STARTTLS(arg)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if await self.check_helo_needed("EHLO"):
            return
        assert self.session is not None
        mechanism, _, initial = (arg or "").strip().partition(" ")
        mechanism = mechanism.upper()
        if not self.session.extended_smtp:
            await self.push("500 5.5.1 AUTH needs EHLO first")
        elif self.session.authenticated:
            await self.push("503 5.5.1 Already authenticated")
        elif self.envelope is not None and self.envelope.mail_from is not None:
            # RFC 4954: the sender was accepted under another identity (a device known by its address).
            await self.push("503 5.5.1 AUTH is not allowed in a mail transaction; send RSET first")
        elif mechanism not in ("LOGIN", "PLAIN"):
            await self.push("504 5.5.4 Unrecognized authentication type; use LOGIN or PLAIN")
        elif refusal := self.state.lockout.refuse(self.peer_ip):
            self.state.metrics.on_refused(UNKNOWN, "lockout")
            await self.push(refusal)
        elif not self.secure and not self.state.insecure_auth_allowed:
            self.state.metrics.on_refused(UNKNOWN, "tls")
            await self.push(self.state.encryption_required())
        else:
            credentials = await self._credentials(mechanism, initial.strip())
            if credentials is not None:
                await self.push(await self._check_login(*credentials))

    async def _credentials(self, mechanism: str, initial: str) -> tuple[str, bytes] | None:
        """Login and password, or None after replying (malformed, aborted, or clear text not allowed).

        With LOGIN the device is known before its password is asked for: one that must use TLS is
        refused before it sends the password in clear text.
        """

        async def decode(value: str, challenge: str) -> bytes | None:
            if not value:
                answer = await self._challenge(challenge)
                if answer is None:
                    return None
                value = answer
                if value == "*":
                    await self.push("501 5.7.0 Authentication aborted")
                    return None
            try:
                return b"" if value == "=" else b64decode(value, validate=True)  # "=": empty (RFC 4954)
            except binascii.Error:
                await self.push("501 5.5.2 Cannot decode base64")
                return None

        if mechanism == "PLAIN":
            blob = await decode(initial, "")
            parts = [] if blob is None else blob.split(b"\0")
            if blob is not None and len(parts) != 3:
                await self.push("501 5.5.2 Cannot split the PLAIN credentials")
            if len(parts) != 3:
                return None
            if parts[0] not in (b"", parts[1]):  # acting as another user (RFC 4616 authzid): not supported
                await self.push("535 5.7.8 The authorization identity must be empty or the user name")
                return None
            login, password = parts[1].decode("utf-8", errors="replace"), parts[2]
        else:
            name = await decode(initial, self.AuthLoginUsernameChallenge)
            if name is None:
                return None
            login = name.decode("utf-8", errors="replace")
            if refusal := self._clear_text_refusal(login):
                await self.push(refusal)
                return None
            secret = await decode("", self.AuthLoginPasswordChallenge)
            if secret is None:
                return None
            password = secret
        if refusal := self._clear_text_refusal(login):
            await self.push(refusal)
            return None
        return login, password

    async def _challenge(self, prompt: str) -> str | None:
        """Send a 334 challenge; the answer, or None after replying to an over-long one (read to its end,
        so the rest of the line is not taken for commands)."""
        await self.push("334 " + b64encode(prompt.encode()).decode())
        too_long = False
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as err:
                await self._reader.read(err.consumed)
                too_long = True
                continue
            if too_long:
                await self.push("500 5.5.6 Authentication exchange line is too long")
                return None
            return line.strip().decode("ascii", errors="replace")

    def _clear_text_refusal(self, login: str) -> str | None:
        device = self.state.settings.devices.get(login)
        if self.secure or (device is not None and device.insecure_auth):
            return None
        self.state.metrics.on_refused(login if device else UNKNOWN, "tls")
        return self.state.encryption_required()

    async def _check_login(self, login: str, password: bytes) -> str:
        assert self.session is not None
        state, peer = self.state, self.peer_ip
        device = state.settings.devices.get(login)
        # One check at a time per client, the lockout looked at again just before: parallel sessions
        # cannot get more attempts than the lockout allows.
        async with state.lockout.turn(peer):
            if refusal := state.lockout.refuse(peer):
                state.metrics.on_refused(UNKNOWN, "lockout")
                return refusal
            verified = await asyncio.to_thread(state.store.verify, login, password)
            if not verified:
                state.metrics.on_auth_failure(login if device else UNKNOWN)
                # An unknown name is not logged: it may be a password typed into the wrong field.
                _LOGGER.warning("failed SMTP login as %s from %s", repr(login) if device else "an unknown user", peer)
                if state.lockout.failed(peer):
                    _LOGGER.warning("%s locked out after %d failed logins", peer, state.lockout.attempts)
                return "535 5.7.8 Authentication credentials invalid"
            state.lockout.succeeded(peer)
        if device is None:
            device = DevicePolicy(name=login, recipients=())  # no policy: refused at MAIL, with the reason
        if device.networks and not in_networks(peer, device.networks):
            state.metrics.on_refused(login, "network")
            return f"535 5.7.1 Device {login!r} may not log in from {peer}"
        self.session.authenticated = True
        self.device = device
        state.metrics.on_login(login)
        state.touch(login, peer)
        return "235 2.7.0 Authentication successful"

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = await self._read_data()
        if data is None:
            assert self.device is not None
            self.state.metrics.on_refused(self.device.name, "size")
            await self.push(f"552 5.3.4 Message too big: at most {self.data_size_limit:,} bytes")
        else:
            self.envelope.content = self.envelope.original_content = data
            self.in_data = True
            try:
                status = await self._call_handler_hook("DATA")
            finally:
                self.in_data = False
            await self.push(status)
        self._set_post_data_state()  # type: ignore[no-untyped-call]

    async def _read_data(self) -> bytes | None:
        """The message, dot-unstuffed; None when it went over the size limit (read to the end regardless).

        The first line tells how the client ends lines. One that writes CRLF ends its data with CRLF.CRLF
        only: a bare "\\n.\\n", "\\n.\\r\\n" or "\\r\\n.\\n" in its mail is text, so nothing inside a mail can
        end it early and be read as commands (SMTP smuggling). One that writes bare LF (old printers) may
        end with either.
        """
        data = bytearray()
        limit = self.data_size_limit or 0
        line_start, too_big = True, False
        crlf: bool | None = None  # how the client ends its lines, from its first one
        ending = b"\r\n"  # the last two bytes received (a long line comes in pieces)
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as err:  # a line longer than the reader's buffer: take it in pieces
                line = await self._reader.read(err.consumed)
                complete = False
            except asyncio.CancelledError:
                self._writer.close()
                raise
            else:
                complete = True
            self._reset_timeout()  # the timeout is per line of data (RFC 5321 4.5.3.2.6), not for all of it
            dot = line_start and line in (b".\r\n", b".\n")
            if dot and (not crlf or (line == b".\r\n" and ending == b"\r\n")):
                return None if too_big else bytes(data)
            ending = (ending + line)[-2:]
            if complete and crlf is None:
                crlf = ending == b"\r\n"
            if line_start and line.startswith(b"."):
                line = line[1:]
            line_start = complete
            if not too_big:
                data += line
                too_big = bool(limit) and len(data) > limit
                if too_big:
                    data.clear()


class RelayHandler:
    """aiosmtpd handler hooks: the relay's policy at EHLO, MAIL, RCPT and DATA."""

    def __init__(self, state: RelayState) -> None:
        self.state = state

    async def handle_EHLO(
        self, server: RelaySMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # Clear-text AUTH is advertised on the plain port only (when a device may use it): on 587 a client
        # must STARTTLS first. An old device that sends AUTH without looking is still served.
        if not server.secure and not (server.listener.name == "plain" and self.state.insecure_auth_allowed):
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    def _refuse(self, device: str, reason: str, reply: str) -> str:
        self.state.metrics.on_refused(device, reason)
        return reply

    async def handle_MAIL(
        self, server: RelaySMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        state = self.state
        if server.device is None:
            server.device = state.device_by_network(server.peer_ip)
        device = server.device
        if device is None:
            return self._refuse(UNKNOWN, "auth", "530 5.7.0 Authentication required")
        if device.name not in state.settings.devices:
            return self._refuse(
                device.name,
                "policy",
                f"550 5.7.1 Device {device.name!r} has no policy in the smtp: devices section of the config",
            )
        device = server.device = state.settings.devices[device.name]  # the current policy (after a reload)
        if not deliverable(address):  # it becomes the Reply-To of a mail without a From header
            return self._refuse(
                device.name, "sender", f"553 5.1.7 <{printable(address)}> is not an address ACS accepts"
            )
        if refusal := refuse_sender(device, address):
            return self._refuse(device.name, "sender", refusal)
        if refusal := state.rates.refuse(device):
            return self._refuse(device.name, "rate", refusal)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: RelaySMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        device = server.device
        assert device is not None  # aiosmtpd refuses RCPT before a successful MAIL
        if not deliverable(address):
            return self._refuse(
                device.name, "recipient", f"553 5.1.3 <{printable(address)}> is not an address ACS accepts"
            )
        if refusal := refuse_recipient(device, address):
            return self._refuse(device.name, "recipient", refusal)
        # One place is kept for the relay's own address, the To of a mail whose recipients are all hidden.
        limit = max(1, self.state.limits.max_recipients - 1)
        if len(envelope.rcpt_tos) >= limit:
            return self._refuse(device.name, "recipient", f"452 4.5.3 Too many recipients: at most {limit} per mail")
        if address.lower() not in (a.lower() for a in envelope.rcpt_tos):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: RelaySMTP, session: Session, envelope: Envelope) -> str:
        """250 only once the outbox has the mail on disk; 4xx when it could not be stored."""
        state, device = self.state, server.device
        assert device is not None and envelope.mail_from is not None
        raw = envelope.original_content or b""
        try:
            message = await asyncio.to_thread(
                to_email_message,
                raw,
                mail_from=envelope.mail_from,
                rcpt_tos=envelope.rcpt_tos,
                sender=device.sender or state.sender,
                device=device.name,
                display_name=device.display_name,
                senders=device.senders,
                limits=state.limits,
            )
        except ValidationError as err:
            if err.field == "size":
                return self._refuse(device.name, "size", f"552 5.3.4 Message too big for ACS Email: {err.reason}")
            if err.field in ("from", "reply-to"):
                header = "From" if err.field == "from" else "Reply-To"
                return self._refuse(device.name, "sender", f"550 5.7.1 Header {header} {err.reason}")
            return self._refuse(device.name, "content", f"554 5.6.0 Cannot relay this mail: {err}")
        except Exception:  # a bug of ours or of the email package: the device must not retry it forever
            _LOGGER.exception("could not convert a mail from %s", device.name)
            return self._refuse(device.name, "content", "554 5.6.0 Cannot convert this mail (see the bridge log)")
        if refusal := state.rates.refuse(device):  # several mails in one session
            return self._refuse(device.name, "rate", refusal)
        # Counted before the await, so concurrent sessions of one device cannot all pass the check.
        slot = state.rates.record(device)
        try:
            message_id = await state.engine.submit(message, source=f"smtp:{device.name}")
        except OutboxFullError:
            state.rates.forget(device, slot)
            return self._refuse(device.name, "outbox", "452 4.3.1 The relay's outbox is full; try again later")
        except (AcsEmailError, OSError, sqlite3.Error) as err:
            state.rates.forget(device, slot)
            _LOGGER.error("could not queue a mail from %s: %s", device.name, err)
            return self._refuse(device.name, "storage", "451 4.3.0 Could not store the mail; try again later")
        state.metrics.on_accepted(device.name, len(raw))
        state.touch(device.name, server.peer_ip, accepted=1)
        if state.on_accepted is not None:
            state.on_accepted(device.name)
        _LOGGER.info("queued %s from %s (%d bytes)", message_id, device.name, len(raw))
        return f"250 2.0.0 Queued as {message_id}"
