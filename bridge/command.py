"""How the user can run this program again: for the hints it prints (``queue flush``, ``queue list``)."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

NAME = "acs-email-bridge"


def program() -> str:
    """The bare name when PATH finds this very program, else the path it was started by (e.g.
    ``.venv-core/bin/acs-email-bridge`` under ``make demo``), else ``python -m acs_email_bridge``."""
    started_as = sys.argv[0] if sys.argv else ""
    if Path(started_as).name == NAME:
        found = shutil.which(NAME)
        if found and Path(found).resolve() == Path(started_as).resolve():
            return NAME
        return shlex.quote(started_as)
    return f"{shlex.quote(sys.executable)} -m acs_email_bridge"


def config_hint(action: str, config: str | Path) -> str:
    """A ready-to-paste ``queue`` command for this config file."""
    return f"{program()} queue {action} --config {shlex.quote(str(config))}"
