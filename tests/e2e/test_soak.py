"""A short fault soak (bench/bench_soak.py runs the long one): kills, clock steps and emulator faults at
concurrency 1, 2 and 4; every mail arrives exactly once and no quota window is exceeded."""

from __future__ import annotations

from pathlib import Path

from .soak import run_soak


async def test_fault_soak_delivers_every_mail_exactly_once_within_quota(tmp_path: Path) -> None:
    report = await run_soak(tmp_path, mails=40, rounds=6, seed=5)
    summary = "\n".join(report.lines())
    print(summary)
    assert report.delivered == report.mails, summary
    assert report.duplicates == 0, summary
    assert report.over_quota == 0, summary
    assert report.kills == 3 and report.clock_steps == 3, summary
    assert set(report.concurrency) == {1, 2, 4}, summary
    assert sum(report.faults.values()) >= 10, summary
