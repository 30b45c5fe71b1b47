"""Device accounts: salted scrypt hashes and last activity, in a small SQLite file beside the outbox.

The password is generated here and shown once; only its hash is kept. Every method is blocking (SQLite,
scrypt): the relay calls them through ``asyncio.to_thread``. Each call opens its own connection so the CLI
can add a device while the relay runs, and the relay sees it at the next login.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# scrypt cost: about 50 ms and 16 MiB per check on a small CPU; parameters are stored with each hash.
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
_ALPHABET = string.ascii_letters + string.digits  # printer front panels and web UIs choke on symbols
PASSWORD_LENGTH = 24

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    created_at REAL NOT NULL,
    last_seen REAL,
    last_peer TEXT,
    accepted INTEGER NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True)
class DeviceRecord:
    """What ``smtp devices`` shows about one device."""

    name: str
    has_password: bool
    created_at: float
    last_seen: float | None
    last_peer: str | None
    accepted: int


def _hash(password: bytes, salt: bytes, n: int = _N, r: int = _R, p: int = _P) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=64 * 1024 * 1024)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64 parts)."""
    salt = os.urandom(16)
    digest = _hash(password.encode(), salt)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(stored: str | None, password: bytes) -> bool:
    """Constant-time check; an unknown device costs the same scrypt as a known one (no user oracle)."""
    try:
        kind, n, r, p, salt, digest = (stored or "").split("$")
        if kind != "scrypt":
            raise ValueError(kind)
        expected = base64.b64decode(digest)
        actual = _hash(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        _hash(password, b"\0" * 16)
        return False
    return hmac.compare_digest(expected, actual)


def new_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


class DeviceStore:
    """The accounts file; blocking methods, safe to call from several threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            if new:
                self.path.chmod(0o600)  # hashes only, but nobody else needs to read them
            conn.execute(_SCHEMA)
            with conn:
                yield conn
        finally:
            conn.close()

    def add(self, name: str, *, replace: bool = False) -> str:
        """Create the account (or give it a new password with ``replace``); returns the password, once."""
        password = new_password()
        hashed = hash_password(password)
        with self._db() as db:
            row = db.execute("SELECT password_hash FROM devices WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is not None and not replace:
                raise KeyError(name)
            db.execute(
                "INSERT INTO devices (name, password_hash, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
                (name, hashed, time.time()),
            )
        return password

    def remove(self, name: str) -> bool:
        with self._db() as db:
            return db.execute("DELETE FROM devices WHERE name = ?", (name,)).rowcount > 0

    def verify(self, name: str, password: bytes) -> bool:
        with self._db() as db:
            row = db.execute("SELECT password_hash FROM devices WHERE name = ?", (name,)).fetchone()
        return check_password(row[0] if row else None, password)

    def touch(self, name: str, peer: str, accepted: int = 0) -> None:
        """Record activity (a login or accepted mails); devices without a password get a row here too."""
        now = time.time()
        with self._db() as db:
            db.execute(
                "INSERT INTO devices (name, created_at, last_seen, last_peer, accepted) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen, last_peer = excluded.last_peer, "
                "accepted = accepted + excluded.accepted",
                (name, now, now, peer, accepted),
            )

    def list(self) -> list[DeviceRecord]:
        with self._db() as db:
            rows = db.execute(
                "SELECT name, password_hash IS NOT NULL, created_at, last_seen, last_peer, accepted "
                "FROM devices ORDER BY name"
            ).fetchall()
        return [DeviceRecord(r[0], bool(r[1]), r[2], r[3], r[4], r[5]) for r in rows]
