"""ACS Email: send email from Home Assistant through Azure Communication Services Email.

Each config entry runs one core engine (``core/``, HA-free) with its own durable outbox under the config
directory. Setup never contacts ACS: mail is accepted while Azure or the network is away and delivered when
they are back. An authentication failure pauses sending (mail keeps waiting) and starts re-authentication;
the reloaded entry resumes from the same outbox, so nothing queued is lost.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import date, timedelta
from functools import partial
from typing import Any

from homeassistant.const import CONF_NAME, EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import discovery
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.typing import ConfigType
from homeassistant.util import dt as dt_util
from homeassistant.util.hass_dict import HassKey

from .const import CONF_SECRET_EXPIRY, DOMAIN
from .core.engine import Engine
from .core.errors import AcsEmailError
from .entity import account_device_info
from .issues import async_check_secret_expiry, async_delete_all, async_sending_paused, needs_new_credentials
from .runtime import AcsEmailConfigEntry, AcsEmailRuntime, StatusCoordinator
from .services import async_setup_services
from .settings import engine_settings, notify_service_name

_LOGGER = logging.getLogger(__name__)

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)
PLATFORMS = [Platform.NOTIFY, Platform.SENSOR]
DATA_HASS_CONFIG: HassKey[ConfigType] = HassKey(f"{DOMAIN}_hass_config")
STOP_GRACE = 5.0  # seconds in-flight sends get at shutdown; the rest stays queued on disk
EXPIRY_CHECK_INTERVAL = timedelta(hours=6)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions (they exist even while no entry is loaded, and then say so)."""
    hass.data[DATA_HASS_CONFIG] = config
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: AcsEmailConfigEntry) -> bool:
    """Start the entry's engine; ACS being unreachable (or refusing us) never fails setup."""
    try:
        settings = engine_settings(hass, entry)
        session = None if settings.credentials.ca_file else async_get_clientsession(hass)
        engine = Engine(settings, session=session, on_auth_failure=partial(_auth_failed, hass, entry))
    except AcsEmailError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN, translation_key="invalid_settings", translation_placeholders={"error": str(err)}
        ) from err
    try:
        await engine.start(deliver=False)
    except (AcsEmailError, OSError, sqlite3.Error) as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="outbox_unavailable",
            translation_placeholders={"path": str(settings.outbox_path), "error": str(err)},
        ) from err
    runtime = AcsEmailRuntime(hass, entry, engine, StatusCoordinator(hass, entry, engine))
    entry.runtime_data = runtime
    try:
        await runtime.async_track_pending()  # before delivery starts, so no mail finishes unreported
        await engine.start()
        await runtime.coordinator.async_refresh()
        dr.async_get(hass).async_get_or_create(config_entry_id=entry.entry_id, **account_device_info(entry))
        await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    except BaseException:  # setup failed or was cancelled: nothing may keep the outbox open
        await engine.stop(STOP_GRACE)
        raise

    async def stop_engine(_event: Event | None = None) -> None:
        await engine.stop(STOP_GRACE)

    entry.async_on_unload(hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, stop_engine))
    entry.async_on_unload(entry.add_update_listener(_async_reload))

    runtime.notify_service_name = notify_service_name(hass, entry)
    hass.async_create_task(
        discovery.async_load_platform(
            hass,
            Platform.NOTIFY,
            DOMAIN,
            {CONF_NAME: runtime.notify_service_name, "entry_id": entry.entry_id},
            hass.data.get(DATA_HASS_CONFIG, {}),
        ),
        eager_start=True,
    )

    check_expiry = partial(_check_expiry, hass, entry)
    check_expiry()
    entry.async_on_unload(async_track_time_interval(hass, check_expiry, EXPIRY_CHECK_INTERVAL))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: AcsEmailConfigEntry) -> bool:
    """Stop delivering; queued mail stays in the outbox for the next load."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.engine.stop(STOP_GRACE)
        async_sending_paused(hass, entry, None)
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: AcsEmailConfigEntry) -> None:
    """The entry is deleted: its issues go too (its outbox file is kept, like any HA data, for a backup)."""
    async_delete_all(hass, entry)


async def _async_reload(hass: HomeAssistant, entry: AcsEmailConfigEntry) -> None:
    """Options, credentials (reauth/reconfigure) or recipients changed."""
    hass.config_entries.async_schedule_reload(entry.entry_id)


@callback
def _auth_failed(hass: HomeAssistant, entry: AcsEmailConfigEntry, reason: str) -> None:
    """ACS refused the request: sending pauses (mail waits); bad credentials start a re-authentication."""
    async_sending_paused(hass, entry, reason)
    if needs_new_credentials(reason):
        entry.async_start_reauth(hass)


@callback
def _check_expiry(hass: HomeAssistant, entry: AcsEmailConfigEntry, _now: Any = None) -> None:
    raw = entry.data.get(CONF_SECRET_EXPIRY)
    try:
        expiry = date.fromisoformat(raw) if raw else None
    except ValueError:
        expiry = None
    async_check_secret_expiry(hass, entry, expiry, dt_util.now().date())
