"""An idle bridge stays small: the Azure SDK, aiohttp, the SMTP server and the emulator load only when used.

Together they are some 35 MiB of a bridge that may never have a mail to send (``bench/bench_mqtt.py``
prints the figures); this guards against an import that pulls them back in at start.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiohttp", "azure", "aiosmtpd", "cryptography", "trustme")
PROBE = """
import sys
import acs_email_bridge.cli, acs_email_bridge.service
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:]))))
"""


def _loaded(*setup: str) -> set[str]:
    code = "\n".join(setup) + PROBE
    out = subprocess.run([sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_starting_the_bridge_loads_no_sdk_server_or_emulator() -> None:
    assert _loaded() == set()


def test_the_first_request_loads_the_sdk() -> None:
    loaded = _loaded(
        "import asyncio",
        "from acs_email_core.transport import AcsCredentials, AcsTransport",
        "async def ask() -> None:",
        "    creds = AcsCredentials(connection_string='endpoint=https://127.0.0.1:9;accesskey=a2V5')",
        "    async with AcsTransport(creds, timeout=2) as transport:  # nothing listens there: refused at once",
        "        await transport.status('00000000-0000-4000-8000-000000000000')",
        "asyncio.run(ask())",
    )
    assert {"aiohttp", "azure"} <= loaded
