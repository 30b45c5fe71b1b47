"""One SQLite file on one worker thread, for the bridge's side stores (the MQTT journal, the routing state).

SQLite calls block, so none may run on the event loop; one thread per file also keeps every statement in order
without locks. Both stores open their file the way the outbox does: WAL, with the outbox's ``synchronous``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")


class SqliteThread:
    """Base of a store kept in one SQLite file: ``_call`` runs work on its thread, where ``_db`` is the connection."""

    def __init__(self, path: Path, what: str, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._what = what  # for errors: "journal", "router state"
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    # ---- thread side ---------------------------------------------------------------------------------------
    def _connect(self, **options: Any) -> sqlite3.Connection:
        """Open the file (creating its directory) in WAL mode; call from the store's thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn: sqlite3.Connection = sqlite3.connect(self.path, isolation_level=None, **options)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        self._conn = conn
        return conn

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"{self._what} {self.path} is not open")
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- loop side -----------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._executor is not None

    def _start_thread(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"acs-email-{self._what.replace(' ', '-')}")

    def _call(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        if self._executor is None:
            raise RuntimeError(f"{self._what} {self.path} is not open")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _stop_thread(self) -> None:
        """Close the connection on its thread, then let the thread go."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
            executor.shutdown(wait=False)
