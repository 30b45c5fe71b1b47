"""The log budget: a few lines per key and minute, then one saying the rest are not logged, then the count."""

from __future__ import annotations

from acs_email_bridge.log_budget import LogBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_logs_its_first_lines_then_says_the_rest_are_counted_then_how_many() -> None:
    clock = Clock()
    budget = LogBudget(lines=2, window=60.0, clock=clock)
    verdicts = [budget.take("route-a") for _ in range(10)]
    assert [v.log for v in verdicts] == [True, True, True] + [False] * 7
    assert verdicts[0].note == verdicts[1].note == ""
    assert verdicts[2].note == "; more like it in the next 60 s are counted, not logged"
    assert budget.take("route-b").log  # another key has its own budget
    clock.now += 60.0
    after = budget.take("route-a")
    assert after.log and after.note == " (7 more like it not logged)"
    assert budget.take("route-a").note == ""  # counted once


def test_keys_are_bounded_and_the_oldest_forgotten() -> None:
    budget = LogBudget(lines=1, window=60.0, max_keys=3, clock=Clock())
    for key in ("a", "b", "c", "d"):
        assert budget.take(key).log
    assert budget.take("a").log  # forgotten, so a fresh budget
    assert budget.take("d").note.startswith("; more like it")  # still known: its budget is spent
