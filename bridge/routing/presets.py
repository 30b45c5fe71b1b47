"""Ready-made routes for real devices; ``presets: {frigate: {to: me@example.com}}`` is a complete route.

Each preset is the raw form of a route (the keys a user writes under ``routes:``); what the user gives next to
the preset name overrides it key by key. Payload shapes follow the devices' documentation (see the fixtures
in tests/bridge/fixtures).
"""

from __future__ import annotations

from typing import Any

_FRIGATE_TEXT = """\
{% set a = payload.after %}{% set sub = a.sub_label | default(none) %}\
{{ a.label | title }}{% if sub is string %} ({{ sub }}){% elif sub %} ({{ sub[0] }}){% endif %} \
detected by camera {{ a.camera }}.

Started: {{ a.start_time | datetime }}
{% if a.end_time | default(none) %}Ended:   {{ a.end_time | datetime }}
{% endif %}Zones:   {{ (a.entered_zones | default([])) | join(', ') or 'none' }}
Score:   {{ ((a.top_score | default(a.score | default(0))) * 100) | round | int }} %
Event:   {{ a.id }}
"""
_FRIGATE_HTML = """\
{% set a = payload.after %}{% set sub = a.sub_label | default(none) %}\
<p><b>{{ a.label | title }}</b>{% if sub is string %} ({{ sub }}){% elif sub %} ({{ sub[0] }}){% endif %} \
detected by camera <b>{{ a.camera }}</b> at {{ a.start_time | datetime('%H:%M:%S') }}.</p>
<p>Zones: {{ (a.entered_zones | default([])) | join(', ') or 'none' }} &middot; \
score {{ ((a.top_score | default(a.score | default(0))) * 100) | round | int }} %</p>
{% if 'snapshot.jpg' in attachments %}<p><img src="cid:snapshot.jpg" alt="snapshot" style="max-width:100%"></p>
{% else %}<p><i>No snapshot was received for this event.</i></p>
{% endif %}<p style="color:#888">Frigate event {{ a.id }}</p>
"""

_REVIEW_TEXT = """\
{% set a = payload.after %}{{ a.severity | title }} on camera {{ a.camera }}: {{ objects }}\
{% if a.data.sub_labels %} ({{ a.data.sub_labels | join(', ') }}){% endif %}.

Started: {{ a.start_time | datetime }}
{% if a.end_time | default(none) %}Ended:   {{ a.end_time | datetime }}
{% endif %}Zones:   {{ a.data.zones | join(', ') or 'none' }}
Review:  {{ a.id }}
"""

# UPS states, one word each, so change_only mails transitions and nothing else.
_UPS_SUBJECTS = (
    "{{ {'on battery': 'UPS ' ~ ups ~ ' is on battery', 'low battery': 'UPS ' ~ ups ~ ' battery LOW', "
    "'on line': 'UPS ' ~ ups ~ ' is back on line'}.get(value, 'UPS ' ~ ups ~ ': ' ~ value) }}"
)
_UPS_TEXT = """\
UPS {{ ups }}: {{ value }} (was {{ previous }}).

Status:         {{ raw }}
Battery charge: {{ charge or 'unknown' }}{% if charge %} %{% endif %}
Runtime left:   {{ runtime or 'unknown' }}
Time:           {{ time | datetime }}
"""
_UPS_PRIORITY = "{{ 'normal' if value == 'on line' else 'high' }}"

_Z2M_TEXT = """\
{{ headline }}

Device:  {{ device }}
{% if payload.battery is defined %}Battery: {{ payload.battery }} %
{% endif %}{% if payload.linkquality is defined %}Link:    {{ payload.linkquality }}
{% endif %}Time:    {{ time | datetime }}
"""


