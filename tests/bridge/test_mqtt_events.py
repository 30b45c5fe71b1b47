"""The router interface's event: stable mail ids and clear reasons for bad payloads."""

from __future__ import annotations

import uuid

import pytest

from acs_email_bridge.mqtt.events import _MAIL_IDS, BadEvent, InboundEvent


def event(payload: bytes, event_id: str = "e1") -> InboundEvent:
    return InboundEvent("t/x", payload, 1, False, 0.0, event_id)


def test_mail_ids_are_uuid5_of_the_event_id_and_index():
    e = event(b"{}", "0b6f3c2e-1111-4222-8333-944445555666")
    assert e.mail_id(0) == str(uuid.uuid5(_MAIL_IDS, f"{e.event_id}/0"))
    assert e.mail_id(3) == str(uuid.uuid5(_MAIL_IDS, f"{e.event_id}/3"))
    assert e.mail_id(0) != e.mail_id(1)
    assert event(b"other payload", e.event_id).mail_id(0) == e.mail_id(0)  # the id, not the payload, decides


def test_bad_payloads_say_why():
    with pytest.raises(BadEvent, match=r"not UTF-8 text \(byte 1; 3 bytes\)"):
        event(b"a\xff\xfe").text()
    with pytest.raises(BadEvent, match="not valid JSON: Expecting ',' delimiter at line 1 column 9"):
        event(b'{"a": 1 "b": 2}').json()
    assert event(b'{"a": {"b": [1, 2]}}').json() == {"a": {"b": [1, 2]}}
