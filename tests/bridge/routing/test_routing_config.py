"""The routes/presets/routing schema: what is accepted, and errors that name the route and the key."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from routing_helpers import T0

from acs_email_bridge.routing import routes, routing_from_config
from acs_email_bridge.routing.conditions import PathCondition
from acs_email_bridge.routing.routes import QuietHours
from acs_email_core.errors import ConfigError

TO = "ops@example.com"


def _route(**fields) -> dict:
    return {"routes": [{"name": "r", "topic": "t", "to": TO, **fields}]}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_route(topic="a/+b"), "routes[0] (r).topic: 'a/+b': '+' must be a whole level"),
        (_route(topic=""), "routes[0] (r).topic: expected a string or a list of strings"),
        (_route(max_payload="lots"), "routes[0] (r).max_payload: expected a size such as 65536, 512KiB or 1MB"),
        (_route(max_payload=0), "routes[0] (r).max_payload: expected a size"),
        (_route(format="xml"), "routes[0] (r).format"),
        (_route(when=[{"path": "a", "gt": 1, "lt": 3}]), "routes[0] (r).when: give exactly one of eq, ne"),
        (_route(when=[{"path": "a", "in": "x"}]), "routes[0] (r).when: in needs a list"),
        (_route(when=[{"path": "a", "matches": "("}]), "matches: not a regular expression"),
        (_route(quiet_hours={"start": "25:00", "end": "07:00"}), "quiet_hours.start: expected a time of day"),
        (_route(attachments=[{"name": "x"}]), "an attachment needs one of base64"),
        (_route(attachments=[{"file": "a", "base64": "b"}]), "attachments.0"),
        (_route(text="a", text_file="b"), "routes[0] (r)"),
        (_route(vars={"1x": "a"}), "vars"),
        (_route(subject=["a"]), "routes[0] (r).subject: expected a text or a template"),
        ({"routes": [{"name": "bad name", "topic": "t", "to": TO}]}, "routes[0] (bad name).name: a name of letters"),
        ({"presets": {"frigate": {"cooldown": "later", "to": TO}}}, "presets.frigate.cooldown.window"),
        ({"presets": "frigate"}, "presets: expected a mapping of preset names"),
        ({"presets": [{"to": TO}]}, "presets.0: each entry needs 'preset: NAME'"),
        ({"routing": {"timezone": "Mars/Olympus"}}, "routing.timezone: unknown time zone 'Mars/Olympus'"),
        (_route(attachments=[{"file": "{{ payload.p }}"}]), "file attachments need allowed_dirs"),
        (_route(text_file="missing.txt"), "text_file: cannot read"),
        (_route(when="payload.x >"), "template 'r.when': line 1"),
        (
            {"routes": [{"name": "r", "topic": "t", "to": TO}], "presets": {"text": {"name": "r", "to": TO}}},
            "a route named 'r' exists already",
        ),
    ],
)
def test_invalid_config_names_the_route_and_key(tmp_path: Path, config: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        routing_from_config(config, base_dir=tmp_path)
    assert message in str(info.value)


def test_presets_in_list_form_and_template_files(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "body.html").write_text("<p>{{ raw }}</p>", encoding="utf-8")
    routing = routing_from_config(
        {
            "routing": {"templates_dir": "tpl"},
            "routes": [{"name": "r", "topic": "a/#", "to": TO, "html_file": "body.html", "enabled": True}],
            "presets": [
                {"preset": "text", "name": "doorbell", "topic": "home/doorbell", "to": TO},
                {"preset": "text", "name": "off", "topic": "x", "to": TO, "enabled": False},
            ],
        },
        base_dir=tmp_path,
    )
    assert [r.name for r in routing.routes] == ["r", "doorbell"]
    assert routing.route("r").html is not None and routing.route("r").html.source == "<p>{{ raw }}</p>"
    assert routing.route("doorbell").preset == "text"
    with pytest.raises(KeyError):
        routing.route("off")


@pytest.mark.parametrize(
    ("start", "end", "hour", "active"),
    [((22, 0), (7, 0), 23, True), ((22, 0), (7, 0), 6, True), ((22, 0), (7, 0), 7, False), ((1, 0), (5, 0), 3, True)],
)
def test_quiet_hours_window(start, end, hour, active) -> None:
    local = datetime.fromtimestamp(T0, ZoneInfo("UTC")).replace(hour=hour, minute=0)
    quiet = QuietHours(start, end)
    assert quiet.active(local) is active
    assert quiet.next_end(local) > local
    assert (quiet.next_end(local).hour, quiet.next_end(local).minute) == end


@pytest.mark.parametrize(
    ("operator", "operand", "payload", "holds"),
    [
        ("eq", True, {"v": "true"}, True),  # YAML true against a text "true"
        ("eq", 100, {"v": "100.0"}, True),  # apcupsd sends numbers as text
        ("ne", "on", {"v": "off"}, True),
        ("ne", "on", {}, False),  # a missing value satisfies nothing but exists: false
        ("not_in", ["a", "b"], {"v": "c"}, True),
        ("lt", 10, {"v": "9.5"}, True),
        ("le", 10, {"v": 10}, True),
        ("ge", "b", {"v": "a"}, False),  # text compares as text
        ("gt", 1, {"v": [2]}, False),  # a list is not a number
        ("contains", "x", {"v": {"x": 1}}, True),  # a mapping contains its keys
        ("contains", 3, {"v": 3}, False),
        ("exists", False, {}, True),
        ("matches", "^ON", {"v": "ONBATT"}, True),
    ],
)
def test_path_conditions(operator: str, operand, payload: dict, holds: bool) -> None:
    condition = PathCondition("v", operator, operand)
    assert condition.holds({"payload": payload}) is holds


def test_matching_names_the_routes_of_a_topic_in_order_and_companion_topics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "TOPICS_CACHED", 2)  # past the bound, topics are matched afresh, not forgotten
    config = {
        "routes": [
            {"name": "all", "topic": "home/#", "to": "a@example.com"},
            {"name": "doors", "topic": "home/door/+", "to": "a@example.com", "attachments": [{"companion": "cam/1"}]},
        ]
    }
    routing = routing_from_config(config, base_dir=tmp_path)
    for _ in range(2):
        assert [(c, [r.name for r in rs]) for c, rs in map(routing.matching, ("home/door/front", "home/x"))] == [
            (False, ["all", "doors"]),
            (False, ["all"]),
        ]
        assert routing.matching("cam/1") == (True, ())
