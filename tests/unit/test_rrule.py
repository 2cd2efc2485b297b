"""RRule: RFC 5545's own examples, validation, daylight saving, properties, storage."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st

from dynacron import RRule
from dynacron.errors import ValidationError
from dynacron.triggers import Trigger, trigger_from_dict

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def walk(trigger: Trigger, count: int, after: datetime | None = None) -> list[datetime]:
    out: list[datetime] = []
    t = trigger.first(trigger.start_at) if after is None else trigger.next(after)
    while t is not None and len(out) < count:
        out.append(t)
        t = trigger.next(t)
    return out


# --- RFC 5545 section 3.8.5.3, the recurrence rule examples ---------------------------------
# Each: DTSTART (America/New_York, 09:00 unless given), the RRULE, the instances the RFC lists
# as (year, month, day[, hour, minute]) local times, and whether the list is the whole set
# (COUNT/UNTIL) or only its start ("forever"). Written from the RFC's text; each is also
# checked against dateutil's own reading of the same rule below.

D = tuple[int, ...]


def days(year: int, month: int, *mdays: int) -> list[D]:
    return [(year, month, d) for d in mdays]


RFC: list[tuple[str, D, str, list[D], bool]] = [
    ("daily for 10 occurrences", (1997, 9, 2), "FREQ=DAILY;COUNT=10",
     days(1997, 9, *range(2, 12)), True),
    ("daily until December 24, 1997", (1997, 9, 2), "FREQ=DAILY;UNTIL=19971224T000000Z",
     days(1997, 9, *range(2, 31)) + days(1997, 10, *range(1, 32))
     + days(1997, 11, *range(1, 31)) + days(1997, 12, *range(1, 24)), True),
    ("every other day - forever", (1997, 9, 2), "FREQ=DAILY;INTERVAL=2",
     days(1997, 9, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
     + days(1997, 10, 2, 4), False),
    ("every 10 days, 5 occurrences", (1997, 9, 2), "FREQ=DAILY;INTERVAL=10;COUNT=5",
     days(1997, 9, 2, 12, 22) + days(1997, 10, 2, 12), True),
    ("every day in January, for 3 years (yearly)", (1998, 1, 1),
     "FREQ=YEARLY;UNTIL=20000131T140000Z;BYMONTH=1;BYDAY=SU,MO,TU,WE,TH,FR,SA",
     [d for y in (1998, 1999, 2000) for d in days(y, 1, *range(1, 32))], True),
    ("every day in January, for 3 years (daily)", (1998, 1, 1),
     "FREQ=DAILY;UNTIL=20000131T140000Z;BYMONTH=1",
     [d for y in (1998, 1999, 2000) for d in days(y, 1, *range(1, 32))], True),
    ("weekly for 10 occurrences", (1997, 9, 2), "FREQ=WEEKLY;COUNT=10",
     days(1997, 9, 2, 9, 16, 23, 30) + days(1997, 10, 7, 14, 21, 28) + days(1997, 11, 4), True),
    ("weekly until December 24, 1997", (1997, 9, 2), "FREQ=WEEKLY;UNTIL=19971224T000000Z",
     days(1997, 9, 2, 9, 16, 23, 30) + days(1997, 10, 7, 14, 21, 28)
     + days(1997, 11, 4, 11, 18, 25) + days(1997, 12, 2, 9, 16, 23), True),
    ("every other week - forever", (1997, 9, 2), "FREQ=WEEKLY;INTERVAL=2;WKST=SU",
     days(1997, 9, 2, 16, 30) + days(1997, 10, 14, 28) + days(1997, 11, 11, 25)
     + days(1997, 12, 9, 23) + days(1998, 1, 6, 20) + days(1998, 2, 3, 17), False),
    ("weekly on Tuesday and Thursday for five weeks (until)", (1997, 9, 2),
     "FREQ=WEEKLY;UNTIL=19971007T000000Z;WKST=SU;BYDAY=TU,TH",
     days(1997, 9, 2, 4, 9, 11, 16, 18, 23, 25, 30) + days(1997, 10, 2), True),
    ("weekly on Tuesday and Thursday for five weeks (count)", (1997, 9, 2),
     "FREQ=WEEKLY;COUNT=10;WKST=SU;BYDAY=TU,TH",
     days(1997, 9, 2, 4, 9, 11, 16, 18, 23, 25, 30) + days(1997, 10, 2), True),
    ("every other week on Monday, Wednesday and Friday until December 24, 1997", (1997, 9, 1),
     "FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;WKST=SU;BYDAY=MO,WE,FR",
     days(1997, 9, 1, 3, 5, 15, 17, 19, 29) + days(1997, 10, 1, 3, 13, 15, 17, 27, 29, 31)
     + days(1997, 11, 10, 12, 14, 24, 26, 28) + days(1997, 12, 8, 10, 12, 22), True),
    ("every other week on Tuesday and Thursday, for 8 occurrences", (1997, 9, 2),
     "FREQ=WEEKLY;INTERVAL=2;COUNT=8;WKST=SU;BYDAY=TU,TH",
     days(1997, 9, 2, 4, 16, 18, 30) + days(1997, 10, 2, 14, 16), True),
    ("monthly on the first Friday for 10 occurrences", (1997, 9, 5),
     "FREQ=MONTHLY;COUNT=10;BYDAY=1FR",
     [(1997, 9, 5), (1997, 10, 3), (1997, 11, 7), (1997, 12, 5), (1998, 1, 2), (1998, 2, 6),
      (1998, 3, 6), (1998, 4, 3), (1998, 5, 1), (1998, 6, 5)], True),
    ("monthly on the first Friday until December 24, 1997", (1997, 9, 5),
     "FREQ=MONTHLY;UNTIL=19971224T000000Z;BYDAY=1FR",
     [(1997, 9, 5), (1997, 10, 3), (1997, 11, 7), (1997, 12, 5)], True),
    ("every other month on the first and last Sunday, 10 occurrences", (1997, 9, 7),
     "FREQ=MONTHLY;INTERVAL=2;COUNT=10;BYDAY=1SU,-1SU",
     days(1997, 9, 7, 28) + days(1997, 11, 2, 30) + days(1998, 1, 4, 25)
     + days(1998, 3, 1, 29) + days(1998, 5, 3, 31), True),
    ("monthly on the second-to-last Monday for 6 months", (1997, 9, 22),
     "FREQ=MONTHLY;COUNT=6;BYDAY=-2MO",
     [(1997, 9, 22), (1997, 10, 20), (1997, 11, 17), (1997, 12, 22), (1998, 1, 19),
      (1998, 2, 16)], True),
    ("monthly on the third-to-the-last day of the month, forever", (1997, 9, 28),
     "FREQ=MONTHLY;BYMONTHDAY=-3",
     [(1997, 9, 28), (1997, 10, 29), (1997, 11, 28), (1997, 12, 29), (1998, 1, 29),
      (1998, 2, 26)], False),
    ("monthly on the 2nd and 15th for 10 occurrences", (1997, 9, 2),
     "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=2,15",
     days(1997, 9, 2, 15) + days(1997, 10, 2, 15) + days(1997, 11, 2, 15)
     + days(1997, 12, 2, 15) + days(1998, 1, 2, 15), True),
    ("monthly on the first and last day for 10 occurrences", (1997, 9, 30),
     "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=1,-1",
     days(1997, 9, 30) + days(1997, 10, 1, 31) + days(1997, 11, 1, 30) + days(1997, 12, 1, 31)
     + days(1998, 1, 1, 31) + days(1998, 2, 1), True),
    ("every 18 months on the 10th thru 15th for 10 occurrences", (1997, 9, 10),
     "FREQ=MONTHLY;INTERVAL=18;COUNT=10;BYMONTHDAY=10,11,12,13,14,15",
     days(1997, 9, *range(10, 16)) + days(1999, 3, 10, 11, 12, 13), True),
    ("every Tuesday, every other month", (1997, 9, 2), "FREQ=MONTHLY;INTERVAL=2;BYDAY=TU",
     days(1997, 9, 2, 9, 16, 23, 30) + days(1997, 11, 4, 11, 18, 25)
     + days(1998, 1, 6, 13, 20, 27) + days(1998, 3, 3, 10, 17, 24, 31), False),
    ("yearly in June and July for 10 occurrences", (1997, 6, 10),
     "FREQ=YEARLY;COUNT=10;BYMONTH=6,7",
     [(y, m, 10) for y in range(1997, 2002) for m in (6, 7)], True),
    ("every other year on January, February and March for 10 occurrences", (1997, 3, 10),
     "FREQ=YEARLY;INTERVAL=2;COUNT=10;BYMONTH=1,2,3",
     [(1997, 3, 10)] + [(y, m, 10) for y in (1999, 2001, 2003) for m in (1, 2, 3)], True),
    ("every third year on the 1st, 100th and 200th day for 10 occurrences", (1997, 1, 1),
     "FREQ=YEARLY;INTERVAL=3;COUNT=10;BYYEARDAY=1,100,200",
     [(1997, 1, 1), (1997, 4, 10), (1997, 7, 19), (2000, 1, 1), (2000, 4, 9), (2000, 7, 18),
      (2003, 1, 1), (2003, 4, 10), (2003, 7, 19), (2006, 1, 1)], True),
    ("every 20th Monday of the year, forever", (1997, 5, 19), "FREQ=YEARLY;BYDAY=20MO",
     [(1997, 5, 19), (1998, 5, 18), (1999, 5, 17)], False),
    ("Monday of week number 20, forever", (1997, 5, 12), "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO",
     [(1997, 5, 12), (1998, 5, 11), (1999, 5, 17)], False),
    ("every Thursday in March, forever", (1997, 3, 13), "FREQ=YEARLY;BYMONTH=3;BYDAY=TH",
     days(1997, 3, 13, 20, 27) + days(1998, 3, 5, 12, 19, 26) + days(1999, 3, 4, 11, 18, 25),
     False),
    ("every Thursday, but only during June, July and August, forever", (1997, 6, 5),
     "FREQ=YEARLY;BYDAY=TH;BYMONTH=6,7,8",
     days(1997, 6, 5, 12, 19, 26) + days(1997, 7, 3, 10, 17, 24, 31)
     + days(1997, 8, 7, 14, 21, 28) + days(1998, 6, 4, 11, 18, 25), False),
    ("every Friday the 13th, forever (DTSTART excluded)", (1997, 9, 2),
     "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13",
     [(1998, 2, 13), (1998, 3, 13), (1998, 11, 13), (1999, 8, 13), (2000, 10, 13)], False),
    ("the first Saturday that follows the first Sunday of the month, forever", (1997, 9, 13),
     "FREQ=MONTHLY;BYDAY=SA;BYMONTHDAY=7,8,9,10,11,12,13",
     [(1997, 9, 13), (1997, 10, 11), (1997, 11, 8), (1997, 12, 13), (1998, 1, 10),
      (1998, 2, 7), (1998, 3, 7), (1998, 4, 11), (1998, 5, 9), (1998, 6, 13)], False),
    ("every 4 years, the first Tuesday after a Monday in November (U.S. election day)",
     (1996, 11, 5), "FREQ=YEARLY;INTERVAL=4;BYMONTH=11;BYDAY=TU;BYMONTHDAY=2,3,4,5,6,7,8",
     [(1996, 11, 5), (2000, 11, 7), (2004, 11, 2)], False),
    ("the third instance of Tuesday, Wednesday or Thursday, for the next 3 months",
     (1997, 9, 4), "FREQ=MONTHLY;COUNT=3;BYDAY=TU,WE,TH;BYSETPOS=3",
     [(1997, 9, 4), (1997, 10, 7), (1997, 11, 6)], True),
    ("the second-to-last weekday of the month", (1997, 9, 29),
     "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-2",
     [(1997, 9, 29), (1997, 10, 30), (1997, 11, 27), (1997, 12, 30), (1998, 1, 29),
      (1998, 2, 26), (1998, 3, 30)], False),
    ("every 15 minutes for 6 occurrences", (1997, 9, 2), "FREQ=MINUTELY;INTERVAL=15;COUNT=6",
     [(1997, 9, 2, 9, m) for m in (0, 15, 30, 45)] + [(1997, 9, 2, 10, 0), (1997, 9, 2, 10, 15)],
     True),
    ("every hour and a half for 4 occurrences", (1997, 9, 2), "FREQ=MINUTELY;INTERVAL=90;COUNT=4",
     [(1997, 9, 2, 9, 0), (1997, 9, 2, 10, 30), (1997, 9, 2, 12, 0), (1997, 9, 2, 13, 30)],
     True),
    ("every 20 minutes from 9:00 to 16:40 every day (daily)", (1997, 9, 2),
     "FREQ=DAILY;BYHOUR=9,10,11,12,13,14,15,16;BYMINUTE=0,20,40",
     [(1997, 9, d, h, m) for d in (2, 3) for h in range(9, 17) for m in (0, 20, 40)], False),
    ("every 20 minutes from 9:00 to 16:40 every day (minutely)", (1997, 9, 2),
     "FREQ=MINUTELY;INTERVAL=20;BYHOUR=9,10,11,12,13,14,15,16",
     [(1997, 9, d, h, m) for d in (2, 3) for h in range(9, 17) for m in (0, 20, 40)], False),
    ("WKST=MO: every other week on Tuesday and Sunday, 4 occurrences", (1997, 8, 5),
     "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO",
     days(1997, 8, 5, 10, 19, 24), True),
    ("WKST=SU: every other week on Tuesday and Sunday, 4 occurrences", (1997, 8, 5),
     "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU",
     days(1997, 8, 5, 17, 19, 31), True),
    ("an invalid date (February 30) is ignored", (2007, 1, 15),
     "FREQ=MONTHLY;BYMONTHDAY=15,30;COUNT=5",
     [(2007, 1, 15), (2007, 1, 30), (2007, 2, 15), (2007, 3, 15), (2007, 3, 30)], True),
]  # fmt: skip


def _instants(dates: list[D]) -> list[datetime]:
    return [local(NY, *(d if len(d) == 5 else (*d, 9, 0))) for d in dates]


@pytest.mark.parametrize(("title", "start", "rule", "expected", "complete"), RFC,
                         ids=[r[0] for r in RFC])  # fmt: skip
def test_rfc5545_examples(
    title: str, start: D, rule: str, expected: list[D], complete: bool
) -> None:
    dtstart = datetime(*start, 9, 0, tzinfo=ZoneInfo(NY))
    exclude = (dtstart,) if "DTSTART excluded" in title else ()
    trigger = RRule(rule, tz=NY, start_at=dtstart, exclude=exclude)
    want = _instants(expected)
    got = walk(trigger, len(want) + (1 if complete else 0))
    assert got == want if complete else got[: len(want)] == want
    # dateutil on its own, in floating local time (UNTIL read locally: the instances are at
    # 09:00, far from every UNTIL here), agrees with the RFC's list too.
    naive = dtstart.replace(tzinfo=None)
    reference = rrulestr("RRULE:" + rule.replace("Z", ""), dtstart=naive, cache=False)
    listed = reference.xafter(naive, len(want), inc=True)
    assert _instants([r.timetuple()[:5] for r in listed]) == want


def test_rfc_vector_count() -> None:
    assert len(RFC) >= 35


# --- validation --------------------------------------------------------------------------

START = utc(2026, 1, 1)


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("", "must not be empty"),
        ("BYDAY=MO", "FREQ is missing"),
        ("FREQ=MILLISECONDLY", "sub-second frequencies are not supported"),
        ("FREQ=DAILY;BYFOO=1", "unknown part 'BYFOO'"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given twice"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20270101", "COUNT and UNTIL cannot both be given"),
        ("FREQ=DAILY;COUNT=0", "COUNT=0 is outside 1..1000"),
        ("FREQ=DAILY;COUNT=1001", "COUNT=1001 is outside 1..1000"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL=0 is outside 1..1000"),
        ("FREQ=YEARLY;INTERVAL=101", "INTERVAL=101 is outside 1..100"),
        ("FREQ=DAILY;BYHOUR=24", "BYHOUR=24 is outside 0..23"),
        ("FREQ=DAILY;BYSECOND=60", "BYSECOND=60 is outside 0..59"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY=0 is outside ±1..31"),
        ("FREQ=DAILY;BYMINUTE=x", "BYMINUTE must be an integer"),
        ("FREQ=WEEKLY;BYDAY=1MO", "ordinal '1MO' needs FREQ=MONTHLY or YEARLY"),
        ("FREQ=MONTHLY;BYDAY=6MO", "outside ±1..5"),
        ("FREQ=WEEKLY;BYDAY=XX", "is not a day"),
        ("FREQ=MONTHLY;BYWEEKNO=3", "BYWEEKNO needs FREQ=YEARLY"),
        ("FREQ=WEEKLY;BYMONTHDAY=3", "BYMONTHDAY cannot be used with FREQ=WEEKLY"),
        ("FREQ=MONTHLY;BYSETPOS=1", "BYSETPOS needs another BY* part"),
        ("FREQ=DAILY;UNTIL=2027", "UNTIL=2027 is not YYYYMMDD"),
        ("FREQ=DAILY;UNTIL=20270230", "not a real date"),
        ("FREQ=DAILY;WKST=XX", "WKST=XX is not one of"),
        ("DTSTART=20260101;FREQ=DAILY", "give start_at= and tz= instead"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "never fires"),
        ("FREQ=SECONDLY;BYMONTH=4;BYMONTHDAY=31", "never fires"),
        ("FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2,4,6,9,11", "never fires"),
    ],
)
def test_rule_validation(rule: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        RRule(rule, start_at=START)
    assert info.value.field == "trigger.rule"
    assert fragment in info.value.message


def test_never_fires_because_of_its_start_is_refused_within_a_second() -> None:
    # Every 7 days from a Thursday is never a Monday: no day filter alone says so.
    began = time.perf_counter()
    with pytest.raises(ValidationError, match="never fires"):
        RRule("FREQ=DAILY;INTERVAL=7;BYDAY=MO", start_at=START)  # 2026-01-01 is a Thursday
    assert time.perf_counter() - began < 5
    RRule("FREQ=DAILY;INTERVAL=7;BYDAY=TH", start_at=START)  # the same rule that does fire
    # Unanchored, the rule may fire or not depending on the creation day: decided on anchoring.
    rule = RRule("FREQ=DAILY;INTERVAL=7;BYDAY=MO")
    assert rule.anchored(utc(2026, 1, 5)).first(utc(2026, 1, 5)) == utc(2026, 1, 5)  # a Monday
    with pytest.raises(ValidationError, match="never fires"):
        rule.anchored(START)


def test_schedule_refuses_a_rule_that_never_fires_from_its_creation(env) -> None:
    env.clock.set(START)  # a Thursday
    with pytest.raises(ValidationError) as info:
        env.scheduler().schedule("noop", {}, trigger=RRule("FREQ=DAILY;INTERVAL=7;BYDAY=MO"))
    assert info.value.field == "trigger.rule"
    assert env.table_items() == []  # nothing written


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rule": 5}, "trigger.rule"),
        ({"rule": "FREQ=DAILY;" * 100}, "trigger.rule"),
        ({"tz": "Nowhere/City"}, "trigger.tz"),
        ({"tz": 5}, "trigger.tz"),
        ({"start_at": datetime(2026, 1, 1)}, "trigger.start_at"),
        ({"end_at": utc(2025, 1, 1), "start_at": START}, "trigger.end_at"),
        ({"exclude": "2026-01-01"}, "trigger.exclude"),
        ({"exclude": [5]}, "trigger.exclude"),
        ({"exclude": [datetime(2026, 1, 1)]}, "trigger.exclude"),
        ({"exclude": [date(2026, 1, 1) + timedelta(days=i) for i in range(1001)]},
         "trigger.exclude"),
    ],
)  # fmt: skip
def test_argument_validation(kwargs: dict, field: str) -> None:
    args = {"rule": "FREQ=DAILY"} | kwargs
    with pytest.raises(ValidationError) as info:
        RRule(**args)
    assert info.value.field == field


def test_normalised_text_compares_equal() -> None:
    a = RRule("rrule:byday=tu;freq=weekly;interval=2;wkst=mo", tz="UTC")
    b = RRule("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU")
    assert a == b and hash(a) == hash(b) and a.rule == "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"
    assert RRule("FREQ=DAILY;INTERVAL=1").rule == "FREQ=DAILY"


def test_unanchored_rule_needs_anchoring() -> None:
    rule = RRule("FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0")
    with pytest.raises(ValueError, match="anchor first"):
        rule.next(START)
    anchored = rule.anchored(utc(2026, 1, 1, 8, 0, 0, 500000))
    assert anchored.start_at == utc(2026, 1, 1, 8, 0, 1)  # rounded up to the whole second
    assert anchored.first(anchored.start_at) == utc(2026, 1, 1, 9)


def test_dtstart_supplies_what_the_rule_leaves_open() -> None:
    # No BYHOUR/BYMINUTE: the time of DTSTART; no BYDAY: its weekday.
    rule = RRule("FREQ=WEEKLY", tz=BERLIN, start_at=local(BERLIN, 2026, 1, 7, 14, 23, 17))
    assert walk(rule, 2) == [local(BERLIN, 2026, 1, 7, 14, 23, 17),
                             local(BERLIN, 2026, 1, 14, 14, 23, 17)]  # fmt: skip


def test_until_forms() -> None:
    start = local(NY, 2026, 1, 1, 9)
    by_day = RRule("FREQ=DAILY;UNTIL=20260103", tz=NY, start_at=start)  # end of that local day
    by_local = RRule("FREQ=DAILY;UNTIL=20260103T090000", tz=NY, start_at=start)  # inclusive
    by_utc = RRule("FREQ=DAILY;UNTIL=20260103T135959Z", tz=NY, start_at=start)  # 08:59:59 EST
    assert len(walk(by_day, 10)) == 3
    assert len(walk(by_local, 10)) == 3
    assert len(walk(by_utc, 10)) == 2


def test_exclusions_by_instant_and_by_local_date() -> None:
    start = local(BERLIN, 2026, 12, 21, 9)
    rule = RRule(
        "FREQ=DAILY", tz=BERLIN, start_at=start,
        exclude=(date(2026, 12, 24), local(BERLIN, 2026, 12, 26, 9), date(2026, 12, 25)),
    )  # fmt: skip
    got = [t.astimezone(ZoneInfo(BERLIN)).day for t in walk(rule, 5)]
    assert got == [21, 22, 23, 27, 28]
    minutely = RRule("FREQ=MINUTELY", tz=BERLIN, start_at=start, exclude=(date(2026, 12, 21),))
    # A whole excluded day of 1440 candidates is jumped, not counted against the bound.
    assert minutely.first(start) == local(BERLIN, 2026, 12, 22, 0, 0)


def test_window_bounds() -> None:
    rule = RRule("FREQ=HOURLY", start_at=utc(2026, 1, 1), end_at=utc(2026, 1, 1, 3))
    assert walk(rule, 10) == [utc(2026, 1, 1, h) for h in range(4)]  # end_at inclusive
    assert rule.next(utc(2026, 1, 1, 3)) is None


def test_count_one_is_not_recurring() -> None:
    assert not RRule("FREQ=DAILY;COUNT=1", start_at=START).recurring
    assert RRule("FREQ=DAILY;COUNT=2", start_at=START).recurring


def test_far_future_after_is_bounded() -> None:
    # A rule started long ago is evaluated from the period holding `after`, not from DTSTART.
    rule = RRule("FREQ=SECONDLY;INTERVAL=7", start_at=utc(1990, 1, 1))
    began = time.perf_counter()
    fire = rule.next(utc(2026, 6, 1, 12, 0, 0))
    assert time.perf_counter() - began < 0.5
    assert fire is not None and (fire - utc(1990, 1, 1)).total_seconds() % 7 == 0
    assert timedelta(0) < fire - utc(2026, 6, 1, 12) <= timedelta(seconds=7)
    # A COUNT rule whose instances all lie before `after`.
    assert RRule("FREQ=DAILY;COUNT=5", start_at=utc(1990, 1, 1)).next(utc(2026, 1, 1)) is None


def test_describe() -> None:
    start = local(BERLIN, 2026, 1, 5, 9, 34)
    assert RRule("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;BYHOUR=9;BYMINUTE=34").describe() == (
        "Every other Tuesday at 09:34 (UTC)"
    )
    assert RRule("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0", tz=BERLIN).describe() == (
        "Every month on the last Friday at 17:00 (Europe/Berlin)"
    )
    assert RRule("FREQ=DAILY;COUNT=3", tz=BERLIN, start_at=start).describe() == (
        "Every day at 09:34, 3 times (Europe/Berlin), from 2026-01-05T08:34:00Z"
    )
    assert RRule("FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO;BYHOUR=9;BYMINUTE=0").describe() == (
        "Every year on Monday at 09:00 [FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO;BYHOUR=9;BYMINUTE=0]"
        " (UTC)"
    )
    assert RRule("FREQ=MINUTELY;INTERVAL=15;BYHOUR=9,10").describe() == (
        "Every 15 minutes during hours 9 and 10 (UTC)"
    )
    assert RRule("FREQ=SECONDLY;INTERVAL=2;COUNT=3").describe() == "Every 2 seconds, 3 times (UTC)"
    assert RRule("FREQ=DAILY;INTERVAL=2;BYHOUR=7;BYMINUTE=0").describe() == (
        "Every other day at 07:00 (UTC)"
    )


# --- daylight saving (both 2026 transitions, Berlin and New York) --------------------------


def test_daily_fixed_time_in_the_spring_gap_fires_once_at_the_gap_end() -> None:
    rule = RRule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0", tz=BERLIN, start_at=utc(2026, 3, 1))
    assert walk(rule, 3, after=utc(2026, 3, 27, 12)) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]
    ny = RRule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0", tz=NY, start_at=utc(2026, 3, 1))
    assert ny.next(utc(2026, 3, 7, 12)) == utc(2026, 3, 8, 7)  # 03:00 EDT


def test_daily_fixed_time_in_the_autumn_fold_fires_at_the_first_occurrence() -> None:
    rule = RRule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0", tz=BERLIN, start_at=utc(2026, 10, 1))
    assert walk(rule, 3, after=utc(2026, 10, 23, 12)) == [
        utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30),
    ]  # fmt: skip
    ny = RRule("FREQ=DAILY;BYHOUR=1;BYMINUTE=30;BYSECOND=0", tz=NY, start_at=utc(2026, 10, 1))
    assert walk(ny, 2, after=utc(2026, 10, 31, 12)) == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, not again at 01:30 EST
        utc(2026, 11, 2, 6, 30),
    ]


def test_hourly_skips_the_spring_gap_and_the_repeated_hour() -> None:
    berlin = RRule("FREQ=HOURLY;BYMINUTE=7;BYSECOND=0", tz=BERLIN, start_at=utc(2026, 3, 1))
    assert walk(berlin, 3, after=utc(2026, 3, 29, 0)) == [
        utc(2026, 3, 29, 0, 7),  # 01:07 CET
        utc(2026, 3, 29, 1, 7),  # 03:07 CEST: 02:07 does not exist and is skipped
        utc(2026, 3, 29, 2, 7),
    ]
    ny = RRule("FREQ=HOURLY;BYMINUTE=0;BYSECOND=0", tz=NY, start_at=utc(2026, 10, 1))
    assert walk(ny, 4, after=utc(2026, 11, 1, 4, 30)) == [
        utc(2026, 11, 1, 5),  # 01:00 EDT; the repeated 01:00 EST does not fire
        utc(2026, 11, 1, 7),  # 02:00 EST
        utc(2026, 11, 1, 8),
        utc(2026, 11, 1, 9),
    ]
    spring = RRule("FREQ=MINUTELY;INTERVAL=30", tz=NY, start_at=local(NY, 2026, 3, 8, 0))
    assert walk(spring, 5, after=utc(2026, 3, 8, 6, 15)) == [
        utc(2026, 3, 8, 6, 30),  # 01:30 EST
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT (02:00 and 02:30 skipped)
        utc(2026, 3, 8, 7, 30),
        utc(2026, 3, 8, 8, 0),
        utc(2026, 3, 8, 8, 30),
    ]


def test_hourly_with_fixed_hours_fires_at_the_gap_end() -> None:
    rule = RRule("FREQ=HOURLY;BYHOUR=2,4;BYMINUTE=15;BYSECOND=0", tz=BERLIN,
                 start_at=utc(2026, 3, 1))  # fmt: skip
    fires = walk(rule, 2, after=utc(2026, 3, 29, 0))
    assert fires == [utc(2026, 3, 29, 1), utc(2026, 3, 29, 2, 15)]  # 02:15 -> 03:00 CEST


def test_from_inside_the_repeated_hour() -> None:
    rule = RRule("FREQ=MINUTELY;INTERVAL=10", tz=BERLIN, start_at=utc(2026, 10, 1))
    # 02:15 CET (second occurrence): 02:20..02:50 already fired in CEST; next is 03:00 CET.
    assert rule.next(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 25, 2, 0)


# --- properties ----------------------------------------------------------------------------

RULES = [
    "FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0",
    "FREQ=HOURLY;BYMINUTE=0,30;BYSECOND=0",
    "FREQ=MINUTELY;INTERVAL=17",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SA;BYHOUR=9;BYMINUTE=34;BYSECOND=0",
    "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0;BYSECOND=0",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=1;BYMINUTE=0;BYSECOND=0",
    "FREQ=YEARLY;BYMONTH=3,10;BYDAY=-1SU;BYHOUR=2;BYMINUTE=15;BYSECOND=0",
    "FREQ=DAILY;BYHOUR=9,17;BYMINUTE=15,30;BYSECOND=0;BYSETPOS=2,3",
    "FREQ=DAILY;INTERVAL=3;COUNT=20",
    "FREQ=HOURLY;INTERVAL=5;BYHOUR=1,2,3,11,12,13",
]
ZONES = ["UTC", BERLIN, NY, "Australia/Lord_Howe"]
TRANSITIONS = [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)]
instants = st.one_of(
    st.datetimes(datetime(2020, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)),
    st.builds(lambda t, s: t + timedelta(seconds=s), st.sampled_from(TRANSITIONS),
              st.floats(-6 * 3600, 6 * 3600, allow_nan=False)),
)


@st.composite
def rrules(draw: st.DrawFn) -> RRule:
    start = draw(instants).replace(microsecond=0)
    end = None
    if draw(st.booleans()):
        end = start + draw(st.timedeltas(timedelta(hours=1), timedelta(days=800)))
    return RRule(draw(st.sampled_from(RULES)), draw(st.sampled_from(ZONES)), start, end)


def _model_fires(rule: RRule, span_end: datetime) -> list[datetime]:
    """Independent model: dateutil over naive wall time from DTSTART, each instance mapped to
    an instant with the documented DST rules, by a per-instance check (not the code's)."""
    zone = ZoneInfo(rule.tz)
    dtstart = rule.start_at.astimezone(zone).replace(tzinfo=None)
    out: list[datetime] = []
    sub_daily = rule.parsed.freq in ("HOURLY", "MINUTELY", "SECONDLY")
    skip = sub_daily and not rule.parsed.get("BYHOUR")
    for naive in rrulestr("RRULE:" + rule.rule, dtstart=dtstart, cache=False):
        aware = naive.replace(tzinfo=zone)
        first = aware.astimezone(UTC)
        exists = first.astimezone(zone).replace(tzinfo=None) == naive
        if not exists:
            if skip:
                continue
            # the first instant whose wall clock is past `naive`
            t = first.replace(second=0) - timedelta(hours=2)
            while t.astimezone(zone).replace(tzinfo=None) < naive:
                t += timedelta(minutes=1)
            first = t
        if first > span_end:
            break
        if (not out or first > out[-1]) and first >= rule.start_at:
            out.append(first)
        if len(out) > 40:
            break
    return [f for f in out if rule.end_at is None or f <= rule.end_at]


@settings(max_examples=120, deadline=None)
@given(rule=rrules(), offset=st.timedeltas(timedelta(0), timedelta(days=3)))
def test_rrule_properties(rule: RRule, offset: timedelta) -> None:
    after = rule.start_at + offset
    fire = rule.next(after)
    if fire is not None:
        assert fire > after and fire.tzinfo is UTC and fire.microsecond == 0
        assert fire >= rule.start_at
        assert rule.end_at is None or fire <= rule.end_at
        assert rule.next(fire - timedelta(microseconds=1)) == fire  # nothing in between
    # The walk is strictly increasing and matches the independent model.
    fires = walk(rule, 12)
    assert all(a < b for a, b in itertools.pairwise(fires))
    horizon = fires[-1] if fires else rule.start_at + timedelta(days=3650)
    assert fires == _model_fires(rule, horizon)[: len(fires)]
    if len(fires) < 12 and rule.end_at is None and rule.parsed.count is None:
        pytest.fail("an infinite rule stopped")


@settings(max_examples=100, deadline=None)
@given(rule=rrules())
def test_round_trip(rule: RRule) -> None:
    spec = rule.to_dict()
    assert json.loads(json.dumps(spec)) == spec
    again = trigger_from_dict(spec)
    assert again == rule and again.to_dict() == spec and again.describe() == rule.describe()


def test_round_trip_with_exclusions() -> None:
    rule = RRule("FREQ=DAILY", tz=BERLIN, start_at=START,
                 exclude=(date(2026, 1, 3), utc(2026, 1, 5, 12)))  # fmt: skip
    spec = rule.to_dict()
    assert spec["exclude"] == ["2026-01-03", 1767614400000]
    assert trigger_from_dict(json.loads(json.dumps(spec))) == rule
    with pytest.raises(ValidationError) as info:
        trigger_from_dict({**spec, "exclude": ["not a date"]})
    assert info.value.field == "trigger.exclude"


# --- through storage: a task fires where `dynacron next` said it would ---------------------


def _previewed(args: list[str], after: datetime, count: int) -> list[int]:
    """Fire times (epoch ms) printed by `dynacron next --json` for these trigger options."""
    from click.testing import CliRunner

    from dynacron.cli import cli

    iso = after.isoformat().replace("+00:00", "Z")
    out = CliRunner().invoke(cli, ["next", *args, "-n", str(count), "--after", iso, "--json"])
    assert out.exit_code == 0, out.output
    fires = json.loads(out.stdout)["fires"]
    return [int(datetime.fromisoformat(f["utc"].replace("Z", "+00:00")).timestamp() * 1000)
            for f in fires]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "trigger", "start"),
    [
        (["--when", "every other tuesday at 9:34am", "--tz", BERLIN],
         lambda: when_("every other tuesday at 9:34am", BERLIN), utc(2026, 3, 2, 12)),
        (["--rrule", "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0;BYSECOND=0", "--tz", NY],
         lambda: RRule("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0;BYSECOND=0", tz=NY),
         utc(2026, 2, 20, 12)),
        # across Berlin's spring gap: 02:07 is skipped, 03:07 CEST follows 01:07 CET
        (["--rrule", "FREQ=HOURLY;BYMINUTE=7;BYSECOND=0", "--tz", BERLIN],
         lambda: RRule("FREQ=HOURLY;BYMINUTE=7;BYSECOND=0", tz=BERLIN), utc(2026, 3, 28, 23, 30)),
        (["--when", "every day at 2:30", "--tz", NY],  # a Cron, across New York's spring gap
         lambda: when_("every day at 2:30", NY), utc(2026, 3, 6, 12)),
    ],
    ids=["when-every-other-tuesday", "rrule-last-friday", "rrule-hourly-dst", "when-cron-dst"],
)  # fmt: skip
def test_task_fires_where_next_said(env, args, trigger, start) -> None:
    from dynacron import Scheduler

    env.clock.set(start)
    scheduler = Scheduler(
        settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs
    )
    expected = _previewed(args, start, 4)
    task = scheduler.schedule("noop", {}, trigger=trigger())
    assert task.trigger == trigger().anchored(start)  # read back from the table as written
    assert int(task.next_fire_at.timestamp() * 1000) == expected[0]
    for fire_ms in expected:
        env.clock.set(datetime.fromtimestamp(fire_ms / 1000 - 30, UTC))
        env.dispatcher().poll()
    # (a run nobody executes is sent again when its lease expires: count occurrences once)
    sent = sorted({json.loads(e["MessageBody"])["scheduled_for"] for e in env.sqs.sent})
    assert sent == expected
    # the chain's next run is the fifth previewed fire
    assert int(scheduler.get(task.task_id).next_fire_at.timestamp() * 1000) == _previewed(
        args, start, 5
    )[4]


