"""Scheduler.update(lane=, spread=, limit=) and ``dynacron update --lane/--spread/--limit``:
validated as schedule() validates them, applied to the pending occurrence and the next ones."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from dynacron import At, Every, ValidationError, handler
from dynacron.spread import offset_ms
from helpers.cli import invoke


@handler("upd-ok")
def _ok(payload, ctx):
    return None


def _far(env):
    return env.clock.now() + timedelta(hours=1)


def _head(s, task_id):
    (run,) = [r for r in s.runs(task_id) if r.status == "pending"]
    return run


def test_update_moves_a_task_and_its_pending_run_to_another_lane(env):
    s = env.scheduler()
    when = _far(env)
    t = s.schedule("upd-ok", {}, trigger=At(when), task_id="a")
    assert s.update("a", lane="critical").lane == "critical"
    assert _head(s, "a").lane == "critical"
    env.clock.set(when - timedelta(seconds=30))
    assert env.dispatcher().poll().sent == 1
    (entry,) = env.sqs.sent
    assert entry["QueueUrl"] == env.settings.lane_queues["critical"]
    assert t.lane == "default"


def test_update_spread_moves_the_pending_run_to_its_offset_and_none_removes_it(env):
    s = env.scheduler()
    when = _far(env)
    s.schedule("upd-ok", {}, trigger=At(when), task_id="a")
    updated = s.update("a", spread=timedelta(minutes=10))
    head = _head(s, "a")
    off = offset_ms("a", head.run_id, 600_000)
    assert off > 0 and updated.spread == 600.0
    assert head.offset_ms == off and head.scheduled_for == when
    assert head.planned_start == when + timedelta(milliseconds=off)
    # the index moved too: not claimed before its offset comes inside the window
    env.clock.set(when + timedelta(milliseconds=off) - timedelta(seconds=120))
    assert env.dispatcher().poll().claimed == 0
    assert s.update("a", spread=None).spread is None
    assert _head(s, "a").offset_ms in (None, 0)
    assert env.dispatcher().poll().claimed == 1  # due at `when` again: inside the window


def test_a_new_trigger_keeps_the_spread_and_the_limit(env):
    s = env.scheduler()
    s.set_limit("smtp", rate="5/s")
    start = _far(env)
    s.schedule("upd-ok", {}, trigger=Every(3600, start_at=start), task_id="a", spread=60)
    s.update("a", limit="smtp")
    s.update("a", trigger=Every(600, start_at=start))
    head = _head(s, "a")
    assert head.limit == "smtp"
    assert head.offset_ms == (offset_ms("a", head.run_id, 60_000) or None)
    task = s.get("a")
    assert task.limit == "smtp" and task.spread == 60.0
    assert s.update("a", limit=None).limit is None
    assert _head(s, "a").limit is None


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"lane": "urgent"}, "lane"),
        ({"spread": 0}, "spread"),
        ({"spread": 901}, "spread"),
        ({"spread": timedelta(minutes=16)}, "spread"),
        ({"limit": "never-set"}, "limit"),
        ({"limit": "bad name!"}, "limit"),
    ],
)
def test_bad_lane_spread_or_limit_is_refused_and_nothing_changes(env, args, field):
    s = env.scheduler()
    s.schedule("upd-ok", {}, trigger=At(_far(env)), task_id="a")
    before = env.table_items()
    with pytest.raises(ValidationError) as info:
        s.update("a", **args)
    assert info.value.field == field
    assert env.table_items() == before


def test_the_cli_updates_lane_spread_and_limit(env, monkeypatch):
    lanes = ",".join(f"{k}={v}" for k, v in env.settings.lane_queues.items())
    monkeypatch.setenv("DYNACRON_LANE_QUEUES", lanes)
    s = env.scheduler()
    s.set_limit("smtp", rate="5/s")
    # the CLI runs on the real clock: far enough ahead of both clocks
    s.schedule("upd-ok", {}, trigger=At(env.clock.now() + timedelta(days=400)), task_id="a")

    def update(*args):
        return invoke(env, "update", "a", *args)

    out = update("--lane", "bulk", "--spread", "5m", "--limit", "smtp", "--json")
    assert out.exit_code == 0, out.output
    task = json.loads(out.stdout)
    assert (task["lane"], task["spread"], task["limit"]) == ("bulk", 300.0, "smtp")
    out = update("--no-spread", "--no-limit", "--json")
    assert out.exit_code == 0, out.output
    task = json.loads(out.stdout)
    assert (task["lane"], task["spread"], task["limit"]) == ("bulk", None, None)
    bad = update("--lane", "urgent")
    assert bad.exit_code != 0 and "lane" in bad.stderr
    assert s.get("a").lane == "bulk"


@pytest.mark.parametrize("change", [{"lane": "critical"}, {"spread": 30}, {"limit": None}])
def test_a_claim_read_before_an_update_of_lane_spread_or_limit_loses(env, change):
    """The poller chains the next occurrence from the row it read: a claim from a read taken
    before the update must lose, or the old lane/spread/limit would live on in the chain."""
    from dataclasses import replace

    from dynacron import Scheduler

    s = Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs)
    when = env.clock.now() + timedelta(seconds=20)
    s.schedule("upd-ok", {}, trigger=Every(60, start_at=when), task_id="r")
    if "limit" in change:  # give it one to remove
        s.set_limit("slow", rate="10/s")
        s.update("r", limit="slow")
    stale = s.store.get_run_row("r", _head(s, "r").run_id)  # what a poller read
    s.update("r", **change)
    env.clock.set(when)
    report = env.dispatcher().dispatch([stale])
    assert (report.claimed, report.lost_races) == (0, 1)
    assert env.dispatcher().poll().claimed >= 1  # from a fresh read: the chain goes on
    (nxt,) = [r for r in s.runs("r") if r.status == "pending"]
    row = s.store.get_run_row("r", nxt.run_id)
    task = s.get("r")
    assert (row.lane, row.spread_ms is not None, row.limit) == (
        task.lane, task.spread is not None, task.limit)
