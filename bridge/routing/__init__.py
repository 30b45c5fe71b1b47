"""MQTT routes: topic filters, conditions, templates, flood control and device presets (issue 8).

The MQTT source calls the :class:`Router` with each ``InboundEvent`` (bridge/mqtt/events.py) and acknowledges
the message once the returned ``Outcome`` is durable.
"""

from .event import OutcomeKind, RouteResult
from .router import Router, engine_router, quota_probe
from .routes import RoutingConfig, routing_from_config
from .schema import PRESETS_SECTION, ROUTES_SECTION, ROUTING_SCHEMA, ROUTING_SECTION, describe

__all__ = [
    "PRESETS_SECTION",
    "ROUTES_SECTION",
    "ROUTING_SCHEMA",
    "ROUTING_SECTION",
    "OutcomeKind",
    "RouteResult",
    "Router",
    "RoutingConfig",
    "describe",
    "engine_router",
    "quota_probe",
    "routing_from_config",
]