def _zigbee(field: str, on: str, off: str, priority: str) -> dict[str, Any]:
    return {
        "topic": "zigbee2mqtt/+",
        "format": "json",
        "when": [{"path": field, "in": [True, False]}],  # a null (state unknown) is no "cleared"
        "vars": {
            "device": "{{ topic_parts[1] }}",
            "headline": f"{{{{ '{on}' if payload.{field} else '{off}' }}}} {{{{ device }}}}",
        },
        "change_only": {"key": "{{ topic }}", "value": f"{{{{ payload.{field} }}}}", "initial": "False"},
        "subject": "{{ headline }}",
        "text": _Z2M_TEXT,
        "priority": f"{{{{ '{priority}' if payload.{field} else 'normal' }}}}",
    }


def _availability(topic: list[str], device: str, offline: str, initial: str) -> dict[str, Any]:
    return {
        "topic": topic,
        "format": "text",
        "when": "raw | trim",  # an empty payload clears a retained topic: no state
        "vars": {"device": device},
        "change_only": {"key": "{{ topic }}", "value": "{{ raw | trim }}", "initial": initial},
        "subject": f"{{{{ device }}}} is {{{{ 'offline' if value == '{offline}' else 'back online' }}}}",
        "text": "{{ device }} reported {{ value }} on {{ topic }} at {{ time | datetime }} (was {{ previous }}).\n",
        "priority": f"{{{{ 'high' if value == '{offline}' else 'normal' }}}}",
    }


