"""A compiled core template that remembers its source, so ``check`` can show what a route does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acs_email_core.templates import Template, TemplateRenderer


@dataclass(frozen=True)
class Tmpl:
    source: str
    template: Template

    def render(self, variables: Mapping[str, Any]) -> str:
        return self.template.render(variables)


def compile_tmpl(
    renderer: TemplateRenderer, name: str, source: str, *, html: bool = False, single_line: bool = False
) -> Tmpl:
    return Tmpl(source, renderer.compile(name, source, html=html, single_line=single_line))