def when_(text: str, tz: str) -> Trigger:
    from dynacron import when

    return when(text, tz=tz)


# Re-anchoring and the 400-year shift must not change any answer: compare the first instance
# at or after `at` with plain dateutil iterating from DTSTART (no shift, no re-anchoring).
PHASE_RULES = [
    "FREQ=DAILY;INTERVAL=3",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU",
    "FREQ=WEEKLY;INTERVAL=3;WKST=SU;BYDAY=SU,TU;BYSETPOS=-1",
    "FREQ=MONTHLY;INTERVAL=5;BYDAY=-1FR",
    "FREQ=MONTHLY;BYMONTHDAY=31",
    "FREQ=MONTHLY;INTERVAL=2",
    "FREQ=YEARLY;INTERVAL=3",
    "FREQ=YEARLY;BYWEEKNO=1,53;BYDAY=MO",
    "FREQ=YEARLY;INTERVAL=2;BYYEARDAY=-1,60",
    "FREQ=HOURLY;INTERVAL=7",
    "FREQ=HOURLY;INTERVAL=5;BYHOUR=1,6,11",
    "FREQ=MINUTELY;INTERVAL=997",
    "FREQ=DAILY;INTERVAL=10;BYMONTH=2",
]


@settings(max_examples=150, deadline=None)
@given(
    rule=st.sampled_from(PHASE_RULES),
    start=st.datetimes(datetime(2020, 1, 1), datetime(2024, 1, 1)),
    gap=st.timedeltas(timedelta(0), timedelta(days=3 * 366)),
)
def test_reanchored_evaluation_equals_plain_dateutil(rule, start, gap) -> None:
    from dynacron.recurrence import _candidates, parse_rule

    start = start.replace(microsecond=0)
    at = (start + gap).replace(microsecond=0)
    reference = rrulestr("RRULE:" + rule, dtstart=start, cache=False).after(at, inc=True)
    assert next(iter(_candidates(parse_rule(rule), start, at)), None) == reference
