"""``acs-email-bridge check`` (validate and explain each route) and ``render`` (show the mail, send nothing)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from acs_email_core.errors import AcsEmailError, ConfigError

from ..mqtt.config import mqtt_settings, tls_context
from ..mqtt.events import InboundEvent
from ..smtp.config import smtp_settings
from . import compose
from .payload import PayloadError
from .routes import Route, RoutingConfig
from .service import NO_MQTT, routing_of

COMMANDS = ("check", "render")


def configure(sub: Any) -> None:
    """Add the two subcommands to the main parser's subparsers."""
    check = sub.add_parser("check", help="validate a config file and explain what each route does")
    check.add_argument("--config", "-c", required=True, help="YAML config file")
    render = sub.add_parser("render", help="print the mail a route would make of a message, without sending")
    render.add_argument("--config", "-c", required=True, help="YAML config file")
    render.add_argument("--route", required=True, help="route (or preset) name")
    render.add_argument("--topic", required=True, help="the MQTT topic the message arrived on")
    render.add_argument("--payload", required=True, help="file with the message payload ('-' for stdin)")
    render.add_argument(
        "--companion",
        action="append",
        default=[],
        metavar="TOPIC=FILE",
        help="the latest message of a companion topic (snapshot, UPS charge); repeatable",
    )


def _load(path: str) -> tuple[Any, RoutingConfig]:
    from ..service import read_config  # noqa: PLC0415 - the service module pulls in paho and prometheus

    config = read_config(path)
    return config, routing_of(config)


def run(args: argparse.Namespace) -> int:
    """Run ``check`` or ``render``; errors are AcsEmailError (the caller prints them, exit 2)."""
    if args.command == "check":
        return _check(args.config)
    return asyncio.run(_render(args))


def _check(path: str) -> int:
    config, routing = _load(path)
    _check_files(config)
    print(f"{config.path}: valid; {len(routing.routes)} route(s)")
    for route in routing.routes:
        print(f"\n{route.name}")
        for line in route.explain():
            print(f"  {line}")
    if routing.companion_filters:
        print(f"\nkeeps the latest message of: {', '.join(routing.companion_filters)}")
    print(f"\nsubscribes to: {', '.join(routing.subscriptions()) or 'nothing'}")
    if routing.routes and "mqtt" not in config.sections:
        print(f"warning: {NO_MQTT}", file=sys.stderr)
    return 0


def _check_files(config: Any) -> None:
    """The TLS files the sources read when they start (``run`` would stop there): ConfigError names the key."""
    mqtt = mqtt_settings(config)
    if mqtt is not None and mqtt.tls is not None:
        tls_context(mqtt.tls)
    smtp = config.sections.get("smtp")
    if smtp and smtp.get("cert_file"):
        from ..smtp.tls import load_certificate, server_context  # noqa: PLC0415 - cryptography: only here

        settings = smtp_settings(smtp, config.engine, config.base_dir)
        server_context(load_certificate(settings), settings.min_tls_version)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None


async def _render(args: argparse.Namespace) -> int:
    config, routing = await asyncio.to_thread(_load, args.config)
    try:
        route = routing.route(args.route)
    except KeyError:
        names = ", ".join(r.name for r in routing.routes)
        raise ConfigError(f"no route named {args.route!r} (routes: {names})") from None
    if not route.accepts(args.topic):
        print(f"note: {args.topic} does not match the route's topics ({', '.join(route.filters)})")
    payload = await asyncio.to_thread(_read, args.payload)
    companions: dict[str, bytes] = {}
    for item in args.companion:
        topic, sep, file = item.partition("=")
        if not sep:
            raise ConfigError(f"--companion {item!r}: expected TOPIC=FILE")
        companions[topic] = await asyncio.to_thread(_read, file)
    event = InboundEvent(args.topic, payload, 1, False, time.time(), "render")
    try:
        return await _show(route, routing, event, companions, config.engine.sender)
    except (PayloadError, AcsEmailError) as err:
        print(f"this message would fail on route {route.name}: {err}")
        return 1


async def _show(
    route: Route, routing: RoutingConfig, event: InboundEvent, companions: dict[str, bytes], sender: str
) -> int:
    context = compose.variables(event, route, compose.parse(event, route), routing.renderer, companions.get)
    failing = [c.explain() for c in route.when if not c.holds(context)]
    if failing:
        print(f"dropped by 'when': {'; '.join(failing)}")
        return 1
    compose.add_vars(route, context)
    if route.change_only:
        context["previous"] = route.change_only.initial
        context["value"] = route.change_only.value.render(context)
        print(f"change_only: value {context['value']!r} (previous taken as {context['previous']!r})")
    attachments = await compose.attachments(route, context, companions.get)
    message = compose.build(compose.render(route, context, attachments), sender=sender, message_id=None)
    print(f"From: {message.sender}")
    for label, addresses in (
        ("To", message.to),
        ("Cc", message.cc),
        ("Bcc", message.bcc),
        ("Reply-To", message.reply_to),
    ):
        if addresses:
            shown = (a.address if not a.display_name else f"{a.display_name} <{a.address}>" for a in addresses)
            print(f"{label}: {', '.join(shown)}")
    print(f"Subject: {message.subject}")
    print(f"Priority: {message.priority.value}")
    for a in message.attachments:
        inline = f", inline as cid:{a.content_id}" if a.content_id else ""
        print(f"Attachment: {a.name} ({a.content_type}, {len(a.data):,} bytes{inline})")
    if message.text is not None:
        print(f"\n--- text ---\n{message.text}")
    if message.html is not None:
        print(f"\n--- html ---\n{message.html}")
    return 0
