"""``acs-email-bridge failed``: the events the MQTT source could not mail, newest first, with topic and reason."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from typing import Any

from .config import mqtt_settings
from .journal import FailedEvent, Journal

COMMANDS = ("failed",)


def configure(sub: Any) -> None:
    """Add the subcommand to the main parser's subparsers."""
    failed = sub.add_parser("failed", help="list the MQTT events that failed (bad input), newest first")
    failed.add_argument("--config", "-c", required=True, help="YAML config file")
    failed.add_argument("--limit", type=int, default=20)
    failed.add_argument("--json", action="store_true", help="one JSON object per line, payload in base64")


def _preview(payload: bytes, width: int = 70) -> str:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(payload):,} bytes, not text>"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _line(event: FailedEvent, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "event_id": event.event_id,
                "received_at": event.received_at,
                "topic": event.topic,
                "route": event.route,
                "reason": event.reason,
                "qos": event.qos,
                "retain": event.retain,
                "payload": base64.b64encode(event.payload).decode("ascii"),
                "size": event.size,
            }
        )
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.received_at))
    route = f" [{event.route}]" if event.route else ""
    kept = "" if event.size <= len(event.payload) else f" (first {len(event.payload):,} of {event.size:,} bytes kept)"
    return f"{when}  {event.topic}{route}: {event.reason}{kept}\n    {_preview(event.payload)}"


async def _failed(args: argparse.Namespace) -> int:
    from ..service import read_config  # noqa: PLC0415 - the service's sections, without a cycle at import

    config = await asyncio.to_thread(read_config, args.config)
    settings = mqtt_settings(config)
    if settings is None:
        print("this config has no mqtt section")
        return 2
    if not await asyncio.to_thread(settings.state_file.exists):
        print(f"no failed events ({settings.state_file} does not exist yet)")
        return 0
    journal = Journal(settings.state_file)
    await journal.open()
    try:
        events = await journal.failed(args.limit)
    finally:
        await journal.close()
    for event in events:
        print(_line(event, args.json))
    if not args.json:
        print(f"{len(events)} failed event(s) shown (kept: the newest {settings.failed_keep})")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    return asyncio.run(_failed(args))
