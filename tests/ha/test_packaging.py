"""What HACS and hassfest look at: manifest, hacs.json, brand icons, quality_scale.yaml."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
INTEGRATION = REPO / "custom_components" / "acs_email"
# hassfest's ALL_RULES (script/hassfest/quality_scale.py): every rule gets a status.
QUALITY_RULES = {
    "bronze": "action-setup appropriate-polling brands common-modules config-flow config-flow-test-coverage "
    "dependency-transparency docs-actions docs-conditions docs-high-level-description docs-installation-instructions "
    "docs-removal-instructions docs-triggers entity-event-setup entity-unique-id has-entity-name runtime-data "
    "test-before-configure test-before-setup unique-config-entry",
    "silver": "action-exceptions config-entry-unloading docs-configuration-parameters docs-installation-parameters "
    "entity-unavailable integration-owner log-when-unavailable parallel-updates reauthentication-flow test-coverage",
    "gold": "devices diagnostics discovery discovery-update-info docs-data-update docs-examples docs-known-limitations "
    "docs-supported-devices docs-supported-functions docs-troubleshooting docs-use-cases dynamic-devices "
    "entity-category entity-device-class entity-disabled-by-default entity-translations exception-translations "
    "icon-translations reconfiguration-flow repair-issues stale-devices",
    "platinum": "async-dependency inject-websession strict-typing",
}


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_manifest_declares_a_config_flow() -> None:
    manifest = json.loads((INTEGRATION / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config_flow"] is True
    assert manifest["single_config_entry"] is False
    assert (INTEGRATION / "config_flow.py").is_file()


def test_hacs_json() -> None:
    hacs = json.loads((REPO / "hacs.json").read_text(encoding="utf-8"))
    assert hacs["name"]
    assert hacs["homeassistant"] == "2025.4.0"


def test_brand_icons() -> None:
    assert png_size(INTEGRATION / "brand" / "icon.png") == (256, 256)
    assert png_size(INTEGRATION / "brand" / "icon@2x.png") == (512, 512)


def test_quality_scale_records_every_rule() -> None:
    rules = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text(encoding="utf-8"))["rules"]
    expected = {rule for tier in QUALITY_RULES.values() for rule in tier.split()}
    assert set(rules) == expected
    for name, value in rules.items():
        status = value if isinstance(value, str) else value["status"]
        assert status in {"done", "todo", "exempt"}, name
        if status != "done":
            assert value["comment"], f"{name}: an exemption or todo needs a reason"
