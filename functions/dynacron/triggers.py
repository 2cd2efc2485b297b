"""Triggers: when a task fires. Pure values, no I/O.

Three kinds, all frozen dataclasses that compare by value (idempotent ``schedule()`` compares
them) and round-trip exactly through ``to_dict()`` / ``trigger_from_dict()``:

- ``At(when)``: one fire at ``when``.
- ``Every(interval, start_at=None, end_at=None)``: fires at ``start_at + k * interval`` for
  ``k = 0, 1, 2, ...`` while ``<= end_at``. The first fire is ``start_at`` itself. Without
  ``start_at`` the SDK anchors the trigger at creation (``anchored(now)``: ``now`` rounded up to
  the whole second). Arithmetic is done in integer milliseconds, so there is no drift.
- ``Cron(expr, tz="UTC", start_at=None, end_at=None)``: a standard 5-field cron expression
  (minute hour day-of-month month day-of-week; whatever croniter accepts in 5 fields, e.g.
  ``MON-FRI``, ``*/5``, ``L``, ``MON#2``, ``15W``, and the aliases ``@hourly``, ``@daily``,
  ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``, ``@annually``), read as wall-clock time
  in the IANA zone ``tz``. Seconds/year fields and random/hashed (``R``/``H``) values are refused.

Common rules:

- ``next(after)`` is the first fire strictly after ``after`` within ``[start_at, end_at]``
  (both inclusive), or ``None``. ``first(now)`` is the first fire at or after ``now``.
- Every datetime in or out is timezone-aware; naive input is refused. Results are in UTC.
  Stored times (``when``, ``start_at``, ``end_at``) are normalised to UTC, rounded to the
  millisecond, since that is how they are stored (epoch milliseconds). Cron fires are on whole
  seconds (whole minutes except in zones with historical second offsets); Every fires may carry
  milliseconds.

Daylight-saving time (Cron and RRule; At and Every are instants and ignore wall clocks):

- Candidates are generated over naive local wall-clock times and each is mapped to one instant.
- A wall time that exists once fires at that instant.
- A wall time that exists twice (autumn: the clock goes back and an hour repeats) fires once, at
  its FIRST occurrence (``fold=0``). The repeated hour does not fire again: ``30 2 * * *`` in
  Europe/Berlin fires at 00:30Z on 2026-10-25, not also at 01:30Z; an hourly cron in New York
  fires at 05:00Z (01:00 EDT) and then 07:00Z (02:00 EST) on 2026-11-01. Consequence: a cron
  that fires within the hour (``*/5 * * * *``) is silent for the repeated hour.
- A wall time that does not exist (spring gap) depends on the hour field. A fixed hour (``2``,
  ``1-3``, ``1,2``) fires once at the transition instant, the first valid instant after the
  gap: ``30 2 * * *`` in Europe/Berlin fires at 01:00Z (03:00 CEST) on 2026-03-29; when several
  candidates map to the same instant it fires once. A wildcard or stepped hour (``*``, ``*/2``,
  ``1-23/2``, ``@hourly``) skips the times in the gap, as Vixie cron, cronsim and croniter do:
  London's ``7 * * * *`` fires at 00:07Z and then 01:07Z (02:07 BST), 23 times that day.
- So a fixed-time daily job fires once per calendar day, its interval stretching or shrinking
  by the DST shift around a transition, except where a gap ends at local midnight: in
  America/Nuuk (23:00 -> 00:00 on 2026-03-28) ``30 23 * * *`` has no 23:30 on the 28th and
  fires at 00:00 on the 29th, which then has two runs and the 28th none.

``RRule`` (``dynacron.recurrence``) follows the same rules, its sub-daily frequencies without
``BYHOUR`` counting as a stepped hour.

``At.first(now)`` returns ``when`` even if it is in the past: whether a missed one-shot still
runs is decided by ``validate_for_schedule`` (grace at creation) and the misfire policy.

croniter is imported lazily (inside functions) to keep Lambda cold starts short.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .clock import EPOCH as _EPOCH
from .clock import MICROSECOND as _US
from .clock import ms_to_datetime as _from_ms
from .clock import to_ms
from .errors import ValidationError
from .types import MIN_INTERVAL_SECONDS, to_seconds

__all__ = [
    "MAX_CRON_EXPR_LENGTH",
    "MAX_INTERVAL_SECONDS",
    "At",
    "Cron",
    "Every",
    "Trigger",
    "trigger_from_dict",
]

#: Longest accepted cron expression.
MAX_CRON_EXPR_LENGTH = 200
#: Longest accepted Every interval.
MAX_INTERVAL_SECONDS = 366 * 86400.0

_MS = timedelta(milliseconds=1)
_CRON_ALIASES = frozenset(
    {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
)
_RANDOM_OR_HASH = re.compile(r"^[hr](\(|/|$)", re.IGNORECASE)
#: Cron candidates examined per next() call. Candidates are skipped only inside a repeated
#: (fold) period, at most one per minute of it, so this covers a fold of more than a day.
_MAX_CRON_STEPS = 5000


# --- time helpers ---------------------------------------------------------------------------


def _aware(value: Any, field: str) -> datetime:
    """Validate an aware datetime and normalise it to UTC at millisecond precision."""
    if not isinstance(value, datetime):
        raise ValidationError(field, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            field, "must be timezone-aware (e.g. datetime(..., tzinfo=datetime.UTC)), got naive"
        )
    try:
        return _from_ms(to_ms(value))
    except OverflowError:
        raise ValidationError(field, "is out of range") from None


def optional_aware(value: Any, field: str) -> datetime | None:
    return None if value is None else _aware(value, field)


def check_after(after: datetime) -> datetime:
    if not isinstance(after, datetime) or after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after/now must be a timezone-aware datetime")
    return after.astimezone(UTC)


def fmt_time(when: datetime) -> str:
    spec = "milliseconds" if when.microsecond else "seconds"
    return when.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _fmt_duration(ms: int) -> str:
    """1500 -> '1.5s', 5400000 -> '1h30m', 86400000 -> '1d'."""
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms or not parts:
        parts.append(f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms / 1000:g}s")
    return "".join(parts)


def check_window(start_at: datetime | None, end_at: datetime | None) -> None:
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise ValidationError("trigger.end_at", "must be after start_at")


# --- the base class -------------------------------------------------------------------------


class Trigger(ABC):
    """When a task fires. See the module docstring for the semantics."""

    start_at: datetime | None
    end_at: datetime | None

    @abstractmethod
    def next(self, after: datetime) -> datetime | None:
        """The first fire strictly after ``after`` (aware), within the window; else None."""

    def first(self, now: datetime) -> datetime | None:
        """The first fire at or after ``now``."""
        return self.next(check_after(now) - _US)

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe spec (times as epoch milliseconds); ``trigger_from_dict`` reverses it."""

    @abstractmethod
    def describe(self) -> str:
        """A human one-liner."""

    @property
    @abstractmethod
    def recurring(self) -> bool:
        """True if the trigger may fire more than once."""

    def anchored(self, now: datetime) -> Trigger:
        """A copy with creation-time defaults resolved (only Every has any)."""
        return self

    def validate_for_schedule(self, now: datetime, grace_s: float) -> None:
        """Refuse a trigger that has no fire at or after ``now - grace_s``."""
        since = check_after(now) - timedelta(seconds=grace_s)
        if self.end_at is not None and self.end_at < since:
            raise ValidationError(
                "trigger.end_at",
                f"{fmt_time(self.end_at)} has passed (grace {grace_s:g} s): it would never fire",
            )
        if self.anchored(now).first(since) is None:
            raise ValidationError(
                "trigger.end_at",
                f"no occurrence between {fmt_time(since)} and {fmt_time(self.end_at)}"
                if self.end_at is not None
                else f"no occurrence after {fmt_time(since)}",
            )


