"""The router's state store: writes made at once share a commit, and one bad write spares the others."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from acs_email_bridge.routing.store import StateStore

FLOOD = "INSERT OR REPLACE INTO flood (route, kind, key, value, at) VALUES (?, ?, ?, ?, ?)"


async def test_a_failing_write_is_refused_and_the_writes_sharing_its_commit_are_stored(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    await store.open()
    try:
        good = [(FLOOD, ("r", "change", f"k{n}", "on", 1.0)) for n in range(3)]
        bad = [(FLOOD, ("r", "change", "half", "on", 1.0)), (FLOOD, ("r", "change", "x", "on", None))]  # NOT NULL
        results = await asyncio.gather(
            store.write(good[:2]), store.write(bad), store.write(good[2:]), return_exceptions=True
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], sqlite3.IntegrityError)
        rows = await store.query("SELECT key FROM flood ORDER BY key")
        assert [r["key"] for r in rows] == ["k0", "k1", "k2"]  # nothing of the failed write, not even its first row
        with pytest.raises(sqlite3.IntegrityError):
            await store.write(bad)
    finally:
        await store.close()
