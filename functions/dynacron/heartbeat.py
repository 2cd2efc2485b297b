"""A running attempt's heartbeat: keep it alive and hide its message while the handler runs.

With a heartbeat (``DYNACRON_HEARTBEAT_SECONDS``, default 30 s), a started attempt is alive for
only ``heartbeat_s`` at a time (the run's ``alive_until``) instead of ``timeout + lease``; a
thread renews it every ``heartbeat_s / 3`` and sets the message's visibility to ``heartbeat_s +
VISIBILITY_MARGIN_S``. When the worker dies the renewals stop: ``alive_until`` passes
``heartbeat_s`` after the last one and the message reappears a few seconds later, so the
redelivery finds the attempt expired and takes the run over (``Executor._precheck``); if the
message does not come back, the poller takes the run back when the claim's index lease ends.
Two missed renewals in a row are tolerated; a worker stalled for longer than ``heartbeat_s`` is
taken for dead (its attempt may then run twice: at-least-once across crashes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

VISIBILITY_MARGIN_S = 5  # the message reappears after the lease has expired, not before
BEATS_PER_LEASE = 3

Wait = Callable[[threading.Event, float], bool]


def _wait(stop: threading.Event, seconds: float) -> bool:
    return stop.wait(seconds)


class Heartbeat:
    """Calls ``renew`` once on entry, then every ``interval`` seconds until exit or until
    ``renew`` returns False (the lease was lost: someone else holds the run now).

    ``wait(stop, interval)`` waits for the next beat and returns True to stop (tests inject one
    that beats when told, so no test depends on real time).
    """

    def __init__(self, renew: Callable[[], bool], interval: float, wait: Wait | None = None):
        self._renew = renew
        self._interval = interval
        self._wait = wait or _wait
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dynacron-heartbeat", daemon=True)
        self.beats = 0

    def _loop(self) -> None:
        while not self._wait(self._stop, self._interval):
            if self._stop.is_set() or not self._beat():
                return

    def _beat(self) -> bool:
        self.beats += 1
        return self._renew()

    def __enter__(self) -> Heartbeat:
        if self._beat():
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
