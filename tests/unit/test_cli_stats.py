"""``dynacron stats`` and ``dynacron watch`` on a deployment played forward by dynacron.testing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import dynacron.testing
from dynacron import At, Every, RetryPolicy, handler
from helpers.cli import checked

T0 = datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC)


@handler("cs-ok")
def _ok(payload: dict, ctx) -> None:
    return None


@handler("cs-fail")
def _fail(payload: dict, ctx) -> None:
    raise RuntimeError("always")


@pytest.fixture
def env():
    with dynacron.testing.local(start=T0) as e:
        e.scheduler.schedule("cs-ok", {}, trigger=Every(60))
        e.scheduler.schedule("cs-fail", {}, trigger=At(T0), retry=RetryPolicy(max_attempts=1))
        e.advance(timedelta(minutes=5))
        yield e


def invoke(env, *args: str, columns: int = 80):
    return checked(env, *args, scheduler=env.scheduler, columns=columns).stdout


def test_stats_json_has_every_figure_in_iso_and_seconds(env):
    data = json.loads(invoke(env, "stats", "--since", "10m", "--json"))
    assert data["runs"]["succeeded"] == 6 and data["runs"]["dead"] == 1 and data["total"] == 7
    assert data["dead"] == 1 and data["dlq_depth"] == 1 and data["complete"] is True
    assert data["lateness_p50"] == 0.0 and data["lateness_samples"] == 7
    assert data["until"] == "2026-05-04T10:05:00Z" and data["since"] == "2026-05-04T09:55:00Z"


def test_stats_table_fits_80_columns(env):
    out = invoke(env, "stats")
    assert "succeeded 6" in out and "dead 1" in out and "1 message" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_watch_refreshes_on_the_clock_then_stops(env):
    before = env.now()
    out = invoke(env, "watch", "--interval", "60", "--iterations", "3")
    assert out.count("dynacron stats") == 3
    assert "succeeded 7" in out  # a minute later, the 10:06 run had finished
    assert env.now() - before == timedelta(minutes=2)


def test_watch_on_a_terminal_redraws_in_place(env, monkeypatch):
    import io

    from rich.console import Console

    import dynacron.cli_stats

    buf = io.StringIO()
    term = Console(file=buf, force_terminal=True, width=80, color_system=None)
    monkeypatch.setattr(dynacron.cli_stats, "_console", lambda: term)
    before = env.now()
    invoke(env, "watch", "--interval", "30", "--iterations", "2")
    out = buf.getvalue()
    assert "dynacron stats" in out and "\x1b[" in out  # cursor movement: a live panel
    assert env.now() - before == timedelta(seconds=30)
