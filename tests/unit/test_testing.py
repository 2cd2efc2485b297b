"""dynacron.testing: the environment users drive their own handlers with."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import dynacron.testing
from dynacron import At, Cron, Every, RetryPolicy, ValidationError, handler
from dynacron.errors import WaitTimeout

T0 = datetime(2026, 3, 27, 7, 0, 0, tzinfo=UTC)
calls: list[tuple[str, int, datetime]] = []


@handler("tt-ok")
def _ok(payload: dict, ctx) -> dict:
    calls.append((ctx.run_id, ctx.attempt, ctx.scheduled_for))
    return {"echo": payload}


@handler("tt-fail")
def _fail(payload: dict, ctx) -> None:
    raise RuntimeError(f"boom {ctx.attempt}")


@handler("tt-slow")
def _slow(payload: dict, ctx) -> None:
    time.sleep(5)


@pytest.fixture
def env():
    calls.clear()
    with dynacron.testing.local(start=T0) as e:
        yield e


def test_readme_shows_the_example_test_verbatim():
    example = (Path(__file__).parent / "test_readme_example.py").read_text()
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"```python\n{example}```" in readme


def test_cron_in_berlin_fires_on_wall_clock_seconds_across_dst(env):
    # 2026-03-29 is the spring change in Europe/Berlin: 09:30 is 08:30 UTC before, 07:30 after.
    t = env.scheduler.schedule("tt-ok", {"n": 1}, trigger=Cron("30 9 * * *", tz="Europe/Berlin"))
    done = env.advance(timedelta(days=3))
    assert [r.scheduled_for for r in done] == [
        datetime(2026, 3, 27, 8, 30, tzinfo=UTC),
        datetime(2026, 3, 28, 8, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 7, 30, tzinfo=UTC),
    ]
    assert all(r.status == "succeeded" and r.lateness == timedelta(0) for r in done)
    assert env.now() == T0 + timedelta(days=3)
    assert [r.run_id for r in env.scheduler.runs(t.task_id)][1:] == [r.run_id for r in done][::-1]


def test_exhausted_retries_end_dead_with_a_dlq_record_and_backoff_on_the_clock(env):
    t = env.scheduler.schedule(
        "tt-fail", {}, trigger=At(T0 + timedelta(seconds=5)),
        retry=RetryPolicy(max_attempts=3, backoff_base=10, jitter=0),
    )
    [run] = env.advance(60)
    assert (run.status, run.attempt) == ("dead", 3)
    # attempts at +5 s, +15 s (10 s backoff), +35 s (20 s): the last start is the one kept
    assert run.started_at == T0 + timedelta(seconds=35)
    assert "boom 3" in run.error
    [record] = env.dead_letters()
    assert (record["task_id"], record["run_id"], record["attempts"]) == (t.task_id, run.run_id, 3)
    assert env.scheduler.get(t.task_id).status == "completed"


def test_a_timeout_fails_the_attempt(env):
    env.scheduler.schedule(
        "tt-slow", {}, trigger=At(T0), timeout=0.2, retry=RetryPolicy(max_attempts=1)
    )
    [run] = env.advance(1)
    assert run.status == "dead" and "HandlerTimeout" in run.error


def test_nothing_runs_before_its_time_and_advance_stops_at_the_end(env):
    env.scheduler.schedule("tt-ok", {}, trigger=Every(100))
    assert len(env.advance(99.999)) == 1  # the first fire, at creation
    assert env.advance(0.001)[0].scheduled_for == T0 + timedelta(seconds=100)
    assert env.advance(0) == []
    assert len(calls) == 2


def test_unknown_handler_goes_dead(env):
    env.scheduler.schedule("tt-nobody", {}, trigger=At(T0))
    [run] = env.advance(1)
    assert run.status == "dead" and "unknown handler" in run.error


def test_wait_plays_virtual_time_forward(env):
    t = env.scheduler.schedule("tt-ok", {"a": 1}, trigger=At(T0 + timedelta(minutes=10)))
    run = env.scheduler.wait(t.task_id, timeout=3600)
    assert run.status == "succeeded" and run.result == {"echo": {"a": 1}}
    assert env.now() < T0 + timedelta(minutes=11)
    with pytest.raises(WaitTimeout):
        env.scheduler.wait(t.task_id, timeout=60)  # nothing left to finish
    assert env.now() >= T0 + timedelta(minutes=11)


def test_run_handler_gives_a_real_context(env):
    assert env.run_handler("tt-ok", {"x": [1]}, attempt=3, run_id="r1") == {"echo": {"x": [1]}}
    assert calls == [("r1", 3, T0)]
    with pytest.raises(ValidationError) as exc:
        env.run_handler("tt-nobody", {})
    assert exc.value.field == "task_type"
    with pytest.raises(ValidationError):
        env.run_handler("tt-ok", {}, attempt=0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValidationError), dynacron.testing.local(start=datetime(2026, 1, 1)):
        pass
    with dynacron.testing.local(start=T0) as env, pytest.raises(ValidationError) as exc:
        env.advance(-1)
    assert exc.value.field == "seconds"


def test_the_fixture_comes_from_the_installed_plugin(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("dynacron")
