"""Time as a dependency: the system clock in production, an injected one in tests."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, overload


class Clock(Protocol):
    """What dynacron needs of time: the current instant and a way to wait."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a frozen clock advances instead)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FrozenClock:
    """A clock that moves only when told to; ``sleep`` advances it instantly.

    Thread-safe, so tests can share one between a poller and workers.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = (start or datetime(2026, 1, 1, tzinfo=UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def advance(self, seconds: float | timedelta) -> datetime:
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def to_ms(when: datetime) -> int:
    """Epoch milliseconds of an aware datetime (the table stores times this way), rounded half
    up in exact integer arithmetic: the one rounding used for every stored time. (A float
    ``round(timestamp * 1000)`` rounds .5 ms to even, so a run key and its trigger's instant
    could differ by 1 ms, and the poller would take the trigger's instant for a later
    occurrence.)"""
    return ((when - EPOCH) // MICROSECOND + 500) // 1000


def ms_to_datetime(ms: int) -> datetime:
    """The aware UTC instant of epoch milliseconds, exactly (no float on the way)."""
    return EPOCH + timedelta(milliseconds=int(ms))


@overload
def from_ms(ms: int | float) -> datetime: ...
@overload
def from_ms(ms: int | float | None) -> datetime | None: ...
def from_ms(ms: int | float | None) -> datetime | None:
    """``ms_to_datetime`` that passes ``None`` through (a stored time that may be absent)."""
    return None if ms is None else ms_to_datetime(int(ms))
