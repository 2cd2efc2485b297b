"""Triggers: exact DST instants, arithmetic, validation, serialisation, and properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from dynacron.errors import ValidationError
from dynacron.triggers import At, Cron, Every, Trigger, trigger_from_dict


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def walk(trigger: Trigger, after: datetime, count: int) -> list[datetime | None]:
    out: list[datetime | None] = []
    for _ in range(count):
        fire = trigger.next(after)
        out.append(fire)
        if fire is None:
            break
        after = fire
    return out


# --- DST: exact instants (transitions checked with zoneinfo: Berlin 2026-03-29 01:00Z and
# 2026-10-25 01:00Z; New York 2026-03-08 07:00Z and 2026-11-01 06:00Z) ----------------------


def test_transition_dates_are_what_the_tests_assume() -> None:
    def offset(name: str, when: datetime) -> timedelta | None:
        return when.astimezone(ZoneInfo(name)).utcoffset()

    second = timedelta(seconds=1)
    for name, instant in [
        ("Europe/Berlin", utc(2026, 3, 29, 1)),
        ("Europe/Berlin", utc(2026, 10, 25, 1)),
        ("America/New_York", utc(2026, 3, 8, 7)),
        ("America/New_York", utc(2026, 11, 1, 6)),
    ]:
        assert offset(name, instant - second) != offset(name, instant), (name, instant)


def test_berlin_daily_0230_across_spring_gap() -> None:
    cron = Cron("30 2 * * *", tz="Europe/Berlin")
    assert walk(cron, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: the transition, 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_berlin_daily_0230_across_autumn_fold() -> None:
    cron = Cron("30 2 * * *", tz="Europe/Berlin")
    assert walk(cron, utc(2026, 10, 23, 12), 3) == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # first 02:30 (CEST); the second (CET, 01:30Z) does not fire
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]


def test_berlin_after_inside_the_repeated_hour() -> None:
    cron = Cron("30 2 * * *", tz="Europe/Berlin")
    # 02:15 CET, the second occurrence: 02:30 CET (01:30Z) is the repeated wall time, no fire.
    assert cron.next(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)
    # 02:45 CEST, the first occurrence, just after the fire.
    assert cron.next(utc(2026, 10, 25, 0, 45)) == utc(2026, 10, 26, 1, 30)
    # 02:15 CEST: the fire is still ahead.
    assert cron.next(utc(2026, 10, 25, 0, 15)) == utc(2026, 10, 25, 0, 30)


def test_berlin_every_15_minutes_across_both_transitions() -> None:
    cron = Cron("*/15 * * * *", tz="Europe/Berlin")
    assert walk(cron, utc(2026, 3, 29, 0, 30), 4) == [
        utc(2026, 3, 29, 0, 45),  # 01:45 CET
        utc(2026, 3, 29, 1, 0),  # 02:00..02:45 (gap) and 03:00 CEST: one fire
        utc(2026, 3, 29, 1, 15),
        utc(2026, 3, 29, 1, 30),
    ]
    # Autumn: the repeated hour (02:00-02:59 CET, 01:00Z-01:59Z) is silent.
    assert walk(cron, utc(2026, 10, 25, 0, 30), 3) == [
        utc(2026, 10, 25, 0, 45),  # 02:45 CEST
        utc(2026, 10, 25, 2, 0),  # 03:00 CET
        utc(2026, 10, 25, 2, 15),
    ]
    # From inside the repeated hour, the next fire is after it.
    assert cron.next(utc(2026, 10, 25, 1, 0, 30)) == utc(2026, 10, 25, 2, 0)


def test_new_york_hourly_across_spring_gap() -> None:
    cron = Cron("0 * * * *", tz="America/New_York")
    assert walk(cron, utc(2026, 3, 8, 3, 30), 6) == [
        utc(2026, 3, 8, 4),  # 23:00 EST (Mar 7)
        utc(2026, 3, 8, 5),  # 00:00 EST
        utc(2026, 3, 8, 6),  # 01:00 EST
        utc(2026, 3, 8, 7),  # 02:00 does not exist -> 03:00 EDT, and 03:00 EDT itself: once
        utc(2026, 3, 8, 8),  # 04:00 EDT
        utc(2026, 3, 8, 9),  # 05:00 EDT
    ]


def test_new_york_hourly_across_autumn_fold() -> None:
    cron = Cron("0 * * * *", tz="America/New_York")
    assert walk(cron, utc(2026, 11, 1, 2, 30), 6) == [
        utc(2026, 11, 1, 3),  # 23:00 EDT (Oct 31)
        utc(2026, 11, 1, 4),  # 00:00 EDT
        utc(2026, 11, 1, 5),  # 01:00 EDT; 01:00 EST (06:00Z) is the repeat: no fire
        utc(2026, 11, 1, 7),  # 02:00 EST
        utc(2026, 11, 1, 8),  # 03:00 EST
        utc(2026, 11, 1, 9),
    ]
    assert cron.next(utc(2026, 11, 1, 6)) == utc(2026, 11, 1, 7)
    assert cron.next(utc(2026, 11, 1, 5, 59, 59)) == utc(2026, 11, 1, 7)


def test_midnight_gap_fires_at_the_transition() -> None:
    # Santiago springs forward at 24:00 (2026-09-06 00:00 -04 does not exist; 04:00Z).
    cron = Cron("0 0 * * *", tz="America/Santiago")
    fire = cron.next(utc(2026, 9, 5, 12))
    assert fire == utc(2026, 9, 6, 4)
    assert fire.astimezone(ZoneInfo("America/Santiago")).hour == 1
    assert cron.next(fire) == utc(2026, 9, 7, 3)


def test_wildcard_hour_skips_the_spring_gap() -> None:
    # London springs from 01:00 GMT to 02:00 BST on 2026-03-29: 01:07 does not exist.
    cron = Cron("7 * * * *", tz="Europe/London")
    day = [f for f in walk(cron, utc(2026, 3, 28, 23, 30), 30) if f and f < utc(2026, 3, 29, 23)]
    assert day[:3] == [utc(2026, 3, 29, 0, 7), utc(2026, 3, 29, 1, 7), utc(2026, 3, 29, 2, 7)]
    assert len(day) == 23  # 23 runs in the 23-hour day, none at the transition itself
    # Berlin and New York, both 2026 transitions, an hourly step and a minute step.
    assert walk(Cron("30 */1 * * *", tz="Europe/Berlin"), utc(2026, 3, 29, 0, 0), 2) == [
        utc(2026, 3, 29, 0, 30),  # 01:30 CET
        utc(2026, 3, 29, 1, 30),  # 03:30 CEST: 02:30 skipped (a fixed hour would fire 03:00)
    ]
    assert walk(Cron("*/20 * * * *", tz="America/New_York"), utc(2026, 3, 8, 6, 30), 3) == [
        utc(2026, 3, 8, 6, 40),  # 01:40 EST
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT; 02:00-02:40 skipped
        utc(2026, 3, 8, 7, 20),
    ]
    assert walk(Cron("10 */2 * * *", tz="America/New_York"), utc(2026, 11, 1, 3), 3) == [
        utc(2026, 11, 1, 4, 10),  # 00:10 EDT
        utc(2026, 11, 1, 7, 10),  # 02:10 EST (the repeated hour has no even hour)
        utc(2026, 11, 1, 9, 10),
    ]
    assert walk(Cron("45 * * * *", tz="Europe/Berlin"), utc(2026, 10, 25, 0, 0), 3) == [
        utc(2026, 10, 25, 0, 45),  # 02:45 CEST; 02:45 CET is the repeat: no fire
        utc(2026, 10, 25, 2, 45),  # 03:45 CET
        utc(2026, 10, 25, 3, 45),
    ]


def test_fixed_hour_still_fires_at_the_gap_end() -> None:
    assert Cron("7 1 * * *", tz="Europe/London").next(utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)
    # A range or list of hours is fixed too: 02:30 -> 03:00 CEST, then 03:30 CEST itself.
    assert walk(Cron("30 1-3 * * *", tz="Europe/Berlin"), utc(2026, 3, 29, 0, 15), 3) == [
        utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30),
    ]  # fmt: skip


def test_gap_ending_at_midnight_moves_the_run_into_the_next_day() -> None:
    # America/Nuuk springs from 23:00 (-02) to 00:00 (-01) on 2026-03-28: 23:30 on the 28th
    # does not exist, so that day's run fires at the first instant after the gap, 00:00 on the
    # 29th, which then has two runs (00:00 and 23:30) and the 28th none.
    nuuk = ZoneInfo("America/Nuuk")
    cron = Cron("30 23 * * *", tz="America/Nuuk")
    fires = walk(cron, utc(2026, 3, 27, 12), 3)
    assert fires == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    assert [f.astimezone(nuuk).strftime("%d %H:%M") for f in fires] == [
        "27 23:30", "29 00:00", "29 23:30",
    ]  # fmt: skip


def test_half_hour_dst_shift() -> None:
    # Lord Howe moves by 30 min: 2026-10-04 02:00 -> 02:30 local (+10:30 -> +11), at 15:30Z.
    cron = Cron("15 2 * * *", tz="Australia/Lord_Howe")
    assert cron.next(utc(2026, 10, 3, 12)) == utc(2026, 10, 3, 15, 30)


def test_cron_results_are_utc_whole_seconds() -> None:
    fire = Cron("*/5 * * * *", tz="Asia/Kolkata").next(utc(2026, 5, 1, 0, 1, 2, 345678))
    assert fire == utc(2026, 5, 1, 0, 5)
    assert fire.tzinfo is UTC and fire.microsecond == 0


# --- Cron: window, first, validation -------------------------------------------------------


def test_cron_window_is_inclusive() -> None:
    cron = Cron("0 12 * * *", start_at=utc(2026, 1, 2, 12), end_at=utc(2026, 1, 4, 12))
    assert cron.next(utc(2020, 1, 1)) == utc(2026, 1, 2, 12)
    assert cron.first(utc(2026, 1, 2, 12)) == utc(2026, 1, 2, 12)
    assert walk(cron, utc(2026, 1, 1), 4) == [
        utc(2026, 1, 2, 12),
        utc(2026, 1, 3, 12),
        utc(2026, 1, 4, 12),
        None,
    ]
    assert cron.next(utc(2030, 1, 1)) is None


def test_cron_first_is_at_or_after() -> None:
    cron = Cron("0 9 * * MON-FRI", tz="Europe/Berlin")
    assert cron.first(utc(2026, 1, 5, 8)) == utc(2026, 1, 5, 8)  # Monday 09:00 CET
    assert cron.first(utc(2026, 1, 5, 8, 0, 0, 1)) == utc(2026, 1, 6, 8)
    assert cron.first(utc(2026, 1, 9, 9)) == utc(2026, 1, 12, 8)  # Friday -> Monday


def test_cron_accepts_croniter_syntax_and_aliases() -> None:
    assert Cron("0 0 L * *").next(utc(2026, 2, 1)) == utc(2026, 2, 28)
    assert Cron("0 0 * * MON#2").next(utc(2026, 1, 1)) == utc(2026, 1, 12)
    assert Cron("@daily").next(utc(2026, 1, 1, 5)) == utc(2026, 1, 2)
    assert Cron("0 0 29 2 *").next(utc(2026, 1, 1)) == utc(2028, 2, 29)


def test_cron_normalises_whitespace_and_accepts_zoneinfo() -> None:
    assert Cron("  30 9  * * MON-FRI ", tz=ZoneInfo("Europe/Berlin")) == Cron(
        "30 9 * * MON-FRI", tz="Europe/Berlin"
    )


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"expr": "0 0 30 2 *"}, "trigger.expr", "never fires"),
        ({"expr": "0 0 31 4,6,9 *"}, "trigger.expr", "never fires"),
        ({"expr": "61 * * * *"}, "trigger.expr", "out of range"),
        ({"expr": "0 0 * * foo"}, "trigger.expr", "invalid cron expression"),
        ({"expr": "*/0 * * * *"}, "trigger.expr", "invalid cron expression"),
        ({"expr": "* * * *"}, "trigger.expr", "must have 5 fields"),
        ({"expr": "0 0 * * * *"}, "trigger.expr", "seconds and year fields are not supported"),
        ({"expr": "0 0 0 * * * 2030"}, "trigger.expr", "got 7"),
        ({"expr": "@reboot"}, "trigger.expr", "must have 5 fields"),
        ({"expr": "R * * * *"}, "trigger.expr", "random/hashed"),
        ({"expr": "H(0-29) * * * *"}, "trigger.expr", "random/hashed"),
        ({"expr": ""}, "trigger.expr", "must not be empty"),
        ({"expr": "   "}, "trigger.expr", "must not be empty"),
        ({"expr": "0 " * 101}, "trigger.expr", "at most 200"),
        ({"expr": 5}, "trigger.expr", "must be a string"),
        ({"expr": "0 0 * * *", "tz": "Mars/Olympus"}, "trigger.tz", "unknown time zone 'Mars"),
        ({"expr": "0 0 * * *", "tz": "Europe"}, "trigger.tz", "IANA name"),
        ({"expr": "0 0 * * *", "tz": "../../etc/passwd"}, "trigger.tz", "unknown time zone"),
        ({"expr": "0 0 * * *", "tz": ""}, "trigger.tz", "unknown time zone"),
        ({"expr": "0 0 * * *", "tz": 1}, "trigger.tz", "must be an IANA time zone name"),
        (
            {"expr": "0 0 * * *", "start_at": datetime(2026, 1, 1)},
            "trigger.start_at",
            "timezone-aware",
        ),
        (
            {"expr": "0 0 * * *", "end_at": datetime(2026, 1, 1)},
            "trigger.end_at",
            "timezone-aware",
        ),
        (
            {"expr": "0 0 * * *", "start_at": utc(2026, 1, 2), "end_at": utc(2026, 1, 2)},
            "trigger.end_at",
            "must be after start_at",
        ),
        ({"expr": "0 0 * * *", "start_at": "2026-01-01"}, "trigger.start_at", "datetime"),
    ],
)
def test_cron_validation(kwargs: dict, field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        Cron(**kwargs)
    assert info.value.field == field
    assert fragment in info.value.message


# --- At --------------------------------------------------------------------------------------


def test_at_next_and_first() -> None:
    when = datetime(2026, 6, 1, 14, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    at = At(when)
    assert at.when == utc(2026, 6, 1, 12) and at.when.tzinfo is UTC
    assert at.next(utc(2026, 6, 1, 11, 59, 59)) == utc(2026, 6, 1, 12)
    assert at.next(utc(2026, 6, 1, 12)) is None
    assert at.next(utc(2027, 1, 1)) is None
    assert at.first(utc(2026, 1, 1)) == utc(2026, 6, 1, 12)
    assert at.first(utc(2027, 1, 1)) == utc(2026, 6, 1, 12)  # grace is the caller's business
    assert not at.recurring
    assert at.start_at is None and at.end_at is None
    assert at.anchored(utc(2026, 1, 1)) is at


def test_at_rounds_to_milliseconds() -> None:
    assert At(utc(2026, 1, 1, 0, 0, 0, 123456)).when == utc(2026, 1, 1, 0, 0, 0, 123000)
    assert At(utc(2026, 1, 1, 0, 0, 0, 999600)).when == utc(2026, 1, 1, 0, 0, 1)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(datetime(2026, 1, 1), "must be timezone-aware"), ("2026-01-01", "must be a datetime")],
)
def test_at_validation(value: object, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        At(value)  # type: ignore[arg-type]
    assert info.value.field == "trigger.when"
    assert fragment in info.value.message


# --- Every -----------------------------------------------------------------------------------


def test_every_arithmetic() -> None:
    every = Every(60, start_at=utc(2026, 1, 1))
    assert every.next(utc(2025, 1, 1)) == utc(2026, 1, 1)  # first fire is start_at
    assert every.first(utc(2026, 1, 1)) == utc(2026, 1, 1)
    assert every.next(utc(2026, 1, 1)) == utc(2026, 1, 1, 0, 1)
    assert every.next(utc(2026, 1, 1, 0, 0, 59, 999999)) == utc(2026, 1, 1, 0, 1)
    assert every.next(utc(2026, 1, 1, 0, 1)) == utc(2026, 1, 1, 0, 2)
    assert every.next(utc(2026, 1, 1) + timedelta(days=1000, seconds=30)) == utc(
        2026, 1, 1
    ) + timedelta(days=1000, seconds=60)
    assert every.recurring


def test_every_end_at_is_inclusive_and_stops_later_fires() -> None:
    every = Every(timedelta(minutes=10), start_at=utc(2026, 1, 1), end_at=utc(2026, 1, 1, 0, 25))
    assert walk(every, utc(2025, 12, 31), 5) == [
        utc(2026, 1, 1, 0, 0),
        utc(2026, 1, 1, 0, 10),
        utc(2026, 1, 1, 0, 20),
        None,
    ]
    on_the_end = Every(600, start_at=utc(2026, 1, 1), end_at=utc(2026, 1, 1, 0, 20))
    assert on_the_end.next(utc(2026, 1, 1, 0, 10)) == utc(2026, 1, 1, 0, 20)
    assert on_the_end.next(utc(2026, 1, 1, 0, 20)) is None


def test_every_milliseconds_without_drift() -> None:
    every = Every(1.1, start_at=utc(2026, 1, 1))
    assert every.interval == 1.1
    fire = every.next(utc(2026, 1, 1) + timedelta(days=3650))
    assert fire is not None
    assert (fire - utc(2026, 1, 1)) // timedelta(milliseconds=1) % 1100 == 0
    assert fire.microsecond % 1000 == 0


def test_every_accepts_seconds_or_timedelta_and_compares_by_value() -> None:
    assert Every(90) == Every(90.0) == Every(timedelta(seconds=90))
    assert hash(Every(90)) == hash(Every(timedelta(minutes=1.5)))
    assert Every(1.0004).interval == 1.0
    assert Every(60, start_at=utc(2026, 1, 1)) != Every(60)


def test_every_anchored_rounds_up_to_the_second() -> None:
    every = Every(60)
    with pytest.raises(ValueError, match="anchor first"):
        every.next(utc(2026, 1, 1))
    anchored = every.anchored(utc(2026, 1, 1, 0, 0, 0, 200000))
    assert anchored.start_at == utc(2026, 1, 1, 0, 0, 1)
    assert anchored.first(utc(2026, 1, 1, 0, 0, 0, 200000)) == utc(2026, 1, 1, 0, 0, 1)
    assert every.anchored(utc(2026, 1, 1, 0, 0, 5)).start_at == utc(2026, 1, 1, 0, 0, 5)
    assert anchored.anchored(utc(2030, 1, 1)) is anchored
    cron = Cron("* * * * *")
    assert cron.anchored(utc(2026, 1, 1)) is cron


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"interval": 0.5}, "trigger.interval", "at least 1 s"),
        ({"interval": 0}, "trigger.interval", "at least 1 s"),
        ({"interval": -5}, "trigger.interval", "at least 1 s"),
        ({"interval": timedelta(days=367)}, "trigger.interval", "at most 366 days"),
        ({"interval": "60"}, "trigger.interval", "must be seconds"),
        ({"interval": True}, "trigger.interval", "must be seconds"),
        ({"interval": float("nan")}, "trigger.interval", "finite"),
        ({"interval": 60, "start_at": datetime(2026, 1, 1)}, "trigger.start_at", "aware"),
        ({"interval": 60, "end_at": datetime(2026, 1, 1)}, "trigger.end_at", "aware"),
        (
            {"interval": 60, "start_at": utc(2026, 1, 2), "end_at": utc(2026, 1, 1)},
            "trigger.end_at",
            "must be after start_at",
        ),
    ],
)
def test_every_validation(kwargs: dict, field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        Every(**kwargs)
    assert info.value.field == field
    assert fragment in info.value.message


def test_next_refuses_naive_after() -> None:
    for trigger in (At(utc(2026, 1, 1)), Every(5, start_at=utc(2026, 1, 1)), Cron("0 0 * * *")):
        with pytest.raises(ValueError, match="timezone-aware"):
            trigger.next(datetime(2026, 1, 1))


# --- validate_for_schedule -------------------------------------------------------------------

NOW = utc(2026, 5, 1, 12)


def test_validate_for_schedule_at() -> None:
    At(NOW - timedelta(seconds=30)).validate_for_schedule(NOW, grace_s=60)
    At(NOW + timedelta(days=1)).validate_for_schedule(NOW, grace_s=0)
    with pytest.raises(ValidationError) as info:
        At(NOW - timedelta(seconds=61)).validate_for_schedule(NOW, grace_s=60)
    assert info.value.field == "trigger.when"
    assert "60 s grace" in info.value.message


@pytest.mark.parametrize(
    "trigger",
    [
        Cron("* * * * *", end_at=NOW - timedelta(hours=1)),
        Every(60, start_at=NOW - timedelta(days=1), end_at=NOW - timedelta(hours=1)),
        Every(60, end_at=NOW - timedelta(hours=1)),
    ],
)
def test_validate_for_schedule_end_at_passed(trigger: Trigger) -> None:
    with pytest.raises(ValidationError) as info:
        trigger.validate_for_schedule(NOW, grace_s=60)
    assert info.value.field == "trigger.end_at"
    assert "has passed" in info.value.message


def test_validate_for_schedule_recurring() -> None:
    Cron("0 0 * * *").validate_for_schedule(NOW, grace_s=60)
    Every(60).validate_for_schedule(NOW, grace_s=60)
    Cron("* * * * *", end_at=NOW - timedelta(seconds=30)).validate_for_schedule(NOW, 60)
    with pytest.raises(ValidationError) as info:  # no midnight before end_at
        Cron("0 0 * * *", end_at=NOW + timedelta(hours=1)).validate_for_schedule(NOW, 60)
    assert info.value.field == "trigger.end_at"
    assert "no occurrence" in info.value.message
    with pytest.raises(ValidationError) as info:  # unanchored: end_at before the anchor
        Every(60, end_at=NOW + timedelta(microseconds=1)).validate_for_schedule(
            NOW + timedelta(microseconds=2), 60
        )
    assert info.value.field == "trigger.end_at"


# --- describe, to_dict, trigger_from_dict ----------------------------------------------------


def test_describe() -> None:
    assert Cron("30 9 * * MON-FRI", tz="Europe/Berlin").describe() == (
        "At 09:30, Monday through Friday (Europe/Berlin)"
    )
    assert Cron("*/15 * * * *").describe() == "Every 15 minutes (UTC)"
    assert Cron("@daily", tz="Asia/Tokyo").describe() == "At 00:00 (Asia/Tokyo)"
    assert Cron("0 0 L * *", end_at=utc(2027, 1, 1)).describe() == (
        "At 00:00, on the last day of the month (UTC), until 2027-01-01T00:00:00Z"
    )
    assert At(utc(2026, 1, 1, 9)).describe() == "Once at 2026-01-01T09:00:00Z"
    assert Every(5400).describe() == "Every 1h30m"
    assert Every(1.5, start_at=utc(2026, 1, 1), end_at=utc(2026, 1, 2)).describe() == (
        "Every 1.5s, from 2026-01-01T00:00:00Z, until 2026-01-02T00:00:00Z"
    )
    assert Every(timedelta(days=1, seconds=61)).describe() == "Every 1d1m1s"


def test_to_dict_shapes() -> None:
    assert At(utc(2026, 1, 1)).to_dict() == {"type": "at", "when": 1767225600000}
    assert Every(90, start_at=utc(2026, 1, 1)).to_dict() == {
        "type": "every",
        "interval_ms": 90000,
        "start_at": 1767225600000,
    }
    assert Cron("0 0 * * *", tz="Europe/Berlin", end_at=utc(2026, 1, 1)).to_dict() == {
        "type": "cron",
        "expr": "0 0 * * *",
        "tz": "Europe/Berlin",
        "end_at": 1767225600000,
    }


def test_from_dict_accepts_dynamodb_decimals() -> None:
    spec = {"type": "every", "interval_ms": Decimal(90000), "start_at": Decimal(1767225600000)}
    assert trigger_from_dict(spec) == Every(90, start_at=utc(2026, 1, 1))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ([], "trigger"),
        ({}, "trigger.type"),
        ({"type": "weekly"}, "trigger.type"),
        ({"type": "at"}, "trigger.when"),
        ({"type": "at", "when": "soon"}, "trigger.when"),
        ({"type": "at", "when": 1.5}, "trigger.when"),
        ({"type": "every", "interval_ms": 500}, "trigger.interval"),
        ({"type": "every"}, "trigger.interval_ms"),
        ({"type": "cron", "expr": "0 0 * *"}, "trigger.expr"),
        ({"type": "cron"}, "trigger.expr"),
        ({"type": "cron", "expr": "0 0 * * *", "tz": "Nowhere"}, "trigger.tz"),
    ],
)
def test_from_dict_refuses_bad_specs(spec: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        trigger_from_dict(spec)  # type: ignore[arg-type]
    assert info.value.field == field


# --- properties ------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Europe/Dublin",
    "Europe/London",
    "America/Nuuk",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
]
EXPRS = [
    "30 2 * * *",
    "0 * * * *",
    "*/7 * * * *",
    "15,45 0-3 * * MON-FRI",
    "0 0 * * *",
    "0 0 L * *",
    "59 23 * * SUN",
    "*/20 1-2 * 3,4,9,10,11 *",
    "7 * * * *",
    "15,45 */2 * * *",
    "0 0 29 2 *",
]


def _transitions(name: str) -> list[datetime]:
    """Instants (to the hour) where the zone's offset changes in 2026 and 2041."""
    zone = ZoneInfo(name)
    found = []
    for year in (2026, 2041):
        t = utc(year, 1, 1)
        previous = t.astimezone(zone).utcoffset()
        while t.year == year:
            offset = t.astimezone(zone).utcoffset()
            if offset != previous:
                found.append(t)
            previous = offset
            t += timedelta(hours=1)
    return found