# --- At -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class At(Trigger):
    """Fire once, at ``when``."""

    when: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", _aware(self.when, "trigger.when"))

    @property
    def start_at(self) -> None:  # type: ignore[override]
        return None

    @property
    def end_at(self) -> None:  # type: ignore[override]
        return None

    @property
    def recurring(self) -> bool:
        return False

    def next(self, after: datetime) -> datetime | None:
        return self.when if self.when > check_after(after) else None

    def first(self, now: datetime) -> datetime | None:
        check_after(now)
        return self.when

    def validate_for_schedule(self, now: datetime, grace_s: float) -> None:
        since = check_after(now) - timedelta(seconds=grace_s)
        if self.when < since:
            raise ValidationError(
                "trigger.when",
                f"{fmt_time(self.when)} is in the past by more than the {grace_s:g} s grace",
            )

    def to_dict(self) -> dict[str, Any]:
        return {"type": "at", "when": to_ms(self.when)}

    def describe(self) -> str:
        return f"Once at {fmt_time(self.when)}"


# --- Every ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Every(Trigger):
    """Fire at ``start_at + k * interval`` (k >= 0) up to ``end_at`` inclusive."""

    interval: float
    start_at: datetime | None = None
    end_at: datetime | None = None

    def __post_init__(self) -> None:
        seconds = to_seconds(self.interval, "trigger.interval")
        if seconds < MIN_INTERVAL_SECONDS:
            raise ValidationError(
                "trigger.interval",
                f"must be at least {MIN_INTERVAL_SECONDS:g} s, got {seconds:g} s",
            )
        if seconds > MAX_INTERVAL_SECONDS:
            raise ValidationError(
                "trigger.interval", f"must be at most 366 days, got {seconds:g} s"
            )
        object.__setattr__(self, "interval", round(seconds * 1000) / 1000)
        start_at = optional_aware(self.start_at, "trigger.start_at")
        end_at = optional_aware(self.end_at, "trigger.end_at")
        check_window(start_at, end_at)
        object.__setattr__(self, "start_at", start_at)
        object.__setattr__(self, "end_at", end_at)

    @property
    def interval_ms(self) -> int:
        return round(self.interval * 1000)

    @property
    def recurring(self) -> bool:
        return True

    def anchored(self, now: datetime) -> Every:
        if self.start_at is not None:
            return self
        now = check_after(now)
        whole = now.replace(microsecond=0)
        return replace(self, start_at=whole if whole == now else whole + timedelta(seconds=1))

    def next(self, after: datetime) -> datetime | None:
        after = check_after(after)
        if self.start_at is None:
            raise ValueError("anchor first: Every without start_at has no fires (anchored(now))")
        start_us = to_ms(self.start_at) * 1000
        step_ms = self.interval_ms
        after_us = (after - _EPOCH) // _US
        k = 0 if after_us < start_us else (after_us - start_us) // (step_ms * 1000) + 1
        fire_ms = start_us // 1000 + k * step_ms
        if self.end_at is not None and fire_ms > to_ms(self.end_at):
            return None
        try:
            return _from_ms(fire_ms)
        except OverflowError:
            return None

    def to_dict(self) -> dict[str, Any]:
        data = {"type": "every", "interval_ms": self.interval_ms}
        return with_window(data, self.start_at, self.end_at)

    def describe(self) -> str:
        from .describe import window

        return f"Every {_fmt_duration(self.interval_ms)}{window(self.start_at, self.end_at)}"


