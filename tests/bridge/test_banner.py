"""The emulator banner's ``acs:`` block, pasted as the README says, is a config that matches the emulator."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from acs_email_bridge.emulator.cli import banner
from acs_email_core.config import settings_from_config
from acs_email_core.quota import PRESETS


@pytest.mark.parametrize("preset", sorted(PRESETS))
async def test_pasted_block_uses_the_emulators_quota(make_emulator, preset: str) -> None:
    emu = await make_emulator(quota=PRESETS[preset])
    # The README's extraction: sed -n '/^acs:/,/^$/p' banner.txt > acs.yaml
    sed = await asyncio.create_subprocess_exec(
        "sed", "-n", "/^acs:/,/^$/p", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    pasted, _ = await sed.communicate(banner(emu).encode())
    settings = settings_from_config(yaml.safe_load(pasted))
    assert settings.quota == PRESETS[preset]
    assert settings.credentials.connection_string == emu.connection_string


async def test_without_a_quota_the_client_keeps_its_default(make_emulator) -> None:
    emu = await make_emulator()
    block = banner(emu).split("\nacs:", 1)[1]
    assert "quota:" not in block


async def test_pasted_block_uses_the_first_of_the_senders_the_emulator_accepts(make_emulator) -> None:
    senders = ["alerts@home.example", "ups@home.example"]
    emu = await make_emulator(senders=senders)
    text = banner(emu, senders)
    pasted = yaml.safe_load(text[text.index("\nacs:") : text.index("Press Ctrl+C")])
    assert settings_from_config(pasted).sender == "alerts@home.example"  # the emulator refuses DoNotReply@example.com
    assert "  senders:           alerts@home.example, ups@home.example" in text


async def test_banner_shows_the_principal_without_the_role(make_emulator) -> None:
    emu = await make_emulator()
    ((tenant, client), secret) = next(item for item in emu.clients.items() if item[0][1] in emu.without_role)
    text = banner(emu)
    assert f"client id {client}, secret {secret} (tokens, then 403 from ACS)" in text
    assert tenant == emu.tenant_id and client != emu.client_id
