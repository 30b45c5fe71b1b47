"""Constants for the ACS Email integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "acs_email"
