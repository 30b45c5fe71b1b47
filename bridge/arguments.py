"""Command-line value types shared by the bridge's commands and the emulator's: a wrong value is a usage error."""

from __future__ import annotations

import argparse


def seconds(value: str) -> float:
    """A number of seconds, 0 or more (not nan)."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {value!r}")
    return number


def whole_seconds(value: str) -> int:
    """A whole number of seconds, 0 or more."""
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, not {value!r}")
    return int(value)


def port(value: str) -> int:
    """A TCP port, 0 meaning any free one."""
    if not (value.isdigit() and int(value) <= 65535):
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, not {value!r}")
    return int(value)
