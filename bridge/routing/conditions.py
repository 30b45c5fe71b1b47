"""``when:`` conditions: comparisons on paths into the payload, or a Jinja expression in the sandbox."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from acs_email_core.errors import TemplateError
from acs_email_core.templates import Template, TemplateRenderer

from .payload import MISSING, lookup, split_path


class Condition(Protocol):
    def holds(self, variables: Mapping[str, Any]) -> bool: ...

    def explain(self) -> str: ...


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _equal(value: Any, operand: Any) -> bool:
    """YAML and JSON disagree on types (``"100.0"`` vs ``100``, ``true`` vs ``"true"``): compare loosely."""
    if isinstance(value, bool) or isinstance(operand, bool):
        return str(value).lower() == str(operand).lower()
    left, right = _number(value), _number(operand)
    if left is not None and right is not None:
        return left == right
    if isinstance(value, str) or isinstance(operand, str):
        return str(value) == str(operand)
    return bool(value == operand)


def _order(value: Any, operand: Any) -> tuple[Any, Any] | None:
    left, right = _number(value), _number(operand)
    if left is not None and right is not None:
        return left, right
    if isinstance(value, str) and isinstance(operand, str):
        return value, operand
    return None


def _contains(value: Any, operand: Any) -> bool:
    if isinstance(value, str):
        return str(operand) in value
    if isinstance(value, list):
        return any(_equal(item, operand) for item in value)
    if isinstance(value, Mapping):
        return str(operand) in value
    return False


class PathCondition:
    """``{path: after.label, in: [person, car]}``; a missing path only satisfies ``exists: false``."""

    def __init__(self, path: str, operator: str, operand: Any) -> None:
        self.path, self.operator, self.operand = path, operator, operand
        self._parts = split_path(path)
        self._regex = re.compile(str(operand)) if operator == "matches" else None

    def holds(self, variables: Mapping[str, Any]) -> bool:
        value = lookup(variables.get("payload"), self._parts)
        op, operand = self.operator, self.operand
        if op == "exists":
            return (value is not MISSING) == bool(operand)
        if value is MISSING:
            return False
        if op == "eq":
            return _equal(value, operand)
        if op == "ne":
            return not _equal(value, operand)
        if op == "in":
            return any(_equal(value, o) for o in operand)
        if op == "not_in":
            return not any(_equal(value, o) for o in operand)
        if op == "contains":
            return _contains(value, operand)
        if op == "matches":
            return self._regex is not None and self._regex.search(str(value)) is not None
        pair = _order(value, operand)
        if pair is None:
            return False
        left, right = pair
        return bool({"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[op])

    def explain(self) -> str:
        if self.operator == "exists":
            return f"payload.{self.path} {'exists' if self.operand else 'is missing'}"
        return f"payload.{self.path} {self.operator.replace('_', ' ')} {self.operand!r}"


class ExpressionCondition:
    """A Jinja expression such as ``payload.after.top_score > 0.7 and 'yard' in payload.after.current_zones``."""

    def __init__(self, name: str, expression: str, renderer: TemplateRenderer) -> None:
        self.expression = strip_braces(expression)
        try:  # in brackets, so that an inline if/else is allowed too
            self._template: Template = renderer.compile(name, f"{{% if ({self.expression}) %}}1{{% endif %}}")
        except TemplateError:  # the message then speaks of a bracket the user never wrote: ask without them
            renderer.compile(name, f"{{% if {self.expression} %}}1{{% endif %}}")
            raise

    def holds(self, variables: Mapping[str, Any]) -> bool:
        return self._template.render(variables) == "1"

    def explain(self) -> str:
        return self.expression


def strip_braces(expression: str) -> str:
    """Accept ``{{ x > 1 }}`` (Home Assistant habit) as well as ``x > 1``."""
    text = expression.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2].strip()
    return text


def compile_when(name: str, value: str | list[dict[str, Any]], renderer: TemplateRenderer) -> list[Condition]:
    """Conditions of a route, all of which must hold."""
    if isinstance(value, str):
        return [ExpressionCondition(name, value, renderer)]
    result: list[Condition] = []
    for item in value:
        operator = next(k for k in item if k != "path")
        result.append(PathCondition(item["path"], operator, item[operator]))
    return result
