"""Voluptuous schema of the ``routes``, ``presets`` and ``routing`` sections of the bridge's YAML file.

``ROUTING_SCHEMA`` validates the three sections (and lets other keys through) so the service can plug it
into its own file/line error reporting; :func:`describe` turns a voluptuous error into ``routes[2] (ups).
cooldown: ...``. Templates are only checked for syntax later, when routes are compiled.
"""

from __future__ import annotations

import re
from typing import Any

import voluptuous as vol

from acs_email_core.config import duration

from .presets import PRESETS
from .topics import validate_filter

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le", "in", "not_in", "contains", "matches", "exists")


def size(value: Any) -> int:
    """Bytes from ``65536``, ``512KiB``, ``1MB``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(str(value)) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise vol.Invalid("expected a size such as 65536, 512KiB or 1MB")
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def clock_time(value: Any) -> tuple[int, int]:
    """``22:30`` → (22, 30)."""
    match = _CLOCK.match(str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise vol.Invalid("expected a time of day such as 22:00")
    return int(match.group(1)), int(match.group(2))


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise vol.Invalid("a name of letters, digits, '_', '-' or '.'")
    return value


def _strings(value: Any) -> list[str]:
    """One string or a list of strings (recipients, filters, directories)."""
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(i, str) and i.strip() for i in items):
        raise vol.Invalid("expected a string or a list of strings")
    return [i.strip() for i in items]


def _filters(value: Any) -> list[str]:
    return [validate_filter(v) for v in _strings(value)]


def _scalar_text(value: Any) -> str:
    """A template or a plain value written as YAML scalar (``initial: false`` means the text ``False``)."""
    if isinstance(value, dict | list) or value is None:
        raise vol.Invalid("expected a text or a template")
    return str(value)


def _one_operator(condition: dict[str, Any]) -> dict[str, Any]:
    present = [op for op in OPERATORS if op in condition]
    if len(present) != 1:
        raise vol.Invalid(f"give exactly one of {', '.join(OPERATORS)}")
    if present[0] == "matches":
        try:
            re.compile(str(condition["matches"]))
        except re.error as err:
            raise vol.Invalid(f"matches: not a regular expression: {err}") from None
    if present[0] in ("in", "not_in") and not isinstance(condition[present[0]], list):
        raise vol.Invalid(f"{present[0]} needs a list")
    return condition


_CONDITION_KEYS: dict[Any, Any] = {vol.Required("path"): vol.All(str, vol.Length(min=1))}
_CONDITION_KEYS.update({vol.Optional(op): object for op in OPERATORS})
CONDITION = vol.All(
    vol.Schema(_CONDITION_KEYS),
    _one_operator,
)


def _when(value: Any) -> str | list[dict[str, Any]]:
    """A Jinja expression (string), one condition or a list of them (all must hold)."""
    if isinstance(value, str):
        return value
    items = value if isinstance(value, list) else [value]
    return [CONDITION(item) for item in items]


ATTACHMENT = vol.All(
    vol.Schema(
        {
            vol.Exclusive("base64", "source"): vol.All(str, vol.Length(min=1)),
            vol.Exclusive("file", "source"): vol.All(str, vol.Length(min=1)),
            vol.Exclusive("companion", "source"): vol.All(str, vol.Length(min=1)),
            vol.Optional("name"): vol.All(str, vol.Length(min=1)),
            vol.Optional("content_type"): str,
            vol.Optional("inline", default=False): bool,
            vol.Optional("optional", default=False): bool,
            vol.Optional("missing_ok", default=False): bool,
        }
    ),
    vol.Any(
        vol.Schema({vol.Required("base64"): object}, extra=vol.ALLOW_EXTRA),
        vol.Schema({vol.Required("file"): object}, extra=vol.ALLOW_EXTRA),
        vol.Schema({vol.Required("companion"): object}, extra=vol.ALLOW_EXTRA),
        msg="an attachment needs one of base64 (a payload path), file (a path template) or companion (a topic)",
    ),
)


def _shorthand(key: str) -> Any:
    """``cooldown: 5m`` is ``cooldown: {window: 5m}``."""

    def expand(value: Any) -> Any:
        return value if isinstance(value, dict) else {key: value}

    return expand


def _change_only(value: Any) -> Any:
    if value is True:
        return {}
    if value is False or value is None:
        return None
    return value


ROUTE_FIELDS: dict[Any, Any] = {
    vol.Optional("topic"): _filters,
    vol.Optional("enabled", default=True): bool,
    vol.Optional("format", default="auto"): vol.In(["auto", "json", "text", "binary"]),
    vol.Optional("max_payload"): size,
    vol.Optional("when"): _when,
    vol.Optional("to"): _strings,
    vol.Optional("cc"): _strings,
    vol.Optional("bcc"): _strings,
    vol.Optional("reply_to"): _strings,
    vol.Optional("subject"): _scalar_text,
    vol.Exclusive("text", "text"): _scalar_text,
    vol.Exclusive("text_file", "text"): str,
    vol.Exclusive("html", "html"): _scalar_text,
    vol.Exclusive("html_file", "html"): str,
    vol.Optional("priority"): _scalar_text,
    vol.Optional("vars"): vol.Schema({vol.Match(r"^[A-Za-z_]\w*$", msg="a variable name"): _scalar_text}),
    vol.Optional("attachments"): [ATTACHMENT],
    vol.Optional("allowed_dirs"): _strings,
    vol.Optional("companions"): _filters,
    vol.Optional("dedup"): vol.All(
        _shorthand("window"),
        {vol.Optional("key", default="{{ topic }} {{ raw }}"): _scalar_text, vol.Required("window"): duration},
    ),
    vol.Optional("cooldown"): vol.All(
        _shorthand("window"),
        {vol.Optional("key", default=""): _scalar_text, vol.Required("window"): duration},
    ),
    vol.Optional("change_only"): vol.All(
        _change_only,
        vol.Any(
            None,
            {
                vol.Optional("key", default="{{ topic }}"): _scalar_text,
                vol.Optional("value", default="{{ raw }}"): _scalar_text,
                vol.Optional("initial"): _scalar_text,
            },
        ),
    ),
    vol.Optional("collapse"): {
        vol.Required("key"): _scalar_text,
        vol.Optional("until"): str,
        vol.Optional("max_wait", default=30.0): duration,
        vol.Optional("keep", default=86400.0): duration,
    },
    vol.Optional("digest"): vol.All(
        _shorthand("window"),
        {vol.Required("window"): vol.All(duration, vol.Range(min=1)), vol.Optional("max_events", default=500): int},
    ),
    vol.Optional("quiet_hours"): {vol.Required("start"): clock_time, vol.Required("end"): clock_time},
    vol.Optional("quota_digest"): bool,
}

ROUTE = vol.Schema(
    {vol.Required("name"): _name, **ROUTE_FIELDS},
)


def _presets(value: Any) -> list[dict[str, Any]]:
    """``{frigate: {to: x}}`` or ``[{preset: frigate, to: x}]`` → validated routes (preset merged with overrides)."""
    if value is None:
        return []
    if isinstance(value, dict):
        items = [{"preset": key, **(overrides or {})} for key, overrides in value.items()]
    elif isinstance(value, list):
        items = value
    else:
        raise vol.Invalid("expected a mapping of preset names to their settings")
    result = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("preset"), str):
            raise vol.Invalid("each entry needs 'preset: NAME'", path=[index])
        preset = item["preset"]
        if preset not in PRESETS:
            raise vol.Invalid(f"unknown preset; known: {', '.join(sorted(PRESETS))}", path=[preset])
        overrides = {k: v for k, v in item.items() if k != "preset"}
        try:
            result.append({**ROUTE({"name": preset, **PRESETS[preset], **overrides}), "preset": preset})
        except vol.Invalid as err:
            raise vol.MultipleInvalid([vol.Invalid(e.msg, path=[preset, *e.path]) for e in _errors(err)]) from None
    return result


def _errors(err: vol.Invalid) -> list[vol.Invalid]:
    return list(err.errors) if isinstance(err, vol.MultipleInvalid) else [err]


ROUTING_OPTIONS = vol.Schema(
    {
        vol.Optional("timezone"): str,
        vol.Optional("allowed_dirs", default=[]): _strings,
        vol.Optional("max_payload", default=1024 * 1024): size,
        vol.Optional("companion_max_payload", default=8 * 1024 * 1024): size,
        vol.Optional("quota_digest_window", default=600.0): vol.All(duration, vol.Range(min=1)),
        vol.Optional("state_path"): str,
        vol.Optional("templates_dir"): str,
    }
)

# One schema per top-level section, for the service's SECTIONS (file and line in its errors).
ROUTES_SECTION = vol.All(lambda v: v or [], [ROUTE])
PRESETS_SECTION = _presets
ROUTING_SECTION = vol.All(lambda v: v or {}, ROUTING_OPTIONS)

ROUTING_SCHEMA = vol.Schema(
    {
        vol.Optional("routes", default=[]): ROUTES_SECTION,
        vol.Optional("presets", default=[]): PRESETS_SECTION,
        vol.Optional("routing", default={}): ROUTING_SECTION,
    },
    extra=vol.ALLOW_EXTRA,
)


def describe(err: vol.Invalid, config: dict[str, Any]) -> str:
    """``routes[1] (ups).cooldown.window: expected a duration``; one line per error."""
    lines = []
    for error in _errors(err):
        path = list(error.path)
        where = ""
        if len(path) >= 2 and path[0] == "routes" and isinstance(path[1], int):
            routes = config.get("routes") or []
            name = routes[path[1]].get("name") if path[1] < len(routes) and isinstance(routes[path[1]], dict) else None
            where = f"routes[{path[1]}]" + (f" ({name})" if name else "")
            path = path[2:]
        elif path:
            where, path = str(path[0]), path[1:]
        where = ".".join([where, *(str(p) for p in path)]) if where else ".".join(str(p) for p in path)
        lines.append(f"{where or 'config'}: {error.msg}")
    return "\n".join(lines)
