"""Triggers in words: ``trigger.describe()``.

Cron expressions are described by ``cron-descriptor`` (24-hour clock); RRULEs by the small
describer below, which names the common shapes ("Every other Tuesday at 09:34", "Every month
on the last Friday at 17:00") and shows the rule text for parts it has no words for
(``BYWEEKNO``, ``BYYEARDAY``, a ``BYSETPOS`` it cannot resolve). Every description ends with
the time zone in parentheses and then the window, if any. Both libraries are imported only
when a description is asked for (CLI and UI), never in the Lambdas' hot path.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .recurrence import RRule

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_UNITS = {"YEARLY": "year", "MONTHLY": "month", "WEEKLY": "week", "DAILY": "day",
          "HOURLY": "hour", "MINUTELY": "minute", "SECONDLY": "second"}  # fmt: skip
_CRON_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                 "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
                 "@annually": "0 0 1 1 *"}  # fmt: skip
_MAX_TIMES_LISTED = 6


def window(start_at: datetime | None, end_at: datetime | None) -> str:
    from .triggers import fmt_time

    text = ""
    if start_at is not None:
        text += f", from {fmt_time(start_at)}"
    if end_at is not None:
        text += f", until {fmt_time(end_at)}"
    return text


def describe_cron(expr: str, tz: str, start_at: Any, end_at: Any) -> str:
    """'At 09:30, Monday through Friday (Europe/Berlin)'."""
    from cron_descriptor import ExpressionDescriptor, Options

    options = Options()
    options.use_24hour_time_format = True
    try:
        text = ExpressionDescriptor(_CRON_ALIASES.get(expr.lower(), expr), options)
        words = text.get_description()
    except Exception:  # a croniter-only syntax cron-descriptor cannot read: show it as is
        words = f"Cron {expr!r}"
    return f"{words} ({tz}){window(start_at, end_at)}"


def ordinal(n: int) -> str:
    """1 -> '1st', -1 -> 'last', -2 -> '2nd to last'."""
    if n == -1:
        return "last"
    if n < 0:
        return f"{ordinal(-n)} to last"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def join(items: list[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _every(freq: str, interval: int) -> str:
    unit = _UNITS[freq]
    if interval == 1:
        return f"Every {unit}"
    if interval == 2 and freq in ("YEARLY", "MONTHLY", "WEEKLY", "DAILY"):
        return f"Every other {unit}"
    return f"Every {interval} {unit}s"


def _days_text(byday: tuple[tuple[int, int | None], ...]) -> str:
    plain = sorted(d for d, n in byday if n is None)
    if plain == [0, 1, 2, 3, 4] and len(plain) == len(byday):
        return "weekday"
    if plain == [5, 6] and len(plain) == len(byday):
        return "weekend day"
    return join(
        [DAY_NAMES[d] if n is None else f"the {ordinal(n)} {DAY_NAMES[d]}" for d, n in byday]
    )


def _times(rule: RRule) -> list[str] | None:
    """The times of day of a DAILY-or-coarser rule ('09:00'), BYSETPOS applied where it picks
    among times only; None when the rule leaves them to DTSTART and has none."""
    parsed = rule.parsed
    start = rule.start_at
    local = None
    if start is not None:
        from zoneinfo import ZoneInfo

        local = start.astimezone(ZoneInfo(rule.tz))
    hours = parsed.get("BYHOUR") or ((local.hour,) if local else None)
    minutes = parsed.get("BYMINUTE") or ((local.minute,) if local else None)
    seconds = parsed.get("BYSECOND") or ((local.second,) if local else (0,))
    if hours is None or minutes is None:
        return None
    times = sorted((h, m, s) for h in hours for m in minutes for s in seconds)
    if parsed.get("BYSETPOS") and _setpos_over_times(rule):
        positions = parsed.get("BYSETPOS")
        times = sorted({times[p - 1 if p > 0 else p] for p in positions if -len(times) <= p
                        <= len(times) and p != 0})  # fmt: skip
    return [f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "") for h, m, s in times]


def _setpos_over_times(rule: RRule) -> bool:
    """BYSETPOS selects among the times of one day: under DAILY a period is one day, whatever
    days the BY* day parts keep."""
    return rule.parsed.freq == "DAILY"


def _at_times(rule: RRule) -> str:
    times = _times(rule)
    if times is None:
        return " at the time of day it is created"
    step = _even_step(times)
    if step is not None:
        return f", every {step} from {times[0]} to {times[-1]}"
    if len(times) > _MAX_TIMES_LISTED:
        return f", {len(times)} times a day from {times[0]} to {times[-1]}"
    return " at " + join(times)


def _even_step(times: list[str]) -> str | None:
    """'90 minutes' when more than three times are evenly spaced, else None."""
    if len(times) <= 3:
        return None
    seconds = [sum(int(p) * f for p, f in zip(t.split(":"), (3600, 60, 1), strict=False))
               for t in times]  # fmt: skip
    steps = {b - a for a, b in itertools.pairwise(seconds)}
    if len(steps) != 1:
        return None
    step = steps.pop()
    for size, unit in ((3600, "hour"), (60, "minute"), (1, "second")):
        if step % size == 0:
            n = step // size
            return unit if n == 1 else f"{n} {unit}s"
    return None


def _head(rule: RRule) -> str:
    """'Every other Tuesday', 'Every month on the last Friday', 'Every year on March 3'."""
    parsed = rule.parsed
    freq, interval = parsed.freq, parsed.interval
    days = parsed.byday
    monthdays = parsed.get("BYMONTHDAY")
    months = parsed.get("BYMONTH")
    if freq == "WEEKLY" and days and interval <= 2:
        prefix = "Every other" if interval == 2 else "Every"
        return f"{prefix} {_days_text(days)}"
    if freq == "DAILY" and days and interval == 1 and all(n is None for _, n in days):
        return f"Every {_days_text(days)}"
    head = _every(freq, interval)
    if freq == "YEARLY" and len(months) == 1 and monthdays and not days:
        return f"{head} on {MONTH_NAMES[months[0] - 1]} {join([str(d) for d in monthdays])}"
    if days:
        setpos = parsed.get("BYSETPOS")
        if setpos and freq in ("MONTHLY", "YEARLY") and all(n is None for _, n in days):
            head += f" on the {join([ordinal(p) for p in setpos])} {_days_text(days)}"
        else:
            head += f" on {_days_text(days)}"
    if monthdays:
        head += f" on the {join([ordinal(d) for d in monthdays])}"
    if months:
        head += f" in {join([MONTH_NAMES[m - 1] for m in months])}"
    return head


def _unworded(rule: RRule) -> str:
    parsed = rule.parsed
    keys = [k for k in ("BYWEEKNO", "BYYEARDAY") if parsed.get(k)]
    setpos = parsed.get("BYSETPOS")
    if setpos and not _setpos_over_times(rule) and not (
        parsed.byday and parsed.freq in ("MONTHLY", "YEARLY")
    ):
        keys.append("BYSETPOS")
    return f" [{rule.rule}]" if keys else ""


def describe_rrule(rule: RRule) -> str:
    """'Every other Tuesday at 09:34 (UTC)'."""
    parsed = rule.parsed
    text = _head(rule)
    if parsed.freq in ("HOURLY", "MINUTELY", "SECONDLY"):
        hours = parsed.get("BYHOUR")
        if hours:
            text += f" during hour{'s' if len(hours) > 1 else ''} " + join([str(h) for h in hours])
    else:
        text += _at_times(rule)
    text += _unworded(rule)
    if parsed.count is not None:
        text += f", {parsed.count} time{'s' if parsed.count > 1 else ''}"
    if parsed.until is not None:
        text += f", until {parsed.until}"
    if rule.exclude:
        text += f", except {len(rule.exclude)} date{'s' if len(rule.exclude) > 1 else ''}"
    return f"{text} ({rule.tz}){window(rule.start_at, rule.end_at)}"
