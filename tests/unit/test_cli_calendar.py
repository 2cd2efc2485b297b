"""The CLI's --when and --rrule, and describe() in list/show/next within 80 columns."""

from __future__ import annotations

import json

import pytest

from helpers.cli import checked, clear_config_env


@pytest.fixture
def run(env, monkeypatch):
    clear_config_env(monkeypatch)

    def invoke(*args: str, code: int = 0) -> str:
        # an 80-column terminal: the tables must fit it
        result = checked(env, *args, code=code)
        return result.stdout if code == 0 else result.stderr

    return invoke


def test_schedule_with_when_and_rrule_then_list_show_next(run) -> None:
    when = json.loads(run("schedule", "mail", "--when", "every other tuesday at 9:34am",
                          "--tz", "Europe/Berlin", "--task-id", "biweekly", "--json"))  # fmt: skip
    assert when["trigger"]["type"] == "rrule"
    assert when["trigger"]["description"].startswith("Every other Tuesday at 09:34 (Europe/Berlin)")
    rule = "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0;BYSECOND=0"
    rrule = json.loads(run("schedule", "report", "--rrule", rule, "--tz", "America/New_York",
                           "--task-id", "last-friday", "--json"))  # fmt: skip
    assert rrule["trigger"]["rule"] == rule
    cron = json.loads(run("schedule", "tick", "--when", "weekdays at 8:00", "--json"))
    assert cron["trigger"]["type"] == "cron" and cron["trigger"]["expr"] == "0 8 * * MON-FRI"

    listed, full = run("list"), run("list", "--wide")  # at 80 columns the trigger wraps
    for text in ("Every other Tuesday at 09:34", "Every month on the last Friday at 17:00",
                 "At 08:00, Monday through Friday (UTC)", "biweekly", "last-friday"):  # fmt: skip
        assert text in full
    assert "biweekly" in listed and "last-friday" in listed
    shown = run("show", "last-friday")
    assert "Every month on the last Friday at 17:00" in shown and "BYDAY=-1FR" in shown
    preview = run("next", "--when", "every other tuesday at 9:34am", "--tz", "Europe/Berlin",
                  "-n", "3", "--after", "2026-12-02T10:00:00Z")  # fmt: skip
    assert "Every other Tuesday at 09:34" in preview
    for instant in ("2026-12-08T08:34:00Z", "2026-12-22T08:34:00Z", "2027-01-05T08:34:00Z"):
        assert instant in preview
    for output in (listed, shown, preview):
        assert max(len(line) for line in output.splitlines()) <= 80, output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--when", "every tuesdy"], "--when: did not understand 'tuesdy'"),
        (["--rrule", "FREQ=DAILY;COUNT=2;UNTIL=20270101"], "--rrule: COUNT and UNTIL"),
        (["--when", "every day", "--cron", "0 0 * * *"], "exactly one trigger option"),
        (["--when", "tomorrow at 9", "--end-at", "2030-01-01T00:00:00Z"], "one-off --when"),
        (["--every", "60", "--tz", "Europe/Berlin"], "--tz applies"),
    ],
)
def test_bad_calendar_options_are_one_line_errors(run, args, fragment) -> None:
    err = run("schedule", "t", *args, code=2)
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_when_takes_a_window(run) -> None:
    task = json.loads(run("schedule", "t", "--when", "every day at 9", "--end-at",
                          "2030-01-01T00:00:00Z", "--json"))  # fmt: skip
    assert task["trigger"]["end_at"] == "2030-01-01T00:00:00Z"
    assert task["trigger"]["expr"] == "0 9 * * *"
