"""The MQTT source: a persistent paho-mqtt session whose messages are acknowledged only once durable."""

from .config import MQTT_SCHEMA, MqttSettings, mqtt_settings
from .events import BadEvent, Disposition, Handler, InboundEvent, NoRoutes, Outcome, Router
from .source import MqttSource, create_mqtt_source

__all__ = [
    "MQTT_SCHEMA",
    "BadEvent",
    "Disposition",
    "Handler",
    "InboundEvent",
    "MqttSettings",
    "MqttSource",
    "NoRoutes",
    "Outcome",
    "Router",
    "create_mqtt_source",
    "mqtt_settings",
]
