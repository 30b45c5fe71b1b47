"""ACS Email: send email from Home Assistant through Azure Communication Services Email.

This is the loadable skeleton. It registers the domain and accepts no YAML configuration; the
config flow, notify entities and actions arrive in later issues. The HA-free engine lives in the
``core`` subpackage, which must never import ``homeassistant``.
"""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from .const import DOMAIN

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Set up the ACS Email domain (nothing to do until the config flow exists)."""
    return True
