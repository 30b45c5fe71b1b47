"""No open relay: address patterns, per-device sending rates and the brute-force lockout.

Each check returns the SMTP reply to give, or None when the action is allowed, so every refusal is a
clear reply: 5xx when retrying cannot help, 4xx when it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable

from acs_email_core.errors import ValidationError
from acs_email_core.message import EmailAddress

from .config import DevicePolicy, Network

Clock = Callable[[], float]
_USER_PART = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+")  # what ACS takes before the @: RFC 5322 atext and dots


def deliverable(address: str) -> bool:
    """True when ACS will take the address: refused later, it would be a dead letter after the device's 250.

    The core's check, and a user part of letters, digits and RFC 5322 symbols only (no invalid UTF-8 from
    8-bit bytes, no U+FFFD, no control characters).
    """
    try:
        EmailAddress(address)
    except ValidationError:
        return False
    return _USER_PART.fullmatch(address.rpartition("@")[0]) is not None


def printable(text: str) -> str:
    """Client text fit for a reply or a log line (invalid UTF-8 shown escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _ascii_domain(address: str) -> str:
    """The address with its domain in lowercase ASCII (IDNA), so both spellings of a domain match."""
    local, at, domain = address.lower().rpartition("@")
    with contextlib.suppress(UnicodeError):  # not a valid internationalised name: compared as written
        domain = domain.encode("idna").decode("ascii")
    return f"{local}{at}{domain}"


def matches(address: str, patterns: Iterable[str]) -> bool:
    """``*``, an exact address, a domain, or ``*.domain`` (its subdomains), case-insensitively; a domain
    may be written in Unicode or in its ``xn--`` form on either side."""
    address = _ascii_domain(address)
    domain = address.rpartition("@")[2]
    for written in patterns:
        pattern = _ascii_domain(written) if "@" in written else _ascii_domain(f"@{written}")[1:]
        if pattern in ("*", address, domain):
            return True
        if pattern.startswith("*.") and domain.endswith(pattern[1:]):
            return True
    return False


def in_networks(peer: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def refuse_sender(device: DevicePolicy, address: str) -> str | None:
    if matches(address, device.senders):
        return None
    return f"553 5.7.1 Sender <{address}> is not allowed for device {device.name!r}"


def refuse_recipient(device: DevicePolicy, address: str) -> str | None:
    """Recipients the policy names; ``user%host@domain`` and ``host!user@domain`` only when named exactly.

    Such local parts ask the allowed domain's server to relay further (the percent hack, bang paths):
    refused like Postfix does for untrusted clients, so an allowed domain is not a way out.
    """
    local = address.rpartition("@")[0]
    if ("%" in local or "!" in local) and address.lower() not in device.recipients:
        return f"550 5.7.1 Sender-specified routing in <{address}> is not allowed (no % or ! in the user part)"
    if matches(address, device.recipients):
        return None
    return f"550 5.7.1 Relaying to <{address}> is not allowed for device {device.name!r}"


class RateLimiter:
    """Sliding one-minute and one-hour windows of accepted mails, per device (in memory)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._accepted: dict[str, deque[float]] = {}

    def refuse(self, device: DevicePolicy) -> str | None:
        now = self._clock()
        times = self._accepted.setdefault(device.name, deque())
        while times and times[0] <= now - 3600:
            times.popleft()
        last_minute = sum(1 for t in times if t > now - 60)
        for count, limit, window, label in (
            (last_minute, device.per_minute, 60.0, "minute"),
            (len(times), device.per_hour, 3600.0, "hour"),
        ):
            if count >= limit:
                oldest = next(t for t in times if t > now - window)
                wait = max(1, round(oldest + window - now))
                return (
                    f"451 4.7.1 Device {device.name!r} sent {limit} mails in the last {label}, its limit; "
                    f"try again in {wait} s"
                )
        return None

    def record(self, device: DevicePolicy) -> float:
        """Count one mail now; returns its slot for ``forget``."""
        now = self._clock()
        self._accepted.setdefault(device.name, deque()).append(now)
        return now

    def forget(self, device: DevicePolicy, slot: float) -> None:
        """Un-count a mail that could not be queued after all."""
        with contextlib.suppress(KeyError, ValueError):
            self._accepted[device.name].remove(slot)


def client_key(peer: str) -> str:
    """Who a lockout applies to: the IPv4 address, or the IPv6 /64 (one host may use any address of it)."""
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return peer
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Lockout:
    """After ``attempts`` failed logins from one client within ``window`` s, refuse AUTH for ``duration`` s.

    Per client (address, or IPv6 /64), not per device: failures from elsewhere cannot lock a printer out.
    """

    def __init__(self, attempts: int, window: float, duration: float, clock: Clock = time.monotonic) -> None:
        self.attempts, self.window, self.duration = attempts, window, duration
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # per client: its lock and how many wait

    @contextlib.asynccontextmanager
    async def turn(self, peer: str) -> AsyncIterator[None]:
        """One login check at a time per client: parallel sessions cannot outrun the lockout."""
        key = client_key(peer)
        lock, users = self._turns.get(key, (asyncio.Lock(), 0))
        self._turns[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[key]
            if users == 1:
                del self._turns[key]
            else:
                self._turns[key] = (lock, users - 1)

    def refuse(self, peer: str) -> str | None:
        until = self._locked_until.get(client_key(peer))
        now = self._clock()
        if until is None:
            return None
        if until <= now:
            del self._locked_until[client_key(peer)]
            return None
        return f"454 4.7.0 Too many failed logins from {peer}; try again in {max(1, round(until - now))} s"

    def failed(self, peer: str) -> bool:
        """Count a failure; True when it locks the address out."""
        now, peer = self._clock(), client_key(peer)
        failures = self._failures.setdefault(peer, deque())
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) >= self.attempts:
            self._locked_until[peer] = now + self.duration
            failures.clear()
            return True
        return False

    def succeeded(self, peer: str) -> None:
        self._failures.pop(client_key(peer), None)
