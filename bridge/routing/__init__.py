"""MQTT routes: topic filters, conditions, templates, flood control and device presets (issue 8).

The MQTT source hands each message to :meth:`Router.handle` as an :class:`Event` and acknowledges it once the
returned :class:`Outcome` is in (unless ``outcome.retry``).
"""

from .event import Event, Outcome, OutcomeKind, RouteResult
from .router import Router, engine_router, quota_probe
from .routes import RoutingConfig, routing_from_config
from .schema import ROUTING_SCHEMA, describe

__all__ = [
    "ROUTING_SCHEMA",
    "Event",
    "Outcome",
    "OutcomeKind",
    "RouteResult",
    "Router",
    "RoutingConfig",
    "describe",
    "engine_router",
    "quota_probe",
    "routing_from_config",
]
