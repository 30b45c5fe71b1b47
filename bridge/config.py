"""YAML configuration files for the bridge, with secrets from the environment or from files.

``!env_var NAME`` (optionally ``!env_var NAME default``) and ``!file PATH`` keep secrets out of the
YAML file itself, as in Home Assistant; a missing variable or file is an error naming the variable or
path, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from acs_email_core.config import EngineSettings, settings_from_config
from acs_email_core.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader plus the two secret tags, refusing a key given twice in one mapping (YAML would silently keep
    the last: two pasted ``outbox:`` blocks, say); a fresh subclass so the global SafeLoader stays untouched."""

    base_dir: Path = Path()
    config_name: str = ""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        _refuse_repeated_keys(self, node)
        return super().construct_mapping(node, deep)


def _where(loader: _Loader, node: yaml.Node) -> str:
    """``acs.yaml line 4``: where a node was written, for errors that cannot name a validated key."""
    return f"{loader.config_name} line {node.start_mark.line + 1}"


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


_Loader.add_constructor("!env_var", _env_var)
_Loader.add_constructor("!file", _file)


def load_yaml(filename: str | Path) -> dict[str, Any]:
    """Parse a config file (blocking: call before the event loop starts, or in a thread)."""
    path = Path(filename)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None

    class Loader(_Loader):
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


def load_settings(path: str | Path) -> tuple[dict[str, Any], EngineSettings]:
    """The raw mapping (for the bridge's own sections) and the validated engine settings."""
    data = load_yaml(path)
    return data, settings_from_config(data, base_dir=Path(path).parent)
