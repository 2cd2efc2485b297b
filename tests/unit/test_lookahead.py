"""Adaptive look-ahead (dispatch.py): a burst beyond the window is claimed ahead of time."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from dynacron import At, RunStatus, Scheduler, handler


@handler("noop")
def _noop(payload, ctx):
    return None


def _quiet(env) -> Scheduler:
    return Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs)


def _burst(env, n: int, in_s: float, prefix: str = "b") -> list[str]:
    s = _quiet(env)
    at = At(env.clock.now() + timedelta(seconds=in_s))
    return [s.schedule("noop", {}, trigger=at, task_id=f"{prefix}{i}").task_id for i in range(n)]


def _sent_ids(env) -> list[str]:
    return [json.loads(e["MessageBody"])["task_id"] for e in env.sqs.sent]


def test_a_burst_beyond_the_window_is_claimed_now_with_its_delay(env):
    env.settings = replace(env.settings, lookahead_backlog=10)
    burst = _burst(env, 12, 600)
    _burst(env, 1, 950, prefix="far")  # past SQS's 900 s: not even a burst can go this early
    report = env.dispatcher().poll()
    assert report.lookahead_s == 900 and report.probed >= 10
    assert sorted(_sent_ids(env)) == sorted(burst)
    assert {e["DelaySeconds"] for e in env.sqs.sent} == {599}


def test_a_light_future_is_left_to_later_ticks(env):
    env.settings = replace(env.settings, lookahead_backlog=10)
    _burst(env, 9, 600)
    report = env.dispatcher().poll()
    assert (report.sent, report.probed, report.lookahead_s) == (0, 9, 90)


def test_runs_already_claimed_ahead_do_not_count_as_backlog(env):
    env.settings = replace(env.settings, lookahead_backlog=10)
    _burst(env, 12, 600)
    assert env.dispatcher().poll().sent == 12
    env.clock.advance(60)
    report = env.dispatcher().poll()
    assert (report.sent, report.probed, report.lookahead_s) == (0, 0, 90)


def test_the_probe_reads_a_bounded_share_per_shard(env):
    env.settings = replace(env.settings, lookahead_backlog=4)  # 4 shards: 2 rows each at most
    _burst(env, 40, 300)
    report = env.dispatcher().poll()
    assert 4 <= report.probed <= 8
    assert report.sent == 40  # the burst itself is then streamed in full


def test_zero_backlog_turns_the_look_ahead_off(env):
    env.settings = replace(env.settings, lookahead_backlog=0)
    _burst(env, 50, 600)
    report = env.dispatcher().poll()
    assert (report.sent, report.probed) == (0, 0)


@pytest.mark.parametrize("change", ["pause", "cancel"])
def test_a_run_sent_early_then_paused_or_cancelled_is_skipped_by_the_worker(env, change):
    env.settings = replace(env.settings, lookahead_backlog=3)
    burst = _burst(env, 3, 500)
    assert env.dispatcher().poll().sent == 3
    s = _quiet(env)
    getattr(s, change)(burst[0])
    env.clock.advance(500)
    results = {}
    for m in env.receive():
        task_id = json.loads(m["Body"])["task_id"]
        results[task_id] = env.executor().execute(m["Body"], m["ReceiptHandle"]).status
    # pause leaves the queued run for the worker to skip; cancel already marked it skipped
    assert results.pop(burst[0]) == ("skipped" if change == "pause" else "duplicate")
    assert results == {burst[1]: "succeeded", burst[2]: "succeeded"}
    (run,) = s.runs(burst[0])
    assert run.status is RunStatus.SKIPPED and run.started_at is None
