"""Quota presets match the ACS limits table; custom quotas parse or fail with a ConfigError."""

from __future__ import annotations

import pytest

from acs_email_core.errors import ConfigError
from acs_email_core.quota import HOUR, MINUTE, PRESETS, Quota, Window, quota_from_config


@pytest.mark.parametrize(
    ("preset", "send", "poll"),
    [
        ("azure_managed", ((5, 60.0), (10, 3600.0)), ((10, 60.0), (20, 3600.0))),
        ("custom_domain", ((30, 60.0), (100, 3600.0)), ((60, 60.0), (200, 3600.0))),
    ],
)
def test_presets_match_the_acs_table(preset, send, poll):
    quota = quota_from_config(preset)
    assert quota is PRESETS[preset]
    assert [(w.limit, w.seconds) for w in quota.send] == list(send)
    assert [(w.limit, w.seconds) for w in quota.poll] == list(poll)


def test_only_the_two_documented_presets_exist():
    assert sorted(PRESETS) == ["azure_managed", "custom_domain"]


def test_quota_object_passes_through():
    quota = Quota(send=(Window(1, 1.0),), poll=(Window(2, 1.0),))
    assert quota_from_config(quota) is quota


def test_custom_quota_polls_default_to_twice_the_sends():
    quota = quota_from_config({"per_minute": 40, "per_hour": "150"})
    assert quota.send == (Window(40, MINUTE), Window(150, HOUR))
    assert quota.poll == (Window(80, MINUTE), Window(300, HOUR))


def test_custom_quota_with_explicit_polls():
    quota = quota_from_config({"per_minute": 40, "per_hour": 150, "poll_per_minute": 70, "poll_per_hour": 250})
    assert quota.poll == (Window(70, MINUTE), Window(250, HOUR))


@pytest.mark.parametrize(
    "value",
    [
        "Azure_Managed",
        "unknown",
        "",
        {"per_minute": 5},
        {"per_hour": 5},
        {"per_minute": "five", "per_hour": 10},
        {"per_minute": None, "per_hour": 10},
        {"per_minute": 0, "per_hour": 10},
        {"per_minute": 5, "per_hour": -1},
        {"per_minute": 5, "per_hour": 10, "poll_per_minute": 0},
        {"per_minute": 5, "per_hour": 10, "poll_per_hour": "lots"},
        {"per_minute": 5, "per_hour": 10, "poll_per_minute": None},
        {"per_minute": 29.9, "per_hour": 100},  # not read as 29
        {"per_minute": True, "per_hour": 100},  # not read as 1
        {"per_minute": 5, "per_hour": 10, "poll_per_minite": 20},  # a misspelt key would leave its default
        {"per_minute": 5, "per_hour": 10, "burst": 20},
        None,
        30,
        ["azure_managed"],
    ],
)
def test_bad_quota_config_is_a_config_error(value):
    with pytest.raises(ConfigError):
        quota_from_config(value)


def test_unknown_preset_error_lists_the_presets():
    with pytest.raises(ConfigError, match=r"'premium'.*\['azure_managed', 'custom_domain'\]"):
        quota_from_config("premium")


def test_describe_and_scaled():
    quota = PRESETS["azure_managed"]
    assert quota.describe() == "5/min, 10/h"
    fast = quota.scaled(1 / 60)
    assert fast.send == (Window(5, 1.0), Window(10, 60.0))
    assert fast.poll == (Window(10, 1.0), Window(20, 60.0))
    assert fast.describe() == "5/1s, 10/min"
    assert quota.scaled(0.01).describe() == "5/0.6s, 10/36s"


def test_unknown_custom_quota_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'poll_per_minite'"):
        quota_from_config({"per_minute": 5, "per_hour": 10, "poll_per_minite": 20})
