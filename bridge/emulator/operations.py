"""Accepted operations kept on disk (one JSON line each), so they survive a restart of the emulator."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .mailbox import ReceivedMail

_LOGGER = logging.getLogger(__name__)


class OperationStore:
    """An append-only ``operations.jsonl``; all methods block (run them in a thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._torn = False  # the last line was cut short (a crash mid-write): start the next one on its own line

    def load(self) -> list[ReceivedMail]:
        """Every kept operation, oldest first; a line cut short by a crash is skipped."""
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8")
        self._torn = bool(text) and not text.endswith("\n")
        mails = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                mails.append(ReceivedMail.from_record(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                _LOGGER.warning("%s:%d: unreadable operation record skipped", self.path, number)
        return mails

    def append(self, mail: ReceivedMail) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(mail.to_record(), separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as out:
            out.write("\n" + line if self._torn else line)
        self._torn = False

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self._torn = False
