"""Every attempt of a run is kept on the run; lateness is the first attempt's; runs across
tasks by status and time (SDK and CLI)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

import dynacron.testing
from dynacron import At, RetryPolicy, handler
from dynacron.attempts import MAX_ATTEMPT_ERROR_CHARS
from dynacron.errors import ValidationError

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
plan: dict[str, list] = {}


@handler("at-flaky")
def _flaky(payload: dict, ctx) -> str:
    step = plan[ctx.task_id].pop(0)
    if step == "fail":
        raise RuntimeError("boom " + "x" * 1000)
    return "ok"


@pytest.fixture
def env():
    plan.clear()
    with dynacron.testing.local(start=T0) as e:
        yield e


def _run(env, task_id: str, steps: list[str], attempts: int):
    plan[task_id] = steps
    env.scheduler.schedule(
        "at-flaky", {}, trigger=At(env.now() + timedelta(seconds=10)), task_id=task_id,
        retry=RetryPolicy(max_attempts=attempts, backoff_base=5, jitter=0),
    )  # fmt: skip
    env.advance(120)
    [run] = env.scheduler.runs(task_id)
    return run


def test_each_attempt_is_kept_with_its_outcome_and_a_cut_error(env):
    run = _run(env, "a", ["fail", "fail", "ok"], 3)
    assert run.status == "succeeded" and run.attempt == 3
    assert [(a.number, a.outcome) for a in run.attempts] == [
        (1, "failed"), (2, "failed"), (3, "succeeded")
    ]
    first, second, third = run.attempts
    assert first.started_at == T0 + timedelta(seconds=10)
    assert second.started_at == first.finished_at + timedelta(seconds=5)  # backoff 5 s
    assert third.started_at == second.finished_at + timedelta(seconds=10)  # then 10 s
    assert first.error.startswith("RuntimeError: boom x") and first.error.endswith("…")
    assert len(first.error) == MAX_ATTEMPT_ERROR_CHARS
    assert third.error is None and third.finished_at == run.finished_at


def test_lateness_is_the_first_attempts_start(env):
    run = _run(env, "a", ["fail", "ok"], 2)
    assert run.lateness == timedelta(0)  # attempt 1 started on its second
    assert run.started_at > run.scheduled_for  # the latest attempt started later


def test_a_dead_run_keeps_every_failed_attempt(env):
    run = _run(env, "d", ["fail", "fail"], 2)
    assert run.status == "dead"
    assert [a.outcome for a in run.attempts] == ["failed", "failed"]
    assert "retries exhausted" not in run.attempts[-1].error  # the attempt's own error


def test_a_lost_attempt_is_recorded_when_the_run_is_taken_over(env):
    # attempt 1 "crashes": it starts and never reports (we stop the executor after the start)
    plan["l"] = ["ok"]
    env.scheduler.schedule("at-flaky", {}, trigger=At(T0 + timedelta(seconds=10)), task_id="l",
                           retry=RetryPolicy(max_attempts=2))  # fmt: skip
    ex = env.executor
    real = ex._run_handler

    def crash(*args, **kwargs):
        ex._run_handler = real
        raise SystemExit("worker died")  # not an Exception: nothing records the attempt

    ex._run_handler = crash
    with pytest.raises(SystemExit):
        env.advance(20)
    env.advance(env.settings.lease_s + 120)  # the lease expires, the message comes back
    [run] = env.scheduler.runs("l")
    assert run.status == "succeeded"
    lost = run.attempts[0]
    assert (lost.number, lost.outcome, lost.finished_at) == (1, "lost", None)
    assert [a.outcome for a in run.attempts] == ["lost", "succeeded"]


def test_find_runs_across_tasks_by_status_and_time(env):
    _run(env, "ok1", ["ok"], 1)
    _run(env, "dead1", ["fail"], 1)
    _run(env, "dead2", ["fail"], 1)
    found = env.scheduler.find_runs(timedelta(hours=1), status="dead")
    assert sorted(r.task_id for r in found.runs) == ["dead1", "dead2"] and found.complete
    assert found.items_read >= 6  # three tasks and three runs: a Scan reads them all
    env.clock.advance(7200)
    assert env.scheduler.find_runs(timedelta(hours=1), status="dead").runs == []
    capped = env.scheduler.find_runs(timedelta(hours=3), max_items=1)
    assert not capped.complete and capped.items_read == 1
    with pytest.raises(ValidationError, match="status"):
        env.scheduler.find_runs(status="bogus")
    with pytest.raises(ValidationError, match="since"):
        env.scheduler.find_runs(0)


def test_cli_runs_across_tasks_shows_lateness_and_result(env, monkeypatch):
    from dynacron.cli import _Config, cli

    _run(env, "ok1", ["ok"], 1)
    _run(env, "dead1", ["fail"], 1)
    for name in ("AWS_ENDPOINT_URL", "DYNACRON_TABLE", "DYNACRON_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    cfg = _Config(env.settings.table_name, None, None, None, "us-east-1")
    cfg._scheduler = env.scheduler  # the env's clock and clients

    def run_cli(*args: str) -> str:
        out = CliRunner().invoke(cli, ["--table", env.settings.table_name, "--region",
                                       "us-east-1", *args], obj=cfg)  # fmt: skip
        assert out.exit_code == 0, (out.output, out.exception)
        return out.stdout

    text = run_cli("runs", "--status", "dead", "--since", "1h")
    assert "1 dead run across tasks in the last 1h" in text
    assert "dead1" in text and "ok1" not in text
    assert "lateness" in text and "0.000s" in text and "RuntimeError: boo" in text
    one = run_cli("runs", "ok1", "--status", "succeeded")
    assert "lateness" in one and '"ok"' in one
    data = json.loads(run_cli("runs", "--since", "1h", "--json"))
    assert {d["task_id"] for d in data} == {"ok1", "dead1"}
    assert data[0]["attempts"][0]["outcome"] in ("succeeded", "failed")
