"""Fix flows: confirm, then re-authenticate (paused sending, expiring secret), or resume sending and retry the
dead letters (a role granted, a sender linked in Azure)."""

from __future__ import annotations

from typing import Any

from homeassistant import data_entry_flow
from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant

from .issues import FIX_RESUME, FIX_RETRY
from .runtime import AcsEmailConfigEntry
from .services import async_retry_dead_letters


class AcsEmailRepairFlow(ConfirmRepairFlow):
    """Shows the issue's steps; on confirm starts re-authentication or requeues the dead letters."""

    def __init__(self, entry_id: str, fix: str) -> None:
        self._entry_id = entry_id
        self._fix = fix

    async def async_step_confirm(self, user_input: dict[str, str] | None = None) -> data_entry_flow.FlowResult:
        """Apply the fix once the user confirms."""
        if user_input is not None:
            entry: AcsEmailConfigEntry | None = self.hass.config_entries.async_get_entry(self._entry_id)
            if entry is None:
                return self.async_abort(reason="entry_removed")
            if self._fix in (FIX_RETRY, FIX_RESUME):
                if entry.state is not ConfigEntryState.LOADED:
                    return self.async_abort(reason="entry_not_loaded")
                if self._fix == FIX_RESUME:  # the role was granted in Azure: try now, not in up to 15 min
                    entry.runtime_data.engine.dispatcher.resume()
                await async_retry_dead_letters(self.hass, entry)
            else:
                entry.async_start_reauth(self.hass)
        return await super().async_step_confirm(user_input)


async def async_create_fix_flow(hass: HomeAssistant, issue_id: str, data: dict[str, Any] | None) -> RepairsFlow:
    """Every ACS Email issue carries its entry id and which fix applies."""
    data = data or {}
    return AcsEmailRepairFlow(str(data.get("entry_id", "")), str(data.get("fix", "")))
