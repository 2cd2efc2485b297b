"""``Scheduler.stats()``: a deployment at a glance, read at a bounded cost.

What is read, and what it costs:

* **runs in the window** (by status, retries, dead, lateness): one paged Scan of the table with
  a filter on ``scheduled_for`` in ``[since, now]``. A Scan pays for every item it reads, not
  only those it returns, so it stops after ``max_items`` items (default 20,000: about 1,500
  read units eventually consistent at ~600 bytes an item) and the result says so
  (``complete=False``; figures are then from a sample of the table, in its key order).
* **overdue runs**: one Query per due-index shard for entries due more than ``OVERDUE_S`` ago
  (pending runs the poller has not claimed, leases nobody followed through); it reads only
  those entries, at most ``max_items`` in all.
* **queue depths**: one GetQueueAttributes for the work queue (and each lane's) and one for
  the DLQ; SQS reports them as approximate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .clock import to_ms
from .store import RunRow, Store, run_from_row
from .types import Run, RunStatus

#: A run not started this long after its time counts as overdue.
OVERDUE_S = 10.0
#: Items a Scan may read before ``stats()`` stops and reports ``complete=False``.
DEFAULT_MAX_ITEMS = 20_000
_NOT_STARTED = (RunStatus.PENDING.value, RunStatus.QUEUED.value)


@dataclass(frozen=True)
class Stats:
    """What ``Scheduler.stats(since=...)`` found; times are aware UTC datetimes.

    ``runs`` counts runs *scheduled* in ``[since, until]`` by status (every status present,
    zeros included). Lateness is of first attempts (``started_at - scheduled_for`` of runs whose
    only attempt so far is the first: a retried run keeps only its latest start). ``retries``
    is the attempts beyond the first of those runs. ``oldest_overdue`` is the not-yet-started
    run whose time is furthest past (more than ``OVERDUE_S``), anywhere in the table.
    """

    since: datetime
    until: datetime
    runs: dict[str, int]
    lateness_p50: timedelta | None
    lateness_p99: timedelta | None
    lateness_max: timedelta | None
    lateness_samples: int
    retries: int
    dead: int
    dlq_depth: int | None
    queue_depth: int | None
    oldest_overdue: Run | None
    scanned_items: int
    complete: bool
    requests: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(self.runs.values())


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(min(rank, len(ordered))) - 1]


def _td(ms: float | None) -> timedelta | None:
    return None if ms is None else timedelta(milliseconds=ms)


@dataclass
class _Reader:
    """Reads the table, the due index and the queues for one ``stats()`` call."""

    store: Store
    sqs: Any
    settings: Any
    max_items: int
    requests: int = 0
    scanned: int = 0

    def runs_between(self, since_ms: int, until_ms: int) -> tuple[list[RunRow], bool]:
        rows: list[RunRow] = []
        last_key = None
        while True:
            page, last_key, scanned = self.store.scan_runs_page(
                since_ms, until_ms, last_key, min(1000, max(1, self.max_items - self.scanned))
            )
            self.requests += 1
            self.scanned += scanned
            rows.extend(page)
            if not last_key:
                return rows, True
            if self.scanned >= self.max_items:
                return rows, False

    def overdue(self, before_ms: int) -> list[RunRow]:
        found: list[RunRow] = []
        for shard in range(self.settings.shards):
            last_key = None
            while len(found) < self.max_items:
                page, last_key = self.store.due_page(shard, before_ms, last_key, page_size=500)
                self.requests += 1
                found.extend(page)
                if not last_key:
                    break
        return found

    def depth(self, urls: Iterable[str | None], names: list[str]) -> int | None:
        total = 0
        wanted = [u for u in dict.fromkeys(urls) if u]
        if not wanted:
            return None
        for url in wanted:
            try:
                attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
            except Exception:  # a figure only: stats still answer without it
                return None
            self.requests += 1
            total += sum(int(v) for v in attrs.get("Attributes", {}).values())
        return total


def collect(
    store: Store, sqs: Any, settings: Any, now: datetime, since: datetime, max_items: int
) -> Stats:
    """Read and fold; see the module docstring for the cost."""
    reader = _Reader(store, sqs, settings, max_items)
    rows, complete = reader.runs_between(to_ms(since), to_ms(now))
    runs = [run_from_row(r) for r in rows]
    counts = Counter({s.value: 0 for s in RunStatus})
    counts.update(r.status.value for r in runs)
    first = [
        r.lateness.total_seconds() * 1000 for r in runs if r.attempt == 1 and r.lateness is not None
    ]
    cutoff = to_ms(now) - int(OVERDUE_S * 1000)
    candidates = [r for r in rows if r.status in _NOT_STARTED and r.scheduled_for <= cutoff]
    candidates += [r for r in reader.overdue(cutoff) if r.status in _NOT_STARTED]
    oldest = min(candidates, key=lambda r: (r.scheduled_for, r.task_id), default=None)
    work = list(settings.all_queues)
    queue_depth = reader.depth(
        work,
        [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )
    dlq_depth = reader.depth(
        [settings.dlq_url], ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    notes = () if complete else (f"sampled: the scan stopped after {reader.scanned} items",)
    return Stats(
        since=since,
        until=now,
        runs=dict(counts),
        lateness_p50=_td(_percentile(first, 50)),
        lateness_p99=_td(_percentile(first, 99)),
        lateness_max=_td(max(first) if first else None),
        lateness_samples=len(first),
        retries=sum(max(0, r.attempt - 1) for r in runs),
        dead=counts[RunStatus.DEAD.value],
        dlq_depth=dlq_depth,
        queue_depth=queue_depth,
        oldest_overdue=None if oldest is None else run_from_row(oldest),
        scanned_items=reader.scanned,
        complete=complete,
        requests=reader.requests,
        notes=notes,
    )
