"""The contract between the service and its parts: the ``Source`` protocol and what sources share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from acs_email_core.engine import Engine

from .config import BridgeConfig
from .metrics import Metrics

if TYPE_CHECKING:
    from .mqtt.events import Router

# A health check: None when fine, else what is wrong (shown by /healthz, which then answers 503).
HealthCheck = Callable[[], "str | None"]


class Source(Protocol):
    """One part of the running bridge (MQTT client, SMTP relay, HTTP endpoint)."""

    name: str

    async def start(self) -> None:
        """Begin accepting input; return once it runs (raise if it cannot start at all)."""
        ...

    async def stop(self) -> None:
        """Stop accepting input; whatever was acknowledged is already in the outbox."""
        ...

    async def reload(self, config: BridgeConfig) -> None:
        """Apply a new, already validated config (SIGHUP); input accepted meanwhile is not lost."""
        ...


@dataclass
class BridgeContext:
    """What sources share: the engine (``submit``/``submit_many`` return once mail is on disk), metrics, router."""

    engine: Engine
    metrics: Metrics
    router: Router
    health: dict[str, HealthCheck] = field(default_factory=dict)
    # Extra figures for the Home Assistant state message (merged into it), and the entities showing them:
    # (component, key in the state, name, extra discovery config).
    state: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    entities: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)


SourceFactory = Callable[[BridgeConfig, BridgeContext], "Source | None"]
RouterFactory = Callable[[BridgeConfig, Engine, Metrics], "Router"]
