"""Exceptions raised by the core; each carries a message a user can act on, never a secret."""

from __future__ import annotations


class AcsEmailError(Exception):
    """Base class for every error the core raises on purpose."""


class ValidationError(AcsEmailError, ValueError):
    """A message (or part of it) that ACS would refuse; ``field`` names the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class OutboxFullError(AcsEmailError):
    """The outbox holds its configured maximum; the caller still owns the message."""


class TemplateError(AcsEmailError):
    """A template failed to compile or render; names the template and, if known, the variable."""

    def __init__(self, template: str, message: str, variable: str | None = None) -> None:
        super().__init__(f"template {template!r}: {message}")
        self.template = template
        self.variable = variable


class ConfigError(AcsEmailError):
    """Configuration that cannot work (missing credentials, unknown preset, unreadable file)."""


class OutboxError(AcsEmailError):
    """The outbox file cannot be read or written (corrupt, read-only, disk full, locked); names the file."""
