"""Fixtures for the Home Assistant lanes (pytest-homeassistant-custom-component)."""

from __future__ import annotations

import importlib.util
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
