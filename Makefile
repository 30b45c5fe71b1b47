# acs_email build/test matrix. `make test` runs every lane in order and stops at the first failure:
#   lint       ruff check, ruff format --check, mypy (strict) on the HA-free packages   — Python 3.11, .venv-core
#   core       pytest tests/core tests/bridge tests/e2e, coverage gate on acs_email_core  — Python 3.11, .venv-core
#   ha-min     mypy on the HA integration + pytest tests/ha, HA 2025.4.4                 — Python 3.13, .venv-ha-min
#   ha-latest  pytest tests/ha, HA 2026.10.4                                              — Python >= 3.14.2, .venv-ha-latest
# Interpreters: see .ci/find-python (PY311 / PY313 / PY314 override). Venvs: see .ci/venv (stamp files inside them).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
MAKEFLAGS += --no-print-directory

VENV_CORE      := .venv-core
VENV_HA_MIN    := .venv-ha-min
VENV_HA_LATEST := .venv-ha-latest

# pytest-homeassistant-custom-component: each release pins one homeassistant, pytest and pytest-asyncio.
PHCC_MIN    := 0.13.236
PHCC_LATEST := 0.13.375
# HA 2026.10's camera imports turbojpeg at import time; a real install gets it with camera (its manifest pin), phcc
# 0.13.375 does not install it (0.13.236 does). The integration's snapshot attachments import camera.
CAMERA_REQ_LATEST := PyTurboJPEG==1.8.3
# mypy for the HA integration (the HA venvs do not get the dev extra): the dev extra's pin, read from pyproject.toml.
MYPY_PIN    := $(shell grep -o '"mypy==[^"]*"' pyproject.toml | tr -d '"')

CORE_COV_MIN := 90
CORE_TEST_DIRS := tests/core tests/bridge tests/e2e
# Files of the HA integration proper (everything in custom_components/acs_email but the HA-free core).
HA_SOURCES = $(shell find custom_components/acs_email -name '*.py' -not -path '*/core/*' | sort)

lane = @printf '\n===== %s (%s) =====\n' "$(1)" "$$($(2)/bin/python -V)"

# Lanes share venvs and the build dir: never run them in parallel.
.NOTPARALLEL:

.PHONY: test lint test-core test-ha-min test-ha-latest bench demo deps clean \
        venv-core venv-ha-min venv-ha-latest

test: deps
	@$(MAKE) lint
	@$(MAKE) test-core
	@$(MAKE) test-ha-min
	@$(MAKE) test-ha-latest
	@printf '\n===== all lanes passed =====\n'

# --- venvs (reused while pyproject.toml and the pins are unchanged; project reinstalled when sources change)
venv-core:
	@.ci/venv $(VENV_CORE) core ".[dev]"
venv-ha-min:
	@.ci/venv $(VENV_HA_MIN) ha-min "pytest-homeassistant-custom-component==$(PHCC_MIN)" ".[test]" "$(MYPY_PIN)"
venv-ha-latest:
	@.ci/venv $(VENV_HA_LATEST) ha-latest "pytest-homeassistant-custom-component==$(PHCC_LATEST)" ".[test]" \
	  "$(CAMERA_REQ_LATEST)"

# --- lanes
lint: venv-core
	$(call lane,lint,$(VENV_CORE))
	$(VENV_CORE)/bin/ruff check .
	$(VENV_CORE)/bin/ruff format --check .
	.ci/mypy-core $(VENV_CORE)

test-core: deps venv-core
	$(call lane,core + bridge,$(VENV_CORE))
	.ci/pytest-core $(VENV_CORE) $(CORE_COV_MIN) $(CORE_TEST_DIRS)

test-ha-min: venv-ha-min
	$(call lane,HA minimum: phcc $(PHCC_MIN),$(VENV_HA_MIN))
	$(VENV_HA_MIN)/bin/mypy --python-version 3.13 $(HA_SOURCES)
	$(VENV_HA_MIN)/bin/python -m pytest -p no:sugar tests/ha

test-ha-latest: venv-ha-latest
	$(call lane,HA latest: phcc $(PHCC_LATEST),$(VENV_HA_LATEST))
	$(VENV_HA_LATEST)/bin/python -m pytest -p no:sugar tests/ha

# --- extras
# bench/bench_ha_*.py run a Home Assistant core: they use the HA-minimum venv, the others the core one.
bench: venv-core venv-ha-min
	@shopt -s nullglob; files=(bench/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "bench: no bench/*.py yet"; fi; \
	for f in "$${files[@]}"; do \
	  case "$$f" in bench/bench_ha_*) py=$(VENV_HA_MIN)/bin/python;; *) py=$(VENV_CORE)/bin/python;; esac; \
	  echo "== $$f"; "$$py" "$$f"; done

demo: deps venv-core
	$(VENV_CORE)/bin/acs-email-bridge demo

# Mosquitto for the bridge tests; they start their own broker on a free loopback port, so it is not started here.
# swaks: a real SMTP client for the relay tests.
deps:
	@if ! { [ -x /usr/sbin/mosquitto ] || command -v mosquitto; } >/dev/null 2>&1 \
	   || ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v swaks >/dev/null 2>&1; then \
	  echo "deps: installing mosquitto, swaks"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -q mosquitto mosquitto-clients swaks \
	    || { $$sudo apt-get update -q && $$sudo apt-get install -y -q mosquitto mosquitto-clients swaks; }; \
	fi

clean:
	rm -rf $(VENV_CORE) $(VENV_HA_MIN) $(VENV_HA_LATEST) build .coverage .coverage.* htmlcov \
	       .mypy_cache .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
