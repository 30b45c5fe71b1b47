"""YAML configuration files for the bridge, with secrets from the environment, files or ``secrets.yaml``.

``!env_var NAME`` (optionally ``!env_var NAME default``), ``!file PATH`` and ``!secret NAME`` (a key of the
``secrets.yaml`` beside the config file, as in Home Assistant) keep secrets out of the YAML file itself; a
missing variable, file or secret is an error naming it, never a value.

Each top-level section (``acs``/``quota``/``outbox``/``limits`` for the engine, ``mqtt``, ``http``, and the
sections other parts of the bridge register) is validated by its own voluptuous schema. Errors name the file,
the line and the key: the loader remembers where every mapping key and list item was written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml

from acs_email_core.config import ENGINE_SCHEMA, EngineSettings, settings_from_config
from acs_email_core.errors import ConfigError

SECRETS_FILE = "secrets.yaml"
ENGINE_SECTIONS = ("acs", "quota", "outbox", "limits")

# A section's validator: a voluptuous schema (or any callable raising vol.Invalid) turning the raw mapping into
# the validated value that sources receive in BridgeConfig.sections.
SectionSchema = Callable[[Any], Any]


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers the line of each key (1-based)."""

    line: int = 0
    lines: dict[Any, int]


class _Seq(list[Any]):
    """A YAML sequence that remembers the line of each item (1-based)."""

    line: int = 0
    lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader plus the secret tags and line tracking, refusing a key given twice in one mapping (YAML would
    silently keep the last: two pasted ``outbox:`` blocks, say); a fresh subclass so the global SafeLoader stays
    untouched."""

    base_dir: Path = Path()
    config_name: str = ""
    secrets: dict[str, Any] | None = None


def _where(loader: _Loader, node: yaml.Node) -> str:
    """``acs.yaml, line 4``: where a node was written (as validation errors say it), for errors before validation."""
    return f"{loader.config_name}, line {node.start_mark.line + 1}"


def _refuse_repeated_keys(loader: _Loader, node: yaml.MappingNode) -> None:
    """A key written twice in one mapping is an error (keys a ``<<`` merge brings in may still be overridden)."""
    seen: set[str] = set()
    for key, _value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in seen:
                raise ConfigError(f"{_where(loader, key)}: {key.value!r} is given twice; only one can apply")
            seen.add(key.value)


def _env_var(loader: _Loader, node: yaml.Node) -> str:
    parts = str(loader.construct_scalar(node)).split(None, 1)  # type: ignore[arg-type]
    if not parts:
        raise ConfigError(f"{_where(loader, node)}: !env_var needs a variable name")
    value = os.environ.get(parts[0])
    if value is None:
        if len(parts) == 2:
            return parts[1]
        raise ConfigError(f"{_where(loader, node)}: environment variable {parts[0]} is not set")
    return value


def _file(loader: _Loader, node: yaml.Node) -> str:
    path = Path(str(loader.construct_scalar(node))).expanduser()  # type: ignore[arg-type]
    if not path.is_absolute():
        path = loader.base_dir / path
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"{_where(loader, node)}: cannot read secret file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{_where(loader, node)}: secret file {path} is not UTF-8 text") from None


def _secret(loader: _Loader, node: yaml.Node) -> Any:
    name = str(loader.construct_scalar(node)).strip()  # type: ignore[arg-type]
    path = loader.base_dir / SECRETS_FILE
    where = _where(loader, node)
    if loader.secrets is None:
        if not path.is_file():
            raise ConfigError(f"{where}: !secret {name} needs {path}, which does not exist")
        data = load_yaml(path, secrets=False)
        loader.secrets = data
    if name not in loader.secrets:
        raise ConfigError(f"{where}: secret {name!r} is not defined in {path}")
    return loader.secrets[name]


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    result = _Map()
    result.line = node.start_mark.line + 1
    result.lines = {}
    _refuse_repeated_keys(loader, node)
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor("!env_var", _env_var)
_Loader.add_constructor("!file", _file)
_Loader.add_constructor("!secret", _secret)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


class _NoSecretsLoader(_Loader):
    """For secrets.yaml itself: no ``!secret`` inside it."""


_NoSecretsLoader.add_constructor("!secret", None)  # type: ignore[arg-type]


def load_yaml(filename: str | Path, *, secrets: bool = True) -> dict[str, Any]:
    """Parse a config file (blocking: call before the event loop starts, or in a thread)."""
    path = Path(filename)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None

    class Loader(_Loader if secrets else _NoSecretsLoader):  # type: ignore[misc]
        base_dir = path.parent
        config_name = str(path)

    try:
        data = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def line_of(data: Any, path: list[Any] | tuple[Any, ...]) -> int | None:
    """The line where the value at ``path`` (keys and list indexes) was written, or of its nearest parent."""
    line: int | None = getattr(data, "line", None)
    node = data
    for key in path:
        if isinstance(node, _Map) and key in node:
            line = node.lines.get(key, line)
            node = node[key]
        elif isinstance(node, _Seq) and isinstance(key, int) and 0 <= key < len(node):
            line = node.lines[key]
            node = node[key]
        else:
            break
    return line


def describe_invalid(filename: str | Path, data: Any, err: vol.Invalid, prefix: tuple[Any, ...] = ()) -> str:
    """``FILE, line N: key.path: message`` for each error of a voluptuous failure (values never shown)."""
    errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
    parts = []
    for error in errors:
        path = (*prefix, *error.path)
        line = line_of(data, path)
        where = f"{filename}, line {line}" if line else str(filename)
        key = ".".join(str(p) for p in path) or "config"
        parts.append(f"{where}: {key}: {error.msg}")
    return "\n".join(parts)


def validate_section(filename: str | Path, data: Mapping[str, Any], name: str, schema: SectionSchema) -> Any:
    """Validate one top-level section; raises ConfigError with file, line and key."""
    try:
        return schema({} if data[name] is None else data[name])
    except vol.Invalid as err:
        raise ConfigError(describe_invalid(filename, data, err, (name,))) from None


@dataclass(frozen=True)
class BridgeConfig:
    """A loaded config file: the engine's settings, and each bridge section as its schema validated it."""

    path: Path
    engine: EngineSettings
    sections: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """Relative paths in the config are relative to its folder."""
        return self.path.parent

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, made absolute against the config's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def load_config(filename: str | Path, sections: Mapping[str, SectionSchema]) -> BridgeConfig:
    """Load and validate a whole bridge config (blocking); unknown top-level sections are errors."""
    path = Path(filename).absolute()
    data = load_yaml(path)
    known = (*ENGINE_SECTIONS, *sections)
    unknown = [key for key in data if key not in known]
    if unknown:
        lines = [f"{path}, line {line_of(data, [key])}: unknown section {key!r}" for key in unknown]
        raise ConfigError("\n".join(lines) + f" (known: {', '.join(known)})")
    engine = _engine_settings(path, data)
    validated = {name: validate_section(path, data, name, schema) for name, schema in sections.items() if name in data}
    return BridgeConfig(path=path, engine=engine, sections=validated, raw=data)


def load_settings(path: str | Path) -> tuple[dict[str, Any], EngineSettings]:
    """The raw mapping (for the bridge's own sections) and the validated engine settings."""
    data = load_yaml(path)
    return data, _engine_settings(Path(path).absolute(), data)


def _engine_settings(path: Path, data: dict[str, Any]) -> EngineSettings:
    """The engine's sections validated; every error with the file, line and key, as the bridge's own have."""
    try:
        ENGINE_SCHEMA(data)
    except vol.Invalid as err:
        raise ConfigError(describe_invalid(path, data, err)) from None
    try:
        return settings_from_config(data, base_dir=path.parent)
    except ConfigError as err:  # "invalid configuration: acs.ca_file: …": the key leads the message
        text = str(err).removeprefix("invalid configuration: ")
        line = line_of(data, text.split(":", 1)[0].split("."))
        raise ConfigError(f"{path}" + (f", line {line}" if line else "") + f": {text}") from None
