"""Compiled routes: the validated ``routes``/``presets`` sections with their templates ready to render."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import voluptuous as vol

from acs_email_core.errors import ConfigError, TemplateError, ValidationError
from acs_email_core.message import parse_addresses
from acs_email_core.templates import TemplateRenderer

from .conditions import Condition, ExpressionCondition, compile_when
from .payload import PayloadFormat
from .schema import ROUTING_SCHEMA, describe
from .tmpl import Tmpl, compile_tmpl
from .topics import matches

TOPICS_CACHED = 10_000  # topics whose matching routes a routing config remembers
DEFAULT_SUBJECT = "{{ topic }}"
DEFAULT_TEXT = (
    "{{ topic }} at {{ time | datetime }}\n\n"
    "{% if payload is mapping or (payload is sequence and payload is not string) %}{{ payload | tojson(2) }}"
    "{% else %}{{ raw }}{% endif %}\n"
)


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RouteError(ConfigError):
    """A route that validated but cannot compile (template syntax, unreadable file); ``path`` locates it."""

    def __init__(self, path: tuple[str, str | int], message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class KeyedWindow:
    """Dedup or cooldown: events with the same rendered key within ``window`` seconds."""

    key: Tmpl
    window: float


@dataclass(frozen=True)
class ChangeOnly:
    key: Tmpl
    value: Tmpl
    initial: str | None


@dataclass(frozen=True)
class Collapse:
    key: Tmpl
    until: Condition | None
    max_wait: float
    keep: float


@dataclass(frozen=True)
class Digest:
    window: float
    max_events: int


@dataclass(frozen=True)
class QuietHours:
    """A daily window such as 22:00-07:00 (wall-clock time in the routing timezone)."""

    start: tuple[int, int]
    end: tuple[int, int]

    def active(self, local: datetime) -> bool:
        now = (local.hour, local.minute)
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def next_end(self, local: datetime) -> datetime:
        """The first end of the window after ``local`` (wall clock, so 07:00 stays 07:00 across DST)."""
        end = datetime.combine(local.date(), time(*self.end), tzinfo=local.tzinfo)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), time(*self.end), tzinfo=local.tzinfo)
        return end


@dataclass(frozen=True)
class AttachmentSpec:
    source: Literal["base64", "file", "companion"]
    ref: Tmpl  # payload path (base64), file path or companion topic, rendered per event
    name: Tmpl | None
    content_type: str | None
    inline: bool
    optional: bool  # left out when its source is absent: an empty path, a companion never received
    missing_ok: bool  # (files) left out when the named file does not exist, e.g. on another host


@dataclass(frozen=True)
class Route:
    name: str
    preset: str | None
    filters: tuple[str, ...]
    fmt: PayloadFormat
    max_payload: int
    when: tuple[Condition, ...]
    to: tuple[Tmpl, ...]
    cc: tuple[Tmpl, ...]
    bcc: tuple[Tmpl, ...]
    reply_to: tuple[Tmpl, ...]
    subject: Tmpl
    text: Tmpl | None
    html: Tmpl | None
    priority: Tmpl | None
    variables: tuple[tuple[str, Tmpl], ...]
    attachments: tuple[AttachmentSpec, ...]
    allowed_dirs: tuple[Path, ...]
    companions: tuple[str, ...]
    dedup: KeyedWindow | None
    cooldown: KeyedWindow | None
    change_only: ChangeOnly | None
    collapse: Collapse | None
    digest: Digest | None
    quiet_hours: QuietHours | None
    quota_digest: bool

    @property
    def mail_index(self) -> int:
        """Which of an event's mails is this route's (``InboundEvent.mail_id``): stable across reloads."""
        return zlib.crc32(self.name.encode())

    def accepts(self, topic: str) -> bool:
        return any(matches(f, topic) for f in self.filters)

    def explain(self) -> list[str]:
        """What the route does, in words, for ``acs-email-bridge check``."""
        lines = [f"topics: {', '.join(self.filters)}" + (f" (preset {self.preset})" if self.preset else "")]
        if self.when:
            lines.append("only when: " + " and ".join(c.explain() for c in self.when))
        recipients = ", ".join(t.source for t in self.to)
        lines.append(f"mails {recipients}" + (f", cc {', '.join(t.source for t in self.cc)}" if self.cc else ""))
        lines.append(f"subject: {_short(self.subject.source)}")
        for spec in self.attachments:
            lines.append(f"attaches {spec.source} {spec.ref.source}" + (" inline" if spec.inline else ""))
        if self.change_only:
            lines.append(
                f"only when {_short(self.change_only.value.source)} changes (per {self.change_only.key.source})"
            )
        if self.dedup:
            lines.append(f"drops repeats of {self.dedup.key.source} within {self.dedup.window:g} s")
        if self.collapse:
            until = f" or until {self.collapse.until.explain()}" if self.collapse.until else ""
            lines.append(f"one mail per {self.collapse.key.source}, after {self.collapse.max_wait:g} s{until}")
        if self.cooldown:
            lines.append(
                f"at most one mail per {self.cooldown.window:g} s"
                + (f" per {self.cooldown.key.source}" if self.cooldown.key.source else "")
            )
        if self.digest:
            lines.append(f"collects events into one digest mail every {self.digest.window:g} s")
        if self.quiet_hours:
            start, end = self.quiet_hours.start, self.quiet_hours.end
            lines.append(f"quiet {start[0]:02d}:{start[1]:02d}-{end[0]:02d}:{end[1]:02d}, then one morning digest")
        if self.quota_digest:
            lines.append("collects events into a digest while the ACS quota is short")
        if self.attachments and (self.digest or self.quiet_hours or self.quota_digest):
            lines.append("digest mails carry the events' attachments as they are when the digest is sent")
        return lines


@dataclass(frozen=True)
class RoutingConfig:
    routes: tuple[Route, ...]
    renderer: TemplateRenderer
    timezone: tzinfo | None
    companion_filters: tuple[str, ...]
    companion_max_payload: int
    quota_digest_window: float
    state_path: Path | None
    # topic → (a companion topic?, the routes taking it): a few topics carry most events, and matching every
    # filter of every route against each of them is per-event work. Bounded: cleared when full.
    _matching: dict[str, tuple[bool, tuple[Route, ...]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def matching(self, topic: str) -> tuple[bool, tuple[Route, ...]]:
        """Whether ``topic`` is a companion topic, and the routes that accept it, in order."""
        found = self._matching.get(topic)
        if found is None:
            if len(self._matching) >= TOPICS_CACHED:
                self._matching.clear()
            companion = any(matches(f, topic) for f in self.companion_filters)
            found = self._matching[topic] = (companion, tuple(r for r in self.routes if r.accepts(topic)))
        return found

    def route(self, name: str) -> Route:
        for route in self.routes:
            if route.name == name:
                return route
        raise KeyError(name)

    def subscriptions(self) -> list[str]:
        """Every topic filter the MQTT source must subscribe to (routes and companions), once each."""
        return list(dict.fromkeys([f for r in self.routes for f in r.filters] + list(self.companion_filters)))


def routing_from_config(config: dict[str, Any], *, base_dir: Path) -> RoutingConfig:
    """Validate the ``routes``/``presets``/``routing`` sections and compile them; ConfigError names the key path.

    Reads template files, so call it before the event loop runs or in a thread.
    """
    try:
        data = ROUTING_SCHEMA(config)
    except vol.Invalid as err:
        raise ConfigError(f"invalid configuration:\n{describe(err, config)}") from None
    return compile_routing(data["routes"], data["presets"], data["routing"], base_dir=base_dir)


def compile_routing(
    routes_section: list[dict[str, Any]], presets: list[dict[str, Any]], options: dict[str, Any], *, base_dir: Path
) -> RoutingConfig:
    """Compile already validated sections (as ROUTES_SECTION, PRESETS_SECTION and ROUTING_SECTION return them)."""
    timezone: tzinfo | None = None
    if "timezone" in options:
        try:
            timezone = ZoneInfo(options["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise RouteError(
                ("routing", "timezone"), f"routing.timezone: unknown time zone {options['timezone']!r}"
            ) from None
    renderer = TemplateRenderer(timezone=timezone)
    templates_dir = _resolve(base_dir, options.get("templates_dir", "."))
    global_dirs = tuple(_resolve(base_dir, d) for d in options["allowed_dirs"])
    routes: list[Route] = []
    seen: set[str] = set()
    entries = [(("routes", i), raw) for i, raw in enumerate(routes_section)] + [
        (("presets", raw["preset"]), raw) for raw in presets
    ]
    for path, raw in entries:
        where = f"presets.{raw['preset']}" if raw.get("preset") else f"routes[{path[1]}] ({raw['name']})"
        if raw["name"] in seen:
            raise RouteError(path, f"{where}: a route named {raw['name']!r} exists already; give it another name")
        seen.add(raw["name"])
        if not raw.get("enabled", True):
            continue
        try:
            routes.append(_compile(raw, renderer, templates_dir, global_dirs, options["max_payload"]))
        except (TemplateError, ConfigError, vol.Invalid) as err:
            raise RouteError(path, f"{where}: {err}") from None
    indexes: dict[int, str] = {}
    for route in routes:  # two names with one CRC would give their mails one id (odds: one in billions): refuse
        if route.mail_index in indexes:
            raise ConfigError(f"routes {indexes[route.mail_index]!r} and {route.name!r}: rename one of them")
        indexes[route.mail_index] = route.name
    companions = tuple(dict.fromkeys(f for r in routes for f in r.companions))
    state_path = _resolve(base_dir, options["state_path"]) if "state_path" in options else None
    return RoutingConfig(
        routes=tuple(routes),
        renderer=renderer,
        timezone=timezone,
        companion_filters=companions,
        companion_max_payload=options["companion_max_payload"],
        quota_digest_window=options["quota_digest_window"],
        state_path=state_path,
    )


def _resolve(base_dir: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def _template_source(raw: dict[str, Any], key: str, templates_dir: Path) -> str | None:
    if key in raw:
        return str(raw[key])
    if f"{key}_file" in raw:
        path = _resolve(templates_dir, raw[f"{key}_file"])
        try:
            return path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{key}_file: cannot read {path}: {err.strerror}") from None
    return None


def _compile(
    raw: dict[str, Any],
    renderer: TemplateRenderer,
    templates_dir: Path,
    global_dirs: tuple[Path, ...],
    max_payload: int,
) -> Route:
    name = raw["name"]
    if not raw.get("topic"):
        raise ConfigError("topic is required (a filter such as frigate/events)")
    if not raw.get("to"):
        raise ConfigError("to is required (who gets the mail)")

    def single(key: str, source: str) -> Tmpl:
        return compile_tmpl(renderer, f"{name}.{key}", source, single_line=True)

    def many(key: str) -> tuple[Tmpl, ...]:
        templates = tuple(single(f"{key}[{i}]", s) for i, s in enumerate(raw.get(key, [])))
        for i, template in enumerate(templates):
            if "{" not in template.source:  # a fixed address is checked now, as it will be mailed, not per event
                try:
                    parse_addresses(template.render({}) or None)
                except ValidationError as err:
                    raise ConfigError(f"{key}[{i}]: {template.source!r}: {err.reason}") from None
        return templates

    text = _template_source(raw, "text", templates_dir)
    html = _template_source(raw, "html", templates_dir)
    if text is None and html is None:
        text = DEFAULT_TEXT
    attachments = tuple(
        AttachmentSpec(
            source=source,
            ref=single(f"attachments[{i}].{source}", spec[source]),
            name=single(f"attachments[{i}].name", spec["name"]) if "name" in spec else None,
            content_type=spec.get("content_type"),
            inline=spec["inline"],
            optional=spec["optional"],
            missing_ok=spec["missing_ok"],
        )
        for i, spec in enumerate(raw.get("attachments", []))
        for source in ("base64", "file", "companion")
        if source in spec
    )
    allowed_dirs = tuple(_resolve(templates_dir, d) for d in raw.get("allowed_dirs", [])) + global_dirs
    if any(a.source == "file" for a in attachments) and not allowed_dirs:
        raise ConfigError("file attachments need allowed_dirs (here or under routing:) naming where files may be read")
    change = raw.get("change_only")
    collapse = raw.get("collapse")
    quiet = raw.get("quiet_hours")
    return Route(
        name=name,
        preset=raw.get("preset"),
        filters=tuple(raw["topic"]),
        fmt=raw.get("format", "auto"),
        max_payload=raw.get("max_payload", max_payload),
        when=tuple(compile_when(f"{name}.when", raw["when"], renderer)) if "when" in raw else (),
        to=many("to"),
        cc=many("cc"),
        bcc=many("bcc"),
        reply_to=many("reply_to"),
        subject=single("subject", raw.get("subject", DEFAULT_SUBJECT)),
        text=compile_tmpl(renderer, f"{name}.text", text) if text is not None else None,
        html=compile_tmpl(renderer, f"{name}.html", html, html=True) if html is not None else None,
        variables=tuple((key, single(f"vars.{key}", source)) for key, source in raw.get("vars", {}).items()),
        priority=single("priority", raw["priority"]) if "priority" in raw else None,
        attachments=attachments,
        allowed_dirs=allowed_dirs,
        companions=tuple(raw.get("companions", []))
        + tuple(f for a in attachments if a.source == "companion" for f in [_companion_filter(a.ref.source)]),
        dedup=KeyedWindow(single("dedup.key", raw["dedup"]["key"]), raw["dedup"]["window"]) if "dedup" in raw else None,
        cooldown=(
            KeyedWindow(single("cooldown.key", raw["cooldown"]["key"]), raw["cooldown"]["window"])
            if "cooldown" in raw
            else None
        ),
        change_only=(
            ChangeOnly(
                single("change_only.key", change["key"]),
                single("change_only.value", change["value"]),
                change.get("initial"),
            )
            if change
            else None
        ),
        collapse=(
            Collapse(
                key=single("collapse.key", collapse["key"]),
                until=ExpressionCondition(f"{name}.collapse.until", collapse["until"], renderer)
                if "until" in collapse
                else None,
                max_wait=collapse["max_wait"],
                keep=collapse["keep"],
            )
            if collapse
            else None
        ),
        digest=Digest(raw["digest"]["window"], raw["digest"]["max_events"]) if "digest" in raw else None,
        quiet_hours=QuietHours(quiet["start"], quiet["end"]) if quiet else None,
        quota_digest=raw.get("quota_digest", not attachments),
    )


def _companion_filter(topic_template: str) -> str:
    """``frigate/{{ payload.after.camera }}/{{ payload.after.label }}/snapshot`` → ``frigate/+/+/snapshot``."""
    levels = topic_template.split("/")
    return "/".join("+" if ("{{" in level or "{%" in level) else level for level in levels)
