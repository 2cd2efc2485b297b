"""``when(text, tz="UTC")``: English schedules to exact triggers, by a small grammar.

Why a grammar of our own and not ``recurrent`` (PyPI, last release 0.4.1 in 2021-08): on the
phrases this project must understand, recurrent silently dropped "and 5pm" from "every day at
9am and 5pm", turned "on the 1st and 15th at noon" into a one-off date, turned "every 90
minutes from 8:00 to 18:00" into a rule ending the same day, and guessed at words it did not
know instead of saying so. A guess is a task that runs at the wrong time, so dynacron parses a
small documented language and refuses the rest, naming the words it did not understand.

The grammar (case-insensitive; commas and "and" separate list items; ``T`` is a time such as
``9``, ``9am``, ``9:34``, ``9:34pm``, ``17:00``, ``17:00:30``, ``noon``, ``midnight``)::

    in N (seconds|minutes|hours|days|weeks)            -> At(now + N units)
    (today|tomorrow|next DAY|on DATE) at T              -> At (DATE: 2026-12-24, december 24)
    every [N] (second|minute|hour)[s] [from T to T] [on DAYS]
    every [other|N] day[s] [at T, ...]
    every [other|N] week[s] on DAYS [at T, ...]
    every [other] DAYS [at T, ...]                      DAYS: monday, mon, weekday, weekend,
    [on] DAYS [at T, ...]                                     monday to friday, tue and thu
    every [other|N] month[s] on the NTH [DAY] [at T, ...]     NTH: 1st .. 31st, first .. fifth,
    on the NTH [DAY] of [every|the] month [at T, ...]         last; DAY alone = "day": a date
    every [N] year[s] on MONTH D | the NTH [DAY] of MONTH [at T, ...]
    hourly | daily [at T, ...]

What each phrase becomes (exactly; the tests hold a table of them):

- Seconds are always ``Every``. Minutes and hours are ``Cron`` aligned to the clock when the
  step divides the hour or the day (``every 15 minutes`` = ``*/15 * * * *``, ``every 2 hours``
  = ``0 */2 * * *``), otherwise ``Every`` from creation (``every 90 minutes``). With ``from T
  to T`` they are the list of times ``T, T + step, ..`` up to the end, inclusive, every day.
- Days and longer are wall-clock calendars: ``Cron`` when cron can say it, else ``RRule``. No
  time means midnight (``every year on march 3`` fires at 00:00).
- ``every other`` / ``every N`` count from the creation date (``RRule`` anchors at creation).
  For weeks the week is taken to end on the last day named, so the first fire is the first
  matching day after creation: ``every other tuesday`` created on a Wednesday fires next
  Tuesday, then every 14 days.
- A list of times that is not a grid of hours x minutes (``at 9:30 and 17:15``) becomes an
  ``RRule`` whose ``BYSETPOS`` picks those times out of the grid.

Refused, with ``ValidationError`` on ``when``: words outside the grammar (the message names
them and shows examples), "at 9" alone (today? every day?), "every week"/"every month"
without a day, a one-off in the past, times or dates that do not exist, steps below a second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from .errors import ValidationError
from .triggers import At, Cron, Every, Trigger, local_instant, zone

__all__ = ["EXAMPLES", "when"]

EXAMPLES = (
    "every 15 minutes",
    "every other tuesday at 9:34am",
    "weekdays at 8:00",
    "every month on the last friday at 17:00",
    "on the 1st and 15th at noon",
    "every day at 9am and 5pm",
    "tomorrow at 9",
    "in 10 minutes",
    "every 90 minutes from 8:00 to 18:00",
    "every year on march 3",
)
_FIELD = "when"
_DAY_WORDS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2,
    "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5,
    "sat": 5, "sunday": 6, "sun": 6,
}  # fmt: skip
_MONTH_WORDS = {
    name: i + 1
    for i, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
         ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
         ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
         ("december", "dec")]
    )
    for name in names
}
_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}
_UNITS = {
    "second": "second", "seconds": "second", "sec": "second", "secs": "second",
    "minute": "minute", "minutes": "minute", "min": "minute", "mins": "minute",
    "hour": "hour", "hours": "hour", "hr": "hour", "hrs": "hour", "day": "day", "days": "day",
    "week": "week", "weeks": "week", "month": "month", "months": "month", "year": "year",
    "years": "year",
}  # fmt: skip
_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_CRON_DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_TIME_RE = re.compile(r"^(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?(am|pm)?$")
_ORDINAL_RE = re.compile(r"^(\d{1,2})(st|nd|rd|th)$")
_FILLER = {"the", "of", "at", "on", "and", ","}

Time = tuple[int, int, int]
Day = tuple[int, int | None]  # (weekday, ordinal or None)


class _NotUnderstood(Exception):
    def __init__(self, position: int, reason: str = "") -> None:
        self.position = position
        self.reason = reason


@dataclass
class _Spec:
    """What a recurring phrase said, before it is turned into a trigger."""

    unit: str = ""
    interval: int = 1
    days: list[Day] = field(default_factory=list)
    monthdays: list[int] = field(default_factory=list)  # -1 = the last day
    months: list[int] = field(default_factory=list)
    times: list[Time] = field(default_factory=list)
    window: tuple[Time, Time] | None = None
    weekday_setpos: int | None = None  # "the last weekday of the month"


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("a.m.", "am").replace("p.m.", "pm")
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " to ", text)  # mon-fri
    text = re.sub(r"(\d)\s+(am|pm)\b", r"\1\2", text)  # 9 am -> 9am
    return re.sub(r"[,;]", " , ", text).split()


class _Parser:
    def __init__(self, text: str, tz: str, now: datetime) -> None:
        self.text = text
        self.words = _tokens(text)
        self.pos = 0
        self.tz = tz
        self.zone = ZoneInfo(tz)
        self.now = now

    # -- token helpers --

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.words[i] if i < len(self.words) else ""

    def accept(self, *options: str) -> str | None:
        if self.peek() in options:
            self.pos += 1
            return self.words[self.pos - 1]
        return None

    def expect(self, *options: str) -> str:
        got = self.accept(*options)
        if got is None:
            raise _NotUnderstood(self.pos, f"expected {' or '.join(repr(o) for o in options)}")
        return got

    def fail(self, reason: str = "") -> _NotUnderstood:
        return _NotUnderstood(self.pos, reason)

    def skip_separators(self) -> bool:
        found = False
        while self.accept(",", "and"):
            found = True
        return found

    # -- pieces --

    def number(self) -> int | None:
        word = self.peek()
        if word.isdigit():
            self.pos += 1
            return int(word)
        if word in ("a", "an"):
            self.pos += 1
            return 1
        return None

    def time(self) -> Time:
        word = self.peek()
        if word == "noon":
            self.pos += 1
            return (12, 0, 0)
        if word == "midnight":
            self.pos += 1
            return (0, 0, 0)
        match = _TIME_RE.match(word)
        if not match:
            raise self.fail("expected a time such as 9am, 9:34 or 17:00")
        hour, minute, second = (int(g) if g else 0 for g in match.groups()[:3])
        half = match.group(4)
        if half:
            if not 1 <= hour <= 12:
                raise self.fail(f"{word!r}: the hour of an am/pm time is 1..12")
            hour = hour % 12 + (12 if half == "pm" else 0)
        if hour > 23 or minute > 59 or second > 59:
            raise self.fail(f"{word!r} is not a time of day")
        self.pos += 1
        return (hour, minute, second)

    def times(self) -> list[Time]:
        found = [self.time()]
        while self.peek() in (",", "and") and self._time_follows():
            self.skip_separators()
            found.append(self.time())
        return sorted(set(found))

    def _time_follows(self) -> bool:
        i = self.pos
        while i < len(self.words) and self.words[i] in (",", "and"):
            i += 1
        word = self.words[i] if i < len(self.words) else ""
        return bool(_TIME_RE.match(word)) or word in ("noon", "midnight")

    def at_times(self, spec: _Spec) -> None:
        if self.accept("at"):
            spec.times = self.times()

    def day_word(self) -> list[Day] | None:
        word = self.peek()
        plural = word[:-1] if word.endswith("s") else word
        if word in _DAY_WORDS or plural in _DAY_WORDS:
            self.pos += 1
            first = _DAY_WORDS.get(word, _DAY_WORDS.get(plural))
            assert first is not None
            if self.peek() in ("to", "through", "thru") and self._day_after(1):
                self.pos += 1
                last = self.day_word()
                assert last is not None
                return [(d, None) for d in _span(first, last[0][0])]
            return [(first, None)]
        if plural == "weekday":
            self.pos += 1
            return [(d, None) for d in range(5)]
        if plural == "weekend":
            self.pos += 1
            self.accept("day", "days")
            return [(5, None), (6, None)]
        return None

    def _day_after(self, offset: int) -> bool:
        word = self.peek(offset)
        return word in _DAY_WORDS or word.rstrip("s") in _DAY_WORDS

    def days(self) -> list[Day] | None:
        found = self.day_word()
        if found is None:
            return None
        while self.peek() in (",", "and") and self._day_follows():
            self.skip_separators()
            more = self.day_word()
            assert more is not None
            found += more
        return sorted(set(found))

    def _day_follows(self) -> bool:
        i = self.pos
        while i < len(self.words) and self.words[i] in (",", "and"):
            i += 1
        word = self.words[i] if i < len(self.words) else ""
        return word in _DAY_WORDS or word.rstrip("s") in _DAY_WORDS or word.rstrip("s") in (
            "weekday",
            "weekend",
        )

    def ordinal(self) -> int | None:
        word = self.peek()
        if word in _ORDINAL_WORDS:
            self.pos += 1
            return _ORDINAL_WORDS[word]
        match = _ORDINAL_RE.match(word)
        if match:
            value = int(match.group(1))
            if not 1 <= value <= 31:
                raise self.fail(f"{word!r}: a day of the month is 1st..31st")
            self.pos += 1
            return value
        return None

    def month(self) -> int | None:
        word = self.peek()
        if word in _MONTH_WORDS:
            self.pos += 1
            return _MONTH_WORDS[word]
        return None

    # -- the phrase --

    def parse(self) -> Trigger:
        if not self.words:
            raise self.fail("the text is empty")
        trigger = self.once() or self.recurring()
        if self.pos < len(self.words):
            raise self.fail()
        return trigger

    def once(self) -> Trigger | None:
        if self.accept("in"):
            return self.in_duration()
        day = self.day_reference()
        if day is None:
            return None
        if not self.accept("at"):
            raise self.fail("say at what time, e.g. 'tomorrow at 9'")
        hour, minute, second = self.time()
        local = datetime(day.year, day.month, day.day, hour, minute, second)
        fire = local_instant(local, self.zone)
        if fire <= self.now:
            raise _NotUnderstood(self.pos, f"{fire.isoformat()} is in the past")
        return At(fire)

    def in_duration(self) -> Trigger:
        count = self.number()
        if count is None or count < 1:
            raise self.fail("expected a whole number, e.g. 'in 10 minutes'")
        unit = _UNITS.get(self.peek())
        if unit not in _SECONDS:
            raise self.fail("expected seconds, minutes, hours, days or weeks")
        self.pos += 1
        return At(self.now + timedelta(seconds=count * _SECONDS[unit]))

    def day_reference(self) -> date | None:
        today = self.now.astimezone(self.zone).date()
        if self.accept("today"):
            return today
        if self.accept("tomorrow"):
            return today + timedelta(days=1)
        if self.peek() == "next" and self._day_after(1):
            self.pos += 1
            days = self.day_word()
            assert days is not None and len(days) == 1
            ahead = (days[0][0] - today.weekday() - 1) % 7 + 1
            return today + timedelta(days=ahead)
        start = self.pos
        self.accept("on")
        literal = self.date_literal(today)
        if literal is None:
            self.pos = start
        return literal

    def date_literal(self, today: date) -> date | None:
        word = self.peek()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", word):
            try:
                value = date.fromisoformat(word)
            except ValueError:
                raise self.fail(f"{word!r} is not a date") from None
            self.pos += 1
            return value
        month = self.month()
        if month is None:
            return None
        day = self.number() or self.ordinal()
        if day is None:
            raise self.fail("expected a day of the month, e.g. 'december 24'")
        for year in (today.year, today.year + 1):
            try:
                value = date(year, month, day)
            except ValueError:
                raise self.fail(f"{word} {day} is not a date") from None
            if value >= today:
                return value
        raise AssertionError("unreachable")

    def recurring(self) -> Trigger:
        spec = _Spec()
        if self.accept("hourly"):
            spec.unit = "hour"
        elif self.accept("daily"):
            spec.unit = "day"
            self.at_times(spec)
        elif self.accept("every"):
            self.every(spec)
        else:
            self.bare(spec)
        return _build(spec, self.tz)

    def every(self, spec: _Spec) -> None:
        if self.accept("other"):
            spec.interval = 2
        else:
            count = self.number()
            if count is not None:
                if count < 1:
                    raise _NotUnderstood(self.pos - 1, "the step must be at least 1")
                spec.interval = count
        unit = _UNITS.get(self.peek())
        if unit is not None:
            self.pos += 1
            spec.unit = unit
            self.after_unit(spec)
            return
        days = self.days()
        if days is None:
            raise self.fail("expected a unit (minutes, hours, days, ...) or a day (monday, ...)")
        spec.unit, spec.days = "week", days
        self.at_times(spec)

    def after_unit(self, spec: _Spec) -> None:
        if spec.unit in ("second", "minute", "hour"):
            if self.accept("from", "between"):
                start = self.time()
                self.expect("to", "until", "and")
                spec.window = (start, self.time())
            if self.accept("on"):
                spec.days = self.required_days()
        elif spec.unit == "day":
            self.at_times(spec)
        elif spec.unit == "week":
            self.expect("on")
            spec.days = self.required_days()
            self.at_times(spec)
        elif spec.unit == "month":
            self.expect("on")
            self.accept("the")
            self.month_days(spec)
            self.at_times(spec)
        else:
            self.expect("on")
            self.year_day(spec)
            self.at_times(spec)

    def required_days(self) -> list[Day]:
        days = self.days()
        if days is None:
            raise self.fail("expected a day such as monday, weekdays or tue and thu")
        return days

    def month_days(self, spec: _Spec) -> None:
        """'1st and 15th', 'last friday', 'first monday', 'last day', 'last weekday'."""
        while True:
            nth = self.ordinal()
            if nth is None:
                raise self.fail("expected a day of the month such as 1st, 15th or last friday")
            self.nth_of(spec, nth)
            if not (self.peek() in (",", "and") and self._nth_follows()):
                return
            self.skip_separators()
            self.accept("the")

    def _nth_follows(self) -> bool:
        i = self.pos
        while i < len(self.words) and self.words[i] in (",", "and", "the"):
            i += 1
        word = self.words[i] if i < len(self.words) else ""
        return word in _ORDINAL_WORDS or bool(_ORDINAL_RE.match(word))

    def nth_of(self, spec: _Spec, nth: int) -> None:
        if self.accept("day"):
            spec.monthdays.append(nth)
            return
        word = self.peek()
        if word.rstrip("s") == "weekday":
            self.pos += 1
            if not 1 <= abs(nth) <= 5:
                raise self.fail("the nth weekday of a month is first..fifth or last")
            spec.weekday_setpos = nth
            return
        days = self.day_word()
        if days is None:
            if nth < 0:
                raise self.fail("say 'last day', 'last weekday' or 'last friday'")
            spec.monthdays.append(nth)
            return
        if len(days) != 1 or not 1 <= abs(nth) <= 5:
            raise self.fail("say one day, e.g. 'the 2nd monday' (first..fifth or last)")
        spec.days.append((days[0][0], nth))

    def year_day(self, spec: _Spec) -> None:
        month = self.month()
        if month is not None:
            day = self.number() or self.ordinal()
            if day is None or not 1 <= day <= 31:
                raise self.fail("expected a day of the month, e.g. 'march 3'")
            spec.months, spec.monthdays = [month], [day]
            return
        self.accept("the")
        nth = self.ordinal()
        if nth is None:
            raise self.fail("expected a date such as 'march 3' or 'the 4th thursday of november'")
        self.nth_of(spec, nth)
        self.expect("of", "in")
        month = self.month()
        if month is None:
            raise self.fail("expected a month")
        spec.months = [month]

    def bare(self, spec: _Spec) -> None:
        """Phrases without 'every': 'weekdays at 8', 'on the 1st and 15th at noon'."""
        self.accept("on")
        if self.peek() == "the" or self.ordinal_ahead():
            self.accept("the")
            spec.unit = "month"
            self.month_days(spec)
            if self.accept("of"):
                self.accept("every", "the", "each")
                self.expect("month")
            self.at_times(spec)
            return
        days = self.days()
        if days is None:
            if self.peek() == "at":
                raise self.fail("say when: 'today at 9', 'tomorrow at 9' or 'every day at 9'")
            raise self.fail()
        spec.unit, spec.days = "week", days
        self.at_times(spec)

    def ordinal_ahead(self) -> bool:
        word = self.peek()
        return word in _ORDINAL_WORDS or bool(_ORDINAL_RE.match(word))


def _span(first: int, last: int) -> list[int]:
    return [(first + i) % 7 for i in range((last - first) % 7 + 1)]


# --- from a spec to a trigger --------------------------------------------------------------


def _refuse(message: str) -> ValidationError:
    return ValidationError(_FIELD, message)


def _build(spec: _Spec, tz: str) -> Trigger:
    if spec.unit in ("second", "minute", "hour"):
        return _sub_daily(spec, tz)
    times = spec.times or [(0, 0, 0)]
    if spec.unit == "day":
        if spec.interval == 1:
            return _daily(times, tz, dom="*", days=())
        return _rrule(f"FREQ=DAILY;INTERVAL={spec.interval}", times, tz)
    if spec.unit == "week":
        return _weekly(spec, times, tz)
    if spec.unit == "month":
        return _monthly(spec, times, tz)
    return _yearly(spec, times, tz)


def _sub_daily(spec: _Spec, tz: str) -> Trigger:
    step = spec.interval * _SECONDS[spec.unit]
    if spec.window is not None:
        times = _window_times(spec.window, step)
        if spec.days:
            return _weekly(replace_days(spec), times, tz)
        return _daily(times, tz, dom="*", days=())
    if spec.unit == "second":
        if spec.days:
            raise _refuse("'every N seconds on DAYS' is not supported; drop the days")
        return Every(step)
    cron = _aligned_cron(spec)
    if cron is None:
        if spec.days:
            raise _refuse(
                f"every {spec.interval} {spec.unit}s does not divide the "
                f"{'hour' if spec.unit == 'minute' else 'day'}; on given days, give a window "
                "('from 8:00 to 18:00')"
            )
        return Every(step)
    return Cron(cron + " " + _cron_days(spec.days), tz=tz)


def replace_days(spec: _Spec) -> _Spec:
    return _Spec(unit="week", interval=1, days=spec.days)


def _aligned_cron(spec: _Spec) -> str | None:
    """'*/15 * * *' for a step that divides the hour (minutes) or the day (hours)."""
    n = spec.interval
    if spec.unit == "minute" and 60 % n == 0:
        return "* * * *" if n == 1 else f"*/{n} * * *"
    if spec.unit == "minute" and n % 60 == 0 and 24 % (n // 60) == 0:
        n, spec = n // 60, _Spec(unit="hour", interval=n // 60)
    if spec.unit == "hour" and 24 % n == 0:
        return "0 * * *" if n == 1 else f"0 */{n} * *"
    return None


def _window_times(window: tuple[Time, Time], step: int) -> list[Time]:
    start, end = (h * 3600 + m * 60 + s for h, m, s in window)
    if end <= start:
        raise _refuse("the window must end after it starts on the same day ('from 8 to 18')")
    seconds = range(start, end + 1, step)
    if len(seconds) < 2:
        raise _refuse("the step is longer than the window: it would fire once a day")
    return [(t // 3600, t // 60 % 60, t % 60) for t in seconds]


def _grid(times: list[Time]) -> tuple[list[int], list[int], list[int]] | None:
    """(hours, minutes, seconds) when the times are exactly their cross product."""
    hours = sorted({t[0] for t in times})
    minutes = sorted({t[1] for t in times})
    seconds = sorted({t[2] for t in times})
    product = {(h, m, s) for h in hours for m in minutes for s in seconds}
    return (hours, minutes, seconds) if product == set(times) else None


def _csv(values: list[int]) -> str:
    return ",".join(str(v) for v in values)


def _cron_days(days: list[Day]) -> str:
    plain = sorted(d for d, _ in days)
    if not plain:
        return "*"
    if plain == [0, 1, 2, 3, 4]:
        return "MON-FRI"
    return ",".join(_CRON_DAYS[d] for d in plain)


def _daily(times: list[Time], tz: str, dom: str, days: tuple[Day, ...] | list[Day]) -> Trigger:
    """Cron when the times are a grid on whole minutes, else an RRULE picking the times."""
    grid = _grid(times)
    if grid is not None and grid[2] == [0]:
        hours, minutes, _ = grid
        return Cron(f"{_csv(minutes)} {_csv(hours)} {dom} * {_cron_days(list(days))}", tz=tz)
    head = "FREQ=DAILY"
    if days:
        head += ";BYDAY=" + ",".join(_RRULE_DAYS[d] for d, _ in days)
    if dom != "*":
        head += ";BYMONTHDAY=" + dom.replace("L", "-1")
    return _rrule(head, times, tz)


def _rrule(head: str, times: list[Time], tz: str) -> Trigger:
    from .recurrence import RRule

    grid = _grid(times)
    if grid is not None:
        hours, minutes, seconds = grid
        setpos = ""
    else:
        hours = sorted({t[0] for t in times})
        minutes = sorted({t[1] for t in times})
        seconds = sorted({t[2] for t in times})
        product = sorted((h, m, s) for h in hours for m in minutes for s in seconds)
        if len(product) > 366:
            raise _refuse(
                f"{len(times)} times a day on a grid of {len(product)} is more than one RRULE "
                "can pick (BYSETPOS: 366); a cron such as '*/2 6-19 * * *' may say it"
            )
        setpos = ";BYSETPOS=" + _csv([product.index(t) + 1 for t in times])
        if not head.startswith("FREQ=DAILY"):
            raise _refuse("times that are not a grid (9:30 and 17:15) need a daily phrase")
    rule = f"{head};BYHOUR={_csv(hours)};BYMINUTE={_csv(minutes)};BYSECOND={_csv(seconds)}"
    return RRule(rule + setpos, tz=tz)


def _weekly(spec: _Spec, times: list[Time], tz: str) -> Trigger:
    if not spec.days:
        raise _refuse("say which day, e.g. 'every week on monday'")
    if spec.interval == 1:
        return _daily(times, tz, dom="*", days=spec.days)
    # The week ends on the last day named, so the first fire is the next such day.
    wkst = _RRULE_DAYS[(max(d for d, _ in spec.days) + 1) % 7]
    byday = ",".join(_RRULE_DAYS[d] for d, _ in spec.days)
    return _rrule(f"FREQ=WEEKLY;INTERVAL={spec.interval};WKST={wkst};BYDAY={byday}", times, tz)


def _monthly(spec: _Spec, times: list[Time], tz: str) -> Trigger:
    interval = f";INTERVAL={spec.interval}" if spec.interval > 1 else ""
    if spec.weekday_setpos is not None:
        if spec.days or spec.monthdays:
            raise _refuse("say either 'the last weekday' or particular days, not both")
        head = f"FREQ=MONTHLY{interval};BYDAY=MO,TU,WE,TH,FR"
        return _setpos_rrule(head, spec, times, tz)
    if spec.days:
        if spec.monthdays:
            raise _refuse("say either days of the month or weekdays, not both")
        byday = ",".join(f"{n}{_RRULE_DAYS[d]}" for d, n in spec.days)
        return _rrule(f"FREQ=MONTHLY{interval};BYDAY={byday}", times, tz)
    days = sorted(set(spec.monthdays), key=lambda d: (d < 0, d))
    dom = ",".join("L" if d == -1 else str(d) for d in days)
    if spec.interval == 1 and ("L" not in dom or dom == "L"):
        return _daily(times, tz, dom=dom, days=())
    bymonthday = ",".join(str(d) for d in days)
    return _rrule(f"FREQ=MONTHLY{interval};BYMONTHDAY={bymonthday}", times, tz)


def _setpos_rrule(head: str, spec: _Spec, times: list[Time], tz: str) -> Trigger:
    if len(times) != 1:
        raise _refuse("'the nth weekday' takes one time of day")
    trigger = _rrule(head, times, tz)
    from .recurrence import RRule

    assert isinstance(trigger, RRule)
    return RRule(f"{trigger.rule};BYSETPOS={spec.weekday_setpos}", tz=tz)


def _yearly(spec: _Spec, times: list[Time], tz: str) -> Trigger:
    month = spec.months[0]
    interval = f";INTERVAL={spec.interval}" if spec.interval > 1 else ""
    if spec.days:
        byday = ",".join(f"{n}{_RRULE_DAYS[d]}" for d, n in spec.days)
        # Under YEARLY with BYMONTH, an ordinal BYDAY counts within the month (RFC 5545).
        return _rrule(f"FREQ=YEARLY{interval};BYMONTH={month};BYDAY={byday}", times, tz)
    day = spec.monthdays[0]
    try:
        date(2000, month, day)  # 2000 is a leap year: February 29 exists
    except ValueError:
        raise _refuse(f"month {month} has no day {day}") from None
    if not interval:
        grid = _grid(times)
        if grid is not None and grid[2] == [0]:
            return Cron(f"{_csv(grid[1])} {_csv(grid[0])} {day} {month} *", tz=tz)
    return _rrule(f"FREQ=YEARLY{interval};BYMONTH={month};BYMONTHDAY={day}", times, tz)


# --- the public function -------------------------------------------------------------------


def when(text: str, tz: str | ZoneInfo = "UTC", *, now: datetime | None = None) -> Trigger:
    """An exact ``At``, ``Every``, ``Cron`` or ``RRule`` for an English phrase (see module doc).

    ``tz`` is the IANA zone the phrase's wall-clock times are read in; ``now`` (aware, default
    the current time) is only used by one-off phrases ("tomorrow at 9", "in 10 minutes").
    Raises ``ValidationError`` on ``when`` naming the words not understood, with examples.
    """
    if not isinstance(text, str):
        raise _refuse(f"must be a string, got {type(text).__name__}")
    if len(text) > 200:
        raise _refuse(f"is {len(text)} characters long, at most 200 allowed")
    if isinstance(tz, ZoneInfo):
        tz = tz.key
    if not isinstance(tz, str):
        raise ValidationError("trigger.tz", f"must be an IANA time zone name, got {tz!r}")
    zone(tz)
    moment = datetime.now(UTC) if now is None else now
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError("now", "must be timezone-aware")
    parser = _Parser(text, tz, moment.astimezone(UTC))
    try:
        return parser.parse()
    except _NotUnderstood as exc:
        raise _refuse(_explain(parser.words, exc, text)) from None


def _explain(words: list[str], exc: _NotUnderstood, text: str) -> str:
    rest = " ".join(words[exc.position :]).replace(" , ", ", ")
    if rest:
        where = f"did not understand {rest!r} in {text!r}"
        where += f" ({exc.reason})" if exc.reason else ""
    else:
        where = f"{text!r}: {exc.reason or 'incomplete'}"
    return f"{where}; examples: " + "; ".join(f"'{e}'" for e in EXAMPLES[:6])
