"""Template rendering as a route author sees it: escaping, strict errors, sandbox, helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from acs_email_core.errors import TemplateError
from acs_email_core.templates import TemplateRenderer

BERLIN = ZoneInfo("Europe/Berlin")
# A Frigate event as it arrives on frigate/events (trimmed): float epoch timestamps, nested dicts, nulls.
FRIGATE = {
    "type": "new",
    "after": {
        "camera": "front_door",
        "label": "person",
        "sub_label": None,
        "start_time": 1718013600.123456,  # 2024-06-10 10:00:00.123456 UTC
        "end_time": None,
    },
}


@pytest.fixture
def renderer() -> TemplateRenderer:
    return TemplateRenderer(timezone=BERLIN)


def render(renderer: TemplateRenderer, source: str, html: bool = False, single_line: bool = False, **variables):
    return renderer.compile("route.test", source, html=html, single_line=single_line).render(variables)


# ---- escaping --------------------------------------------------------------------------------------------


def test_html_escapes_payload_values(renderer):
    out = render(renderer, "<p>{{ payload.name }}</p>", html=True, payload={"name": "<script>alert(1)</script> & co"})
    assert out == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>"


def test_text_and_subject_are_not_escaped(renderer):
    assert render(renderer, "{{ v }}", v="<b>A & B</b>") == "<b>A & B</b>"
    assert render(renderer, "{{ v }}", single_line=True, v="<b>A & B</b>") == "<b>A & B</b>"


def test_html_safe_filter_is_the_authors_explicit_choice(renderer):
    assert render(renderer, "{{ v | safe }}", html=True, v="<b>x</b>") == "<b>x</b>"


def test_dict_prints_as_json_escaped_in_html(renderer):
    payload = {"label": "<person>", "score": 0.9, "zones": ["yard"]}
    assert render(renderer, "{{ payload }}", payload=payload) == '{"label":"<person>","score":0.9,"zones":["yard"]}'
    assert render(renderer, "{{ payload }}", html=True, payload=payload) == (
        "{&#34;label&#34;:&#34;&lt;person&gt;&#34;,&#34;score&#34;:0.9,&#34;zones&#34;:[&#34;yard&#34;]}"
    )


def test_none_prints_as_nothing(renderer):
    assert render(renderer, "[{{ payload.after.sub_label }}]", payload=FRIGATE) == "[]"


# ---- undefined names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "variable"),
    [
        ("{{ paylod.after.label }}", "paylod"),
        ("{{ payload.after.zones }}", "payload.after.zones"),
        ("{{ payload.before.label }}", "payload.before"),
        ("{{ payload['after']['zones'] }}", "payload.after.zones"),
        ("{% if payload.after.score > 0.5 %}x{% endif %}", "payload.after.score"),
        ("{% for d in payload.detections %}{{ d }}{% endfor %}", "payload.detections"),
    ],
)
def test_undefined_names_template_and_full_path(renderer, source, variable):
    with pytest.raises(TemplateError) as info:
        render(renderer, source, payload=FRIGATE)
    assert info.value.template == "route.test"
    assert info.value.variable == variable
    assert "route.test" in str(info.value)
    assert f"'{variable}' is undefined" in str(info.value)
    assert "line 1" in str(info.value)


def test_undefined_picks_the_expression_whose_owner_lacks_the_key(renderer):
    source = "{{ a.x }}\n{{ b.x }} {{ a.x }}"
    with pytest.raises(TemplateError) as info:
        render(renderer, source, a={"x": 1}, b={"y": 2})
    assert info.value.variable == "b.x"
    assert "line 2" in str(info.value)


def test_undefined_loop_variable_is_named_as_written(renderer):
    with pytest.raises(TemplateError) as info:
        render(renderer, "{% for d in items %}\n{{ d.label }}\n{% endfor %}", items=[{"score": 1}])
    assert info.value.variable == "d.label"
    assert "line 2" in str(info.value)


def test_optional_values_via_default_and_is_defined(renderer):
    out = render(
        renderer,
        "{{ payload.before.label | default('-') }} {{ payload.after.zones is defined }} "
        "{{ payload.after.zones | default([]) | length }}",
        payload=FRIGATE,
    )
    assert out == "- False 0"


# ---- syntax and sandbox ----------------------------------------------------------------------------------


def test_syntax_error_names_template_and_line(renderer):
    with pytest.raises(TemplateError) as info:
        renderer.compile("frigate.subject", "Motion\n{{ payload.after.camera }\n")
    assert info.value.template == "frigate.subject"
    assert info.value.variable is None
    assert "'frigate.subject'" in str(info.value)
    assert "line 2" in str(info.value)


def test_unknown_filter_is_a_compile_error(renderer):
    with pytest.raises(TemplateError, match="line 1: No filter named 'titel'"):
        renderer.compile("t", "{{ x | titel }}")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ payload.after.camera.__class__ }}",
        "{{ '{0.__class__}'.format(payload) }}",
    ],
)
def test_sandbox_blocks_internals(renderer, source):
    with pytest.raises(TemplateError, match="not allowed in templates") as info:
        render(renderer, source, payload=FRIGATE)
    assert info.value.template == "route.test"


def test_payload_cannot_be_modified_by_a_template(renderer):
    payload = {"after": {"label": "person"}}
    with pytest.raises(TemplateError, match="not allowed in templates"):
        render(renderer, "{{ payload.after.update(label='cat') }}", payload=payload)
    assert payload == {"after": {"label": "person"}}


def test_runtime_errors_name_template_and_line(renderer):
    with pytest.raises(TemplateError, match=r"'route.test': line 2: ZeroDivisionError") as info:
        render(renderer, "ok\n{{ 1 / n }}", n=0)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


# ---- subject ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ("Alarm: {{ v }}", "line1\r\nBcc: x@example.com", "Alarm: line1 Bcc: x@example.com"),
        ("{{ v }}", "a\rb\nc\u2028d", "a b c d"),
        ("\n  UPS {{ v }}\n  on battery\n", "ups1", "UPS ups1 on battery"),
        ("Keep  double  spaces {{ v }}", "x", "Keep  double  spaces x"),
    ],
)
def test_single_line_folds_line_breaks(renderer, source, value, expected):
    assert render(renderer, source, single_line=True, v=value) == expected


def test_text_keeps_line_breaks(renderer):
    assert render(renderer, "a\n{{ v }}", v="b\nc") == "a\nb\nc"


@pytest.mark.parametrize(
    ("source", "single_line", "expected"),
    [
        ("ops@example.com", True, "ops@example.com"),
        ("\n  Front door\n  opened\n", True, "Front door opened"),
        ("Plain text.\n", False, "Plain text."),  # Jinja drops one trailing newline, fixed text or not
        ("}} and %} are text", False, "}} and %} are text"),
    ],
)
def test_a_fixed_text_renders_as_jinja_would(renderer, source, single_line, expected):
    template = renderer.compile("t", source, single_line=single_line)
    assert template.render({}) == template.render({"v": 1}) == expected


# ---- helpers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (1718013600.123456, "%H:%M:%S", "12:00:00"),  # Frigate float seconds, CEST
        (1718013600, "%Y-%m-%d %H:%M", "2024-06-10 12:00"),
        ("1718013600", "%H:%M", "12:00"),  # numeric string
        (1718013600123, "%H:%M:%S", "12:00:00"),  # Zigbee2MQTT epoch milliseconds
        ("2024-06-10T10:00:00Z", "%H:%M %Z", "12:00 CEST"),
        ("2024-06-10T12:00:00+02:00", "%H:%M", "12:00"),
        ("2024-01-10T12:00:00", "%H:%M %Z", "12:00 CET"),  # naive: wall clock in the configured zone
        (datetime(2024, 6, 10, 10, tzinfo=UTC), "%H:%M", "12:00"),
    ],
)
def test_datetime_filter(renderer, value, fmt, expected):
    assert render(renderer, "{{ t | datetime(fmt) }}", t=value, fmt=fmt) == expected


def test_datetime_default_format_and_payload_path(renderer):
    assert render(renderer, "{{ payload.after.start_time | datetime }}", payload=FRIGATE) == "2024-06-10 12:00:00"


def test_datetime_uses_the_configured_timezone():
    utc = TemplateRenderer(timezone=UTC)
    assert render(utc, "{{ t | datetime('%H:%M') }}", t=1718013600) == "10:00"


@pytest.mark.parametrize("value", ["soon", None, True, [1]])
def test_datetime_rejects_non_times(renderer, value):
    with pytest.raises(TemplateError, match=r"'route\.test': line 1: ValueError"):
        render(renderer, "{{ t | datetime }}", t=value)


def test_timestamp_filter_allows_durations(renderer):
    out = render(
        renderer,
        "{{ (end | timestamp - start | timestamp) | int }}s",
        start="2024-06-10T10:00:00Z",
        end=1718013690.5,
    )
    assert out == "90s"


def test_now_is_aware_in_the_configured_zone(renderer):
    before = datetime.now(UTC)
    out = render(renderer, "{{ now().isoformat() }}")
    after = datetime.now(UTC)
    parsed = datetime.fromisoformat(out)
    assert before <= parsed <= after
    assert parsed.utcoffset() == BERLIN.utcoffset(parsed.replace(tzinfo=None))
    assert render(renderer, "{{ now() | datetime('%Y') }}") == str(parsed.year)


def test_now_without_timezone_is_host_local():
    out = TemplateRenderer().compile("t", "{{ now().isoformat() }}").render({})
    parsed = datetime.fromisoformat(out)
    assert parsed.utcoffset() == datetime.now().astimezone().utcoffset()
    assert abs(parsed - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, "0 Bytes"), (999, "999 Bytes"), (1500, "1.5 kB"), (1_500_000, "1.5 MB"), ("10000000", "10.0 MB")],
)
def test_filesize(renderer, size, expected):
    assert render(renderer, "{{ n | filesize }}", n=size) == expected


def test_tojson_in_text_is_plain_compact_json(renderer):
    payload = {"name": "Küche <1>", "on": True, "t": None}
    assert render(renderer, "{{ p | tojson }}", p=payload) == '{"name":"Küche <1>","on":true,"t":null}'
    assert render(renderer, "{{ p | tojson(2) }}", p={"a": 1}) == '{\n  "a": 1\n}'


def test_tojson_in_html_is_escaped(renderer):
    assert render(renderer, "{{ p | tojson }}", html=True, p={"a": "<b>"}) == "{&#34;a&#34;:&#34;&lt;b&gt;&#34;}"


def test_fromjson_reads_nested_json_strings(renderer):
    assert render(renderer, "{{ (raw | fromjson).battery }}%", raw='{"battery": 87}') == "87%"
    with pytest.raises(TemplateError, match="JSONDecodeError"):
        render(renderer, "{{ raw | fromjson }}", raw="{not json")


def test_compiled_template_renders_many_payloads(renderer):
    template = renderer.compile("nut.text", "{{ ups }}: {{ status }}")
    assert template.name == "nut.text"
    assert template.render({"ups": "ups1", "status": "OB"}) == "ups1: OB"
    assert template.render({"ups": "ups2", "status": "OL"}) == "ups2: OL"
