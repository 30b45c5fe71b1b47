"""``acs-email-bridge``: run the bridge, send one mail, inspect the outbox, run the ACS emulator or the demo.

Exit codes of ``send``: 0 sent, 1 dead (refused by ACS or gave up), 2 bad input or configuration (nothing
queued), 3 still queued when ``--timeout`` ran out (it stays in the outbox and goes out with ``queue flush`` or
a bridge delivering from that outbox), 4 ACS refused the credentials (the mail stays queued), 5 the outbox file
cannot be used (corrupt, read-only, disk full).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import shlex
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from acs_email_core.config import EngineSettings
from acs_email_core.engine import Engine
from acs_email_core.errors import AcsEmailError, OutboxError, ValidationError
from acs_email_core.message import Attachment, EmailMessage, MessageLimits
from acs_email_core.outbox import Outbox, OutboxEntry, State
from acs_email_core.transport import CERTIFICATE_REFUSED

from .arguments import seconds
from .command import config_hint
from .config import load_settings
from .emulator import cli as emulator_cli
from .mqtt import cli as mqtt_cli
from .routing import cli as routing_cli
from .smtp import cli as smtp_cli

EXIT_SENT, EXIT_DEAD, EXIT_INVALID, EXIT_PENDING, EXIT_AUTH, EXIT_STORAGE = 0, 1, 2, 3, 4, 5
DEFAULT_SEND_TIMEOUT = 120.0  # seconds `send` waits for the outcome; 0 = no limit
_T = TypeVar("_T")
_DISPATCHER_LOG = logging.getLogger("acs_email_core.dispatcher")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acs-email-bridge", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", required=True)

    send = sub.add_parser("send", help="queue one mail and wait until it is sent or dead")
    send.add_argument("--config", "-c", required=True, help="YAML config file")
    send.add_argument("--to", action="append", default=[], help="recipient (repeat or comma-separate)")
    send.add_argument("--cc", action="append", default=[])
    send.add_argument("--bcc", action="append", default=[])
    send.add_argument("--reply-to", action="append", default=[])
    send.add_argument("--subject", "-s", required=True)
    send.add_argument("--text", "-t", help="plain-text body")
    send.add_argument("--html", help="HTML body")
    send.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="FILE[:TYPE]",
        help="attach a file (repeatable); TYPE is its MIME type when the file name does not tell an allowed one",
    )
    send.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    send.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_SEND_TIMEOUT,
        metavar="SECONDS",
        help="stop waiting after this long, exit 3, the mail stays queued (default: %(default)g; 0 = no limit)",
    )

    queue = sub.add_parser("queue", help="list, retry, purge or flush (deliver now) mails in the outbox")
    actions = queue.add_subparsers(dest="action", required=True)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", "-c", required=True, help="YAML config file")
    listing = actions.add_parser("list", parents=[config], help="show mails, newest first")
    listing.add_argument("--state", choices=[s.value for s in State], help="only mails in this state")
    listing.add_argument("--limit", type=int, default=100)
    retry = actions.add_parser("retry", parents=[config], help="put dead letters back in the queue")
    retry.add_argument("ids", nargs="*", metavar="ID", help="message ids (default: every dead letter)")
    purge = actions.add_parser("purge", parents=[config], help="delete dead (default) or sent mails")
    purge.add_argument("ids", nargs="*", metavar="ID", help="message ids (default: all in that state)")
    purge.add_argument("--state", choices=[State.DEAD.value, State.SENT.value], default=State.DEAD.value)
    flush = actions.add_parser("flush", parents=[config], help="deliver everything queued, then exit")
    flush.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_SEND_TIMEOUT,
        metavar="SECONDS",
        help="stop after this long, exit 3, what is left stays queued (default: %(default)g; 0 = no limit)",
    )

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


class _AuthWatch(logging.Filter):
    """Ends a waiting command as soon as sending pauses on an authentication failure, and has it said once:
    while the watch is on, the engine's own log line for it is dropped, as the command prints the reason with
    what to do next (azure.identity's warning with Entra's raw answer is silenced in ``main``); so is its line
    about the refusal of ``message_id``, the mail ``send`` prints the fate of."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""
        self.message_id: str | None = None
        self._failed = asyncio.Event()

    def __enter__(self) -> _AuthWatch:
        _DISPATCHER_LOG.addFilter(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _DISPATCHER_LOG.removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if "refused by ACS" in message:
            return not (isinstance(record.args, tuple) and record.args[:1] == (self.message_id,))
        return "sending paused" not in message  # the CLI says it once, with the fix

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

    def report(self, settings: EngineSettings, config: str) -> int:
        if self.reason.startswith(CERTIFICATE_REFUSED):  # not the credentials: the TLS trust or the host name
            print(self.reason, file=sys.stderr)
            fix = "fix acs.ca_file or the endpoint"
        else:
            print(f"authentication failed: {self.reason}", file=sys.stderr)
            fix = (
                "give the service principal a role on the ACS resource (Communication and Email Service Owner)"
                if "AuthorizationFailed" in self.reason
                else "fix the credentials"
            )
        hint = config_hint("flush", config)
        print(f"the mail stays queued in {settings.outbox_path}; {fix}, then run: {hint}", file=sys.stderr)
        return EXIT_AUTH


def _attachment(spec: str, limits: MessageLimits) -> Attachment:
    """``FILE`` or ``FILE:TYPE`` (a file whose own name contains ':' is taken whole when it exists).

    Reads no more than a request can carry: a file too large to send is refused without loading it whole.
    """
    path, content_type = Path(spec), None
    name, colon, given = spec.rpartition(":")
    if colon and "/" in given and not path.exists():
        path, content_type = Path(name), given.strip()
    most = limits.max_request_bytes * 3 // 4  # base64 makes 4 bytes of 3
    try:
        with path.open("rb") as file:
            data = file.read(most + 1)
    except OSError as err:
        raise ValidationError(f"attachment {str(path)!r}", f"cannot read it: {err.strerror}") from None
    if len(data) > most:
        raise ValidationError(
            f"attachment {str(path)!r}",
            f"is over {most:,} bytes, more than a request can carry after base64 "
            f"(limits.max_request_bytes: {limits.max_request_bytes:,})",
        )
    try:
        return Attachment(path.name, data, content_type)
    except ValidationError as err:
        if err.field.startswith("attachment") and "allow-list" in err.reason:
            raise ValidationError(err.field, f"{err.reason} (--attach FILE:TYPE gives the type)") from None
        raise


def _addresses(values: Sequence[str]) -> str | None:
    return ", ".join(values) or None


async def _send(args: argparse.Namespace) -> int:
    _raw, settings = await asyncio.to_thread(load_settings, args.config)
    attachments = [await asyncio.to_thread(_attachment, spec, settings.limits) for spec in args.attach]
    message = EmailMessage.build(
        sender=settings.sender,
        to=_addresses(args.to) or (),
        cc=_addresses(args.cc),
        bcc=_addresses(args.bcc),
        reply_to=_addresses(args.reply_to),
        subject=args.subject,
        text=args.text,
        html=args.html,
        attachments=attachments,
        priority=args.priority,
        limits=settings.limits,
    )
    with _AuthWatch() as auth:
        return await _deliver(args, settings, message, auth)


async def _deliver(args: argparse.Namespace, settings: EngineSettings, message: EmailMessage, auth: _AuthWatch) -> int:
    """Queue the mail, wait for its outcome (at most ``--timeout``), say what happened; the exit code."""
    async with Engine(settings, on_auth_failure=auth) as engine:
        message_id = auth.message_id = await engine.submit(message, source="cli")
        args.queued = (settings, message_id)  # for the message after Ctrl+C
        print(f"queued {message_id}", flush=True)
        try:
            async with asyncio.timeout(args.timeout or None):
                state = await auth.unless_failed(engine.wait_for(message_id))
        except TimeoutError:
            entry = await engine.outbox.get(message_id)
            last = f" (last attempt: {entry.last_error})" if entry and entry.last_error else ""
            print(
                f"still queued after {args.timeout:g} s{last}; the mail is kept in {settings.outbox_path} and is "
                f"sent by a bridge running on that outbox, or now by: {config_hint('flush', args.config)}",
                file=sys.stderr,
            )
            return EXIT_PENDING
        if state is None:
            return auth.report(settings, args.config)
        if state is State.SENT:
            print(f"sent {message_id}")
            return EXIT_SENT
        entry = await engine.outbox.get(message_id)
        reason = entry.last_error if entry and entry.last_error else "unknown reason"
        if "DomainNotLinked" in reason:
            reason = f"{reason.rstrip('.')}; acs.sender must be a MailFrom address of a domain linked to the resource"
        print(f"dead {message_id}: {reason}", file=sys.stderr)
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


async def _flush(settings: EngineSettings, config: str, limit: float) -> int:
    """Deliver what is queued, then exit: 0 when everything left was sent, 1 if some mail is dead, 3 if some
    is still queued after ``limit`` seconds (0: no limit)."""
    with _AuthWatch() as auth:
        async with Engine(settings, on_auth_failure=auth) as engine:
            dead_before = (await engine.outbox.stats()).dead
            try:
                async with asyncio.timeout(limit or None):
                    if await auth.unless_failed(_drained(engine)) is None:
                        return auth.report(settings, config)
            except TimeoutError:
                pass
            status = await engine.status()
    print(f"sent {status.sent_total}, dead {status.dead - dead_before}")
    if status.queued or status.sending:
        print(
            f"{status.queued + status.sending} mail(s) still queued after {limit:g} s; they are kept in "
            f"{settings.outbox_path} and go out with the next flush (--timeout 0 waits without limit)",
            file=sys.stderr,
        )
        return EXIT_PENDING
    return EXIT_SENT if status.dead == dead_before else EXIT_DEAD


_ERROR_LABELS = {State.SENT: "earlier attempt", State.DEAD: "reason"}


def _entry_line(entry: OutboxEntry, now: float) -> str:
    line = (
        f"{entry.id:36}  {entry.state.value:7}  {_age(now - entry.created_at):>5}  {entry.attempts:>7}  {entry.subject}"
    )
    if entry.last_error:  # a sent mail's error is history, not its state
        line += f"  [{_ERROR_LABELS.get(entry.state, 'last attempt')}: {entry.last_error}]"
    return line


async def _queue(args: argparse.Namespace) -> int:
    _raw, settings = await asyncio.to_thread(load_settings, args.config)
    if args.action == "flush":
        return await _flush(settings, args.config, args.timeout)
    async with Outbox(settings.outbox_path, max_messages=settings.max_messages, retry=settings.retry) as outbox:
        if args.action == "list":
            entries = await outbox.list(State(args.state) if args.state else None, limit=args.limit)
            now = time.time()
            print(f"{'id':36}  {'state':7}  {'age':>5}  {'retries':>7}  subject / last error")
            for entry in entries:
                print(_entry_line(entry, now))
            stats = await outbox.stats()
            print(f"queued {stats.queued}, sending {stats.sending}, sent {stats.sent}, dead {stats.dead}")
            return 0
        state = State.DEAD if args.action == "retry" else State(args.state)
        unmatched = await _not_in_state(outbox, args.ids, state)
        if args.action == "retry":
            count = await outbox.requeue(args.ids or None)
            print(f"requeued {count} dead letter(s)")
        else:
            count = await outbox.purge(args.ids or None, state=state)
            print(f"purged {count} {state.value} mail(s)")
    for line in unmatched:
        print(line, file=sys.stderr)
    return EXIT_INVALID if unmatched else 0


async def _not_in_state(outbox: Outbox, ids: Sequence[str], state: State) -> list[str]:
    """What is wrong with each given id that names no mail in ``state`` (a typo would otherwise pass as 0)."""
    problems = []
    for message_id in ids:
        entry = await outbox.get(message_id)
        if entry is None:
            problems.append(f"no mail with id {message_id!r} in {outbox.path}")
        elif entry.state is not state:
            problems.append(f"{message_id} is {entry.state.value}, not {state.value}: left as it is")
    return problems


def _freeze_startup_objects() -> None:
    """Keep what the imports built (tens of thousands of objects, kept for good) out of the collector's full passes.

    A burst of events sets off a full pass every thousand or so events, and each walked all of them: in a burst
    of 20,000 digested events those passes took 2.5 s of the event loop's time, 1.1 s with them frozen.
    """
    gc.collect()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Its warning repeats Entra's whole answer (body included) for every refused token; the engine reports it.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
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

            _freeze_startup_objects()
            return asyncio.run(run_service(args.config))
        if args.command in routing_cli.COMMANDS:
            return routing_cli.run(args)
        if args.command in mqtt_cli.COMMANDS:
            return mqtt_cli.run(args)
        if args.command == "send":
            return asyncio.run(_send(args))
        return asyncio.run(_queue(args))
    except OutboxError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_STORAGE
    except AcsEmailError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        # A second Ctrl+C cuts the clean-up short: the HTTP session left to the GC is no news to the user.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        print(f"interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return 130


def _after_interrupt(args: argparse.Namespace) -> str:
    """What became of the mail ``send`` queued (the request in flight was given time to finish)."""
    queued: tuple[EngineSettings, str] | None = getattr(args, "queued", None)
    if queued is None:
        return "queued mail stays in the outbox"
    settings, message_id = queued

    async def state() -> State | None:
        async with Outbox(settings.outbox_path, max_messages=settings.max_messages, retry=settings.retry) as outbox:
            entry = await outbox.get(message_id)
        return entry.state if entry else None

    try:
        found = asyncio.run(state())
    except Exception:  # best effort: what matters is that the command stopped and the mail is on disk
        found = None
    if found is State.SENT or found is State.DEAD:
        return f"{message_id} is {found.value} (queue list --config {shlex.quote(args.config)} shows it)"
    return (
        f"{message_id} stays queued in {settings.outbox_path}; it goes out with a bridge delivering from it, "
        f"or with: {config_hint('flush', args.config)}"
    )
