"""Config flow: an ACS account (user, reauth, reconfigure), its options, and recipient subentries.

Credentials are checked against ACS before anything is saved (``validate.py``: nothing is sent), and an
optional test mail catches what that check cannot, such as a sender whose domain is not linked.
Entry updates do not reload by themselves: the integration's update listener reloads the entry, which
keeps queued mail (the outbox is a file named after the entry id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from email.utils import formataddr
from typing import Any, cast
from urllib.parse import urlsplit

import voluptuous as vol
from homeassistant.config_entries import (
    SOURCE_USER,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
    OptionsFlow,
    SubentryFlowResult,
)
from homeassistant.const import CONF_NAME
from homeassistant.core import callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.selector import (
    BooleanSelector,
    DateSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.util import dt as dt_util
from homeassistant.util import slugify

from .const import (
    AUTH_CONNECTION_STRING,
    AUTH_SERVICE_PRINCIPAL,
    CONF_ADDRESSES,
    CONF_AUTH_METHOD,
    CONF_AUTHORITY,
    CONF_CA_FILE,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_CONFIRM_DELIVERY,
    CONF_CONNECTION_STRING,
    CONF_DEFAULT_RECIPIENTS,
    CONF_ENDPOINT,
    CONF_MAX_AGE_HOURS,
    CONF_MAX_ATTEMPTS,
    CONF_NOTIFY_SERVICE,
    CONF_PER_HOUR,
    CONF_PER_MINUTE,
    CONF_QUOTA,
    CONF_RETENTION_DAYS,
    CONF_SECRET_EXPIRY,
    CONF_SENDER,
    CONF_TENANT_ID,
    DEFAULT_MAX_AGE_HOURS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PER_HOUR,
    DEFAULT_PER_MINUTE,
    DEFAULT_QUOTA,
    DEFAULT_RETENTION_DAYS,
    DOMAIN,
    QUOTA_AZURE_MANAGED,
    QUOTA_CUSTOM,
    QUOTA_PRESETS,
    SUBENTRY_RECIPIENT,
)
from .core.errors import ConfigError, ValidationError
from .core.message import EmailAddress
from .core.transport import parse_connection_string
from .settings import notify_service_name
from .validate import CheckFailed, TestMailResult, async_check_credentials, async_send_test_mail

SECTION_ADVANCED = "advanced"
RECONFIGURE_STEPS = {
    AUTH_SERVICE_PRINCIPAL: "reconfigure_service_principal",
    AUTH_CONNECTION_STRING: "reconfigure_connection_string",
}
NEXT_FLOW_SUBENTRY = "config_subentries_flow"  # FlowType.CONFIG_SUBENTRIES_FLOW, which HA 2025.4 lacks
CONF_RECIPIENT = "recipient"  # the test mail's address (never stored)
AZURE_MANAGED_SUFFIX = ".azurecomm.net"  # Azure-managed domains: the low quota preset fits them
# Shown in help texts and errors; placeholders because HA's translation rules keep URLs and <…> out of strings.
EXAMPLES = {
    "endpoint_example": "https://my-acs.europe.communication.azure.com",
    "authority_example": "https://login.microsoftonline.us",
    "address_example": "Someone <someone@example.com>",
}

_TEXT = TextSelector()
_URL = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
_EMAIL = TextSelector(TextSelectorConfig(type=TextSelectorType.EMAIL, autocomplete="email"))
_EMAILS = TextSelector(TextSelectorConfig(type=TextSelectorType.EMAIL, multiple=True))
_PASSWORD = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD, autocomplete="off"))
_QUOTA = SelectSelector(
    SelectSelectorConfig(options=list(QUOTA_PRESETS), translation_key=CONF_QUOTA, mode=SelectSelectorMode.LIST)
)


def _number(maximum: int, unit: str | None = None) -> NumberSelector:
    config = NumberSelectorConfig(min=1, max=maximum, step=1, mode=NumberSelectorMode.BOX)
    if unit:
        config["unit_of_measurement"] = unit
    return NumberSelector(config)


# ---- schemas (built per call: add_suggested_values_to_schema changes sections in place)
def _advanced_section(method: str) -> section:
    fields: dict[Any, Any] = {vol.Optional(CONF_CA_FILE): _TEXT}
    if method == AUTH_SERVICE_PRINCIPAL:
        fields = {vol.Optional(CONF_AUTHORITY): _URL, **fields}
    return section(vol.Schema(fields), {"collapsed": True})


def _credentials_schema(method: str, *, secret_required: bool = True, quota: bool = False) -> vol.Schema:
    """Fields of the service-principal or connection-string step (user and reconfigure)."""
    secret = vol.Required if secret_required else vol.Optional
    fields: dict[Any, Any]
    if method == AUTH_SERVICE_PRINCIPAL:
        fields = {
            vol.Required(CONF_ENDPOINT): _URL,
            vol.Required(CONF_TENANT_ID): _TEXT,
            vol.Required(CONF_CLIENT_ID): _TEXT,
            secret(CONF_CLIENT_SECRET): _PASSWORD,
            vol.Optional(CONF_SECRET_EXPIRY): DateSelector(),
        }
    else:
        fields = {secret(CONF_CONNECTION_STRING): _PASSWORD}
    fields[vol.Required(CONF_SENDER)] = _EMAIL
    if quota:
        fields[vol.Required(CONF_QUOTA, default=DEFAULT_QUOTA)] = _QUOTA
    fields[vol.Required(SECTION_ADVANCED)] = _advanced_section(method)
    return vol.Schema(fields)


def _custom_quota_schema() -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_PER_MINUTE, default=DEFAULT_PER_MINUTE): _number(100_000),
            vol.Required(CONF_PER_HOUR, default=DEFAULT_PER_HOUR): _number(1_000_000),
        }
    )


# ---- input parsing
def _plain_sender(value: str) -> str | None:
    """The sender as ACS wants it (a plain address, no display name), or None."""
    try:
        return EmailAddress(value.strip()).address
    except ValidationError:
        return None


def _addresses(values: Iterable[str]) -> list[str] | None:
    """``a@b`` / ``Name <a@b>`` entries, normalised; None if one is not an address. Blank entries are dropped."""
    result = []
    for value in values:
        if not value.strip():
            continue
        try:
            address = EmailAddress.parse(value.strip())
        except ValidationError:
            return None
        result.append(formataddr((address.display_name or "", address.address)))
    return result


def _expiry_error(value: str | None) -> str | None:
    """A secret expiry date (already a valid date: the selector checks it) must not have passed."""
    if value and cv.date(value) < dt_util.now().date():
        return "expiry_in_past"
    return None


def _is_endpoint(url: str) -> bool:
    """``https://host[:port]`` and nothing more: a path would make every request miss (and 404 looks like success)."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "https" and bool(parts.hostname) and not (parts.path or parts.query)


