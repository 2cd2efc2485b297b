"""The demo's plan: each task's fires must not depend on when, during the scheduling burst,
the SDK happened to create it (the demo may start a moment before a minute boundary)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dynacron.local.demo import plan
from dynacron.triggers import Trigger


def _fires(trigger: Trigger, created: datetime) -> list[datetime]:
    anchored = trigger.anchored(created)
    fires: list[datetime] = []
    fire = anchored.first(created)
    while fire is not None and len(fires) < 100:
        fires.append(fire)
        fire = anchored.next(fire)
    return fires


@pytest.mark.parametrize("second", [0.0, 30.0, 57.2, 58.9, 59.4, 59.99])
def test_cron_task_fires_once_whatever_instant_it_is_created(second: float) -> None:
    now = datetime(2026, 11, 30, 17, 31, tzinfo=UTC) + timedelta(seconds=second)
    tasks, _ = plan(now, duration=10, stretch=False)
    cron = next(t for t in tasks if t.task_id == "demo-report")
    # The burst creates the tasks within a few hundred ms of `now`; allow up to 2.5 s.
    seen = {
        tuple(_fires(cron.trigger, now + timedelta(milliseconds=ms))) for ms in range(0, 2500, 100)
    }
    assert len(seen) == 1, seen
    (fires,) = seen
    assert len(fires) == 1
    assert fires[0].second == 0 and fires[0].microsecond == 0
    assert fires[0] > now


@pytest.mark.parametrize("second", [0.0, 41.0, 59.4])
def test_cron_check_matches_whether_the_minute_falls_inside_the_demo(second: float) -> None:
    now = datetime(2026, 11, 30, 17, 31, tzinfo=UTC) + timedelta(seconds=second)
    tasks, duration = plan(now, duration=10, stretch=False)
    cron = next(t for t in tasks if t.task_id == "demo-report")
    (fire,) = _fires(cron.trigger, now)
    inside = fire + timedelta(seconds=3) <= now + timedelta(seconds=duration)
    assert cron.cancel_at_end is not inside
