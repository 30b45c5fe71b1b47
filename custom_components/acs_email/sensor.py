"""Diagnostic sensors on the account device: the outbox and the quota at a glance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory, UnitOfTime
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .entity import account_device_info
from .runtime import AcsEmailConfigEntry, AcsEmailStatus, StatusCoordinator

PARALLEL_UPDATES = 0  # read-only, from the coordinator
MAX_STATE_LENGTH = 255  # HA refuses longer states


@dataclass(frozen=True, kw_only=True)
class AcsEmailSensorDescription(SensorEntityDescription):
    """A sensor and how to read it from the status."""

    value_fn: Callable[[AcsEmailStatus], StateType]


SENSORS: tuple[AcsEmailSensorDescription, ...] = (
    AcsEmailSensorDescription(
        key="queued",
        translation_key="queued",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.dispatcher.queued + s.dispatcher.sending,
    ),
    AcsEmailSensorDescription(
        key="sent",
        translation_key="sent",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_registry_enabled_default=False,  # the acs_email_sent event and the logbook tell the same
        value_fn=lambda s: s.dispatcher.sent_total,
    ),
    AcsEmailSensorDescription(
        key="dead_letters",
        translation_key="dead_letters",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.dispatcher.dead,
    ),
    AcsEmailSensorDescription(
        key="quota_left",
        translation_key="quota_left",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.dispatcher.quota_left,
    ),
    AcsEmailSensorDescription(
        key="oldest_queued_age",
        translation_key="oldest_queued_age",
        entity_registry_enabled_default=False,  # Queued mail and Last error show an outage; this dates it
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda s: s.dispatcher.oldest_queued_age or 0,
    ),
    AcsEmailSensorDescription(
        key="last_error",
        translation_key="last_error",
        value_fn=lambda s: None if s.last_error is None else s.last_error[:MAX_STATE_LENGTH],
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: AcsEmailConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """The account's diagnostic sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(AcsEmailSensor(coordinator, entry, description) for description in SENSORS)


class AcsEmailSensor(CoordinatorEntity[StatusCoordinator], SensorEntity):
    """One figure of the account's outbox or quota."""

    _attr_has_entity_name = True
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    entity_description: AcsEmailSensorDescription

    def __init__(
        self, coordinator: StatusCoordinator, entry: AcsEmailConfigEntry, description: AcsEmailSensorDescription
    ) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        self._attr_device_info = account_device_info(entry)

    @property
    def native_value(self) -> StateType:
        """The figure from the last refresh."""
        return self.entity_description.value_fn(self.coordinator.data)
