"""Spread (spread.py): deterministic offsets inside the window, honoured by poller and worker."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from dynacron import At, Every, ValidationError, handler
from dynacron.cli import cli
from dynacron.execute import Outcome
from dynacron.spread import offset_ms
from dynacron.store import scheduled_run_id

STARTS: list = []


@handler("spread-ok")
def _ok(payload, ctx):
    STARTS.append(ctx.run_id)
    return None


def test_offsets_stay_in_the_window_are_stable_and_differ():
    window = 300_000
    offsets = [offset_ms("t1", scheduled_run_id(k * 60_000), window) for k in range(200)]
    assert all(0 <= o <= window for o in offsets)
    assert offsets == [offset_ms("t1", scheduled_run_id(k * 60_000), window) for k in range(200)]
    assert len(set(offsets)) > 190  # a hash, not a constant: occurrences spread out
    other = [offset_ms("t2", scheduled_run_id(k * 60_000), window) for k in range(200)]
    assert other != offsets  # two tasks firing together land apart
    assert max(offsets) > window * 0.9 and min(offsets) < window * 0.1  # the whole window


@pytest.mark.parametrize("bad", [0, -1, 900.5, timedelta(minutes=16), "5m"])
def test_bad_spread_is_refused_before_anything_is_written(env, bad):
    s = env.scheduler()
    with pytest.raises(ValidationError) as info:
        s.schedule("spread-ok", {}, trigger=At(env.clock.now() + timedelta(hours=1)), spread=bad)
    assert info.value.field == "spread"
    assert env.table_items() == []


def test_a_spread_run_is_due_sent_and_started_at_its_offset(env):
    s = env.scheduler()
    when = env.clock.now() + timedelta(minutes=30)
    t = s.schedule("spread-ok", {}, trigger=At(when), spread=timedelta(minutes=10))
    (run,) = s.runs(t.task_id)
    off = offset_ms(t.task_id, run.run_id, 600_000)
    assert run.offset_ms == off and run.scheduled_for == when
    assert t.spread == 600.0
    # Before its offset is in the window the poller leaves it alone.
    env.clock.set(when + timedelta(milliseconds=off) - timedelta(seconds=120))
    assert env.dispatcher().poll().claimed == 0
    env.clock.set(when + timedelta(milliseconds=off) - timedelta(seconds=60))
    assert env.dispatcher().poll().sent == 1
    (entry,) = env.sqs.sent
    assert entry["DelaySeconds"] == 59  # visible a second before the planned start
    (msg,) = env.receive()
    res = env.executor(max_early_wait_s=0.5).execute(msg["Body"], msg["ReceiptHandle"],
                                                     env.settings.queue_url)
    assert res.outcome is Outcome.RETURN and res.status == "early"
    env.clock.set(when + timedelta(milliseconds=off))
    (msg,) = env.receive()
    res = env.executor().execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
    assert res.status == "succeeded"
    (run,) = s.runs(t.task_id)
    assert run.started_at == when + timedelta(milliseconds=off)
    assert run.lateness == timedelta(0)  # measured from the planned start, not the trigger


def test_each_occurrence_of_a_recurring_task_gets_its_own_offset(env):
    s = env.scheduler()
    start = env.clock.now() + timedelta(minutes=5)
    t = s.schedule("spread-ok", {}, trigger=Every(60, start_at=start), spread=50)
    env.clock.set(start + timedelta(seconds=60))
    env.dispatcher().poll()
    runs = sorted(s.runs(t.task_id), key=lambda r: r.scheduled_for)
    assert len(runs) >= 2
    for r in runs:
        assert r.offset_ms == offset_ms(t.task_id, r.run_id, 50_000)
    assert len({r.offset_ms for r in runs}) == len(runs)


def test_cli_next_shows_the_offsets():
    runner = CliRunner()
    args = ["next", "--every", "60", "--after", "2026-03-02T12:00:00Z", "-n", "3",
            "--spread", "5m", "--task-id", "nightly"]
    got = runner.invoke(cli, [*args, "--json"])
    assert got.exit_code == 0, got.output
    fires = json.loads(got.stdout)["fires"]
    for fire in fires:
        from dynacron.cli import INSTANT

        when = INSTANT.convert(fire["utc"], None, None)
        from dynacron.clock import to_ms

        assert fire["offset_ms"] == offset_ms("nightly", scheduled_run_id(to_ms(when)), 300_000)
    table = runner.invoke(cli, args)
    assert "offset" in table.stdout and "starts (UTC)" in table.stdout
    missing = runner.invoke(cli, args[:-2])
    assert missing.exit_code != 0 and "--task-id" in missing.output
