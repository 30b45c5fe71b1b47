"""Jinja2 templates that turn (untrusted) payloads into mail subject, text and HTML.

Templates run in an immutable sandbox: a payload is data, and a template can neither reach Python internals
nor modify the payload it shares with the other templates of a route. HTML templates autoescape, so a
payload value such as ``<script>`` shows as text in the mail instead of becoming markup. Undefined names
fail loudly (``StrictUndefined``) and the error names the template, the line and the full path of what was
missing (``payload.after.label``): a half-empty alert mail is worse than a clear error in the log.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import do_filesizeformat
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from .errors import TemplateError

# Epoch numbers above this are milliseconds (Zigbee2MQTT ``last_seen: epoch``); as seconds it is year 5138.
_MILLISECONDS_FROM = 1e11
_LINE_BREAKS = re.compile(r"\s*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]\s*")
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")


class _MissingVariable(UndefinedError):
    """An undefined value was used; keeps its name and owner so the error can name the full path."""

    def __init__(self, undefined: _Undefined, message: str | None = None) -> None:
        super().__init__(message)
        self.name: Any = undefined._undefined_name
        self.owner: Any = undefined._undefined_obj


class _Undefined(ChainableUndefined, StrictUndefined):
    """Fails on use, not on lookup, so ``payload.before.label | default('-')`` works when ``before`` is absent.

    Its error says which name was missing; sandbox violations keep their SecurityError.
    """

    __slots__ = ()

    def __init__(
        self, hint: str | None = None, obj: Any = missing, name: str | None = None, exc: Any = UndefinedError
    ) -> None:
        if exc is UndefinedError:
            exc = functools.partial(_MissingVariable, self)
        super().__init__(hint, obj, name, exc)


def to_json(value: Any, indent: int | None = None) -> str:
    """Single-line JSON (or indented), non-ASCII kept readable; unknown objects such as datetimes as text."""
    separators = (",", ":") if indent is None else None
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, default=str)


def _finalize(value: Any) -> Any:
    """Print ``None`` as nothing and dicts/lists as JSON, the format the payload arrived in, not Python repr."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return to_json(value)
    return value


