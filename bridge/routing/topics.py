"""MQTT topic filters (``+`` one level, ``#`` the rest) as the broker applies them (MQTT 5.0 §4.7)."""

from __future__ import annotations

import voluptuous as vol


def validate_filter(value: object) -> str:
    """A subscribable filter: wildcards fill whole levels, ``#`` only last; for the config schema."""
    if not isinstance(value, str) or not value:
        raise vol.Invalid("expected a topic filter such as frigate/events or zigbee2mqtt/+")
    if "\0" in value:
        raise vol.Invalid("a topic filter cannot contain NUL")
    levels = value.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise vol.Invalid(f"{value!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise vol.Invalid(f"{value!r}: '+' must be a whole level")
    return value


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter``; ``$SYS``-style topics only match filters that name them."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level not in ("+", topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)
