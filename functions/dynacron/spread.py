"""Spread: each occurrence of a task starts at a deterministic offset inside a window.

Like EventBridge Scheduler's flexible time window, ``schedule(..., spread=timedelta(minutes=5))``
spreads a herd of tasks that fire at the same instant (every ``0 * * * *`` cron at once) over
five minutes. The offset of a run is a hash of its task id and run id, so it is the same on
every poller, every retry and every preview (``dynacron next --spread``), and different from
one occurrence and one task to the next.

The run keeps its ``scheduled_for`` (the trigger's time); its ``offset_ms`` moves the instant
it is due in the index and the instant it starts. Lateness is measured from that planned start.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from .errors import ValidationError
from .types import to_seconds

#: The widest window: SQS's DelaySeconds limit (a run is never held longer than one delay).
MAX_SPREAD_SECONDS = 900.0


def check_spread(value: float | int | timedelta | None) -> int | None:
    """``spread`` as whole milliseconds, or None; ``ValidationError`` outside (0, 900 s]."""
    if value is None:
        return None
    seconds = to_seconds(value, "spread")
    if not 0 < seconds <= MAX_SPREAD_SECONDS:
        raise ValidationError(
            "spread",
            f"must be > 0 and ≤ {MAX_SPREAD_SECONDS:g} s (the SQS DelaySeconds limit), "
            f"got {seconds:g}",
        )
    return round(seconds * 1000)


def offset_ms(task_id: str, run_id: str, spread_ms: int | None) -> int:
    """The run's offset in ``[0, spread_ms]`` ms: a hash of the ids, so every reader agrees."""
    if not spread_ms:
        return 0
    digest = hashlib.sha256(f"{task_id}/{run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (int(spread_ms) + 1)
