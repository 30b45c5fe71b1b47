"""Durable outbox on SQLite: a message is acknowledged to its source only once it is on disk.

Rows move ``queued → sending → sent`` (or ``dead``, with the reason). All SQLite work runs on one
dedicated worker thread that owns the only connection, so the event loop (Home Assistant's, or the
bridge's) never waits on disk. Concurrent enqueues are *group-committed*: callers that arrive while a
commit is in progress are written together in the next transaction, each returning only once its own row
is committed — many producers then share one fsync instead of queueing for one each.

Crash safety: before a POST starts, its start time is committed on the message row together with
``verify``, so whatever happens next (a crash, a cancel, a timeout) the dispatcher asks ACS for the
operation status (the message id is the operation id) before any resend, and resends only once the
original request can no longer be in progress. A row still in ``sending`` when the outbox is opened
belongs to a process that died; it goes back to ``queued`` with its ``verify`` flag as stored. State
changes are guarded (``… WHERE state = 'sending'``): a late retry never reopens a sent or dead mail.

Every SQLite or file-system failure is raised as :class:`OutboxError` (one line, naming the file).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, TypeVarTuple, cast

from .errors import AcsEmailError, OutboxError, OutboxFullError
from .message import DEFAULT_LIMITS, EmailMessage, MessageLimits
from .retry import RetryPolicy
from .timebase import BOOT_ID, Stamp, Timebase
from .waits import wait_set

__all__ = ["ClaimedMessage", "Outbox", "OutboxEntry", "OutboxStats", "RetryPolicy", "State"]

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

SCHEMA_VERSION = 2
_PRUNE_EVERY = 500  # mark_sent calls between opportunistic prunes of old sent rows
IDLE_RECHECK = 1.0  # seconds; see Outbox.wait_for_work (another process may have queued mail)
CLOCK_STEP = 1.0  # a change of the wall-minus-monotonic offset this large is a step of the wall clock

# The payload is the last column of version 1: SQLite reads a row's columns in order, so the columns
# people list stay readable without touching the overflow pages of a large payload.
_SCHEMA = """
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'dead')),
    subject TEXT NOT NULL,
    recipients INTEGER NOT NULL,
    size INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    age_from REAL NOT NULL,  -- start of the max_age window: created_at, reset by requeue
    updated_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    source TEXT NOT NULL,
    verify INTEGER NOT NULL,
    payload TEXT NOT NULL
);
-- Partial indexes stay small; queries name them (INDEXED BY) because without ANALYZE statistics the
-- planner prefers messages_state for "state = ...", which turns claim_due into a scan of the backlog.
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state = 'queued';
CREATE INDEX messages_state ON messages (state, created_at);
CREATE INDEX messages_sent ON messages (updated_at) WHERE state = 'sent';

-- Per-state counts kept by triggers: the capacity check on every enqueue and stats() stay O(1).
CREATE TABLE counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counts VALUES ('queued', 0), ('sending', 0), ('sent', 0), ('dead', 0);
CREATE TRIGGER messages_insert AFTER INSERT ON messages BEGIN
    UPDATE counts SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER messages_delete AFTER DELETE ON messages BEGIN
    UPDATE counts SET n = n - 1 WHERE state = OLD.state;
END;
CREATE TRIGGER messages_state AFTER UPDATE OF state ON messages WHEN OLD.state <> NEW.state BEGIN
    UPDATE counts SET n = n - 1 WHERE state = OLD.state;
    UPDATE counts SET n = n + 1 WHERE state = NEW.state;
END;

