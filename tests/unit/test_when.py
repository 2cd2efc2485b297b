"""when(): the phrase table (exact triggers), what the phrases fire, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dynacron import RRule, when
from dynacron.errors import ValidationError
from dynacron.triggers import At, Cron, Every, Trigger

BERLIN = "Europe/Berlin"
# Wednesday 2026-12-02, 11:00 in Berlin (CET, +01:00).
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(BERLIN)).astimezone(UTC)


def rr(rule: str) -> RRule:
    return RRule(rule, tz=BERLIN)


def cron(expr: str) -> Cron:
    return Cron(expr, tz=BERLIN)


PHRASES: list[tuple[str, Trigger]] = [
    # the ten
    ("every 15 minutes", cron("*/15 * * * *")),
    ("every other tuesday at 9:34am",
     rr("FREQ=WEEKLY;INTERVAL=2;WKST=WE;BYDAY=TU;BYHOUR=9;BYMINUTE=34;BYSECOND=0")),
    ("weekdays at 8:00", cron("0 8 * * MON-FRI")),
    ("every month on the last friday at 17:00",
     rr("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0;BYSECOND=0")),
    ("on the 1st and 15th at noon", cron("0 12 1,15 * *")),
    ("every day at 9am and 5pm", cron("0 9,17 * * *")),
    ("tomorrow at 9", At(berlin(2026, 12, 3, 9))),
    ("in 10 minutes", At(NOW + timedelta(minutes=10))),
    ("every 90 minutes from 8:00 to 18:00",
     rr("FREQ=DAILY;BYHOUR=8,9,11,12,14,15,17;BYMINUTE=0,30;BYSECOND=0;BYSETPOS=1,4,5,8,9,12,13")),
    ("every year on march 3", cron("0 0 3 3 *")),
    # intervals
    ("every 30 seconds", Every(30)),
    ("every second", Every(1)),
    ("every minute", cron("* * * * *")),
    ("every 5 minutes", cron("*/5 * * * *")),
    ("every 7 minutes", Every(420)),
    ("every 90 minutes", Every(5400)),
    ("every hour", cron("0 * * * *")),
    ("hourly", cron("0 * * * *")),
    ("every 2 hours", cron("0 */2 * * *")),
    ("every 120 minutes", cron("0 */2 * * *")),
    ("every 5 hours", Every(5 * 3600)),
    ("every 15 minutes on weekdays", cron("*/15 * * * MON-FRI")),
    ("every hour between 8 and 12", cron("0 8,9,10,11,12 * * *")),
    ("every 20 minutes from 9:00 to 10:00",
     rr("FREQ=DAILY;BYHOUR=9,10;BYMINUTE=0,20,40;BYSECOND=0;BYSETPOS=1,2,3,4")),
    ("every 30 minutes from 9 to 11 on mon and fri",
     rr("FREQ=DAILY;BYDAY=MO,FR;BYHOUR=9,10,11;BYMINUTE=0,30;BYSECOND=0;BYSETPOS=1,2,3,4,5")),
    # days
    ("every day", cron("0 0 * * *")),
    ("daily", cron("0 0 * * *")),
    ("daily at 6", cron("0 6 * * *")),
    ("every day at 9:30 and 17:15",
     rr("FREQ=DAILY;BYHOUR=9,17;BYMINUTE=15,30;BYSECOND=0;BYSETPOS=2,3")),
    ("every day at midnight", cron("0 0 * * *")),
    ("every day at 12pm, 12am and 6:30 p.m.",
     rr("FREQ=DAILY;BYHOUR=0,12,18;BYMINUTE=0,30;BYSECOND=0;BYSETPOS=1,3,6")),
    ("every 3 days at 6:30", rr("FREQ=DAILY;INTERVAL=3;BYHOUR=6;BYMINUTE=30;BYSECOND=0")),
    ("every other day at 7", rr("FREQ=DAILY;INTERVAL=2;BYHOUR=7;BYMINUTE=0;BYSECOND=0")),
    ("every weekday at 7:45", cron("45 7 * * MON-FRI")),
    ("weekends at 10am", cron("0 10 * * SAT,SUN")),
    ("mondays at 9", cron("0 9 * * MON")),
    ("every monday", cron("0 0 * * MON")),
    ("on tue and thu at 18:30", cron("30 18 * * TUE,THU")),
    ("every monday to friday at 8", cron("0 8 * * MON-FRI")),
    ("mon-wed at 8:15:30", rr("FREQ=DAILY;BYDAY=MO,TU,WE;BYHOUR=8;BYMINUTE=15;BYSECOND=30")),
    ("every friday through monday at 22:00", cron("0 22 * * MON,FRI,SAT,SUN")),
    # weeks
    ("every week on monday at 9", cron("0 9 * * MON")),
    ("every other week on mon and wed at 10",
     rr("FREQ=WEEKLY;INTERVAL=2;WKST=TH;BYDAY=MO,WE;BYHOUR=10;BYMINUTE=0;BYSECOND=0")),
    ("every 3 weeks on sunday at 20:00",
     rr("FREQ=WEEKLY;INTERVAL=3;WKST=MO;BYDAY=SU;BYHOUR=20;BYMINUTE=0;BYSECOND=0")),
    # months
    ("every month on the 1st at 9", cron("0 9 1 * *")),
    ("every 3 months on the 1st at 9",
     rr("FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=1;BYHOUR=9;BYMINUTE=0;BYSECOND=0")),
    ("on the last day of the month at 23:00", cron("0 23 L * *")),
    ("on the last weekday of the month at 17:00",
     rr("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=17;BYMINUTE=0;BYSECOND=0")),
    ("every month on the first monday at 9",
     rr("FREQ=MONTHLY;BYDAY=1MO;BYHOUR=9;BYMINUTE=0;BYSECOND=0")),
    ("on the 2nd tuesday of every month at 18:00",
     rr("FREQ=MONTHLY;BYDAY=2TU;BYHOUR=18;BYMINUTE=0;BYSECOND=0")),
    # years
    ("every year on december 25 at 8", cron("0 8 25 12 *")),
    ("every year on the 4th thursday of november at 12",
     rr("FREQ=YEARLY;BYMONTH=11;BYDAY=4TH;BYHOUR=12;BYMINUTE=0;BYSECOND=0")),
    ("every 2 years on feb 29",
     rr("FREQ=YEARLY;INTERVAL=2;BYMONTH=2;BYMONTHDAY=29;BYHOUR=0;BYMINUTE=0;BYSECOND=0")),
    # one-offs
    ("next friday at 10", At(berlin(2026, 12, 4, 10))),
    ("next wednesday at 10", At(berlin(2026, 12, 9, 10))),
    ("on 2026-12-24 at 18:00", At(berlin(2026, 12, 24, 18))),
    ("on december 24 at 18:00", At(berlin(2026, 12, 24, 18))),
    ("january 2 at 9", At(berlin(2027, 1, 2, 9))),
    ("today at 17:00", At(berlin(2026, 12, 2, 17))),
    ("in an hour", At(NOW + timedelta(hours=1))),
    ("in 2 days", At(NOW + timedelta(days=2))),
    ("in 45 seconds", At(NOW + timedelta(seconds=45))),
]  # fmt: skip


@pytest.mark.parametrize(("phrase", "expected"), PHRASES, ids=[p for p, _ in PHRASES])
def test_phrase_gives_exactly_this_trigger(phrase: str, expected: Trigger) -> None:
    got = when(phrase, tz=BERLIN, now=NOW)
    assert got == expected
    assert type(got) is type(expected)


def test_the_table_is_large_enough() -> None:
    assert len(PHRASES) >= 40 and len(REFUSED) >= 15


def test_case_spacing_and_commas_do_not_matter() -> None:
    assert when("  Every  Day at 9AM, and 5 PM ", tz=BERLIN) == cron("0 9,17 * * *")
    assert when("WEEKDAYS AT 8:00", tz=BERLIN) == cron("0 8 * * MON-FRI")


def local_fires(trigger: Trigger, after: datetime, count: int) -> list[str]:
    anchored = trigger.anchored(after)
    out, t = [], after
    for _ in range(count):
        t = anchored.next(t)
        assert t is not None
        out.append(t.astimezone(ZoneInfo(BERLIN)).strftime("%a %Y-%m-%d %H:%M:%S"))
    return out


def test_every_90_minutes_window_fires_those_times_each_day() -> None:
    fires = local_fires(when("every 90 minutes from 8:00 to 18:00", tz=BERLIN), NOW, 9)
    assert fires == [
        # 11:00 is now, and next() is strictly after
        "Wed 2026-12-02 12:30:00", "Wed 2026-12-02 14:00:00", "Wed 2026-12-02 15:30:00",
        "Wed 2026-12-02 17:00:00", "Thu 2026-12-03 08:00:00", "Thu 2026-12-03 09:30:00",
        "Thu 2026-12-03 11:00:00", "Thu 2026-12-03 12:30:00", "Thu 2026-12-03 14:00:00",
    ]  # fmt: skip


def test_times_off_the_grid_fire_only_those_times() -> None:
    fires = local_fires(when("every day at 9:30 and 17:15", tz=BERLIN), NOW, 4)
    assert fires == [
        "Wed 2026-12-02 17:15:00", "Thu 2026-12-03 09:30:00",
        "Thu 2026-12-03 17:15:00", "Fri 2026-12-04 09:30:00",
    ]  # fmt: skip


def test_every_other_tuesday_starts_at_the_next_tuesday() -> None:
    trigger = when("every other tuesday at 9:34am", tz=BERLIN)
    # Created on a Wednesday: next Tuesday, then every 14 days.
    assert local_fires(trigger, NOW, 3) == [
        "Tue 2026-12-08 09:34:00", "Tue 2026-12-22 09:34:00", "Tue 2027-01-05 09:34:00",
    ]  # fmt: skip
    # Created on the Tuesday itself, before 9:34: today.
    tuesday_early = berlin(2026, 12, 8, 8)
    assert local_fires(trigger, tuesday_early, 2) == [
        "Tue 2026-12-08 09:34:00", "Tue 2026-12-22 09:34:00",
    ]  # fmt: skip
    # Created on Monday: tomorrow.
    assert local_fires(trigger, berlin(2026, 12, 7, 12), 1) == ["Tue 2026-12-08 09:34:00"]


def test_last_friday_and_last_weekday() -> None:
    assert local_fires(when("every month on the last friday at 17:00", tz=BERLIN), NOW, 3) == [
        "Fri 2026-12-25 17:00:00", "Fri 2027-01-29 17:00:00", "Fri 2027-02-26 17:00:00",
    ]  # fmt: skip
    # 2027-01-31 is a Sunday, 2027-07-31 a Saturday.
    last_weekday = when("on the last weekday of the month at 17:00", tz=BERLIN)
    fires = local_fires(last_weekday, berlin(2027, 1, 1), 7)
    assert fires[0] == "Fri 2027-01-29 17:00:00"
    assert fires[6] == "Fri 2027-07-30 17:00:00"


def test_one_offs_follow_the_time_zone() -> None:
    ny = when("tomorrow at 9", tz="America/New_York", now=NOW)
    assert ny == At(datetime(2026, 12, 3, 14, tzinfo=UTC))  # 09:00 EST
    # Late evening in UTC is already tomorrow in Tokyo.
    late = datetime(2026, 12, 2, 20, tzinfo=UTC)  # 05:00 on Dec 3 in Tokyo
    assert when("today at 9", tz="Asia/Tokyo", now=late) == At(
        datetime(2026, 12, 3, 0, tzinfo=UTC)
    )


def test_describe_reads_like_the_phrase() -> None:
    assert when("every other tuesday at 9:34am").describe() == (
        "Every other Tuesday at 09:34 (UTC)"
    )
    assert when("weekdays at 9:30", tz=BERLIN).describe() == (
        "At 09:30, Monday through Friday (Europe/Berlin)"
    )
    assert when("every 90 minutes from 8:00 to 18:00", tz=BERLIN).describe() == (
        "Every day, every 90 minutes from 08:00 to 17:00 (Europe/Berlin)"
    )
    assert when("every minute from 8:00 to 13:00").describe() == (
        "Every day, every minute from 08:00 to 13:00 (UTC)"
    )
    assert when("every day at 9:30 and 17:15").describe() == (
        "Every day at 09:30 and 17:15 (UTC)"
    )
    assert when("every month on the last friday at 17:00").describe() == (
        "Every month on the last Friday at 17:00 (UTC)"
    )


REFUSED: list[tuple[str, str]] = [
    # (phrase, a fragment the message must contain)
    ("", "empty"),
    ("every", "'every': expected a unit"),
    ("sometimes at 9", "did not understand 'sometimes at 9'"),
    ("every tuesdy at 9", "did not understand 'tuesdy at 9'"),
    ("at 9", "say when"),
    ("every monday at 25:00", "'25:00' is not a time of day"),
    ("every day at 9:75", "'9:75' is not a time of day"),
    ("every day at 13pm", "the hour of an am/pm time is 1..12"),
    ("every 0 minutes", "at least 1"),
    ("every month", "expected 'on'"),
    ("every week", "expected 'on'"),
    ("every third tuesday", "did not understand 'third tuesday'"),
    ("in 10 minutes every day", "did not understand 'every day'"),
    ("tomorrow", "say at what time"),
    ("every 90 minutes from 18:00 to 8:00", "must end after it starts"),
    ("every 1.5 hours", "did not understand '1.5 hours'"),
    ("every 500 milliseconds", "did not understand 'milliseconds'"),
    ("on the 32nd at noon", "1st..31st"),
    ("every year on february 30", "month 2 has no day 30"),
    ("today at 9", "is in the past"),
    ("every 15 minutes please", "did not understand 'please'"),
    ("every 7 minutes on mondays", "give a window"),
    ("at midnight every day", "say when"),
    ("on the last friday and 15th of the month", "not both"),
    ("every 2 minutes from 6:00 to 20:00", "more than one RRULE can pick"),
]


@pytest.mark.parametrize(("phrase", "fragment"), REFUSED, ids=[p or "empty" for p, _ in REFUSED])
def test_refused_phrases_say_what_was_not_understood(phrase: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        when(phrase, tz=BERLIN, now=NOW)
    assert info.value.field == "when"
    assert fragment in info.value.message
    if "did not understand" in info.value.message:
        assert "examples: 'every 15 minutes'" in info.value.message


def test_accepts_a_zoneinfo() -> None:
    assert when("weekdays at 8:00", tz=ZoneInfo(BERLIN)) == cron("0 8 * * MON-FRI")


def test_refuses_bad_arguments() -> None:
    with pytest.raises(ValidationError) as info:
        when("every day", tz="Mars/Olympus")
    assert info.value.field == "trigger.tz"
    with pytest.raises(ValidationError) as info:
        when("every day", tz=5)  # type: ignore[arg-type]
    assert info.value.field == "trigger.tz"
    with pytest.raises(ValidationError) as info:
        when(42)  # type: ignore[arg-type]
    assert info.value.field == "when"
    with pytest.raises(ValidationError) as info:
        when("in 10 minutes", now=datetime(2026, 1, 1))
    assert info.value.field == "now"
    with pytest.raises(ValidationError):
        when("every day " * 30)
