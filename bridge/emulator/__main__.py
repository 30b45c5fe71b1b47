"""``python -m acs_email_bridge.emulator``: the emulator without the rest of the bridge CLI."""

import argparse
import sys

from .cli import configure_parser, run

parser = argparse.ArgumentParser(prog="python -m acs_email_bridge.emulator", description=__doc__)
configure_parser(parser)
sys.exit(run(parser.parse_args()))
