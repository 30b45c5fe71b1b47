"""``acs-email-bridge``: run the bridge, send one mail, inspect the outbox, run the ACS emulator or the demo.

Exit codes of ``send``: 0 sent, 1 dead (refused by ACS or gave up), 2 bad input or configuration,
3 still queued when ``--timeout`` ran out (it stays in the outbox and is sent by the next run), 4 ACS refused
the credentials (the mail stays queued).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from acs_email_core.config import EngineSettings
from acs_email_core.engine import Engine
from acs_email_core.errors import AcsEmailError
from acs_email_core.message import Attachment, EmailMessage
from acs_email_core.outbox import Outbox, State

from .config import load_settings
from .emulator import cli as emulator_cli
from .mqtt import cli as mqtt_cli
from .routing import cli as routing_cli
from .smtp import cli as smtp_cli

EXIT_SENT, EXIT_DEAD, EXIT_INVALID, EXIT_PENDING, EXIT_AUTH = 0, 1, 2, 3, 4
_T = TypeVar("_T")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acs-email-bridge", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", required=True)

    send = sub.add_parser("send", help="queue one mail and wait until it is sent or dead")
    send.add_argument("--config", "-c", required=True, help="YAML config file")
    send.add_argument("--to", action="append", required=True, help="recipient (repeat or comma-separate)")
    send.add_argument("--cc", action="append", default=[])
    send.add_argument("--bcc", action="append", default=[])
    send.add_argument("--reply-to", action="append", default=[])
    send.add_argument("--subject", "-s", required=True)
    send.add_argument("--text", "-t", help="plain-text body")
    send.add_argument("--html", help="HTML body")
    send.add_argument("--attach", action="append", default=[], metavar="PATH", help="attach a file (repeatable)")
    send.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    send.add_argument("--timeout", type=float, default=None, help="stop waiting after this many seconds (exit 3)")

    queue = sub.add_parser("queue", help="list, retry, purge or flush (deliver now) mails in the outbox")
    queue.add_argument("action", choices=["list", "retry", "purge", "flush"])
    queue.add_argument("ids", nargs="*", help="message ids (default: all dead letters)")
    queue.add_argument("--config", "-c", required=True)
    queue.add_argument(
        "--state", choices=[s.value for s in State], help="list: only this state; purge: dead (default) or sent"
    )
    queue.add_argument("--limit", type=int, default=100)

    run = sub.add_parser("run", help="run the bridge: engine, MQTT and other sources (SIGHUP reloads routes)")
    run.add_argument("--config", "-c", required=True, help="YAML config file")

    emulator = sub.add_parser("emulator", help="run the local ACS Email emulator")
    emulator_cli.configure_parser(emulator)

    routing_cli.configure(sub)
    mqtt_cli.configure(sub)
    smtp_cli.configure_parser(sub.add_parser("smtp", help="SMTP relay: device accounts and certificate"))
    demo = sub.add_parser("demo", help="send a sample mail through the engine to a local emulator")
    demo.add_argument("--dir", default=".demo", help="where the demo keeps its config, outbox and received mail")
    return parser


class _AuthWatch:
    """Ends a waiting command as soon as sending pauses on an authentication failure."""

    def __init__(self) -> None:
        self.reason = ""
        self._failed = asyncio.Event()

    def __call__(self, reason: str) -> None:
        self.reason = reason
        self._failed.set()

    async def unless_failed(self, waiting: Coroutine[Any, Any, _T]) -> _T | None:
        """The result of ``waiting``, or None if authentication failed first."""
        work = asyncio.ensure_future(waiting)
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait({work, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        return None if work.cancelled() else work.result()

    def report(self, settings: EngineSettings) -> int:
        print(f"authentication failed: {self.reason}; queued mail stays in {settings.outbox_path}", file=sys.stderr)
        return EXIT_AUTH


def _read_attachments(paths: Sequence[str]) -> list[Attachment]:
    return [Attachment.from_path(p) for p in paths]


async def _send(args: argparse.Namespace) -> int:
    _raw, settings = load_settings(args.config)
    attachments = await asyncio.to_thread(_read_attachments, args.attach)
    message = EmailMessage.build(
        sender=settings.sender,
        to=",".join(args.to),
        cc=",".join(args.cc) or None,
        bcc=",".join(args.bcc) or None,
        reply_to=",".join(args.reply_to) or None,
        subject=args.subject,
        text=args.text,
        html=args.html,
        attachments=attachments,
        priority=args.priority,
        limits=settings.limits,
    )
    auth = _AuthWatch()
    async with Engine(settings, on_auth_failure=auth) as engine:
        message_id = await engine.submit(message, source="cli")
        print(f"queued {message_id}", flush=True)
        try:
            async with asyncio.timeout(args.timeout):
                state = await auth.unless_failed(engine.wait_for(message_id))
        except TimeoutError:
            print(f"still queued after {args.timeout:g} s; it stays in {settings.outbox_path}", file=sys.stderr)
            return EXIT_PENDING
        if state is None:
            return auth.report(settings)
        if state is State.SENT:
            print(f"sent {message_id}")
            return EXIT_SENT
        entry = await engine.outbox.get(message_id)
        print(f"dead {message_id}: {entry.last_error if entry else 'unknown reason'}", file=sys.stderr)
        return EXIT_DEAD


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


async def _drained(engine: Engine) -> bool:
    """Wait until nothing is queued or being sent (by this process, or by one that already delivers)."""
    while True:
        stats = await engine.outbox.stats()
        if stats.queued == 0 and stats.sending == 0:
            return True
        await asyncio.sleep(0.2)


async def _flush(settings: EngineSettings) -> int:
    """Deliver what is queued, then exit: 0 when everything left was sent, 1 if some mail is dead."""
    auth = _AuthWatch()
    async with Engine(settings, on_auth_failure=auth) as engine:
        dead_before = (await engine.outbox.stats()).dead
        if await auth.unless_failed(_drained(engine)) is None:
            return auth.report(settings)
        status = await engine.status()
    print(f"sent {status.sent_total}, dead {status.dead - dead_before}")
    return EXIT_SENT if status.dead == dead_before else EXIT_DEAD


async def _queue(args: argparse.Namespace) -> int:
    _raw, settings = load_settings(args.config)
    if args.action == "flush":
        return await _flush(settings)
    async with Outbox(settings.outbox_path, max_messages=settings.max_messages, retry=settings.retry) as outbox:
        if args.action == "list":
            entries = await outbox.list(State(args.state) if args.state else None, limit=args.limit)
            now = time.time()
            print(f"{'id':36}  {'state':7}  {'age':>5}  {'retries':>7}  subject / last error")
            for e in entries:
                line = f"{e.id:36}  {e.state.value:7}  {_age(now - e.created_at):>5}  {e.attempts:>7}  {e.subject}"
                print(line + (f"  [{e.last_error}]" if e.last_error else ""))
            stats = await outbox.stats()
            print(f"queued {stats.queued}, sending {stats.sending}, sent {stats.sent}, dead {stats.dead}")
        elif args.action == "retry":
            count = await outbox.requeue(args.ids or None)
            print(f"requeued {count} dead letter(s)")
        else:
            state = State(args.state or State.DEAD.value)
            if state not in (State.DEAD, State.SENT):
                print("purge removes dead or sent mails only", file=sys.stderr)
                return EXIT_INVALID
            count = await outbox.purge(args.ids or None, state=state)
            print(f"purged {count} {state.value} mail(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose or args.command == "run":  # our own steps only: the Azure SDK's request dumps stay at WARNING
        for name in ("acs_email_core", "acs_email_bridge"):
            logging.getLogger(name).setLevel(logging.INFO)
    try:
        if args.command == "emulator":
            return emulator_cli.run(args)
        if args.command == "smtp":
            return smtp_cli.run(args)
        if args.command == "demo":
            from .demo import run_demo  # noqa: PLC0415 - keeps the usual commands' start-up light

            return asyncio.run(run_demo(Path(args.dir).resolve()))
        if args.command == "run":
            from .service import run_service  # noqa: PLC0415 - paho, prometheus only for the service

            return asyncio.run(run_service(args.config))
        if args.command in routing_cli.COMMANDS:
            return routing_cli.run(args)
        if args.command in mqtt_cli.COMMANDS:
            return mqtt_cli.run(args)
        if args.command == "send":
            return asyncio.run(_send(args))
        return asyncio.run(_queue(args))
    except AcsEmailError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted; queued mail stays in the outbox", file=sys.stderr)
        return 130
