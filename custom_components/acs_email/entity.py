"""Devices: one for the ACS account (diagnostic sensors), one per recipient subentry (its notify entity)."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry, ConfigSubentry
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo

from .const import DOMAIN

MANUFACTURER = "Microsoft Azure"


def account_device_info(entry: ConfigEntry) -> DeviceInfo:
    """The account's device: the sender and its outbox."""
    return DeviceInfo(
        identifiers={(DOMAIN, entry.entry_id)},
        name=entry.title,
        manufacturer=MANUFACTURER,
        model="Communication Services Email",
        entry_type=DeviceEntryType.SERVICE,
    )


def recipient_device_info(entry: ConfigEntry, subentry: ConfigSubentry) -> DeviceInfo:
    """A recipient's own device (HA 2026.8+: a device belongs to at most one subentry)."""
    return DeviceInfo(
        identifiers={(DOMAIN, f"{entry.entry_id}_{subentry.subentry_id}")},
        name=subentry.title,
        manufacturer=MANUFACTURER,
        model="Email recipient",
        entry_type=DeviceEntryType.SERVICE,
    )
