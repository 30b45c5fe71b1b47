"""The MQTT journal: event ids that survive redelivery, and nothing matched that should not be."""

from __future__ import annotations

import time
from pathlib import Path

from acs_email_bridge.mqtt.journal import KEEP_PAYLOAD, FailedEvent, Incoming, Journal, PendingResult, digest


def msg(payload: bytes, *, dup: bool = False, epoch: int = 1, topic: str = "t") -> Incoming:
    return Incoming(digest(topic, payload), dup, time.time(), epoch)


async def open_journal(path: Path) -> Journal:
    journal = Journal(path, synchronous="NORMAL")
    await journal.open()
    return journal


async def test_identical_payloads_are_distinct_events_unless_flagged_dup(tmp_path):
    journal = await open_journal(tmp_path / "j.db")
    first = await journal.assign([msg(b"ON"), msg(b"ON")], None)
    assert first[0].event_id != first[1].event_id
    assert not any(a.redelivered for a in first)
    await journal.close()


async def test_a_redelivery_after_a_crash_gets_the_same_event_id(tmp_path):
    journal = await open_journal(tmp_path / "j.db")
    stored = await journal.assign([msg(b"a"), msg(b"b"), msg(b"ON"), msg(b"ON")], None)
    await journal.close()  # the process dies before its PUBACKs

    journal = await open_journal(tmp_path / "j.db")
    again = await journal.assign([msg(b"b", dup=True, epoch=2), msg(b"ON", dup=True, epoch=2)], None)
    assert [a.event_id for a in again] == [stored[1].event_id, stored[2].event_id]
    assert all(a.redelivered for a in again)
    # the second unacked "ON" comes again too: it maps to the other row, not to the first one again
    third = await journal.assign([msg(b"ON", dup=True, epoch=2)], None)
    assert third[0].event_id == stored[3].event_id
    # a further DUP with the same payload on this connection has no row left: a new event
    fourth = await journal.assign([msg(b"ON", dup=True, epoch=2)], None)
    assert not fourth[0].redelivered
    assert fourth[0].event_id not in {a.event_id for a in stored}
    # on the next connection, every unconfirmed row can be matched once more (another crash before the ack)
    fifth = await journal.assign([msg(b"a", dup=True, epoch=3)], None)
    assert fifth[0].event_id == stored[0].event_id
    await journal.close()


async def test_confirmed_rows_are_forgotten(tmp_path):
    journal = await open_journal(tmp_path / "j.db")
    stored = await journal.assign([msg(b"x"), msg(b"y")], None)
    assert await journal.pending_events() == 2
    await journal.assign([msg(b"z")], stored[1].seq)  # the acks of x and y reached the broker
    assert await journal.pending_events() == 1
    late = await journal.assign([msg(b"x", dup=True, epoch=2)], None)
    assert not late[0].redelivered  # a genuinely new message that happens to be flagged DUP
    await journal.close()


async def test_failed_events_keep_the_newest_and_are_recorded_once(tmp_path):
    journal = await open_journal(tmp_path / "j.db")
    failed = [FailedEvent(f"e{i}", "t", f"reason {i}", None, float(i), 1, False, b"\xff") for i in range(5)]
    await journal.record(failed, [], keep_failed=3)
    await journal.record(failed[4:], [], keep_failed=3)  # redelivered: not kept twice
    kept = await journal.failed()
    assert [f.event_id for f in kept] == ["e4", "e3", "e2"]
    assert kept[0].payload == b"\xff"
    await journal.close()


async def test_pending_send_results_survive_a_restart(tmp_path):
    journal = await open_journal(tmp_path / "j.db")
    await journal.record([], [PendingResult("m1", "res", "req-1", b"corr")], keep_failed=10)
    await journal.close()
    journal = await open_journal(tmp_path / "j.db")
    assert [r for _rowid, r in await journal.pending_results()] == [PendingResult("m1", "res", "req-1", b"corr")]
    await journal.result_published("m1")
    assert await journal.pending_results() == []
    await journal.close()


async def test_a_large_failed_payload_is_kept_in_part_with_its_size(tmp_path):
    journal = await open_journal(tmp_path / "j.db")
    big = bytes(range(256)) * 2000  # 512,000 bytes
    await journal.record([FailedEvent("e1", "t", "too big", None, 1.0, 1, False, big)], [], keep_failed=10)
    [kept] = await journal.failed()
    assert kept.payload == big[:KEEP_PAYLOAD]
    assert kept.size == len(big)
    await journal.close()
