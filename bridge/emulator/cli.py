"""``acs-email-bridge emulator``: run the ACS Email emulator in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from acs_email_core.errors import ValidationError
from acs_email_core.message import check_address
from acs_email_core.quota import PRESETS

from ..arguments import port, seconds, whole_seconds

if TYPE_CHECKING:
    from .server import Emulator

DEFAULT_STATE_DIR = Path(".acs-emulator")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser`` (the bridge CLI mounts it as a subcommand)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=port, default=8443, help="HTTPS port, 0 = any free one (default: %(default)s)")
    parser.add_argument("--http-port", type=port, default=None, help="also serve plain http on this port (0 = any)")
    parser.add_argument(
        "--tls-dir",
        type=Path,
        default=DEFAULT_STATE_DIR / "tls",
        help="CA and server certificate, kept across restarts (default: %(default)s)",
    )
    parser.add_argument(
        "--quota",
        choices=["none", *sorted(PRESETS)],
        default="none",
        help="enforce an ACS sending quota (default: %(default)s)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="accepted operations are kept there, so a restart still knows them; '' disables (default: %(default)s)",
    )
    parser.add_argument(
        "--senders",
        nargs="+",
        type=_sender,
        metavar="ADDRESS",
        default=None,
        help="the MailFrom addresses of the linked domains; others are refused as ACS does (default: any)",
    )
    parser.add_argument(
        "--record-dir",
        type=Path,
        default=DEFAULT_STATE_DIR / "mail",
        help="write each accepted mail there as .eml + .json; '' disables (default: %(default)s)",
    )
    parser.add_argument(
        "--access-key", default=None, help="base64 access key (default: one generated once and kept in --tls-dir)"
    )
    parser.add_argument(
        "--running-for", type=seconds, default=0.0, help="seconds an operation stays Running (default: %(default)s)"
    )
    parser.add_argument(
        "--retry-after",
        type=whole_seconds,
        default=3,
        help="Retry-After seconds on 202 and Running (default: %(default)s)",
    )


def _sender(value: str) -> str:
    """A MailFrom address as ACS lists it for a linked domain: a plain address, no display name."""
    try:
        return check_address(value.strip())
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a plain email address such as DoNotReply@example.com"
        ) from None


def banner(emu: Emulator, senders: Sequence[str] | None = None) -> str:
    """Everything a client needs, including a ready-to-paste ``acs:`` YAML block.

    ``senders`` are the emulator's ``--senders``: the pasted block uses the first, since it refuses others.
    """
    q = json.dumps  # a JSON string is a valid, safely quoted YAML scalar
    sender = (
        f"  sender: {q(senders[0])}  # one of the emulator's --senders"
        if senders
        else '  sender: "DoNotReply@example.com"  # any address; the real service wants one of a linked domain'
    )
    no_role = next((c for c in emu.clients.items() if c[0][1] in emu.without_role), None)
    lines = [
        "ACS Email emulator running",
        f"  endpoint:          {emu.endpoint}",
        *([f"  http endpoint:     {emu.http_endpoint}"] if emu.http_endpoint else []),
        f"  connection string: {emu.connection_string}",
        f"  CA file:           {emu.ca_file.resolve()}",
        f"  quota:             {emu.quota.describe() if emu.quota else 'none'}",
        f"  authority:         {emu.authority}",
        f"  tenant id:         {emu.tenant_id}",
        f"  client id:         {emu.client_id}",
        f"  client secret:     {emu.client_secret}",
        *(
            [f"  without the role:  client id {no_role[0][1]}, secret {no_role[1]} (tokens, then 403 from ACS)"]
            if no_role
            else []
        ),
        *([f"  senders:           {', '.join(senders)} (others: 400 DomainNotLinked)"] if senders else []),
        f"  admin API:         {emu.endpoint}/_emulator",
        "",
        "acs:",
        sender,
        f"  connection_string: {q(emu.connection_string)}",
        f"  ca_file: {q(str(emu.ca_file.resolve()))}",
        "  # or Entra ID (service principal) instead of the access key:",
        f"  # endpoint: {q(emu.endpoint)}",
        f"  # tenant_id: {q(emu.tenant_id)}",
        f"  # client_id: {q(emu.client_id)}",
        f"  # client_secret: {q(emu.client_secret)}",
        f"  # authority: {q(emu.authority)}",
        *([f"quota: {preset}  # as the emulator enforces it"] if (preset := _preset_name(emu)) else []),
        "",
        "Press Ctrl+C to stop.",
    ]
    return "\n".join(lines)


def _preset_name(emu: Emulator) -> str | None:
    """The name of the quota preset the emulator enforces, for the client's ``quota:`` key."""
    return next((name for name, quota in PRESETS.items() if quota == emu.quota), None)


def _access_key(args: argparse.Namespace) -> str:
    """The given key, else the one kept beside the certificates, so connection strings survive restarts."""
    if args.access_key:
        return str(args.access_key)
    path = Path(args.tls_dir) / "access_key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n", encoding="utf-8")
    return key


def _optional_dir(value: Path) -> Path | None:
    """A directory option; '' turns it off."""
    return None if str(value) in ("", ".") else value


async def _serve(args: argparse.Namespace, access_key: str) -> int:
    from .server import Emulator  # noqa: PLC0415 - aiohttp and trustme only when the emulator runs

    emu = Emulator(
        access_key,
        None if args.quota == "none" else PRESETS[args.quota],
        tls_dir=args.tls_dir,
        record_dir=_optional_dir(args.record_dir),
        state_dir=_optional_dir(args.state_dir),
        senders=args.senders,
        running_for=args.running_for,
        retry_after=args.retry_after,
    )
    try:
        await emu.start(args.host, args.port, args.http_port)
    except OSError as error:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Only the main thread may own signal handlers; elsewhere Ctrl+C arrives as KeyboardInterrupt.
        with contextlib.suppress(ValueError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    print(banner(emu, args.senders), flush=True)  # after the handlers: a supervisor may signal as soon as it reads this
    try:
        await stop.wait()
    finally:
        await emu.stop()
    print("ACS Email emulator stopped", flush=True)
    return 0


def _prepare_dirs(args: argparse.Namespace) -> None:
    """Create the directories it writes to now: a path that cannot be one is a usage error, not a failed send."""
    for option in ("tls_dir", "state_dir", "record_dir"):
        directory = _optional_dir(getattr(args, option))
        if directory is None:
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"--{option.replace('_', '-')} {directory}: {error.strerror}") from None


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit status."""
    try:
        _prepare_dirs(args)
        return asyncio.run(_serve(args, _access_key(args)))
    except ValueError as error:  # e.g. an access key that is not base64
        print(f"emulator: {error}", file=sys.stderr)
        return 2
