"""The SMTP relay as a bridge source: listeners on the event loop, feeding the engine's outbox."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from acs_email_core.engine import Engine
from acs_email_core.errors import ConfigError
from acs_email_core.message import MessageLimits

from .accounts import DeviceStore
from .config import DevicePolicy, SmtpSettings
from .metrics import UNKNOWN, RelayMetrics
from .policy import Clock, Lockout, RateLimiter, client_key, in_networks
from .server import Listener, RelaySMTP
from .smtps import ImplicitTls
from .tls import Certificate, load_certificate, server_context

_LOGGER = logging.getLogger(__name__)
STOP_GRACE = 10.0  # seconds a mail being queued at stop may take before its connection is closed

# Settings that need the listeners rebuilt on reload; the rest (devices, lockout…) apply to the next command.
_LISTENER_FIELDS = (
    "hostname", "listen", "submission_port", "smtps_port", "plain_port", "plain_networks",
    "cert_file", "key_file", "tls_dir", "min_tls_version", "max_message_size", "timeout",
)  # fmt: skip


@dataclass
class RelayState:
    """What every connection shares; replaced field by field on reload."""

    settings: SmtpSettings
    engine: Engine
    store: DeviceStore
    metrics: RelayMetrics
    lockout: Lockout
    rates: RateLimiter
    on_accepted: Callable[[str], None] | None = None  # called with the device name after each 250
    sessions: set[RelaySMTP] = field(default_factory=set)
    handshakes: dict[asyncio.Transport, str] = field(default_factory=dict)  # port 465, before TLS: peer address
    ports: dict[str, int] = field(default_factory=dict)  # listener name → the port it listens on
    _writes: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def sender(self) -> str:
        return self.engine.settings.sender

    @property
    def limits(self) -> MessageLimits:
        return self.engine.settings.limits

    def encryption_required(self) -> str:
        """The 538 reply, naming the ways this relay offers TLS (not port numbers: Docker or NAT may map them)."""
        ways = {"submission": "STARTTLS on the submission port", "smtps": "the implicit-TLS (SMTPS) port"}
        offered = [way for name, way in ways.items() if name in self.ports]
        return "538 5.7.11 Encryption required" + (f": use {' or '.join(offered)}" if offered else "")

    @property
    def insecure_auth_allowed(self) -> bool:
        """Offer AUTH without TLS only when some device is allowed to use it."""
        return any(d.insecure_auth for d in self.settings.devices.values())

    def sessions_refusal(self, peer: str) -> str | None:
        """A 421 reply over the session limits (handshakes on port 465 count too), else None.

        Idle or silent connections must not use up the bridge's file descriptors (MQTT, ACS and the outbox
        need some too).
        """
        settings, sessions = self.settings, self.sessions
        if len(sessions) + len(self.handshakes) >= settings.max_sessions:
            return f"421 4.7.0 {settings.max_sessions} sessions are open, the relay's limit; try again later"
        client = client_key(peer)
        peers = [s.peer_ip for s in sessions] + list(self.handshakes.values())
        if sum(1 for p in peers if client_key(p) == client) >= settings.max_sessions_per_address:
            return (
                f"421 4.7.0 {settings.max_sessions_per_address} sessions from {peer} are open, "
                "the limit per address; try again later"
            )
        return None

    def tls_failed(self, peer: str, error: BaseException | None) -> None:
        """A failed TLS handshake: one warning line, with the fix when the device's TLS is too old."""
        self.metrics.on_refused(UNKNOWN, "tls")
        reason = getattr(error, "reason", None) or str(error)
        hint = ""
        if any(word in str(reason).upper() for word in ("PROTOCOL", "VERSION", "CIPHER")):
            hint = '; a device that only speaks TLS 1.0 or 1.1 needs min_tls_version: "1.0" in the smtp section'
        _LOGGER.warning("TLS handshake with %s failed: %s%s", peer, reason, hint)

    def device_by_network(self, peer: str) -> DevicePolicy | None:
        """The device that sends without AUTH from this address, if any."""
        for device in self.settings.devices.values():
            if device.auth == "none" and in_networks(peer, device.networks):
                return device
        return None

    def touch(self, name: str, peer: str, accepted: int = 0) -> None:
        """Record last activity in the accounts file without delaying the SMTP reply."""
        task = asyncio.create_task(self._touch(name, peer, accepted))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _touch(self, name: str, peer: str, accepted: int) -> None:
        try:
            await asyncio.to_thread(self.store.touch, name, peer, accepted)
        except Exception as err:
            _LOGGER.warning("could not record SMTP activity of %s: %s", name, err)

    async def flush(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes)


