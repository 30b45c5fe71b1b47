"""Glue to the bridge service: the config sections routes add, and the router factory ``run`` uses."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from acs_email_core.engine import Engine
from acs_email_core.errors import ConfigError

from ..mqtt.events import NoRoutes
from ..mqtt.events import Router as RouterProtocol
from .metrics import RouteCollector
from .router import engine_router
from .routes import RouteError, RoutingConfig, compile_routing
from .schema import PRESETS_SECTION, ROUTES_SECTION, ROUTING_SECTION

if TYPE_CHECKING:
    from ..config import BridgeConfig, SectionSchema
    from ..metrics import Metrics

SECTIONS: dict[str, SectionSchema] = {
    "routes": ROUTES_SECTION,
    "presets": PRESETS_SECTION,
    "routing": ROUTING_SECTION,
}


_LOGGER = logging.getLogger(__name__)
NO_MQTT = "the routes and presets take their events from MQTT, and this config has no mqtt: section (host, port)"


def routing_of(config: BridgeConfig) -> RoutingConfig:
    """The compiled routes of a loaded bridge config (reads template files: call it off the event loop)."""
    from ..config import line_of  # noqa: PLC0415 - bridge.config is only needed here

    sections = config.sections
    try:
        return compile_routing(
            sections.get("routes", []),
            sections.get("presets", []),
            sections.get("routing") or ROUTING_SECTION({}),
            base_dir=config.base_dir,
        )
    except RouteError as err:
        line = line_of(config.raw, err.path)
        raise ConfigError(f"{config.path}" + (f", line {line}" if line else "") + f": {err}") from None


def create_router(
    config: BridgeConfig, engine: Engine, metrics: Metrics, *, clock: Callable[[], float] = time.time
) -> RouterProtocol:
    """The service's ROUTER factory (its figures registered with ``metrics``); no routes: only the send topic."""
    if not config.sections.get("routes") and not config.sections.get("presets"):
        return NoRoutes()
    if "mqtt" not in config.sections:
        _LOGGER.warning(NO_MQTT)
    router = engine_router(routing_of(config), engine, clock=clock)
    metrics.registry.register(RouteCollector(router))
    return router
