"""Scheduler.wait on the plain frozen-clock deployment (nothing runs unless the test runs it)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dynacron import At, ValidationError, handler
from dynacron.errors import RunNotFound, TaskNotFound, WaitTimeout


@handler("wait-ok")
def _ok(payload: dict, ctx) -> str:
    return "done"


def _run_one(env) -> None:
    for m in env.receive():
        env.executor().execute(m["Body"], m["ReceiptHandle"], env.settings.queue_url)


def test_wait_for_a_named_run_returns_once_finished(env, clock):
    s = env.scheduler()
    t = s.schedule("wait-ok", {}, trigger=At(clock.now()))
    [run] = s.runs(t.task_id)
    with pytest.raises(WaitTimeout) as exc:
        s.wait(t.task_id, run.run_id, timeout=5, poll_interval=1)
    assert isinstance(exc.value, TimeoutError) and exc.value.run_id == run.run_id
    _run_one(env)
    before = clock.now()
    done = s.wait(t.task_id, run.run_id, timeout=5)
    assert done.status == "succeeded" and done.result == "done" and clock.now() == before


def test_wait_without_run_id_ignores_runs_finished_before(env, clock):
    s = env.scheduler()
    t = s.schedule("wait-ok", {}, trigger=At(clock.now()))
    _run_one(env)
    before = clock.now()
    with pytest.raises(WaitTimeout):
        s.wait(t.task_id, timeout=3)  # the one run finished before the call
    assert clock.now() - before == timedelta(seconds=3)  # it waited the whole timeout


def test_wait_refuses_unknown_ids_and_bad_durations(env, clock):
    s = env.scheduler()
    with pytest.raises(TaskNotFound):
        s.wait("nope", timeout=1)
    t = s.schedule("wait-ok", {}, trigger=At(clock.now() + timedelta(hours=1)))
    with pytest.raises(RunNotFound):
        s.wait(t.task_id, "0000000000000-s", timeout=1)
    with pytest.raises(ValidationError) as exc:
        s.wait(t.task_id, timeout=-1)
    assert exc.value.field == "timeout"
    with pytest.raises(ValidationError) as exc:
        s.wait(t.task_id, poll_interval=0)
    assert exc.value.field == "poll_interval"