def _parse_credentials(method: str, user_input: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Entry data from a credentials form, and the per-field errors found without asking ACS."""
    errors: dict[str, str] = {}
    data: dict[str, Any] = {CONF_AUTH_METHOD: method}
    sender = _plain_sender(user_input[CONF_SENDER])
    if sender is None:
        errors[CONF_SENDER] = "invalid_sender"
    data[CONF_SENDER] = sender
    if method == AUTH_SERVICE_PRINCIPAL:
        endpoint = user_input[CONF_ENDPOINT].strip().rstrip("/")
        if not _is_endpoint(endpoint):
            errors[CONF_ENDPOINT] = "invalid_endpoint"
        data[CONF_ENDPOINT] = endpoint
        data[CONF_TENANT_ID] = user_input[CONF_TENANT_ID].strip()
        data[CONF_CLIENT_ID] = user_input[CONF_CLIENT_ID].strip()
        data[CONF_CLIENT_SECRET] = user_input[CONF_CLIENT_SECRET].strip()
        if error := _expiry_error(user_input.get(CONF_SECRET_EXPIRY)):
            errors[CONF_SECRET_EXPIRY] = error
        if user_input.get(CONF_SECRET_EXPIRY):
            data[CONF_SECRET_EXPIRY] = user_input[CONF_SECRET_EXPIRY]
    else:
        connection_string = user_input[CONF_CONNECTION_STRING].strip()
        try:
            endpoint, _key = parse_connection_string(connection_string)
        except ConfigError:
            endpoint = ""
        if not _is_endpoint(endpoint):
            errors[CONF_CONNECTION_STRING] = "invalid_connection_string"
        data[CONF_CONNECTION_STRING] = connection_string
        data[CONF_ENDPOINT] = endpoint
    advanced = user_input.get(SECTION_ADVANCED) or {}
    authority = (advanced.get(CONF_AUTHORITY) or "").strip().rstrip("/")
    if authority:
        if not authority.lower().startswith("https://"):
            errors["base"] = "invalid_authority"
        data[CONF_AUTHORITY] = authority
    if ca_file := (advanced.get(CONF_CA_FILE) or "").strip():
        data[CONF_CA_FILE] = ca_file
    return data, errors


def _quota_errors(user_input: Mapping[str, Any]) -> dict[str, str]:
    """An hour holds at least a minute's worth of mail."""
    if int(user_input[CONF_PER_HOUR]) < int(user_input[CONF_PER_MINUTE]):
        return {CONF_PER_HOUR: "hour_below_minute"}
    return {}


def _unique_id(data: Mapping[str, Any]) -> str:
    """One entry per ACS resource and sender."""
    return f"{data[CONF_ENDPOINT].lower()}|{data[CONF_SENDER].lower()}"


def _form_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """Entry data as suggested form values, secrets left out."""
    values = {k: v for k, v in data.items() if k not in (CONF_CLIENT_SECRET, CONF_CONNECTION_STRING)}
    values[SECTION_ADVANCED] = {k: data[k] for k in (CONF_AUTHORITY, CONF_CA_FILE) if k in data}
    return values


class AcsEmailConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up one ACS Email sender: credentials, quota, then an optional test mail."""

    VERSION = 1

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._options: dict[str, Any] = {}
        self._test: TestMailResult | None = None
        self._recipient = ""

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> AcsEmailOptionsFlow:
        return AcsEmailOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(cls, config_entry: ConfigEntry) -> dict[str, type[ConfigSubentryFlow]]:
        return {SUBENTRY_RECIPIENT: RecipientSubentryFlow}

    # ---- user
    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose how Home Assistant signs in to ACS."""
        return self.async_show_menu(step_id="user", menu_options=[AUTH_SERVICE_PRINCIPAL, AUTH_CONNECTION_STRING])

    async def async_step_service_principal(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Entra ID app registration (recommended)."""
        return await self._async_credentials_step(AUTH_SERVICE_PRINCIPAL, user_input)

    async def async_step_connection_string(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Access key of the ACS resource."""
        return await self._async_credentials_step(AUTH_CONNECTION_STRING, user_input)

    async def _async_credentials_step(self, method: str, user_input: dict[str, Any] | None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        placeholders = {"detail": "", **EXAMPLES}
        if user_input is not None:
            data, errors = _parse_credentials(method, user_input)
            if not errors:
                await self.async_set_unique_id(_unique_id(data))
                self._abort_if_unique_id_configured()
                if await self._async_credentials_work(data, errors, placeholders):
                    self._data = data
                    self._options = {CONF_QUOTA: user_input[CONF_QUOTA]}
                    if user_input[CONF_QUOTA] == QUOTA_CUSTOM:
                        return await self.async_step_quota()
                    return await self.async_step_test_mail()
        schema = _credentials_schema(method, quota=True)
        return self.async_show_form(
            step_id=method,
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_quota(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Custom quota numbers (raised limits granted by Microsoft support)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = _quota_errors(user_input)
            if not errors:
                self._options[CONF_PER_MINUTE] = int(user_input[CONF_PER_MINUTE])
                self._options[CONF_PER_HOUR] = int(user_input[CONF_PER_HOUR])
                return await self.async_step_test_mail()
        return self.async_show_form(
            step_id="quota",
            data_schema=self.add_suggested_values_to_schema(_custom_quota_schema(), user_input),
            errors=errors,
        )

    async def async_step_test_mail(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Optionally send a test mail; the sender can still be corrected here."""
        errors: dict[str, str] = {}
        placeholders = {"detail": "", **EXAMPLES}
        if user_input is not None:
            sender = _plain_sender(user_input[CONF_SENDER])
            recipients = _addresses([user_input.get(CONF_RECIPIENT) or ""])
            if sender is None:
                errors[CONF_SENDER] = "invalid_sender"
            elif sender != self._data[CONF_SENDER]:
                self._data[CONF_SENDER] = sender
                await self.async_set_unique_id(_unique_id(self._data))
                self._abort_if_unique_id_configured()
            if recipients is None:
                errors[CONF_RECIPIENT] = "invalid_recipient"
            elif not errors and not recipients:
                return self._async_create()
            elif not errors:
                self._recipient = recipients[0]
                try:
                    self._test = await async_send_test_mail(self.hass, self._data, self._recipient)
                except CheckFailed as err:
                    errors["base"], placeholders["detail"] = err.error, err.detail
                else:
                    return await self.async_step_test_result()
        schema = vol.Schema({vol.Required(CONF_SENDER): _EMAIL, vol.Optional(CONF_RECIPIENT): _EMAIL})
        suggested = {CONF_SENDER: self._data[CONF_SENDER], **(user_input or {})}
        return self.async_show_form(
            step_id="test_mail",
            data_schema=self.add_suggested_values_to_schema(schema, suggested),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_test_result(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show what ACS said about the test mail, then finish."""
        if user_input is not None:
            return self._async_create()
        assert self._test is not None
        return self.async_show_form(
            step_id="test_result",
            description_placeholders={
                "recipient": self._recipient,
                "status": self._test.status,
                "operation_id": self._test.operation_id,
            },
        )

    async def async_on_create_entry(self, result: ConfigFlowResult) -> ConfigFlowResult:
        """Go on to adding a first recipient (HA 2026.x follows ``next_flow``; 2025.4 never calls this)."""
        recipient = await self.hass.config_entries.subentries.async_init(
            (result["result"].entry_id, SUBENTRY_RECIPIENT), context={"source": SOURCE_USER}
        )
        cast(dict[str, Any], result)["next_flow"] = (NEXT_FLOW_SUBENTRY, recipient["flow_id"])
        return result

    def _async_create(self) -> ConfigFlowResult:
        options = dict(self._options)
        return self.async_create_entry(title=self._data[CONF_SENDER], data=self._data, options=options)

    # ---- reauth: a rotated or expired secret (or access key); the entry and its outbox stay
    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the new secret and check it before saving."""
        entry = self._get_reauth_entry()
        method = entry.data[CONF_AUTH_METHOD]
        errors: dict[str, str] = {}
        placeholders = {"detail": "", "sender": entry.data[CONF_SENDER]}
        if user_input is not None:
            values = _form_values(entry.data)
            values.pop(CONF_SECRET_EXPIRY, None)  # a new secret has a new expiry date (or none)
            values.update(user_input)
            data, errors = _parse_credentials(method, values)
            if data[CONF_ENDPOINT].lower() != entry.data[CONF_ENDPOINT].lower() and not errors:
                errors[CONF_CONNECTION_STRING] = "endpoint_mismatch"
            if not errors and await self._async_credentials_work(data, errors, placeholders):
                return self._async_update_and_abort(entry, data, reason="reauth_successful")
        if method == AUTH_SERVICE_PRINCIPAL:
            schema = vol.Schema(
                {vol.Required(CONF_CLIENT_SECRET): _PASSWORD, vol.Optional(CONF_SECRET_EXPIRY): DateSelector()}
            )
        else:
            schema = vol.Schema({vol.Required(CONF_CONNECTION_STRING): _PASSWORD})
        return self.async_show_form(
            step_id="reauth_confirm", data_schema=schema, errors=errors, description_placeholders=placeholders
        )

    # ---- reconfigure: endpoint, identity, sender, advanced settings; blank secrets keep the stored ones
    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Keep or switch the sign-in method (current one first); the entry and its queued mail stay."""
        current = self._get_reconfigure_entry().data[CONF_AUTH_METHOD]
        steps = sorted(RECONFIGURE_STEPS, key=lambda method: method != current)
        return self.async_show_menu(step_id="reconfigure", menu_options=[RECONFIGURE_STEPS[m] for m in steps])

    async def async_step_reconfigure_service_principal(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        return await self._async_reconfigure(AUTH_SERVICE_PRINCIPAL, user_input)

    async def async_step_reconfigure_connection_string(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        return await self._async_reconfigure(AUTH_CONNECTION_STRING, user_input)

    async def _async_reconfigure(self, method: str, user_input: dict[str, Any] | None) -> ConfigFlowResult:
        """Endpoint, identity, sender, advanced settings; a blank secret keeps the stored one of the same method."""
        entry = self._get_reconfigure_entry()
        same_method = entry.data[CONF_AUTH_METHOD] == method
        errors: dict[str, str] = {}
        placeholders = {"detail": "", **EXAMPLES}
        if user_input is not None:
            secret_key = CONF_CLIENT_SECRET if method == AUTH_SERVICE_PRINCIPAL else CONF_CONNECTION_STRING
            values = dict(user_input)
            if same_method and not (values.get(secret_key) or "").strip():
                values[secret_key] = entry.data[secret_key]
            data, errors = _parse_credentials(method, values)
            if not errors:
                unique_id = _unique_id(data)
                if unique_id != entry.unique_id:
                    await self.async_set_unique_id(unique_id)
                    self._abort_if_unique_id_configured()
                if await self._async_credentials_work(data, errors, placeholders):
                    title = data[CONF_SENDER] if entry.title == entry.data[CONF_SENDER] else entry.title
                    return self._async_update_and_abort(
                        entry, data, reason="reconfigure_successful", unique_id=unique_id, title=title
                    )
        schema = _credentials_schema(method, secret_required=not same_method)
        suggested = user_input if user_input is not None else _form_values(entry.data)
        return self.async_show_form(
            step_id=RECONFIGURE_STEPS[method],
            data_schema=self.add_suggested_values_to_schema(schema, suggested),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _async_credentials_work(
        self, data: Mapping[str, Any], errors: dict[str, str], placeholders: dict[str, str]
    ) -> bool:
        """Ask ACS (nothing is sent); on failure set the form error and the service's reason."""
        try:
            await async_check_credentials(self.hass, data)
        except CheckFailed as err:
            errors["base"], placeholders["detail"] = err.error, err.detail
            return False
        return True

    def _async_update_and_abort(
        self, entry: ConfigEntry, data: dict[str, Any], *, reason: str, **changes: Any
    ) -> ConfigFlowResult:
        """Save and finish; the update listener reloads a loaded entry (same code path on HA 2025.4 and 2026).

        An entry that failed to set up has no listener: it is reloaded here, so the fix takes effect at once.
        """
        self.hass.config_entries.async_update_entry(entry, data=data, **changes)
        if entry.state is not ConfigEntryState.LOADED:
            self.hass.config_entries.async_schedule_reload(entry.entry_id)
        return self.async_abort(reason=reason)


class AcsEmailOptionsFlow(OptionsFlow):
    """Quota, retries, retention, delivery confirmation, default recipients, legacy service name."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            recipients = _addresses(user_input.get(CONF_DEFAULT_RECIPIENTS) or [])
            notify_service = (user_input.get(CONF_NOTIFY_SERVICE) or "").strip()
            if recipients is None:
                errors[CONF_DEFAULT_RECIPIENTS] = "invalid_recipient"
            if user_input[CONF_QUOTA] == QUOTA_CUSTOM:
                errors.update(_quota_errors(user_input))
            if notify_service and any(
                notify_service_name(self.hass, other) == slugify(notify_service)
                for other in self.hass.config_entries.async_entries(DOMAIN)
                if other.entry_id != self.config_entry.entry_id
            ):
                errors[CONF_NOTIFY_SERVICE] = "notify_service_taken"
            if not errors:
                options = {
                    CONF_QUOTA: user_input[CONF_QUOTA],
                    CONF_MAX_ATTEMPTS: int(user_input[CONF_MAX_ATTEMPTS]),
                    CONF_MAX_AGE_HOURS: int(user_input[CONF_MAX_AGE_HOURS]),
                    CONF_RETENTION_DAYS: int(user_input[CONF_RETENTION_DAYS]),
                    CONF_CONFIRM_DELIVERY: user_input[CONF_CONFIRM_DELIVERY],
                    CONF_DEFAULT_RECIPIENTS: recipients,
                }
                if user_input[CONF_QUOTA] == QUOTA_CUSTOM:
                    options[CONF_PER_MINUTE] = int(user_input[CONF_PER_MINUTE])
                    options[CONF_PER_HOUR] = int(user_input[CONF_PER_HOUR])
                if notify_service:
                    options[CONF_NOTIFY_SERVICE] = slugify(notify_service)
                return self.async_create_entry(data=options)
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(self._schema(), user_input or self.config_entry.options),
            errors=errors,
            description_placeholders=EXAMPLES,
        )

    def _schema(self) -> vol.Schema:
        options = self.config_entry.options
        sender: str = self.config_entry.data[CONF_SENDER]
        preset = QUOTA_AZURE_MANAGED if sender.lower().endswith(AZURE_MANAGED_SUFFIX) else DEFAULT_QUOTA
        return vol.Schema(
            {
                vol.Required(CONF_QUOTA, default=options.get(CONF_QUOTA, preset)): _QUOTA,
                vol.Optional(CONF_PER_MINUTE, default=DEFAULT_PER_MINUTE): _number(100_000),
                vol.Optional(CONF_PER_HOUR, default=DEFAULT_PER_HOUR): _number(1_000_000),
                vol.Required(CONF_MAX_ATTEMPTS, default=DEFAULT_MAX_ATTEMPTS): _number(100),
                vol.Required(CONF_MAX_AGE_HOURS, default=DEFAULT_MAX_AGE_HOURS): _number(720, "h"),
                vol.Required(CONF_RETENTION_DAYS, default=DEFAULT_RETENTION_DAYS): _number(365, "d"),
                vol.Required(CONF_CONFIRM_DELIVERY, default=False): BooleanSelector(),
                vol.Optional(CONF_DEFAULT_RECIPIENTS): _EMAILS,
                vol.Optional(CONF_NOTIFY_SERVICE): _TEXT,
            }
        )


class RecipientSubentryFlow(ConfigSubentryFlow):
    """A named recipient (one or more addresses); each becomes a notify entity with its own device."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        return await self._async_step("user", user_input)

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        return await self._async_step("reconfigure", user_input)

    async def _async_step(self, step_id: str, user_input: dict[str, Any] | None) -> SubentryFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            addresses = _addresses(user_input[CONF_ADDRESSES])
            if not addresses:
                errors[CONF_ADDRESSES] = "invalid_recipient"
            else:
                title = user_input[CONF_NAME].strip() or addresses[0]
                unique_id = ",".join(sorted(EmailAddress.parse(a).address.lower() for a in addresses))
                data = {CONF_ADDRESSES: addresses}
                entry = self._get_entry()
                current = self._get_reconfigure_subentry() if step_id == "reconfigure" else None
                # Checked here: HA 2025.4 raises (instead of aborting) on a duplicate when the flow finishes.
                if any(
                    sub.unique_id == unique_id and sub is not current
                    for sub in entry.subentries.values()
                    if sub.subentry_type == SUBENTRY_RECIPIENT
                ):
                    return self.async_abort(reason="already_configured")
                if current is None:
                    return self.async_create_entry(title=title, data=data, unique_id=unique_id)
                return self.async_update_and_abort(entry, current, title=title, data=data, unique_id=unique_id)
        suggested: Mapping[str, Any] | None = user_input
        if user_input is None and step_id == "reconfigure":
            subentry = self._get_reconfigure_subentry()
            suggested = {CONF_NAME: subentry.title, CONF_ADDRESSES: list(subentry.data[CONF_ADDRESSES])}
        schema = vol.Schema({vol.Required(CONF_NAME): _TEXT, vol.Required(CONF_ADDRESSES): _EMAILS})
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(schema, suggested),
            errors=errors,
            description_placeholders=EXAMPLES,
        )