class Template:
    """A compiled template; render it once per message."""

    def __init__(self, name: str, source: str, template: JinjaTemplate, *, single_line: bool) -> None:
        self.name = name
        self._source = source
        self._template = template
        self._single_line = single_line
        # Without "{" there is no Jinja syntax: the text is the same for every message (a fixed recipient, say).
        self._constant: str | None = None
        if "{" not in source:
            self._constant = self.render({})

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render; any failure becomes a TemplateError naming this template, the line and the variable."""
        if self._constant is not None:
            return self._constant
        try:
            text = self._template.render(variables)
        except SecurityError as exc:
            raise TemplateError(self.name, f"line {self._line(exc)}: not allowed in templates: {exc}") from None
        except _MissingVariable as exc:
            variable = self._missing_path(exc, variables)
            raise TemplateError(
                self.name,
                f"line {self._line(exc)}: {variable!r} is undefined "
                "(use '| default(...)' or 'is defined' for optional values)",
                variable,
            ) from None
        except Exception as exc:
            raise TemplateError(self.name, f"line {self._line(exc)}: {type(exc).__name__}: {exc}") from exc
        if self._single_line:
            return _LINE_BREAKS.sub(" ", text).strip()
        return text

    def _line(self, exc: BaseException) -> int | str:
        """Template line of the innermost template frame (Jinja rewrites tracebacks to point at the source)."""
        line: int | str = "?"
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self._template.filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        return line

    def _missing_path(self, exc: _MissingVariable, variables: Mapping[str, Any]) -> str:
        """Find the expression that was undefined, e.g. ``payload.after.label``, not just ``label``.

        Several expressions can end in the same name; prefer the one whose owner evaluates to the very
        object that lacked it, then the one on the failing line.
        """
        env = self._template.environment
        line = self._line(exc)
        best: tuple[bool, bool] | None = None
        path = str(exc.name)
        for node in env.parse(self._source).find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
            if isinstance(node, nodes.Name):
                if exc.owner is not missing or node.name != exc.name:
                    continue
                owner_matches = True
            elif isinstance(node, nodes.Getattr | nodes.Getitem):
                if exc.owner is missing or _key(node) != exc.name:
                    continue
                owner_matches = _evaluate(env, node.node, variables) is exc.owner
            else:
                continue
            candidate = _path(node)
            score = (owner_matches, node.lineno == line)
            if candidate is not None and (best is None or score > best):
                best, path = score, candidate
        return path


def _key(node: nodes.Getattr | nodes.Getitem) -> Any:
    if isinstance(node, nodes.Getattr):
        return node.attr
    return node.arg.value if isinstance(node.arg, nodes.Const) else missing


def _path(node: nodes.Node) -> str | None:
    """``payload.after.label`` for a chain of names, attributes and constant subscripts; None otherwise."""
    if isinstance(node, nodes.Name):
        return node.name
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return None
    base, key = _path(node.node), _key(node)
    if base is None or key is missing:
        return None
    return f"{base}.{key}" if isinstance(key, str) and _IDENTIFIER.match(key) else f"{base}[{key!r}]"


def _evaluate(env: Any, node: nodes.Node, variables: Mapping[str, Any]) -> Any:
    """Value of a name/attribute chain over the render variables; ``missing`` when it cannot be known."""
    if isinstance(node, nodes.Name):
        return variables.get(node.name, missing)
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return missing
    owner, key = _evaluate(env, node.node, variables), _key(node)
    if owner is missing or key is missing:
        return missing
    return env.getattr(owner, key) if isinstance(node, nodes.Getattr) else env.getitem(owner, key)


class TemplateRenderer:
    """Compiles templates with the sandbox, autoescape policy and helpers; times shown in ``timezone``.

    Helpers: filters ``datetime(format)``, ``timestamp``, ``filesize``, ``tojson(indent)``, ``fromjson``;
    global ``now()``. Without a timezone the host's local time is used.
    """

    def __init__(self, *, timezone: tzinfo | None = None) -> None:
        self._timezone = timezone
        self._text_env = self._environment(autoescape=False)
        self._html_env = self._environment(autoescape=True)

    def _environment(self, *, autoescape: bool) -> ImmutableSandboxedEnvironment:
        env = ImmutableSandboxedEnvironment(autoescape=autoescape, undefined=_Undefined, finalize=_finalize)
        env.filters.update(
            datetime=self.format_datetime,
            timestamp=self.to_timestamp,
            filesize=do_filesizeformat,
            tojson=to_json,
            fromjson=json.loads,
        )
        env.globals["now"] = self.now
        return env

    def compile(self, name: str, source: str, *, html: bool = False, single_line: bool = False) -> Template:
        """Compile once; ``html`` turns on autoescape, ``single_line`` (subjects) folds line breaks into spaces."""
        env = self._html_env if html else self._text_env
        try:
            code = env.compile(source, name=name, filename=f"<template {name}>")
        except TemplateSyntaxError as exc:
            raise TemplateError(name, f"line {exc.lineno}: {exc.message}") from None
        # A plain dict, not Jinja's ChainMap over the environment's globals: each render copies the globals into
        # its context, which for a ChainMap is a slow Python-level walk. Nothing is added to them after this.
        jinja_template = env.template_class.from_code(env, code, dict(env.globals))
        return Template(name, source, jinja_template, single_line=single_line)

    def now(self) -> datetime:
        """Current time in the configured timezone."""
        return datetime.now(UTC).astimezone(self._timezone)

    def to_datetime(self, value: Any) -> datetime:
        """Epoch seconds (or milliseconds), numeric or ISO 8601 string, or datetime -> aware datetime.

        Naive values are taken as wall-clock time in the configured timezone.
        """
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                try:
                    value = datetime.fromisoformat(value.strip())
                except ValueError:
                    raise ValueError(f"{value!r} is neither epoch seconds nor an ISO 8601 time") from None
        if isinstance(value, datetime):
            when = value
            if when.tzinfo is None:
                when = when.replace(tzinfo=self._timezone) if self._timezone else when.astimezone()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if abs(value) >= _MILLISECONDS_FROM else value
            when = datetime.fromtimestamp(seconds, UTC)
        else:
            raise ValueError(f"{value!r} is not a time")
        return when.astimezone(self._timezone)

    def format_datetime(self, value: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        """Filter ``datetime``: ``{{ payload.start_time | datetime('%H:%M') }}``."""
        return self.to_datetime(value).strftime(fmt)

    def to_timestamp(self, value: Any) -> float:
        """Filter ``timestamp``: epoch seconds, for arithmetic such as durations."""
        return self.to_datetime(value).timestamp()
