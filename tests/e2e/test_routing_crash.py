"""Routes in a bridge that is SIGKILLed mid-stream: every mail, change-only transition and digest line once."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import sqlite3
from collections import Counter

from .mqtt_helpers import BridgeProcess, bridge_config, wait_until

TOTAL = 300
CHUNK = 30
ROUTES = [
    {"name": "plain", "topic": "dev/+/event", "to": "ops@example.com", "subject": "plain {{ payload.n }}"},
    {
        "name": "ups",
        "topic": "dev/ups/status",
        "to": "ops@example.com",
        "change_only": {"value": "{{ payload.s }}", "initial": "OB"},  # n = 0 (OL) is a change too
        "subject": "ups {{ payload.n }} {{ value }}",
    },
    {
        "name": "motion",
        "topic": "dev/motion",
        "to": "ops@example.com",
        "subject": "motion {{ payload.n }}",
        "text": "m{{ payload.n }}",
        "digest": "1s",
        "quota_digest": False,
    },
]


def _numbers(prefix: str, subjects: list[str]) -> Counter[int]:
    return Counter(int(s.split()[1]) for s in subjects if s.startswith(prefix + " "))


def _digested(emu) -> Counter[int]:
    """Every event listed in a digest (or mailed alone, as a one-event digest is)."""
    found: Counter[int] = Counter()
    for mail in emu.mails:
        text = mail.payload["content"].get("plainText") or ""
        if mail.subject.startswith("Digest:") or mail.subject.startswith("motion "):
            found.update(int(n) for n in re.findall(r"^\s*m(\d+)$", text, re.MULTILINE))
    return found


async def test_sigkill_mid_stream_keeps_route_decisions_and_digests_exactly_once(tmp_path, emu, broker):
    config = bridge_config(tmp_path, emu, broker.port, mqtt_extra={"batch_size": 50}, routes=ROUTES)
    bridge = BridgeProcess(config)
    rng = random.Random(11)

    async def devices() -> None:
        for start in range(0, TOTAL, CHUNK):
            numbers = range(start, start + CHUNK)
            await broker.publish_lines("dev/a/event", [json.dumps({"n": n}) for n in numbers])
            # Alternating states: every message is a transition, so each must give exactly one mail.
            states = [json.dumps({"n": n, "s": "OB" if n % 2 else "OL"}) for n in numbers]
            await broker.publish_lines("dev/ups/status", states)
            await broker.publish_lines("dev/motion", [json.dumps({"n": n}) for n in numbers])
            await asyncio.sleep(0.05)

    try:
        await _stream_with_kills(bridge, devices, rng)
        await _check_exactly_once(bridge, emu, tmp_path)
    finally:  # a failed assertion must not leave the child running
        if bridge.process is not None and bridge.process.returncode is None:
            await bridge.stop(signal.SIGKILL)


async def _stream_with_kills(bridge: BridgeProcess, devices, rng: random.Random) -> None:
    await bridge.start()
    publishing = asyncio.create_task(devices())
    kills = 0
    while not publishing.done() or kills < 3:
        if kills:
            await bridge.start()
        await asyncio.sleep(rng.uniform(0.1, 0.8))
        assert await bridge.stop(signal.SIGKILL) == -signal.SIGKILL
        kills += 1
    await publishing
    await bridge.start()


async def _check_exactly_once(bridge: BridgeProcess, emu, tmp_path) -> None:
    def complete() -> bool:
        subjects = [m.subject for m in emu.mails]
        return (
            len(_numbers("plain", subjects)) == TOTAL
            and len(_numbers("ups", subjects)) == TOTAL
            and len(_digested(emu)) == TOTAL
        )

    def explain() -> str:
        subjects = [m.subject for m in emu.mails]
        counts = (len(_numbers("plain", subjects)), len(_numbers("ups", subjects)), len(_digested(emu)))
        missing = sorted(set(range(TOTAL)) - set(_digested(emu)))
        with sqlite3.connect(tmp_path / "outbox.routes.db") as db:
            held = db.execute("SELECT kind, grp, due_at, flush_id, subject FROM held").fetchall()
        return f"plain, ups, digested: {counts}; not digested: {missing}\nheld: {held[:20]}\n{bridge.log[-6000:]}"

    await wait_until(complete, 60, explain)
    await asyncio.sleep(1.5)  # a late duplicate (or a second digest) would show up now
    assert await bridge.stop() == 0
    subjects = [m.subject for m in emu.mails]
    for name, counts in (("plain", _numbers("plain", subjects)), ("ups", _numbers("ups", subjects))):
        assert {n: c for n, c in counts.items() if c > 1} == {}, f"{name} mailed twice"
    twice = {n: c for n, c in _digested(emu).items() if c > 1}
    assert twice == {}, f"listed in two digests: {twice}\n" + "\n".join(
        f"{m.operation_id} {m.subject}: {(m.payload['content'].get('plainText') or '')[:400]!r}"
        for m in emu.mails
        if m.subject.startswith(("Digest", "motion"))
    )
    assert emu.duplicates == 0