TRANSITIONS_BY_ZONE = {name: _transitions(name) for name in ZONES}
TRANSITIONS = sorted({t for found in TRANSITIONS_BY_ZONE.values() for t in found})
LOW, HIGH = datetime(2000, 1, 1), datetime(2060, 1, 1)
INPUT_ZONES = st.sampled_from([UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")])

instants = st.one_of(
    st.datetimes(LOW, HIGH, timezones=INPUT_ZONES),
    st.builds(
        lambda t, s: t + timedelta(seconds=s),
        st.sampled_from(TRANSITIONS),
        st.floats(-6 * 3600, 6 * 3600, allow_nan=False),
    ),
).map(lambda t: t.astimezone(UTC))


@st.composite
def windows(draw: st.DrawFn) -> tuple[datetime | None, datetime | None]:
    start = draw(st.none() | instants)
    end = None
    if draw(st.booleans()):
        base = start if start is not None else draw(instants)
        end = base + draw(st.timedeltas(timedelta(milliseconds=1), timedelta(days=400)))
    return start, end


@st.composite
def crons(draw: st.DrawFn) -> Cron:
    start, end = draw(windows())
    return Cron(draw(st.sampled_from(EXPRS)), draw(st.sampled_from(ZONES)), start, end)


@st.composite
def everies(draw: st.DrawFn) -> Every:
    start, end = draw(windows())
    start = start if start is not None else draw(instants)
    if end is not None and end <= start:
        end = None
    interval = draw(
        st.one_of(
            st.integers(1, 366 * 86400),
            st.floats(1, 100_000, allow_nan=False),
            st.timedeltas(timedelta(seconds=1), timedelta(days=30)),
        )
    )
    return Every(interval, start, end)


triggers = st.one_of(st.builds(At, instants), everies(), crons())


def _fires(cron: Cron, instant: datetime) -> bool:
    """Independent model: does the cron fire at ``instant``? (scans wall clock per minute)"""
    zone = ZoneInfo(cron.tz)
    local = instant.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if local.fold == 0 and wall.second == 0 and croniter.match(cron.expr, wall):
        return True  # a wall time that exists, at its first occurrence
    aliases = {"@hourly": "*"}
    hour = aliases.get(cron.expr, "0") if cron.expr.startswith("@") else cron.expr.split()[1]
    if "*" in hour or "/" in hour:
        return False  # a wildcard or stepped hour: times in a gap are skipped, not moved
    before = (instant - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None)
    if wall - before > timedelta(seconds=1):  # instant ends a gap: fires for the gap's minutes
        minute = (before + timedelta(minutes=1)).replace(second=0, microsecond=0)
        while minute < wall:
            if croniter.match(cron.expr, minute):
                return True
            minute += timedelta(minutes=1)
    return False


def _check_window(trigger: Trigger, after: datetime, fire: datetime) -> None:
    assert fire > after
    assert fire.tzinfo is UTC
    if trigger.start_at is not None:
        assert fire >= trigger.start_at
    if trigger.end_at is not None:
        assert fire <= trigger.end_at


@st.composite
def cron_cases(draw: st.DrawFn) -> tuple[Cron, datetime]:
    """A cron and an instant, often within hours of one of the cron's zone transitions."""
    cron = draw(crons())
    near = TRANSITIONS_BY_ZONE[cron.tz]
    if near and draw(st.booleans()):
        seconds = draw(st.floats(-6 * 3600, 6 * 3600, allow_nan=False))
        return cron, draw(st.sampled_from(near)) + timedelta(seconds=seconds)
    return cron, draw(instants)


@settings(max_examples=300, deadline=None)
@given(case=cron_cases(), fraction=st.floats(0, 1, exclude_min=True, exclude_max=True))
def test_cron_properties(case: tuple[Cron, datetime], fraction: float) -> None:
    cron, after = case
    fire = cron.next(after)
    if fire is None:
        # Only when the window is closed: no fire between after and end_at.
        assert cron.end_at is not None
        return
    _check_window(cron, after, fire)
    assert fire.microsecond == 0
    assert _fires(cron, fire)
    # Nothing fires strictly between after and fire, and next() agrees from anywhere in there.
    assert cron.next(fire - timedelta(microseconds=1)) == fire
    between = after + (fire - after) * fraction
    if after < between < fire:
        assert cron.next(between) == fire
    lowest = after if cron.start_at is None else max(after, cron.start_at)
    minute = lowest.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if fire - minute <= timedelta(hours=3):  # scan every minute in between with the model
        while minute < fire:
            assert not _fires(cron, minute), minute
            minute += timedelta(minutes=1)
    # Walking is strictly increasing and stays in the window.
    previous = fire
    for later in walk(cron, fire, 4):
        if later is None:
            break
        _check_window(cron, previous, later)
        assert _fires(cron, later)
        previous = later


@settings(max_examples=200, deadline=None)
@given(every=everies(), after=instants)
def test_every_properties(every: Every, after: datetime) -> None:
    assert every.start_at is not None
    step = timedelta(milliseconds=every.interval_ms)
    fire = every.next(after)
    if fire is None:
        assert every.end_at is not None
        last = every.start_at + (every.end_at - every.start_at) // step * step
        assert last <= after
        return
    _check_window(every, after, fire)
    assert (fire - every.start_at) % step == timedelta(0)  # on the grid
    assert fire == every.start_at or fire - step <= after  # nothing skipped
    assert fire.microsecond % 1000 == 0
    previous = fire
    for later in walk(every, fire, 4):
        if later is None:
            assert every.end_at is not None and previous + step > every.end_at
            break
        _check_window(every, previous, later)
        assert later - previous == step
        previous = later


@settings(max_examples=200, deadline=None)
@given(trigger=triggers)
def test_round_trip(trigger: Trigger) -> None:
    spec = trigger.to_dict()
    assert json.loads(json.dumps(spec)) == spec
    again = trigger_from_dict(spec)
    assert again == trigger
    assert hash(again) == hash(trigger)
    assert type(again) is type(trigger)
    assert again.to_dict() == spec
    assert again.describe() == trigger.describe()


def test_one_time_run_key_and_trigger_agree_on_a_half_millisecond():
    # 12:00:00.4605 is 460.5 ms: float rounding (to even) gave 460, the trigger 461, and the
    # poller then took the trigger's 461 for a second occurrence of a one-time task.
    from datetime import UTC, datetime

    from dynacron.clock import to_ms

    when = datetime(2026, 3, 2, 12, 0, 0, 460500, tzinfo=UTC)
    at = At(when)
    assert to_ms(when) == to_ms(at.when) == at.to_dict()["when"]
    assert at.next(at.when) is None
    for us in range(0, 1000, 1):
        t = when.replace(microsecond=us * 1000 + 500)
        assert to_ms(t) == to_ms(At(t).when)
