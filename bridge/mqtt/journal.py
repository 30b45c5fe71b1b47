"""The MQTT source's own SQLite file: event ids that survive redelivery, failed events, pending send results.

Why a journal: QoS 1 is at least once. If the bridge dies after the outbox commit but before the PUBACK, the
broker sends the message again (flagged DUP) when the bridge reconnects. Each QoS 1 event gets a row here,
committed *before* its mails reach the outbox; mail ids are derived from the row's event id, so a
redelivery matched to its row yields the same ids and the outbox stores them once (INSERT OR IGNORE).

A row stays until its PUBACK is known to have reached the broker: sent on a connection that was still up
``confirm_after`` seconds later. Only DUP-flagged messages are matched, only against such unconfirmed rows,
oldest first, each row at most once per connection. Rows whose connection dropped stay for ``keep`` seconds.
All SQLite work runs on one worker thread; the event loop never waits on disk.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..sqlite_thread import SqliteThread

KEEP_PAYLOAD = 256 * 1024  # bytes of a failed event's payload kept for inspection

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        digest BLOB NOT NULL,
        received_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_digest ON events (digest, seq)",
    """CREATE TABLE IF NOT EXISTS failed (
        event_id TEXT PRIMARY KEY,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        route TEXT,
        received_at REAL NOT NULL,
        qos INTEGER NOT NULL,
        retain INTEGER NOT NULL,
        payload BLOB NOT NULL,  -- the first KEEP_PAYLOAD bytes
        size INTEGER NOT NULL  -- of the whole payload
    )""",
    """CREATE TABLE IF NOT EXISTS results (
        message_id TEXT PRIMARY KEY,
        topic TEXT NOT NULL,
        request_id TEXT,
        correlation BLOB,
        created_at REAL NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def digest(topic: str, payload: bytes) -> bytes:
    """What identifies a redelivered message: its topic and payload."""
    return hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Incoming:
    """The part of a QoS 1 message the journal needs."""

    digest: bytes
    duplicate: bool
    received_at: float
    epoch: int  # the connection it arrived on


@dataclass(frozen=True, slots=True)
class Assigned:
    """An event's id, and its journal row (what confirming its acknowledgement deletes)."""

    event_id: str
    seq: int
    redelivered: bool  # matched to a row of an earlier delivery


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """An event kept for inspection."""

    event_id: str
    topic: str
    reason: str
    route: str | None
    received_at: float
    qos: int
    retain: bool
    payload: bytes  # as kept: the first KEEP_PAYLOAD bytes
    size: int = 0  # of the whole payload (0: len(payload))


@dataclass(frozen=True, slots=True)
class PendingResult:
    """A send-topic request whose final state (sent/dead) is still to be published."""

    message_id: str
    topic: str
    request_id: str | None
    correlation: bytes | None


class Journal(SqliteThread):
    """See the module docstring; ``open`` before use, ``close`` after."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", keep: float = 7 * 86400.0) -> None:
        super().__init__(path, "journal", synchronous=synchronous)
        self._keep = keep
        self._matched: dict[int, set[int]] = {}  # per connection epoch: rows already matched on it

    # ---- lifecycle -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        self._start_thread()
        await self._call(self._open)

    def _open(self) -> None:
        conn = self._connect()
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("DELETE FROM events WHERE received_at < ?", (time.time() - self._keep,))

    async def close(self) -> None:
        await self._stop_thread()

    # ---- events --------------------------------------------------------------------------------------------
    async def assign(self, items: Sequence[Incoming], confirm_upto: int | None) -> list[Assigned]:
        """Event ids for a batch of QoS 1 messages, durable on return; also forgets confirmed rows."""
        return await self._call(self._assign, items, confirm_upto)

    def _assign(self, items: Sequence[Incoming], confirm_upto: int | None) -> list[Assigned]:
        if items:
            newest = max(item.epoch for item in items)
            self._matched = {e: m for e, m in self._matched.items() if e >= newest - 1}
        conn = self._db
        results: list[Assigned | None] = [None] * len(items)
        rows: list[tuple[int, str, bytes, float]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            if confirm_upto is not None:
                conn.execute("DELETE FROM events WHERE seq <= ?", (confirm_upto,))
            for index, item in enumerate(items):
                if item.duplicate:
                    found = self._match(conn, item.digest, self._matched.setdefault(item.epoch, set()))
                    if found is not None:
                        results[index] = found
                        continue
                rows.append((index, str(uuid.uuid4()), item.digest, item.received_at))
            if rows:
                first = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events").fetchone()[0]
                conn.executemany(
                    "INSERT INTO events (seq, event_id, digest, received_at) VALUES (?, ?, ?, ?)",
                    [(first + n, event_id, d, at) for n, (_i, event_id, d, at) in enumerate(rows)],
                )
                for n, (index, event_id, _d, _at) in enumerate(rows):
                    results[index] = Assigned(event_id, first + n, redelivered=False)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return [r for r in results if r is not None]

    def _match(self, conn: sqlite3.Connection, key: bytes, matched: set[int]) -> Assigned | None:
        for seq, event_id in conn.execute("SELECT seq, event_id FROM events WHERE digest = ? ORDER BY seq", (key,)):
            if seq not in matched:
                matched.add(seq)
                return Assigned(event_id, seq, redelivered=True)
        return None

    async def confirm(self, upto: int) -> None:
        """Forget rows whose acknowledgement reached the broker (a clean stop)."""
        await self._call(self._confirm, upto)

    def _confirm(self, upto: int) -> None:
        self._db.execute("DELETE FROM events WHERE seq <= ?", (upto,))

    async def pending_events(self) -> int:
        """Rows not yet confirmed (for tests and diagnostics)."""
        return await self._call(lambda: int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]))

    # ---- failed events and send results --------------------------------------------------------------------
    async def record(self, failed: Sequence[FailedEvent], results: Sequence[PendingResult], keep_failed: int) -> None:
        """Keep failed events (the newest ``keep_failed``) and pending send results, durably."""
        if failed or results:
            await self._call(self._record, failed, results, keep_failed)

    def _record(self, failed: Sequence[FailedEvent], results: Sequence[PendingResult], keep_failed: int) -> None:
        conn = self._db
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR IGNORE INTO failed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.event_id,
                        f.topic,
                        f.reason,
                        f.route,
                        f.received_at,
                        f.qos,
                        int(f.retain),
                        f.payload[:KEEP_PAYLOAD],
                        f.size or len(f.payload),
                    )
                    for f in failed
                ],
            )
            if failed:
                conn.execute(
                    "DELETE FROM failed WHERE rowid NOT IN "
                    "(SELECT rowid FROM failed ORDER BY received_at DESC LIMIT ?)",
                    (keep_failed,),
                )
            conn.executemany(
                "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?)",
                [(r.message_id, r.topic, r.request_id, r.correlation, now) for r in results],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def failed(self, limit: int = 100) -> list[FailedEvent]:
        """The newest failed events, newest first."""

        def read() -> list[FailedEvent]:
            rows = self._db.execute(
                "SELECT event_id, topic, reason, route, received_at, qos, retain, payload, size FROM failed "
                "ORDER BY received_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [FailedEvent(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), bytes(r[7]), r[8]) for r in rows]

        return await self._call(read)

    async def pending_results(self, *, after: int = 0, limit: int = 1000) -> list[tuple[int, PendingResult]]:
        """Send requests whose final state is not published yet, oldest first, with their rowid (a cursor)."""

        def read() -> list[tuple[int, PendingResult]]:
            rows = self._db.execute(
                "SELECT rowid, message_id, topic, request_id, correlation FROM results WHERE rowid > ? "
                "ORDER BY rowid LIMIT ?",
                (after, limit),
            ).fetchall()
            return [(r[0], PendingResult(r[1], r[2], r[3], None if r[4] is None else bytes(r[4]))) for r in rows]

        return await self._call(read)

    async def result_published(self, message_id: str) -> None:
        await self._call(lambda: self._db.execute("DELETE FROM results WHERE message_id = ?", (message_id,)))

    # ---- small state ---------------------------------------------------------------------------------------
    async def get_meta(self, key: str) -> str | None:
        def read() -> str | None:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._call(read)

    async def set_meta(self, key: str, value: str) -> None:
        await self._call(
            lambda: self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        )
