"""Every CLI table is readable at 80 columns; --wide and --tz; times in the task's zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import dynacron.testing
from dynacron import At, Cron, RetryPolicy, handler
from helpers.cli import checked

T0 = datetime(2026, 7, 1, 6, 0, 0, tzinfo=UTC)
LONG_ID = "nightly-invoice-export-for-the-emea-region-accounts-payable-team"


@handler("w-ok")
def _ok(payload: dict, ctx) -> dict:
    return {"exported": 1234, "file": "s3://bucket/exports/2026/07/01/invoices.csv"}


@handler("w-fail")
def _fail(payload: dict, ctx) -> None:
    raise ConnectionError("could not reach the accounting system at erp.example.com:8443 " * 3)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("TZ", raising=False)
    with dynacron.testing.local(start=T0) as e:
        e.scheduler.schedule(
            "w-ok", {}, trigger=Cron("0 8 * * *", tz="Europe/Berlin"), task_id=LONG_ID
        )
        e.scheduler.schedule(
            "w-fail", {}, trigger=At(T0), task_id="fails", retry=RetryPolicy(max_attempts=2)
        )
        e.advance(timedelta(days=2))
        yield e


def cli_out(env, *args: str, columns: int = 80) -> str:
    return checked(env, *args, scheduler=env.scheduler, columns=columns).stdout


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("runs", LONG_ID),
        ("runs", "fails"),
        ("show", LONG_ID),
        ("dlq", "list"),
        ("stats",),
        ("next", "--cron", "0 8 * * *", "--tz", "Europe/Berlin", "--after", "2026-07-01T00:00:00Z"),
    ],
)
def test_every_table_fits_80_columns(env, args):
    out = cli_out(env, *args)
    assert out.strip() and widest(out) <= 80, out


def test_cut_ids_end_in_an_ellipsis_and_wide_shows_them_whole(env):
    narrow = cli_out(env, "list")
    assert LONG_ID not in narrow and "…" in narrow
    wide = cli_out(env, "list", "--wide")
    assert LONG_ID in wide and "hidden:" not in wide


def test_runs_show_status_attempt_lateness_and_result_in_the_tasks_zone(env):
    out = cli_out(env, "runs", LONG_ID)
    assert "4 runs of" in out and "times in Europe/Berlin, 2026" in out
    assert "07-01 08:00:00" in out  # 06:00 UTC is 08:00 CEST, shown as the cron reads
    assert "succeeded" in out and "1/3" in out and "0.000s" in out and '{"exported"' in out
    utc = cli_out(env, "runs", LONG_ID, "--tz", "UTC")
    assert "times in UTC, 2026" in utc and "07-01 06:00:00" in utc
    wide = cli_out(env, "runs", LONG_ID, "--wide")
    assert "2026-07-01 08:00:00" in wide and "s3://bucket/exports/2026/07/01/invoices.csv" in wide


def test_tz_environment_variable_picks_the_zone(env, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    out = cli_out(env, "show", LONG_ID)
    assert "EDT" in out


def test_narrow_runs_table_hides_columns_and_says_which(env):
    out = cli_out(env, "runs", "fails")
    assert "hidden:" in out and "--wide" in out
    assert "dead" in out and "2/2" in out and "exhausted after" in out and "…" in out
    assert "started" in cli_out(env, "runs", "fails", "--wide")


def test_demo_summary_keeps_each_task_on_two_lines_at_80_columns(monkeypatch, tmp_path):
    from dynacron.local.demo import DemoOutcome, TaskResult, plan

    monkeypatch.setenv("COLUMNS", "80")
    tasks, _ = plan(T0, duration=30, stretch=False)
    note = "HandlerTimeout x2: dead, in the DLQ"  # the demo's longest
    results = [TaskResult(t, [], True, note, [1.0]) for t in tasks]
    path = tmp_path / "summary.txt"
    with path.open("w") as fh:
        DemoOutcome(results, {}, 0, 31.0, True, False, []).print(fh)
    text = path.read_text()
    assert widest(text) <= 80, text
    body = [line for line in text.splitlines() if line.startswith("│")]
    assert len(body) <= 2 * len(tasks) + 1, text  # two lines a task at most, and the total
    assert "p50" in text and "as intended" in text
