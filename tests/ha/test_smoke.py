"""Smoke tests: the skeleton integration loads in Home Assistant and its core stays HA-free."""

from __future__ import annotations

import ast
import importlib
import json
import sys
from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.loader import async_get_integration
from homeassistant.setup import async_setup_component

from custom_components.acs_email.const import DOMAIN

INTEGRATION_DIR = Path(__file__).resolve().parents[2] / "custom_components" / "acs_email"
CORE_DIR = INTEGRATION_DIR / "core"
CORE_MODULES = sorted(CORE_DIR.glob("*.py"))

# Absolute imports the HA-free core must never use: HA itself, and the names under which the same code is
# reachable elsewhere (inside HA the core is only ever ``custom_components.acs_email.core``, so it must use
# relative imports for its own modules; ``acs_email_core`` exists only where the pip package is installed).
FORBIDDEN_TOP_LEVEL = {"homeassistant", "custom_components", "acs_email_core", "acs_email_bridge"}


async def test_setup_component(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    await hass.async_block_till_done()
    assert DOMAIN in hass.config.components


async def test_loader_reads_manifest(hass: HomeAssistant) -> None:
    integration = await async_get_integration(hass, DOMAIN)
    manifest = json.loads((INTEGRATION_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert integration.domain == DOMAIN
    assert integration.is_built_in is False
    assert str(integration.version) == manifest["version"]
    assert integration.integration_type == "service"


def test_manifest_key_order_and_pins() -> None:
    manifest = json.loads((INTEGRATION_DIR / "manifest.json").read_text(encoding="utf-8"))
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:]), "hassfest wants domain, name, then the rest alphabetically"
    for key in ("documentation", "issue_tracker", "codeowners", "version"):
        assert manifest[key], key
    assert all("==" in req for req in manifest["requirements"]), manifest["requirements"]


def test_core_modules_found() -> None:
    assert CORE_MODULES, f"no modules under {CORE_DIR}"
    assert CORE_DIR / "__init__.py" in CORE_MODULES


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_homeassistant(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue  # relative imports are fine
        bad += [f"line {node.lineno}: {name}" for name in names if name.split(".")[0] in FORBIDDEN_TOP_LEVEL]
    assert not bad, f"{path.name} must stay HA-free and use relative imports: {bad}"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_importable_inside_ha(path: Path) -> None:
    name = "custom_components.acs_email.core"
    if path.stem != "__init__":
        name += f".{path.stem}"
    module = importlib.import_module(name)
    assert Path(module.__file__ or "").resolve() == path.resolve()
    assert sys.modules[name] is module
