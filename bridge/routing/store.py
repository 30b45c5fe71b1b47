"""The router's durable state in SQLite, next to the outbox: what must survive a crash to keep promises.

Flood-control memory (dedup keys, cooldowns, last values), companion snapshots, events held for digests or
collapsed mails, and the decisions of routes with such state per event id (so a message the broker
redelivers after a crash gets the same decision). Every write is a list of SQL statements committed by
one worker thread; writes that arrive while a commit runs share the next transaction (group commit), and
each caller returns only once its own statements are on disk. Writes commit in the order they were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sqlite_thread import SqliteThread

Statement = tuple[str, tuple[Any, ...]]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS flood (route TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, "
    "value TEXT, at REAL NOT NULL, PRIMARY KEY (route, kind, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS companions (topic TEXT PRIMARY KEY, payload BLOB NOT NULL, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS held (id TEXT PRIMARY KEY, route TEXT NOT NULL, kind TEXT NOT NULL, "
    "grp TEXT NOT NULL, due_at REAL NOT NULL, at REAL NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, "
    "subject TEXT NOT NULL, text TEXT, qos INTEGER NOT NULL, retained INTEGER NOT NULL, flush_id TEXT)",
    "CREATE INDEX IF NOT EXISTS held_group ON held (route, kind, grp, at)",
    "CREATE TABLE IF NOT EXISTS decided (event_id TEXT NOT NULL, route TEXT NOT NULL, kind TEXT NOT NULL, "
    "rule TEXT NOT NULL, detail TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (event_id, route)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS decided_at ON decided (at)",
)


@dataclass(frozen=True)
class Snapshot:
    """Everything loaded at start; the router keeps it in memory and writes changes through."""

    flood: list[tuple[str, str, str, str | None, float]]
    companions: list[tuple[str, bytes, float]]
    held: list[sqlite3.Row]


@dataclass
class _Pending:
    statements: Sequence[Statement]
    future: asyncio.Future[None]


class StateStore(SqliteThread):
    """One SQLite file, one worker thread; ``write`` is the group-committed way in."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        super().__init__(path, "router state", synchronous=synchronous)
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    # ---- thread side ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _open(self) -> Snapshot:
        conn = self._connect(timeout=30.0)  # the outbox's synchronous setting: NORMAL survives kill -9
        conn.row_factory = sqlite3.Row
        with self._transaction():
            for statement in _SCHEMA:
                conn.execute(statement)
        return Snapshot(
            flood=[tuple(r) for r in conn.execute("SELECT route, kind, key, value, at FROM flood")],
            companions=[tuple(r) for r in conn.execute("SELECT topic, payload, at FROM companions")],
            held=conn.execute("SELECT * FROM held ORDER BY at, rowid").fetchall(),
        )

    def _commit(self, batches: Sequence[Sequence[Statement]]) -> list[Exception | None]:
        """One transaction; one bad write does not undo the others.

        All writes are tried at once first (the usual case); if one fails, they are done again with a savepoint
        per caller, which costs two more statements per caller: a batch is a thousand events.
        """
        with self._transaction() as conn:
            conn.execute("SAVEPOINT all_writes")
            try:
                for statements in batches:
                    for sql, params in statements:
                        conn.execute(sql, params)
            except sqlite3.Error:
                conn.execute("ROLLBACK TO all_writes")
                conn.execute("RELEASE all_writes")
                return self._each(conn, batches)
            conn.execute("RELEASE all_writes")
        return [None] * len(batches)

    @staticmethod
    def _each(conn: sqlite3.Connection, batches: Sequence[Sequence[Statement]]) -> list[Exception | None]:
        """A savepoint per caller, so only the failing caller's writes are undone."""
        results: list[Exception | None] = []
        for statements in batches:
            conn.execute("SAVEPOINT w")
            try:
                for sql, params in statements:
                    conn.execute(sql, params)
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK TO w")
                results.append(exc)
            else:
                results.append(None)
            conn.execute("RELEASE w")
        return results

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        return self._db.execute(sql, params).fetchall()

    # ---- loop side -----------------------------------------------------------------------------------------
    async def open(self) -> Snapshot:
        self._start_thread()
        try:
            return await self._call(self._open)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Finish pending writes, then close."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._stop_thread()

    async def write(self, statements: Sequence[Statement]) -> None:
        """Commit ``statements`` (in order, after every earlier write); raises the SQLite error if they failed."""
        if not statements:
            return
        if not self.is_open:
            raise RuntimeError(f"router state {self.path} is not open")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(statements, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="acs-email-routes-commit")
        await future

    async def _flush(self) -> None:
        batch: list[_Pending] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await self._call(self._commit, [p.statements for p in batch])
                except Exception as exc:  # the commit itself failed (disk full...): nobody in this round is stored
                    results = [exc] * len(batch)
                for pending, error in zip(batch, results, strict=True):
                    if pending.future.done():
                        continue
                    if error is None:
                        pending.future.set_result(None)
                    else:
                        pending.future.set_exception(error)
                batch = []
        finally:
            for pending in [*batch, *self._pending]:
                pending.future.cancel()
            self._pending = []
            self._flusher = None

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """A read on the worker thread (it sees every committed write)."""
        return await self._call(self._query, sql, params)
