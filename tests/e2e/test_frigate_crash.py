"""Frigate's new/update/end collapsed into one mail per event while the bridge is SIGKILLed mid-stream."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections import Counter

from .mqtt_helpers import BridgeProcess, bridge_config, wait_until
from .test_routing_crash import _stream_with_kills

EVENTS = 60


def _lifecycle(n: int) -> list[str]:
    after = {"id": f"e{n}", "camera": f"cam{n}", "label": "person", "start_time": 1764662400 + n, "score": 0.9}
    after |= {"false_positive": False, "top_score": 0.9, "entered_zones": [], "end_time": None}
    ended = after | {"end_time": 1764662460 + n}
    return [
        json.dumps({"type": "new", "before": after, "after": after}),
        json.dumps({"type": "update", "before": after, "after": after | {"top_score": 0.95}}),
        json.dumps({"type": "end", "before": after, "after": ended}),
    ]


async def test_sigkill_during_frigate_lifecycles_mails_each_event_once(tmp_path, emu, broker):
    collapse = {"key": "{{ payload.after.id }}", "until": "payload.type == 'end'", "max_wait": "1h"}  # `end` only
    presets = {"frigate": {"to": "owner@example.com", "collapse": collapse}}
    bridge = BridgeProcess(bridge_config(tmp_path, emu, broker.port, presets=presets))

    async def camera() -> None:
        for start in range(0, EVENTS, 6):
            await broker.publish_lines("frigate/events", [m for n in range(start, start + 6) for m in _lifecycle(n)])
            await asyncio.sleep(0.05)

    try:
        await _stream_with_kills(bridge, camera, random.Random(5))
        await wait_until(lambda: len({m.subject for m in emu.mails}) >= EVENTS, 60, lambda: bridge.log[-4000:])
        await asyncio.sleep(1.5)  # a late second mail would show up now
        assert await bridge.stop() == 0
        counts = Counter(m.subject for m in emu.mails)
        assert counts == Counter({f"Person at cam{n}": 1 for n in range(EVENTS)})
        assert emu.duplicates == 0
    finally:
        if bridge.process is not None and bridge.process.returncode is None:
            await bridge.stop(signal.SIGKILL)
