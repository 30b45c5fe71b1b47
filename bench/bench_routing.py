"""Router throughput: events/s through ``Router.__call__`` for the usual kinds of route, as the MQTT source calls it.

The source awaits the router once per event, in order, then commits the batch's mails to the outbox; this
measures the router alone (mail building, flood-control decisions, durable state writes), not the outbox.
Prints events/s per scenario and the router's RSS growth, and the digest case once more with the calls of a
batch made at once (the router allows it; its state writes then share commits).
"""

from __future__ import annotations

import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from acs_email_bridge.mqtt.events import InboundEvent
from acs_email_bridge.routing import Router, routing_from_config
from acs_email_core.message import EmailMessage

EVENTS = 5_000
TO = "ops@example.com"

SCENARIOS: dict[str, tuple[dict[str, Any], Any]] = {
    "plain route, one mail per event": (
        {"routes": [{"name": "r", "topic": "dev/+", "to": TO, "subject": "{{ topic_parts[1] }} {{ payload.n }}"}]},
        lambda n: ("dev/a", {"n": n}),
    ),
    "zigbee2mqtt presets, no change (dropped)": (
        {"presets": {"zigbee2mqtt_leak": {"to": TO}, "zigbee2mqtt_battery": {"to": TO}}},
        lambda n: ("zigbee2mqtt/leak1", {"water_leak": False, "battery": 90, "battery_low": False, "linkquality": n}),
    ),
    "dedup flood (dropped)": (
        {"routes": [{"name": "r", "topic": "dev/+", "to": TO, "dedup": {"key": "{{ payload.id }}", "window": "1h"}}]},
        lambda n: ("dev/a", {"id": "same", "n": n}),
    ),
    "digest (each event held on disk)": (
        {"routes": [{"name": "r", "topic": "dev/+", "to": TO, "digest": {"window": "1h", "max_events": 100000}}]},
        lambda n: ("dev/a", {"n": n}),
    ),
}


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _run(config: dict[str, Any], make: Any, directory: Path, batch: int = 0) -> float:
    async def submit(message: EmailMessage, source: str) -> str:
        return message.message_id

    router = Router(
        routing_from_config(config, base_dir=directory),
        submit=submit,
        sender="alerts@example.com",
        state_path=directory / "routes.db",
    )
    await router.start(timers=False)
    events = []
    for n in range(EVENTS):
        topic, payload = make(n)
        events.append(InboundEvent(topic, json.dumps(payload).encode(), 1, False, time.time(), f"e{n}"))
    start = time.perf_counter()
    if batch:
        for first in range(0, len(events), batch):
            await asyncio.gather(*(router(e) for e in events[first : first + batch]))
    else:
        for event in events:
            await router(event)
    elapsed = time.perf_counter() - start
    await router.stop()
    return EVENTS / elapsed


async def main() -> None:
    print(f"router throughput, {EVENTS:,} events per scenario, awaited one by one like the MQTT source does")
    for name, (config, make) in SCENARIOS.items():
        with tempfile.TemporaryDirectory() as tmp:
            before = _rss_kib()
            rate = await _run(config, make, Path(tmp))
            print(f"  {name:45} {rate:9,.0f} events/s   peak RSS +{(_rss_kib() - before) / 1024:.1f} MiB")
    config, make = SCENARIOS["digest (each event held on disk)"]
    with tempfile.TemporaryDirectory() as tmp:
        rate = await _run(config, make, Path(tmp), batch=500)
        print(f"  {'digest, 500 calls at once (shared commits)':45} {rate:9,.0f} events/s")


if __name__ == "__main__":
    asyncio.run(main())
