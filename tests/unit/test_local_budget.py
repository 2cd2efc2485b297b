"""``dynacron local``'s per-poll budget (issue 13): it starts with the first batch, not the read."""

from __future__ import annotations

from dynacron.dispatch import TIME_RESERVE_S
from dynacron.local import runtime


def test_the_budget_clock_starts_at_the_first_batch(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(runtime.time, "monotonic", lambda: now[0])
    time_left = runtime._budget(1.0)
    now[0] += 30.0  # reading a backlog took long: the claims still get their budget
    assert time_left() == 1.0 + TIME_RESERVE_S
    now[0] += 0.5
    assert time_left() > TIME_RESERVE_S  # the poll goes on taking batches
    now[0] += 0.6
    assert time_left() < TIME_RESERVE_S  # and stops after its second of claims
