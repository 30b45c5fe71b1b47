"""Turning payload bytes into template data, and dotted paths into nested values."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

PayloadFormat = Literal["auto", "json", "text", "binary"]
_PATH_PART = re.compile(r"[^.\[\]]+|\[(-?\d+)\]")
MISSING: Any = object()


class PayloadError(ValueError):
    """The payload cannot be read the way the route expects; the message is the log/outcome reason."""


def decode(payload: bytes, fmt: PayloadFormat) -> tuple[Any, str | None]:
    """(parsed value, text): JSON parsed when it is JSON, else the text; ``binary`` keeps the bytes.

    ``auto`` accepts JSON or text; ``json`` requires JSON; a payload that is not UTF-8 fails unless ``binary``.
    """
    if fmt == "binary":
        return payload, None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError(f"binary payload ({len(payload)} bytes, not UTF-8 at byte {err.start})") from None
    if fmt == "text":
        return text, text
    stripped = text.strip()
    if stripped[:1] in ("{", "[", '"') or fmt == "json":
        try:
            return json.loads(stripped), text
        except RecursionError:
            raise PayloadError("invalid JSON: nested too deep") from None
        except ValueError as err:
            if fmt == "json" or stripped[:1] in ("{", "["):
                raise PayloadError(f"invalid JSON: {err}") from None
    if stripped in ("true", "false", "null"):
        return json.loads(stripped), text
    if _is_number(stripped):
        try:
            return json.loads(stripped), text
        except ValueError:  # "+5", ".5", "5.": numbers, not JSON; 5,000 digits: too long for an int
            number = float(stripped)
            return (number if math.isfinite(number) else text), text
    return text, text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.lower() not in ("nan", "inf", "-inf", "infinity", "-infinity", "+inf")


def split_path(path: str) -> tuple[str | int, ...]:
    """``after.zones[0]`` or ``after.zones.0`` → ("after", "zones", 0)."""
    parts: list[str | int] = []
    for match in _PATH_PART.finditer(path):
        if match.group(1) is not None:
            parts.append(int(match.group(1)))
        else:
            token = match.group(0)
            parts.append(int(token) if token.lstrip("-").isdigit() else token)
    return tuple(parts)


def lookup(value: Any, path: Sequence[str | int]) -> Any:
    """The value at ``path`` or MISSING; integers index lists (and string keys of mappings)."""
    for part in path:
        if isinstance(value, Mapping):
            if part in value:
                value = value[part]
            elif str(part) in value:
                value = value[str(part)]
            else:
                return MISSING
        elif isinstance(value, list) and isinstance(part, int):
            if not -len(value) <= part < len(value):
                return MISSING
            value = value[part]
        else:
            return MISSING
    return value
