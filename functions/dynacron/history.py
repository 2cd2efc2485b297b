"""Runs across tasks: ``Scheduler.find_runs`` (``dynacron runs --status dead --since 1h``).

There is no index by status or time across tasks (one would cost a write on every
transition), so this is a Scan of the table, filtered on the server: each page reads up to
1000 items and *every item read is billed* (0.5 read units per 4 KB, eventually consistent),
whether the filter keeps it or not. The scan stops after ``max_items`` items read (default
20,000, as ``stats``) and says ``complete=False``. Meant for operators, not for hot paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .clock import to_ms
from .store import run_from_row
from .types import Run

DEFAULT_MAX_ITEMS = 20_000


@dataclass(frozen=True)
class FoundRuns:
    """Runs scheduled or finished since ``since``, newest first; ``complete`` is False if the
    scan stopped at its ``max_items`` budget (``items_read`` items were read and billed)."""

    runs: list[Run]
    complete: bool
    items_read: int
    since: datetime


def find(store: Any, since: datetime, status: str | None, max_items: int) -> FoundRuns:
    rows: list[Any] = []
    read, last_key = 0, None
    while True:
        page, last_key, scanned = store.scan_runs_since(
            to_ms(since), status, last_key, min(1000, max(1, max_items - read))
        )
        read += scanned
        rows.extend(page)
        if not last_key or read >= max_items:
            break
    runs = sorted((run_from_row(r) for r in rows), key=_newest, reverse=True)
    return FoundRuns(runs, complete=not last_key, items_read=read, since=since)


def _newest(run: Run) -> tuple[datetime, str]:
    return (run.finished_at or run.scheduled_for, run.run_id)
