"""Fixtures for the Home Assistant lanes (pytest-homeassistant-custom-component)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# HA's loader imports ``custom_components`` as a top-level package: put the repository root on sys.path
# (pytest's default import mode only adds this test directory).
REPO_ROOT = str(Path(__file__).resolve().parents[2])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# These tests need Home Assistant and pytest-homeassistant-custom-component (the ha-min / ha-latest lanes). In any
# other venv (a bare `pytest` on the 3.11 dev venv) leave them uncollected instead of failing on import.
if importlib.util.find_spec("pytest_homeassistant_custom_component") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> Iterator[None]:
    """Let HA's loader see ``custom_components/acs_email`` in every test."""
    yield


@pytest.fixture
def hass_config_dir(tmp_path: Path) -> str:
    """Each test's HA config directory (outboxes, .storage) is its own temp dir, not phcc's shared testing_config.

    phcc >= 0.13.3xx builds ``hass`` from this fixture; for 0.13.236 ``_per_test_config_dir`` patches the helper
    that version calls instead.
    """
    path = tmp_path / "config"
    path.mkdir(exist_ok=True)
    return str(path)


@pytest.fixture(autouse=True)
def _per_test_config_dir(hass_config_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_homeassistant_custom_component import common  # imported here: only the HA lanes have it

    monkeypatch.setattr(common, "get_test_config_dir", lambda *parts: os.path.join(hass_config_dir, *parts))
