"""Clocks the tests need and the library does not."""

from __future__ import annotations

from datetime import datetime, timedelta

from dynacron.clock import Clock


class SkewedClock:
    """Another clock shifted by a fixed offset: models a host whose clock is wrong."""

    def __init__(self, base: Clock, skew_seconds: float) -> None:
        self._base = base
        self._skew = timedelta(seconds=skew_seconds)

    def now(self) -> datetime:
        return self._base.now() + self._skew

    def sleep(self, seconds: float) -> None:
        self._base.sleep(seconds)
