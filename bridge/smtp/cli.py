"""``acs-email-bridge smtp …``: device accounts and the relay's certificate.

``smtp device add NAME`` prints a new password once (only its scrypt hash is kept), ``smtp devices`` lists
devices with their last activity, ``smtp cert`` shows the certificate fingerprint to give to devices.
"""

from __future__ import annotations

import argparse
import sys
import time

from acs_email_core.errors import ConfigError

from .accounts import DeviceRecord, DeviceStore
from .config import DEVICE_NAME, SmtpSettings
from .source import settings_of

EXIT_OK, EXIT_INVALID = 0, 2


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``smtp`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="smtp_command", required=True)
    device = sub.add_parser("device", help="add or remove a device account")
    device.add_argument("action", choices=["add", "remove"])
    device.add_argument("name", help="the device's SMTP user name (letters, digits, . _ @ + -)")
    device.add_argument("--config", "-c", required=True, help="YAML config file")
    device.add_argument("--replace", action="store_true", help="add: give an existing device a new password")
    devices = sub.add_parser("devices", help="list devices and their last activity")
    devices.add_argument("--config", "-c", required=True)
    cert = sub.add_parser("cert", help="show (and create if needed) the relay's certificate and its fingerprint")
    cert.add_argument("--config", "-c", required=True)


def _settings(path: str) -> SmtpSettings:
    from ..service import read_config  # noqa: PLC0415 - the service imports this package

    settings = settings_of(read_config(path))
    if settings is None:
        raise ConfigError(f"{path} has no smtp: section (the relay is off)")
    return settings


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _device(args: argparse.Namespace, settings: SmtpSettings) -> int:
    store = DeviceStore(settings.accounts_path)
    if args.action == "remove":
        if not store.remove(args.name):
            print(f"no device {args.name!r} in {settings.accounts_path}", file=sys.stderr)
            return EXIT_INVALID
        print(f"removed device {args.name!r}")
        return EXIT_OK
    if not DEVICE_NAME.match(args.name):
        print(f"{args.name!r} is not a device name (letters, digits, . _ @ + -; up to 64)", file=sys.stderr)
        return EXIT_INVALID
    try:
        password = store.add(args.name, replace=args.replace)
    except KeyError:
        print(f"device {args.name!r} exists; --replace gives it a new password", file=sys.stderr)
        return EXIT_INVALID
    ports = [f"{settings.submission_port} (STARTTLS)"] if settings.submission_port else []
    ports += [f"{settings.smtps_port} (SSL/TLS)"] if settings.smtps_port else []
    device = settings.devices.get(args.name)
    if device is not None and device.insecure_auth and settings.plain_port:
        ports.append(f"{settings.plain_port} (no encryption; this device may log in without TLS)")
    print(f"device {args.name!r}: password (shown only now; only a hash is kept)\n\n    {password}\n")
    print(f"on the device: SMTP server {settings.hostname}, port {' or '.join(ports) or 'none enabled'},")
    print(f"authentication on (LOGIN or PLAIN), user name {args.name}, the password above")
    if args.name not in settings.devices:
        print(
            f"\nnote: {args.name!r} has no policy yet, so it cannot send; add it to the config:\n"
            f"  smtp:\n    devices:\n      {args.name}:\n        recipients: [you@example.com]",
            file=sys.stderr,
        )
    return EXIT_OK


def _devices(settings: SmtpSettings) -> int:
    records = {r.name: r for r in DeviceStore(settings.accounts_path).list()}
    names = sorted(set(records) | set(settings.devices))
    print(f"{'device':20}  {'login':8}  {'policy':6}  {'last activity':19}  {'from':15}  {'mails':>5}")
    for name in names:
        record = records.get(name) or DeviceRecord(name, False, 0.0, None, None, 0)
        policy = settings.devices.get(name)
        login = "network" if policy is not None and policy.auth == "none" else "password"
        if login == "password" and not record.has_password:
            login = "missing"  # in the config but no account yet: `smtp device add`
        print(
            f"{name:20}  {login:8}  {'yes' if policy else 'NO':6}  {_when(record.last_seen):19}  "
            f"{record.last_peer or '-':15}  {record.accepted:>5}"
        )
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run an ``smtp`` sub-command (blocking: no event loop needed)."""
    settings = _settings(args.config)
    if args.smtp_command == "device":
        return _device(args, settings)
    if args.smtp_command == "devices":
        return _devices(settings)
    from .tls import load_certificate  # noqa: PLC0415 - cryptography only for this sub-command

    certificate = load_certificate(settings)
    print(f"certificate: {certificate.cert_file}{' (generated by the relay)' if certificate.generated else ''}")
    print(f"SHA-256 fingerprint: {certificate.sha256}")
    print(f"SHA-1 fingerprint:   {certificate.sha1}")
    return EXIT_OK