def with_window(
    data: dict[str, Any], start_at: datetime | None, end_at: datetime | None
) -> dict[str, Any]:
    """``data`` plus the stored form of a recurring trigger's window (absent bounds left out)."""
    if start_at is not None:
        data["start_at"] = to_ms(start_at)
    if end_at is not None:
        data["end_at"] = to_ms(end_at)
    return data


# --- Cron -----------------------------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValidationError`` on ``trigger.tz`` if there is none."""
    try:
        if not name or name != name.strip():
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(
            "trigger.tz", f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)"
        ) from None


@lru_cache(maxsize=1024)
def _check_expr(expr: str) -> None:
    """Refuse anything but a valid 5-field expression that fires at least once."""
    from croniter import CroniterBadDateError, CroniterError, croniter

    if expr.lower() not in _CRON_ALIASES:
        fields = expr.split()
        if len(fields) != 5:
            raise ValidationError(
                "trigger.expr",
                f"must have 5 fields (minute hour day-of-month month day-of-week), got "
                f"{len(fields)} in {expr!r}; seconds and year fields are not supported",
            )
        for part in (p for f in fields for p in f.split(",")):
            if _RANDOM_OR_HASH.match(part):
                raise ValidationError(
                    "trigger.expr",
                    f"random/hashed values (R, H) are not supported: {part!r} in {expr!r}",
                )
    try:
        # Any 5-field schedule repeats every 400 years and its longest gap is well under
        # croniter's 50-year search, so one search from a fixed date decides "never fires".
        croniter(expr, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValidationError("trigger.expr", f"{expr!r} never fires") from None
    except (CroniterError, ValueError, KeyError, IndexError, TypeError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ValidationError(
            "trigger.expr", f"invalid cron expression {expr!r}: {reason}"
        ) from None


def _hour_field(expr: str) -> str | None:
    """The hour field of a 5-field expression or alias (None for ``@hourly``)."""
    aliases = {"@hourly": None, "@daily": "0", "@midnight": "0", "@weekly": "0",
               "@monthly": "0", "@yearly": "0", "@annually": "0"}  # fmt: skip
    if expr.lower() in aliases:
        return aliases[expr.lower()]
    return expr.split()[1]


def wall_time_exists(naive: datetime, tz: ZoneInfo) -> bool:
    """True unless the wall time ``naive`` falls in a gap (the clock jumped over it)."""
    return wall_clock(naive.replace(tzinfo=tz, fold=0).astimezone(UTC), tz) == naive


def wall_clock(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def local_instant(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant a naive wall time fires at: first occurrence, or the end of its gap."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if wall_clock(first, tz) == naive:
        return first  # exists once, or the first of two occurrences
    # In a gap: fold=0/1 read it with the offsets before/after the transition. Find the first
    # instant whose wall time is past `naive`: the transition (tzdata uses whole seconds).
    other = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(first, other), max(first, other)  # wall(lo) < naive < wall(hi)
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if wall_clock(datetime.fromtimestamp(mid, UTC), tz) > naive:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


@dataclass(frozen=True)
class Cron(Trigger):
    """Fire on a 5-field cron expression read as wall-clock time in ``tz``."""

    expr: str
    tz: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str):
            raise ValidationError(
                "trigger.expr", f"must be a string, got {type(self.expr).__name__}"
            )
        if len(self.expr) > MAX_CRON_EXPR_LENGTH:
            raise ValidationError(
                "trigger.expr",
                f"is {len(self.expr)} characters long, at most {MAX_CRON_EXPR_LENGTH} allowed",
            )
        expr = " ".join(self.expr.split())
        if not expr:
            raise ValidationError("trigger.expr", "must not be empty")
        tz = self.tz
        if isinstance(tz, ZoneInfo):
            tz = tz.key
        if not isinstance(tz, str):
            raise ValidationError(
                "trigger.tz",
                f"must be an IANA time zone name (str), got {type(self.tz).__name__}",
            )
        zone(tz)
        _check_expr(expr)
        start_at = optional_aware(self.start_at, "trigger.start_at")
        end_at = optional_aware(self.end_at, "trigger.end_at")
        check_window(start_at, end_at)
        object.__setattr__(self, "expr", expr)
        object.__setattr__(self, "tz", tz)
        object.__setattr__(self, "start_at", start_at)
        object.__setattr__(self, "end_at", end_at)

    @property
    def recurring(self) -> bool:
        return True

    @property
    def skips_gaps(self) -> bool:
        """True when the hour field is a wildcard or a step (``*``, ``*/2``, ``1-23/2``,
        ``@hourly``): such a cron's times in a spring gap are skipped, not moved."""
        hour = _hour_field(self.expr)
        return hour is None or "*" in hour or "/" in hour

    def next(self, after: datetime) -> datetime | None:
        from croniter import CroniterError, croniter

        after = check_after(after)
        if self.start_at is not None and after < self.start_at:
            after = self.start_at - _US
        if self.end_at is not None and after >= self.end_at:
            return None
        zone = ZoneInfo(self.tz)
        # Start from the wall time of `after`, floored to the minute (cron's resolution).
        base = wall_clock(after, zone).replace(second=0, microsecond=0)
        try:
            candidates = croniter(self.expr, base)
            skips = self.skips_gaps
            for _ in range(_MAX_CRON_STEPS):
                naive = candidates.get_next(datetime)
                if skips and not wall_time_exists(naive, zone):
                    continue  # a stepped hour's time in a spring gap: skipped, as Vixie cron
                fire = local_instant(naive, zone)
                if fire <= after:
                    # The repeated hour (after `after` lies in its second occurrence) or a gap
                    # candidate that maps onto an instant already passed.
                    continue
                if self.end_at is not None and fire > self.end_at:
                    return None
                return fire
        except (CroniterError, OverflowError, ValueError):
            return None  # no fire in croniter's 50-year search, or past datetime.max
        return None

    def to_dict(self) -> dict[str, Any]:
        data = {"type": "cron", "expr": self.expr, "tz": self.tz}
        return with_window(data, self.start_at, self.end_at)

    def describe(self) -> str:
        from .describe import describe_cron

        return describe_cron(self.expr, self.tz, self.start_at, self.end_at)


# --- from a stored spec ---------------------------------------------------------------------


@overload
def _ms_field(data: dict[str, Any], key: str, required: Literal[True]) -> int: ...
@overload
def _ms_field(data: dict[str, Any], key: str, required: bool = False) -> int | None: ...
def _ms_field(data: dict[str, Any], key: str, required: bool = False) -> int | None:
    value = data.get(key)
    if value is None:
        if required:
            raise ValidationError(f"trigger.{key}", "is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValidationError(f"trigger.{key}", f"must be an integer, got {type(value).__name__}")
    if isinstance(value, float | Decimal) and value != int(value):
        raise ValidationError(f"trigger.{key}", f"must be an integer, got {value}")
    return int(value)


@overload
def time_field(data: dict[str, Any], key: str, required: Literal[True]) -> datetime: ...
@overload
def time_field(data: dict[str, Any], key: str, required: bool = False) -> datetime | None: ...
def time_field(data: dict[str, Any], key: str, required: bool = False) -> datetime | None:
    ms = _ms_field(data, key, required)
    if ms is None:
        return None
    try:
        return _from_ms(ms)
    except OverflowError:
        raise ValidationError(f"trigger.{key}", f"{ms} ms is out of range") from None


def trigger_from_dict(data: dict[str, Any]) -> Trigger:
    """Rebuild a trigger from ``Trigger.to_dict()`` output (re-validating it)."""
    if not isinstance(data, dict):
        raise ValidationError("trigger", f"must be a dict, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "at":
        return At(time_field(data, "when", required=True))
    if kind == "every":
        interval_ms = _ms_field(data, "interval_ms", required=True)
        return Every(
            interval_ms / 1000,
            start_at=time_field(data, "start_at"),
            end_at=time_field(data, "end_at"),
        )
    if kind == "cron":
        expr: Any = data.get("expr")  # Cron refuses a missing or non-string one, naming it
        return Cron(
            expr,
            tz=data.get("tz", "UTC"),
            start_at=time_field(data, "start_at"),
            end_at=time_field(data, "end_at"),
        )
    if kind == "rrule":
        from .recurrence import rrule_from_dict

        return rrule_from_dict(data)
    raise ValidationError(
        "trigger.type", f"must be 'at', 'every', 'cron' or 'rrule', got {kind!r}"
    )
