"""Translations: en.json is strings.json resolved, every language is complete, and the flows' keys exist."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INTEGRATION = REPO / "custom_components" / "acs_email"
STRINGS = json.loads((INTEGRATION / "strings.json").read_text(encoding="utf-8"))


def test_translation_files_are_current_and_complete() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "ha-translations"), "--check"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert {p.name for p in (INTEGRATION / "translations").glob("*.json")} >= {"en.json", "cs.json"}


def string_constants(module: str) -> set[str]:
    tree = ast.parse((INTEGRATION / module).read_text(encoding="utf-8"))
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


ERROR_KEYS = sorted(
    {
        "invalid_auth",
        "cannot_connect",
        "forbidden",
        "throttled",
        "rejected",
        "sender_not_linked",
        "invalid_sender",
        "invalid_endpoint",
        "invalid_connection_string",
        "invalid_authority",
        "invalid_ca_file",
        "expiry_in_past",
        "endpoint_mismatch",
        "invalid_recipient",
        "unknown",
    }
)


@pytest.mark.parametrize("key", ERROR_KEYS)
def test_flow_errors_have_text(key: str) -> None:
    assert key in string_constants("config_flow.py") | string_constants("validate.py"), f"{key} is never raised"
    assert STRINGS["config"]["error"][key]


def test_flow_steps_have_text() -> None:
    steps = STRINGS["config"]["step"]
    for step in ("user", "service_principal", "connection_string", "quota", "test_mail", "test_result"):
        assert steps[step]["title"], step
    for step in ("reauth_confirm", "reconfigure_service_principal", "reconfigure_connection_string"):
        assert steps[step]["data"], step
    assert set(steps["user"]["menu_options"]) == {"service_principal", "connection_string"}
    assert set(steps["reconfigure"]["menu_options"]) == {
        "reconfigure_service_principal",
        "reconfigure_connection_string",
    }
    assert STRINGS["options"]["step"]["init"]["data"]
    recipient = STRINGS["config_subentries"]["recipient"]
    assert set(recipient["step"]) == {"user", "reconfigure"}
    assert set(recipient["abort"]) >= {"already_configured", "reconfigure_successful"}
    assert set(STRINGS["config"]["abort"]) >= {"already_configured", "reauth_successful", "reconfigure_successful"}
    assert set(STRINGS["selector"]["quota"]["options"]) == {"custom_domain", "azure_managed", "custom"}


def test_every_form_field_has_help() -> None:
    """The issue asks for data_description on every field of the config, options and recipient forms."""
    forms = {
        **{f"config.{k}": v for k, v in STRINGS["config"]["step"].items()},
        **{f"options.{k}": v for k, v in STRINGS["options"]["step"].items()},
        **{f"recipient.{k}": v for k, v in STRINGS["config_subentries"]["recipient"]["step"].items()},
    }
    for name, step in forms.items():
        parts = [step, *step.get("sections", {}).values()]
        for part in parts:
            missing = set(part.get("data", {})) - set(part.get("data_description", {}))
            assert not missing, f"{name}: no help for {sorted(missing)}"


def schema_fields(schema: Any) -> dict[str, Any]:
    return {str(key): value for key, value in schema.schema.items()}


@pytest.mark.parametrize("method", ["service_principal", "connection_string"])
def test_credential_form_fields_have_labels(method: str) -> None:
    from custom_components.acs_email.config_flow import _credentials_schema

    for step, schema in (
        (method, _credentials_schema(method, quota=True)),
        (f"reconfigure_{method}", _credentials_schema(method)),
    ):
        text = STRINGS["config"]["step"][step]
        fields = schema_fields(schema)
        advanced = schema_fields(fields.pop("advanced").schema)
        assert set(fields) <= set(text["data"]), step
        assert set(advanced) <= set(text["sections"]["advanced"]["data"]), step
