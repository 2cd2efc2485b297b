"""``dynacron runs TASK --follow`` against in-process moto, on a frozen clock."""

from __future__ import annotations

import json

from dynacron import At, Every, handler
from dynacron.clock import FrozenClock
from helpers.cli import invoke


@handler("follow-ok")
def _ok(payload: dict, ctx) -> dict:
    return {"n": ctx.attempt}


class _WorkingClock(FrozenClock):
    """Each sleep of the follower first lets the worker take what is on the queue."""

    def __init__(self, env) -> None:
        super().__init__(env.clock.now())
        self.env = env

    def sleep(self, seconds: float) -> None:
        for m in self.env.receive():
            self.env.executor().execute(m["Body"], m["ReceiptHandle"], self.env.settings.queue_url)
        super().sleep(seconds)


def _invoke(env, scheduler, *args: str):
    return invoke(env, *args, scheduler=scheduler, columns=None)


def test_follow_prints_each_run_as_it_finishes_then_stops_at_count(env):
    clock = _WorkingClock(env)
    s = env.scheduler()
    s.clock = clock
    t = s.schedule("follow-ok", {}, trigger=At(clock.now()))
    out = _invoke(env, s, "runs", t.task_id, "--follow", "--count", "1", "--json")
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    run = json.loads(lines[0])
    assert (run["status"], run["result"], run["task_id"]) == ("succeeded", {"n": 1}, t.task_id)


def test_follow_stops_at_timeout_and_skips_runs_finished_before(env):
    clock = _WorkingClock(env)
    s = env.scheduler()
    s.clock = clock
    t = s.schedule("follow-ok", {}, trigger=Every(3600))
    clock.sleep(0)  # the first run is done before following starts
    clock.sleep(0.001)
    start = clock.now()
    out = _invoke(env, s, "runs", t.task_id, "--follow", "--timeout", "5")
    assert out.exit_code == 0, out.output
    assert out.stdout.strip().splitlines() == [f"following {t.task_id}: each run as it finishes "
                                               "(Ctrl-C to stop)"]
    assert (clock.now() - start).total_seconds() == 5


def test_count_without_follow_is_a_usage_error(env):
    out = _invoke(env, env.scheduler(), "runs", "x", "--count", "2")
    assert out.exit_code == 2 and "apply to --follow" in out.stderr
