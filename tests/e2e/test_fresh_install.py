"""A new user's first run: ``pip install .`` (no extras) in a fresh venv, then the README's steps as written.

The project is copied (work tree, not git) to a temporary directory and installed from there by the README's own
install line, so the wheel built is the one a user would get; nothing of the test environment is on PATH.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "README.md", "bridge", "custom_components/acs_email/core"]


@dataclass(frozen=True)
class FreshInstall:
    home: Path  # holds venv/ and the project copy src/
    env: dict[str, str]  # the venv first on PATH, as after `. venv/bin/activate`

    @property
    def src(self) -> Path:
        return self.home / "src"

    def run(self, script: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None) -> str:
        """Run shell lines as a user pastes them (bash, stop at the first failure); their output."""
        process = subprocess.Popen(
            ["bash", "-e", "-c", script],
            cwd=cwd,
            env=env or self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # so that whatever the lines leave running can be stopped
        )
        try:
            out, _ = process.communicate(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait()
        assert process.returncode == 0, f"{script}\n--- exit {process.returncode}:\n{out}"
        return out


def readme_shell(heading: str) -> str:
    """The ```sh blocks of one README section (up to the next heading), as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, f"no shell block under {heading!r}"
    return "".join(blocks)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshInstall]:
    home = tmp_path_factory.mktemp("fresh")
    for name in SOURCES:
        source, target = ROOT / name, home / "src" / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{home / 'venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", VIRTUAL_ENV=str(home / "venv"))
    install = FreshInstall(home, env)
    install.run(readme_shell("## Command line"), cwd=install.src, timeout=600)  # `pip install .`
    yield install


def test_every_command_starts_after_a_plain_install(fresh: FreshInstall) -> None:
    out = fresh.run(
        "acs-email-bridge --help; acs-email-bridge emulator --help; acs-email-bridge queue retry --help", cwd=fresh.home
    )
    commands = out.split("{", 1)[1].split("}", 1)[0].split(",")
    assert {"send", "queue", "emulator", "demo", "run"} <= set(commands), out
    assert "--quota" in out and "--config CONFIG" in out


def test_readme_try_it_without_azure_works_as_written(fresh: FreshInstall) -> None:
    workdir = fresh.home / "try"
    workdir.mkdir()
    out = fresh.run(readme_shell("### Try it without Azure"), cwd=workdir)
    assert re.search(r"^sent [0-9a-f-]{36}$", out, re.MULTILINE), out
    (eml,) = (workdir / ".acs-emulator" / "mail").glob("*.eml")
    assert "ups-report.csv" in eml.read_text(encoding="utf-8")
    assert "queued 0, sending 0, sent 1, dead 0" in out
    assert "quota: custom_domain" in (workdir / "acs.yaml").read_text(encoding="utf-8")


def test_demo_hint_runs_as_printed_without_the_venv_on_path(fresh: FreshInstall) -> None:
    """As `make demo` runs it: by a relative path to the venv's script, which is not on PATH."""
    env = {**fresh.env, "PATH": os.defpath}
    env.pop("VIRTUAL_ENV")
    out = fresh.run("venv/bin/acs-email-bridge demo --dir demo", cwd=fresh.home, env=env)
    hint = out.rsplit("the outbox: ", 1)[1].strip()
    assert shlex.split(hint)[0] == "venv/bin/acs-email-bridge"
    assert "sent 5, dead 0" in fresh.run(hint, cwd=fresh.home, env=env)
