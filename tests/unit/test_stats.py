"""Scheduler.stats on a deployment played forward by dynacron.testing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import dynacron.testing
from dynacron import At, Every, RetryPolicy, Stats, ValidationError, handler

T0 = datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC)


@handler("st-ok")
def _ok(payload: dict, ctx) -> None:
    return None


@handler("st-flaky")
def _flaky(payload: dict, ctx) -> None:
    if ctx.attempt < 2:
        raise RuntimeError("once")


@handler("st-fail")
def _fail(payload: dict, ctx) -> None:
    raise RuntimeError("always")


@pytest.fixture
def env():
    with dynacron.testing.local(start=T0) as e:
        yield e


def test_stats_count_what_happened_in_the_window(env):
    s = env.scheduler
    s.schedule("st-ok", {}, trigger=Every(60))  # 10 runs in 10 min (fires at 0..9 min)
    s.schedule("st-flaky", {}, trigger=At(T0 + timedelta(seconds=30)),
               retry=RetryPolicy(max_attempts=3, backoff_base=5, jitter=0))
    s.schedule("st-fail", {}, trigger=At(T0 + timedelta(seconds=40)),
               retry=RetryPolicy(max_attempts=2, backoff_base=1, jitter=0))
    env.advance(timedelta(minutes=9, seconds=59))
    s.schedule("st-ok", {}, trigger=At(env.now() + timedelta(seconds=100)))
    # Poller and worker are "down" for 200 s: the 10:10 run of Every(60) was claimed (its
    # message waits on the queue), its 10:11 successor and the At run stay pending.
    env.clock.advance(200)
    st = s.stats(since=timedelta(minutes=30))
    assert isinstance(st, Stats) and st.complete
    assert (st.runs["succeeded"], st.runs["dead"], st.runs["queued"], st.runs["pending"]) == (
        11, 1, 1, 2)
    assert st.total == 15
    assert st.dead == 1 and st.retries == 1 + 1  # flaky's second attempt, fail's second
    assert st.lateness_samples == 10 and st.lateness_max == timedelta(0)  # on the second
    assert st.dlq_depth == 1 and st.queue_depth == 1
    assert st.oldest_overdue is not None
    assert (st.oldest_overdue.scheduled_for, st.oldest_overdue.status) == (
        T0 + timedelta(minutes=10), "queued")
    assert st.until - st.since == timedelta(minutes=30)


def test_the_window_leaves_older_runs_out(env):
    env.scheduler.schedule("st-ok", {}, trigger=Every(60))
    env.advance(timedelta(minutes=10))
    st = env.scheduler.stats(since=timedelta(minutes=2))
    # runs scheduled at 8, 9 and 10 min (the last at exactly the window's end)
    assert st.runs["succeeded"] == 3


def test_a_scan_is_bounded_and_says_so(env):
    env.scheduler.schedule("st-ok", {}, trigger=Every(1))
    env.advance(30)
    st = env.scheduler.stats(max_items=5)
    assert not st.complete and st.scanned_items <= 5 and st.notes
    assert st.total <= 5
    full = env.scheduler.stats()
    assert full.complete and full.runs["succeeded"] == 31


def test_bad_arguments(env):
    with pytest.raises(ValidationError) as exc:
        env.scheduler.stats(since=0)
    assert exc.value.field == "since"
    with pytest.raises(ValidationError) as exc:
        env.scheduler.stats(max_items=0)
    assert exc.value.field == "max_items"