PRESETS: dict[str, dict[str, Any]] = {
    # Frigate NVR: new/update/end of one event collapse into one mail, with the best snapshot inline.
    "frigate": {
        "topic": "frigate/events",
        "format": "json",
        "when": "not payload.after.false_positive",
        "collapse": {"key": "{{ payload.after.id }}", "until": "payload.type == 'end'", "max_wait": "30s"},
        "subject": "{{ payload.after.label | title }} at {{ payload.after.camera | replace('_', ' ') }}",
        "text": _FRIGATE_TEXT,
        "html": _FRIGATE_HTML,
        "attachments": [
            {
                "companion": "frigate/{{ payload.after.camera }}/{{ payload.after.label }}/snapshot",
                "name": "snapshot.jpg",
                "inline": True,
                "optional": True,
            }
        ],
        "quota_digest": False,
    },
    # Frigate 0.14+ reviews (frigate/reviews): one mail per review item, the thumbnail attached when readable.
    "frigate_reviews": {
        "topic": "frigate/reviews",
        "format": "json",
        "when": "payload.after.severity in ('alert', 'detection')",
        "collapse": {"key": "{{ payload.after.id }}", "until": "payload.type == 'end'", "max_wait": "30s"},
        "vars": {
            "objects": "{{ payload.after.data.objects | join(', ') or 'activity' }}",
            "place": "{{ payload.after.camera | replace('_', ' ') }}",
        },
        "subject": "{{ payload.after.severity | title }}: {{ objects }} at {{ place }}",
        "text": _REVIEW_TEXT,
        "attachments": [{"file": "{{ payload.after.thumb_path | default('') }}", "optional": True, "missing_ok": True}],
        "allowed_dirs": ["/media/frigate"],
        "quota_digest": False,
    },
    # NUT through nut2mqtt (zackwag): nut2mqtt/<ups>_ups_status/state = "OB DISCHRG", one topic per variable.
    "nut": {
        "topic": "nut2mqtt/+/state",
        "companions": "nut2mqtt/+/state",
        "when": "topic_parts[1].endswith('_ups_status') and raw | trim",  # empty: a retained status cleared
        "vars": {
            "ups": "{{ topic_parts[1][:-11] }}",
            "charge": "{{ latest(topic_parts[0] ~ '/' ~ ups ~ '_battery_charge/state') }}",
            "runtime": "{% set s = latest(topic_parts[0] ~ '/' ~ ups ~ '_battery_runtime/state') %}"
            "{% if s is number %}{{ (s // 60) | int }} min {{ (s % 60) | int }} s{% endif %}",
        },
        "change_only": {
            "key": "{{ topic }}",
            # On line first: "OB LB" → "OL CHRG LB" is the power coming back, with a battery still low.
            "value": "{% set f = raw.split() %}{{ 'on line' if 'OL' in f else 'low battery' if 'LB' in f "
            "else 'on battery' if 'OB' in f else raw | trim }}",
            "initial": "on line",
        },
        "subject": _UPS_SUBJECTS,
        "text": _UPS_TEXT,
        "priority": _UPS_PRIORITY,
    },
    # apcupsd-mqtt (aaronk6): apcupsd/<host>/raw/STATUS = ONLINE | ONBATT | ONBATT LOWBATT; bcharge, timeleft (min).
    "apcupsd": {
        "topic": "apcupsd/+/raw/STATUS",
        "companions": ["apcupsd/+/bcharge", "apcupsd/+/timeleft"],
        "when": "raw | trim",
        "vars": {
            "ups": "{{ topic_parts[1] }}",
            "charge": "{% set c = latest(topic_parts[0] ~ '/' ~ ups ~ '/bcharge') %}"
            "{{ c | int if c is number else '' }}",
            "runtime": "{% set t = latest(topic_parts[0] ~ '/' ~ ups ~ '/timeleft') %}"
            "{% if t is number %}{{ t | round(1) }} min{% endif %}",
        },
        "change_only": {
            "key": "{{ topic }}",
            "value": "{% set f = raw.split() %}{{ 'on line' if 'ONLINE' in f else 'low battery' if 'LOWBATT' in f "
            "else 'on battery' if 'ONBATT' in f else raw | trim | lower }}",
            "initial": "on line",
        },
        "subject": _UPS_SUBJECTS,
        "text": _UPS_TEXT,
        "priority": _UPS_PRIORITY,
    },
    "zigbee2mqtt_leak": _zigbee("water_leak", "Water leak at", "Leak cleared at", "high"),
    "zigbee2mqtt_smoke": _zigbee("smoke", "SMOKE detected by", "Smoke cleared at", "high"),
    "zigbee2mqtt_battery": _zigbee("battery_low", "Battery low:", "Battery OK again:", "normal"),
    # paperless-ngx post-consume script (paperless/post-consumption): the archived PDF (or the original) attached.
    "paperless": {
        "topic": "paperless/post-consumption",
        "format": "json",
        "subject": "Scanned: {{ payload.file_name }}",
        "text": "Paperless added document {{ payload.id }}: {{ payload.file_name }}\n"
        "{% if payload.correspondent | default(none) %}Correspondent: {{ payload.correspondent }}\n{% endif %}"
        "{% if payload.tags | default(none) %}Tags: {{ payload.tags }}\n{% endif %}"
        "Added: {{ payload.added | default(time) }}\n"
        "{% if payload.download_url | default(none) %}Download: {{ payload.download_url }}\n{% endif %}",
        "attachments": [
            {
                "file": "{{ payload.archive_path or payload.source_path }}",
                "name": "{{ payload.original_filename | default(payload.file_name) }}",
            }
        ],
    },
    # Scan-to-folder tools: {"path": "/scans/x.pdf"} or {"filename": "x.pdf", "content": "<base64>"} on scanner/<name>.
    "scanner": {
        "topic": "scanner/+",
        "format": "json",
        "when": "payload.path is defined or payload.content is defined",
        "vars": {"file": "{{ payload.filename | default((payload.path | default('')).rsplit('/', 1) | last) }}"},
        "subject": "Scan from {{ topic_parts[1] }}: {{ file }}",
        "text": "Your scan from {{ topic_parts[1] }} is attached ({{ time | datetime }}).\n",
        "attachments": [
            {"file": "{{ payload.path | default('') }}", "optional": True},
            {"base64": "content", "name": "{{ payload.filename | default('scan.pdf') }}", "optional": True},
        ],
    },
    "tasmota_availability": _availability(["tele/+/LWT"], "{{ topic_parts[1] }}", "Offline", "Online"),
    "shelly_availability": _availability(["+/online", "shellies/+/online"], "{{ topic_parts[-2] }}", "false", "true"),
    # Anything else: the topic as subject, the payload (indented JSON, or the text) as body.
    "json": {"format": "json"},
    "text": {"format": "text", "subject": "{{ topic }}: {{ raw | truncate(60) }}", "text": "{{ raw }}\n"},
}