-- Completion times of ACS requests, so that quotas hold across restarts.
CREATE TABLE requests (kind TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX requests_kind_at ON requests (kind, at);
"""

# Version 2: when the last POST of a message started (a resend waits until it cannot be in progress any
# more), stored times carry a monotonic part and the boot id (timebase.py), requests are written when they
# start, and a Retry-After outlives the process.
_MIGRATE_2 = """
ALTER TABLE messages ADD COLUMN posted_at REAL;
ALTER TABLE messages ADD COLUMN posted_mono REAL;
ALTER TABLE messages ADD COLUMN posted_boot TEXT;
UPDATE messages SET posted_at = updated_at WHERE verify = 1 OR state = 'sending';
UPDATE messages SET verify = 1 WHERE state = 'sending';
ALTER TABLE requests ADD COLUMN mono REAL;
ALTER TABLE requests ADD COLUMN boot TEXT;
CREATE TABLE blocks (
    kind TEXT PRIMARY KEY, until REAL NOT NULL, mono REAL, boot TEXT, seconds REAL NOT NULL
) WITHOUT ROWID;
-- Wall minus monotonic time at the last write: every wall time stored for unsent mail is in this frame.
CREATE TABLE clock (id INTEGER PRIMARY KEY CHECK (id = 1), boot TEXT, offset REAL NOT NULL);
"""

_ENTRY_COLUMNS = (
    "id, state, subject, recipients, size, attempts, created_at, updated_at, next_attempt_at, last_error, "
    "source, verify"
)
_INSERT = (
    "INSERT OR IGNORE INTO messages (id, state, subject, recipients, size, attempts, created_at, age_from, "
    "updated_at, next_attempt_at, last_error, source, verify, payload) "
    "VALUES (?1, 'queued', ?2, ?3, ?4, 0, ?5, ?5, ?5, ?5, NULL, ?6, 0, ?7)"
)


class State(StrEnum):
    """Where a message is in its life."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(frozen=True)
class OutboxEntry:
    """A message as listed for people (no payload: it may be megabytes of attachments)."""

    id: str
    state: State
    subject: str
    recipients: int
    size: int  # payload bytes
    attempts: int
    created_at: float
    updated_at: float
    next_attempt_at: float
    last_error: str | None
    source: str
    verify: bool


@dataclass(frozen=True)
class ClaimedMessage:
    """A message handed to the dispatcher; ``verify`` means a previous POST may have reached ACS."""

    id: str
    body: str  # the request body as stored (JSON); sent as it is, never parsed on the event loop
    attempts: int
    verify: bool
    created_at: float
    posted: Stamp | None = None  # when the last POST of this message started; None: never posted
    # Out of attempts or too old, but ACS may have it: dead only once a status check proves it does not.
    expired: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The request body parsed (for inspection; costly for big attachments)."""
        return cast("dict[str, Any]", json.loads(self.body))


@dataclass(frozen=True)
class OutboxStats:
    """Counts per state, and the creation time of the oldest queued message."""

    queued: int
    sending: int
    sent: int
    dead: int
    oldest_queued_at: float | None


@dataclass
class _PendingEnqueue:
    messages: Sequence[EmailMessage]
    source: str
    future: asyncio.Future[list[str]]


_EnqueueResult = list[str] | Exception


def _duration(seconds: float) -> str:
    """Readable age for a dead-letter reason."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (executescript would COMMIT the surrounding transaction)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""


def _stamp(wall: float | None, mono: float | None, boot: str | None) -> Stamp | None:
    return None if wall is None else Stamp(wall, mono, boot)


def _guarded(path: Path, fn: Callable[[*_Ts], _T]) -> Callable[[*_Ts], _T]:
    """``fn`` with SQLite and file-system errors turned into one-line OutboxErrors that name the file."""

    def call(*args: *_Ts) -> _T:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as err:
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            raise OutboxError(f"outbox {path}: {reason}") from err

    return call


def _placeholders(ids: Sequence[str]) -> str:
    return ",".join("?" * len(ids))


def _columns(stamp: Stamp) -> tuple[float, float | None, str | None]:
    return stamp.wall, stamp.mono, stamp.boot


def _entry(row: sqlite3.Row) -> OutboxEntry:
    return OutboxEntry(
        id=row["id"],
        state=State(row["state"]),
        subject=row["subject"],
        recipients=row["recipients"],
        size=row["size"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        source=row["source"],
        verify=bool(row["verify"]),
    )


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class _Store:
    """The SQLite side; every method runs on the outbox's single worker thread, which owns the connection."""

    def __init__(
        self,
        path: Path,
        max_messages: int,
        retry: RetryPolicy,
        retention: float,
        limits: MessageLimits,
        *,
        busy_timeout: float = 30.0,
        timebase: Timebase | None = None,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.time = timebase or Timebase()
        self._clock_table = False  # the schema is ready for _follow_clock
        self.max_messages = max_messages
        self.retry = retry
        self.retention = retention
        self.limits = limits
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self.owner = False  # holds the owner lock: the one process that recovers and delivers
        self._marks_since_prune = 0

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise AcsEmailError(f"outbox {self.path} is not open")
        return self._conn

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """Writers BEGIN IMMEDIATE: taking the lock up front means a transaction never fails half-way on BUSY."""
        conn = self._db
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            if write and self._clock_table:
                self._follow_clock(conn)
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _follow_clock(self, conn: sqlite3.Connection) -> None:
        """Keep every stored due time and age in the frame of the current wall clock.

        Checked at the start of every write, by whichever process writes: when the wall clock has stepped
        since the last write in this boot, unsent mails' due times and ages move with it, so a step (NTP
        correcting a clock without RTC, now or between two runs) neither holds mail back nor expires it.
        """
        offset = self.time.wall() - self.time.mono()
        boot = self.time.boot
        row = conn.execute("SELECT boot, offset FROM clock").fetchone()
        same_boot = row is not None and boot is not None and row["boot"] == boot
        if same_boot and abs(offset - row["offset"]) < CLOCK_STEP:
            return
        if same_boot:
            step = offset - row["offset"]
            moved = conn.execute(
                "UPDATE messages SET next_attempt_at = next_attempt_at + ?1, age_from = age_from + ?1 "
                "WHERE state IN ('queued', 'sending')",
                (step,),
            ).rowcount
            _LOGGER.warning("the system clock stepped by %+.0f s; %d unsent mail(s) keep their due times", step, moved)
        conn.execute("INSERT OR REPLACE INTO clock (id, boot, offset) VALUES (1, ?, ?)", (boot, offset))

    # ---- lifecycle ---------------------------------------------------------------------------------------
    def open(self, synchronous: str, now: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The lock belongs to the file, not to the name it was opened by: a symlink is the same outbox.
        real = self.path.resolve()
        self._lock_fd = os.open(f"{real}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        conn = self._conn = sqlite3.connect(real, isolation_level=None, timeout=self.busy_timeout)
        conn.row_factory = sqlite3.Row
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            _LOGGER.warning("outbox %s: WAL is not available here (journal mode %s)", self.path, mode)
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        with self._transaction():
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise AcsEmailError(
                    f"outbox {self.path} has schema version {version}, newer than this version "
                    f"understands ({SCHEMA_VERSION}); upgrade, or use another file"
                )
            if version == 0:
                for statement in _statements(_SCHEMA):
                    conn.execute(statement)
            if version < 2:
                for statement in _statements(_MIGRATE_2):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._clock_table = True
        self.take_ownership(now)
        self.prune(now)

    def take_ownership(self, now: float) -> bool:
        """Become the one process that delivers from this file, if no live process is; recover its leftovers."""
        if self.owner:
            return True
        if self._lock_fd is None or not _try_lock(self._lock_fd):
            return False
        self.owner = True
        with self._transaction() as conn:
            posted = conn.execute("SELECT COUNT(*) FROM messages WHERE state = 'sending' AND verify = 1").fetchone()[0]
            conn.execute("UPDATE messages SET state = 'queued', updated_at = ? WHERE state = 'sending'", (now,))
        if posted:
            _LOGGER.warning(
                "outbox %s: %d message(s) were being sent when the previous run stopped; their status is "
                "checked with ACS before any resend",
                self.path,
                posted,
            )
        return True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the owner lock
            self._lock_fd = None
            self.owner = False

    # ---- writes ------------------------------------------------------------------------------------------
    def _held(self, conn: sqlite3.Connection) -> int:
        """Messages that count against max_messages: all but sent ones."""
        return int(conn.execute("SELECT SUM(n) FROM counts WHERE state <> 'sent'").fetchone()[0])

    def _rows(self, messages: Sequence[EmailMessage], source: str, now: float) -> list[tuple[Any, ...]]:
        rows = []
        for message in messages:
            payload = message.to_acs_json(self.limits)
            size = len(payload)  # ASCII
            rows.append((message.message_id, message.subject, message.recipient_count, size, now, source, payload))
        return rows

    def enqueue(self, requests: Sequence[tuple[Sequence[EmailMessage], str]], now: float) -> list[_EnqueueResult]:
        """One transaction for all requests; a savepoint each, so one refused request spares the others."""
        prepared: list[list[tuple[Any, ...]] | Exception] = []
        for messages, source in requests:
            try:
                prepared.append(self._rows(messages, source, now))
            except Exception as exc:  # ValidationError, or a payload that is not JSON-serialisable
                prepared.append(exc)
        results: list[_EnqueueResult] = []
        with self._transaction() as conn:
            for item in prepared:
                if isinstance(item, Exception):
                    results.append(item)
                    continue
                conn.execute("SAVEPOINT enqueue")
                before = self._held(conn)
                conn.executemany(_INSERT, item)
                after = self._held(conn)
                if after > before and after > self.max_messages:
                    conn.execute("ROLLBACK TO enqueue")
                    results.append(self._full_error(before, after - before))
                else:
                    results.append([row[0] for row in item])
                conn.execute("RELEASE enqueue")
        return results

    def _full_error(self, held: int, new: int) -> OutboxFullError:
        what = "the message" if new == 1 else f"these {new} messages"
        return OutboxFullError(
            f"outbox full: it holds {held} of at most {self.max_messages} messages (queued, sending or dead), "
            f"so {what} cannot be accepted; wait for sending to catch up, or purge dead letters"
        )

    def _expiry(self, attempts: int, age: float) -> str | None:
        """Why a message is past the retry policy (out of attempts, or too old), or None."""
        if attempts >= self.retry.max_attempts:
            return f"gave up after {attempts} attempts"
        if age >= self.retry.max_age:
            return f"expired after {_duration(age)}"
        return None

    def _expired(self, row: sqlite3.Row, now: float) -> str | None:
        expiry = self._expiry(row["attempts"], now - row["age_from"])
        return None if expiry is None else f"{expiry}: {row['last_error']}"

    def claim(self, limit: int, now: float) -> list[ClaimedMessage]:
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT id, attempts, verify, created_at, age_from, last_error, posted_at, posted_mono, posted_boot, "
                "payload "
                "FROM messages INDEXED BY messages_due "
                "WHERE state = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE messages SET state = 'sending', updated_at = ? WHERE id = ?",
                [(now, row["id"]) for row in rows],
            )
        return [
            ClaimedMessage(
                id=row["id"],
                body=row["payload"],
                attempts=row["attempts"],
                verify=bool(row["verify"]),
                created_at=row["created_at"],
                posted=_stamp(row["posted_at"], row["posted_mono"], row["posted_boot"]),
                expired=self._expired(row, now) if row["verify"] else None,
            )
            for row in rows
        ]

    def _update_sending(self, id: str, sql: str, params: tuple[Any, ...]) -> None:
        """``sql`` must end in ``WHERE id = ? AND state = 'sending'``; an unknown id raises KeyError."""
        with self._transaction() as conn:
            if conn.execute(sql, params).rowcount == 0 and self._state(conn, id) is None:
                raise KeyError(id)

    @staticmethod
    def _state(conn: sqlite3.Connection, id: str) -> State | None:
        row = conn.execute("SELECT state FROM messages WHERE id = ?", (id,)).fetchone()
        return None if row is None else State(row[0])

    def mark_sent(self, id: str, now: float) -> None:
        self._update_sending(
            id,
            "UPDATE messages SET state = 'sent', verify = 0, updated_at = ? WHERE id = ? AND state = 'sending'",
            (now, id),
        )
        self._marks_since_prune += 1
        if self._marks_since_prune >= _PRUNE_EVERY:
            self.prune(now)

    def mark_dead(self, id: str, reason: str, now: float) -> None:
        self._update_sending(
            id,
            "UPDATE messages SET state = 'dead', last_error = ?, updated_at = ? WHERE id = ? AND state = 'sending'",
            (reason, now, id),
        )

    def mark_retry(
        self, id: str, error: str, *, retry_after: float | None, verify: bool, count_attempt: bool, now: float
    ) -> State:
        policy = self.retry
        with self._transaction() as conn:
            row = conn.execute("SELECT state, attempts, age_from FROM messages WHERE id = ?", (id,)).fetchone()
            if row is None:
                raise KeyError(id)
            if row["state"] != State.SENDING:  # settled meanwhile (e.g. sent, then the task was cancelled)
                return State(row["state"])
            attempts = row["attempts"] + int(count_attempt)
            state, next_at, last_error = State.QUEUED, now, error
            expired = self._expiry(attempts, now - row["age_from"])
            if expired is not None and not verify:
                state, last_error = State.DEAD, f"{expired}: {error}"
            elif expired is not None:  # ACS may have it: a dead letter it was delivered would be a lie
                next_at = now + (policy.delay(attempts) if retry_after is None else max(retry_after, 0.0))
            elif retry_after is not None:
                next_at = now + max(retry_after, 0.0)
            else:
                next_at = now + policy.delay(attempts)
            conn.execute(
                "UPDATE messages SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, verify = ?, "
                "updated_at = ? WHERE id = ?",
                (str(state), attempts, next_at, last_error, int(verify), now, id),
            )
        return state

    def release(self, ids: Sequence[str], now: float) -> int:
        with self._transaction() as conn:
            return conn.execute(
                "UPDATE messages SET state = 'queued', updated_at = ? "  # noqa: S608 - placeholders only
                f"WHERE state = 'sending' AND id IN ({_placeholders(ids)})",
                (now, *ids),
            ).rowcount

    def requeue(self, ids: Sequence[str] | None, now: float) -> int:
        sql = (
            "UPDATE messages SET state = 'queued', attempts = 0, next_attempt_at = ?, age_from = ?, "
            "updated_at = ? WHERE state = 'dead'"
        )
        params: tuple[Any, ...] = (now, now, now)
        if ids is not None:
            sql += f" AND id IN ({_placeholders(ids)})"
            params += tuple(ids)
        with self._transaction() as conn:
            return conn.execute(sql, params).rowcount

    def purge(self, ids: Sequence[str] | None, state: State) -> int:
        if state is State.SENDING:  # its request may be at ACS right now: its outcome must find the row
            raise ValueError("a mail being sent cannot be purged; purge it once it is sent or dead")
        sql = "DELETE FROM messages WHERE state = ?"
        params: tuple[str, ...] = (str(state),)
        if ids is not None:
            sql += f" AND id IN ({_placeholders(ids)})"
            params += tuple(ids)
        with self._transaction() as conn:
            return conn.execute(sql, params).rowcount

    def prune(self, now: float) -> int:
        self._marks_since_prune = 0
        with self._transaction() as conn:
            count = conn.execute(
                "DELETE FROM messages INDEXED BY messages_sent WHERE state = 'sent' AND updated_at < ?",
                (now - self.retention,),
            ).rowcount
        if count:
            _LOGGER.debug("outbox %s: pruned %d sent message(s)", self.path, count)
        return count

    def request_started(self, kind: str, start: Stamp, until: Stamp, message_id: str | None) -> int:
        """Count a request before it is made, as if it ended at ``until``; a POST also marks its message."""
        with self._transaction() as conn:
            rowid = conn.execute(
                "INSERT INTO requests (kind, at, mono, boot) VALUES (?, ?, ?, ?)", (kind, *_columns(until))
            ).lastrowid
            if message_id is not None:
                conn.execute(
                    "UPDATE messages SET posted_at = ?, posted_mono = ?, posted_boot = ?, verify = 1 "
                    "WHERE id = ? AND state = 'sending'",
                    (*_columns(start), message_id),
                )
        assert rowid is not None
        return rowid

    def request_finished(self, rowid: int, kind: str, at: Stamp, forget_before: Stamp) -> None:
        """The request ended at ``at``; requests of ``kind`` that ended before ``forget_before`` are dropped."""
        with self._transaction() as conn:
            conn.execute("UPDATE requests SET at = ?, mono = ?, boot = ? WHERE rowid = ?", (*_columns(at), rowid))
            conn.execute(
                "DELETE FROM requests WHERE kind = ? AND CASE WHEN boot = ? AND mono IS NOT NULL "
                "THEN mono < ? ELSE at < ? END",
                (kind, forget_before.boot, forget_before.mono, forget_before.wall),
            )

    def request_history(self, kind: str) -> list[Stamp]:
        rows = self._db.execute("SELECT at, mono, boot FROM requests WHERE kind = ?", (kind,)).fetchall()
        return [Stamp(row[0], row[1], row[2]) for row in rows]

    def save_block(self, kind: str, until: Stamp, seconds: float) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO blocks (kind, until, mono, boot, seconds) VALUES (?, ?, ?, ?, ?)",
                (kind, *_columns(until), seconds),
            )

    def blocks(self) -> dict[str, tuple[Stamp, float]]:
        rows = self._db.execute("SELECT kind, until, mono, boot, seconds FROM blocks").fetchall()
        return {row[0]: (Stamp(row[1], row[2], row[3]), row[4]) for row in rows}

    # ---- reads -------------------------------------------------------------------------------------------
    def next_due_at(self) -> float | None:
        row = self._db.execute(
            "SELECT MIN(next_attempt_at) FROM messages INDEXED BY messages_due WHERE state = 'queued'"
        ).fetchone()
        return cast("float | None", row[0])

    def get(self, id: str) -> OutboxEntry | None:
        row = self._db.execute(f"SELECT {_ENTRY_COLUMNS} FROM messages WHERE id = ?", (id,)).fetchone()  # noqa: S608
        return None if row is None else _entry(row)

    def list(self, state: State | None, limit: int) -> list[OutboxEntry]:
        where = "" if state is None else "WHERE state = ?"
        params = (limit,) if state is None else (str(state), limit)
        sql = f"SELECT {_ENTRY_COLUMNS} FROM messages {where} ORDER BY created_at LIMIT ?"  # noqa: S608
        return [_entry(row) for row in self._db.execute(sql, params)]

    def stats(self) -> OutboxStats:
        with self._transaction(write=False) as conn:  # one snapshot for the counts and the oldest row
            counts = dict(conn.execute("SELECT state, n FROM counts").fetchall())
            oldest = conn.execute("SELECT MIN(created_at) FROM messages WHERE state = 'queued'").fetchone()[0]
        return OutboxStats(counts["queued"], counts["sending"], counts["sent"], counts["dead"], oldest)


class Outbox:
    """Durable, bounded message store between the sources and the dispatcher.

    Several Outbox objects (or processes, such as the CLI next to a running bridge) may open the same file.
    Only one holds the owner lock (``<resolved path>.lock``), recovers rows left in ``sending`` and delivers: the
    others must not take back messages that a live dispatcher is sending. When the owner closes or dies,
    another can :meth:`take_ownership`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_messages: int = 10_000,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so a shared default is safe
        retention: float = 7 * 86400,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        clock: Callable[[], float] = time.time,
        limits: MessageLimits = DEFAULT_LIMITS,
        busy_timeout: float = 30.0,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` is the wall clock; ``monotonic`` (default: time.monotonic with the real wall clock, and
        ``clock`` itself with an injected one, which then never steps) tells its steps from time passing."""
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.path = Path(path)
        mono = monotonic or (time.monotonic if clock is time.time else clock)
        # An injected clock standing in for both is no clock of this boot: it must not shift real ones' times.
        timebase = Timebase(wall=clock, mono=mono, boot=None if mono is clock else BOOT_ID)
        self._store = _Store(
            self.path, max_messages, retry, retention, limits, busy_timeout=busy_timeout, timebase=timebase
        )
        self._synchronous = synchronous
        self._clock = clock
        self._work = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._pending: builtins.list[_PendingEnqueue] = []
        self._flusher: asyncio.Task[None] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the database if needed, then recover what a crashed process left in ``sending``."""
        if self._executor is not None:
            return
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="acs-email-outbox")
        try:
            await self._call(self._store.open, self._synchronous, self._clock())
        except BaseException:
            await self._shutdown()
            raise

    async def close(self) -> None:
        """Finish pending enqueues, then close the database; safe to call twice."""
        if self._executor is None or self._closing:
            return
        self._closing = True
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._shutdown()

    async def _shutdown(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await self._call(self._store.close)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    @property
    def owner(self) -> bool:
        """True when this outbox holds the owner lock: it alone recovers and delivers from the file."""
        return self._store.owner

    async def take_ownership(self) -> bool:
        """Become the owner if the previous one has gone (closed or died); True when this outbox is it."""
        return await self._call(self._store.take_ownership, self._clock())

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _call(self, fn: Callable[[*_Ts], _T], *args: *_Ts) -> asyncio.Future[_T]:
        """Run ``fn`` on the worker thread that owns the connection; storage failures raise OutboxError."""
        if self._executor is None:
            raise AcsEmailError(f"outbox {self.path} is not open")
        return asyncio.get_running_loop().run_in_executor(self._executor, _guarded(self.path, fn), *args)

    # ---- enqueue (group commit) --------------------------------------------------------------------------
    async def enqueue(self, message: EmailMessage, *, source: str = "") -> str:
        """Store one message; returns its id only once committed. Enqueuing the same id again is a no-op.

        Raises ValidationError (nothing stored) or OutboxFullError (the caller still owns the message).
        """
        return (await self._submit((message,), source))[0]

    async def enqueue_many(self, messages: Sequence[EmailMessage], *, source: str = "") -> builtins.list[str]:
        """Store several messages in one transaction: all of them, or (on any error) none."""
        if not messages:
            return []
        return await self._submit(messages, source)

    async def _submit(self, messages: Sequence[EmailMessage], source: str) -> builtins.list[str]:
        if self._executor is None or self._closing:
            raise AcsEmailError(f"outbox {self.path} is not open")
        future: asyncio.Future[builtins.list[str]] = asyncio.get_running_loop().create_future()
        self._pending.append(_PendingEnqueue(messages, source, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="acs-email-outbox-commit")
        return await future

    async def _flush(self) -> None:
        """Commit pending enqueues, one transaction per round, until none are left."""
        batch: builtins.list[_PendingEnqueue] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                requests = [(p.messages, p.source) for p in batch]
                try:
                    results = await self._call(self._store.enqueue, requests, self._clock())
                except Exception as exc:  # the commit itself failed: nobody in this round is stored
                    results = [exc] * len(batch)
                for pending, result in zip(batch, results, strict=True):
                    if pending.future.done():  # the caller stopped waiting
                        continue
                    if isinstance(result, Exception):
                        pending.future.set_exception(result)
                    else:
                        pending.future.set_result(result)
                if any(not isinstance(r, Exception) for r in results):
                    self._work.set()
                batch = []
        finally:  # only reached with unresolved futures when this task is cancelled
            for pending in [*batch, *self._pending]:
                pending.future.cancel()
            self._pending = []
            self._flusher = None

    # ---- dispatcher side ---------------------------------------------------------------------------------
    async def wait_for_work(self, timeout: float | None) -> None:  # noqa: ASYNC109 - the dispatcher's API
        """Return when messages were enqueued, requeued or released since the last return, or after ``timeout``.

        Also returns after at most ``IDLE_RECHECK`` seconds: another process (the CLI) may have requeued
        messages, and it cannot signal this one. Callers look for due messages after every return.
        """
        limit = IDLE_RECHECK if timeout is None else min(max(timeout, 0.0), IDLE_RECHECK)
        await wait_set(self._work, limit)
        self._work.clear()

    async def claim_due(self, limit: int) -> builtins.list[ClaimedMessage]:
        """Move up to ``limit`` due messages, the longest due first, to ``sending`` and return them.

        If the caller is cancelled meanwhile, the claimed messages are released rather than left in
        ``sending`` (where only a restart would recover them).
        """
        if limit < 1:
            return []
        job = self._call(self._store.claim, limit, self._clock())
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                if claimed := await job:
                    await self._call(self._store.release, [c.id for c in claimed], self._clock())
            raise

    async def mark_sent(self, id: str) -> None:
        """ACS accepted the message (a no-op unless it is ``sending``). Raises KeyError if the id is unknown."""
        await self._call(self._store.mark_sent, id, self._clock())

    async def mark_retry(
        self,
        id: str,
        error: str,
        *,
        retry_after: float | None = None,
        verify: bool = False,
        count_attempt: bool = True,
    ) -> State:
        """Back to ``queued`` for a later try, or ``dead`` once out of attempts or too old; returns which.

        With ``verify`` (ACS may have it) it is never dead here: the next claim says it is ``expired``, and
        the dispatcher gives up only when a status check shows ACS never received it.

        Only a message in ``sending`` changes; any other is left as it is and its state returned.
        ``retry_after`` (the service's Retry-After) replaces the backoff delay; ``count_attempt=False`` is for
        failures that are not the message's fault (throttling). Raises KeyError if the id is unknown.
        """
        retry = functools.partial(
            self._store.mark_retry,
            retry_after=retry_after,
            verify=verify,
            count_attempt=count_attempt,
            now=self._clock(),
        )
        state = await self._call(retry, id, error)
        if state is State.QUEUED:
            self._work.set()  # the dispatcher may be idle with nothing else due: it must learn the new due time
        return state

    async def mark_dead(self, id: str, reason: str) -> None:
        """Give up on a ``sending`` message now (a permanent error); it stays listable and requeueable."""
        await self._call(self._store.mark_dead, id, reason, self._clock())

    async def release(self, ids: Sequence[str]) -> None:
        """Graceful shutdown: claimed but unsent messages go back to ``queued`` as they were."""
        if not ids:
            return
        if await self._call(self._store.release, ids, self._clock()):
            self._work.set()

    async def next_due_at(self) -> float | None:
        """Earliest ``next_attempt_at`` among queued messages (None when nothing is queued)."""
        return await self._call(self._store.next_due_at)

    # ---- dead letters and housekeeping -------------------------------------------------------------------
    async def requeue(self, ids: Sequence[str] | None = None) -> int:
        """Dead letters (the given ones, or all) back to ``queued``, due now, with attempts and age reset."""
        count = await self._call(self._store.requeue, ids, self._clock())
        if count:
            self._work.set()
        return count

    async def purge(self, ids: Sequence[str] | None = None, *, state: State = State.DEAD) -> int:
        """Delete messages in ``state`` (the given ids only, or all of them); returns how many. Never ``sending``."""
        return await self._call(self._store.purge, ids, State(state))

    async def prune(self) -> int:
        """Delete sent messages older than the retention period; returns how many."""
        return await self._call(self._store.prune, self._clock())

    # ---- rate-limiter memory -----------------------------------------------------------------------------
    async def request_started(self, kind: str, start: Stamp, until: Stamp, message_id: str | None = None) -> int:
        """Remember an ACS request (``send``/``poll``) before it is made, as ending at ``until`` (the latest
        it can end). With ``message_id``, its row gets ``verify`` and the POST's start time in the same
        commit. Returns the handle for :meth:`request_finished`."""
        return await self._call(self._store.request_started, kind, start, until, message_id)

    async def request_finished(self, handle: int, kind: str, at: Stamp, forget_before: Stamp) -> None:
        """The request ended at ``at``; forgets requests of ``kind`` that ended before ``forget_before``."""
        await self._call(self._store.request_finished, handle, kind, at, forget_before)

    async def request_history(self, kind: str) -> builtins.list[Stamp]:
        """When remembered requests of ``kind`` ended (or will have ended, for one still in flight)."""
        return await self._call(self._store.request_history, kind)

    async def save_block(self, kind: str, until: Stamp, seconds: float) -> None:
        """Remember that no ``kind`` request may start before ``until`` (a Retry-After ``seconds`` long)."""
        await self._call(self._store.save_block, kind, until, seconds)

    async def blocks(self) -> dict[str, tuple[Stamp, float]]:
        """Remembered blocks per kind: (until, their length when set)."""
        return await self._call(self._store.blocks)

    # ---- inspection --------------------------------------------------------------------------------------
    async def get(self, id: str) -> OutboxEntry | None:
        """One message, without its payload."""
        return await self._call(self._store.get, id)

    async def stats(self) -> OutboxStats:
        """Counts per state (kept by triggers, so cheap with any number of rows)."""
        return await self._call(self._store.stats)

    async def list(self, state: State | None = None, limit: int = 100) -> builtins.list[OutboxEntry]:
        """Up to ``limit`` messages, oldest first, without payloads."""
        return await self._call(self._store.list, None if state is None else State(state), limit)
