"""The bridge in a child process: SIGKILLed mid-stream and a broker restart lose nothing and duplicate nothing."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter

from acs_email_core.outbox import Outbox

from .mqtt_helpers import (
    BridgeProcess,
    bridge_config,
    kill_leftover_bridges,  # noqa: F401 - autouse fixture
    send_request,
    wait_until,
)

TOTAL = 2000
CHUNK = 400  # events published between two kills


def _assert_exactly_once(emu, total: int) -> None:
    subjects = Counter(m.subject for m in emu.mails)
    repeated = {s: n for s, n in subjects.items() if n > 1}
    missing = sorted(set(range(total)) - {int(s.split()[1]) for s in subjects})
    assert not repeated, f"mailed more than once: {sorted(repeated.items())[:10]}"
    assert not missing, f"never mailed: {missing[:20]} ({len(missing)} in all)"
    assert len(emu.mails) == total
    assert emu.duplicates == 0


async def _settled(tmp_path) -> None:
    async with Outbox(tmp_path / "outbox.db") as outbox:
        stats = await outbox.stats()
    assert (stats.queued, stats.sending, stats.dead) == (0, 0, 0)


async def test_sigkill_during_a_2000_event_stream_mails_every_event_exactly_once(tmp_path, emu, broker):
    config = bridge_config(tmp_path, emu, broker.port, mqtt_extra={"batch_size": 100})
    bridge = BridgeProcess(config)
    rng = random.Random(8)  # a fixed seed: failures reproduce
    await bridge.start()  # the first run creates the persistent session; from then on the broker keeps messages
    assert await bridge.stop(signal.SIGKILL) == -signal.SIGKILL
    # Devices publish while the bridge is down; each start takes the backlog (and whatever the last run had not
    # acknowledged) in one flood, and is killed a moment later: mid-ingest, mid-commit or mid-delivery.
    for start in range(0, TOTAL, CHUNK):
        await broker.publish_lines("acs_email/send", [send_request(i) for i in range(start, start + CHUNK)])
        await bridge.start()
        await asyncio.sleep(rng.uniform(0.02, 0.3))
        assert await bridge.stop(signal.SIGKILL) == -signal.SIGKILL

    await bridge.start()
    await wait_until(lambda: len(emu.mails) >= TOTAL, 90, lambda: f"{len(emu.mails)} mails\n{bridge.log[-3000:]}")
    assert await bridge.stop() == 0
    _assert_exactly_once(emu, TOTAL)
    await _settled(tmp_path)
    assert "had lost the session" not in bridge.log


async def test_broker_restart_mid_stream_loses_nothing(tmp_path, emu, broker):
    config = bridge_config(tmp_path, emu, broker.port)
    bridge = BridgeProcess(config)
    await bridge.start()
    half = TOTAL // 2
    await broker.publish_lines("acs_email/send", [send_request(i) for i in range(half)])
    await broker.restart()  # SIGTERM: Mosquitto saves sessions and queued messages, then comes back
    await broker.publish_lines("acs_email/send", [send_request(i) for i in range(half, TOTAL)])
    await wait_until(lambda: len(emu.mails) >= TOTAL, 90, lambda: f"{len(emu.mails)} mails\n{bridge.log[-3000:]}")
    await asyncio.sleep(0.5)  # a late duplicate would show up now
    assert await bridge.stop() == 0
    _assert_exactly_once(emu, TOTAL)
    await _settled(tmp_path)
    assert bridge.log.count("MQTT: connected") >= 2