class SmtpRelay:
    """Start, stop and reload the relay; ``ports`` has the bound ports (useful with port 0)."""

    def __init__(
        self,
        settings: SmtpSettings,
        engine: Engine,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock = time.monotonic,
        on_accepted: Callable[[str], None] | None = None,
    ) -> None:
        self.state = RelayState(
            settings=settings,
            engine=engine,
            store=DeviceStore(settings.accounts_path),
            metrics=RelayMetrics(registry),
            lockout=Lockout(settings.lockout_attempts, settings.lockout_window, settings.lockout_duration, clock),
            rates=RateLimiter(clock),
            on_accepted=on_accepted,
        )
        self.certificate: Certificate | None = None
        self._servers: list[asyncio.Server] = []
        self._retired: list[asyncio.Server] = []  # closed by a reload; their sessions may still be running

    @property
    def settings(self) -> SmtpSettings:
        return self.state.settings

    @property
    def metrics(self) -> RelayMetrics:
        return self.state.metrics

    @property
    def ports(self) -> dict[str, int]:
        """Listener name → port, while listening."""
        return self.state.ports

    async def start(self) -> None:
        settings = self.settings
        self.certificate = await asyncio.to_thread(load_certificate, settings)
        context = await asyncio.to_thread(server_context, self.certificate, settings.min_tls_version)
        _LOGGER.info(
            "SMTP relay certificate %s%s, SHA-256 fingerprint %s",
            self.certificate.cert_file,
            " (generated)" if self.certificate.generated else "",
            self.certificate.sha256,
        )
        listeners = [
            (settings.submission_port, Listener("submission", starttls=True), None),
            (settings.smtps_port, Listener("smtps", implicit_tls=True), context),
            (settings.plain_port, Listener("plain", networks=settings.plain_networks), None),
        ]
        try:
            for port, listener, implicit in listeners:
                if port is not None:
                    await self._listen(port, listener, context if listener.starttls else None, implicit)
        except BaseException:
            self._stop_listening()
            raise
        _LOGGER.info(
            "SMTP relay listening on %s: %s",
            settings.listen,
            ", ".join(f"{name} {port}" for name, port in self.ports.items()),
        )

    async def _listen(
        self, port: int, listener: Listener, starttls: ssl.SSLContext | None, implicit: ssl.SSLContext | None
    ) -> None:
        settings, loop = self.settings, asyncio.get_running_loop()

        def factory() -> RelaySMTP:
            kwargs: dict[str, Any] = {
                "hostname": settings.hostname,
                "ident": "acs_email relay",
                "tls_context": starttls,
                "data_size_limit": settings.max_message_size,
                "enable_SMTPUTF8": True,
                "auth_require_tls": False,  # decided per device by RelaySMTP
                "timeout": settings.timeout,
                "loop": loop,
            }
            return RelaySMTP(self.state, listener, **kwargs)

        try:
            if implicit is None:
                server = await loop.create_server(factory, settings.listen, port)
            else:
                context = implicit
                server = await loop.create_server(
                    lambda: ImplicitTls(self.state, factory, context), settings.listen, port
                )
        except OSError as err:
            raise OSError(_listen_error(f"smtp.{listener.name}_port", settings.listen, port, err)) from None
        self._servers.append(server)
        self.ports[listener.name] = server.sockets[0].getsockname()[1]

    def _stop_listening(self) -> None:
        """Close the listening sockets without waiting: sessions on them go on until they end or ``stop``.

        (Since Python 3.12 ``Server.wait_closed`` also waits for every open connection: a reload awaiting
        it would hang as long as a device stays connected.)
        """
        for server in self._servers:
            server.close()
        self._retired.extend(self._servers)
        self._servers.clear()
        self.ports.clear()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop listening, let mails being queued finish (up to ``grace`` s), then close every connection."""
        self._stop_listening()
        deadline = time.monotonic() + grace
        while any(s.in_data for s in self.state.sessions) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for session in list(self.state.sessions):
            if session.transport is not None:
                session.transport.close()
        for transport in list(self.state.handshakes):
            transport.close()
        for server in self._retired:
            await server.wait_closed()
        self._retired.clear()
        await self.state.flush()

    async def reload(self, settings: SmtpSettings) -> None:
        """Apply a new ``smtp:`` section; listeners are rebuilt only when their settings changed.

        If the new listeners cannot open (a port in use), the old section is put back, listeners included, and
        the error raised: the relay never ends up listening on nothing.
        """
        old, bound = self.settings, dict(self.ports)
        self._apply(settings)
        if any(getattr(old, f) != getattr(settings, f) for f in _LISTENER_FIELDS):
            self._stop_listening()  # sessions already open finish on the old listeners
            try:
                await self.start()
            except (OSError, ConfigError):
                # The very ports it had (a configured 0 would otherwise pick new ones).
                self._apply(
                    dataclasses.replace(
                        old,
                        submission_port=bound.get("submission", old.submission_port),
                        smtps_port=bound.get("smtps", old.smtps_port),
                        plain_port=bound.get("plain", old.plain_port),
                    )
                )
                await self.start()
                raise

    def _apply(self, settings: SmtpSettings) -> None:
        self.state.settings = settings
        self.state.store = DeviceStore(settings.accounts_path)
        lockout = self.state.lockout
        lockout.attempts, lockout.window, lockout.duration = (
            settings.lockout_attempts,
            settings.lockout_window,
            settings.lockout_duration,
        )

    def device_stats(self) -> dict[str, dict[str, Any]]:
        """Per-device counters for the HA discovery state (every configured device, even idle ones)."""
        stats = self.metrics.snapshot()
        for name in self.settings.devices:
            stats.setdefault(name, {"accepted": 0, "refused": 0, "bytes": 0, "auth_failures": 0, "last_seen": None})
        return dict(sorted(stats.items()))


def _listen_error(key: str, host: str, port: int, err: OSError) -> str:
    """Which setting to change, and to what, when a port cannot be opened."""
    hint = ""
    if isinstance(err, socket.gaierror) or err.errno == errno.EADDRNOTAVAIL:
        key, hint = "smtp.listen", "; give an address of this host, or 0.0.0.0 for all of them"
    elif err.errno == errno.EACCES and port < 1024:
        hint = "; ports below 1024 need root or CAP_NET_BIND_SERVICE: set a port above 1024 (e.g. 2525) or null"
    elif err.errno == errno.EADDRINUSE:
        hint = "; another program (or another bridge) listens there: set another port, or null to turn it off"
    # The OS's words (asyncio's own text repeats the address); a name lookup's errno is negative, its text is right
    reason = os.strerror(err.errno) if err.errno and err.errno > 0 else (err.strerror or str(err))
    return f"{key}: cannot listen on {host}:{port}: {reason}{hint}"
