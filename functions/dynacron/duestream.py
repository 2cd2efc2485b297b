"""The poller's read side: per-shard page streams of the due index, merged earliest-due first.

Memory is bounded by pages, not by the window: each shard holds the page it is being read from
and, when a prefetch pool is given, the one page fetched ahead of it; the merge holds one row per
shard; the lane reorder buffer holds at most ``reorder_rows`` rows. So a poll holds at most
``shards * (1 + prefetch) * page_size + reorder_rows`` rows it has read but not yet handed to a
claim, whatever the window holds (the claim side adds the chunks in flight).

Order (what the poller claims first):

1. earliest ``due_at`` first, across every shard (a k-way merge: each shard's Query is already
   sorted by ``due_at``), so a run due sooner is never stuck behind a burst due later;
2. among rows due in the same second, lane ``critical`` before ``default`` before ``bulk`` (an
   unknown lane counts as ``default``), so that when the time budget runs out it is the bulk
   runs that wait for the next tick. This is exact within the reorder buffer; a second holding
   more rows than the buffer is ordered by lane within each buffer-full.

   ``group_ms`` widens "the same second"; 0 orders by lane across the whole buffer. The local
   runtime (``dynacron local``) does that, with a buffer holding its window, so that when the
   poller falls behind a bulk herd a critical run is claimed (and sent, with its delay) ahead of
   every bulk run of the window instead of after the bulk runs due before it (issue 13: bulk
   saturation must not make critical runs late). A bulk run then waits at most for the claims of
   the window's critical runs, which are meant to be few.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .store import RunRow

LANE_RANK = {"critical": 0, "default": 1, "bulk": 2}
_DEFAULT_RANK = LANE_RANK["default"]

PageFetch = Callable[[int, dict[str, Any] | None], tuple[list[RunRow], dict[str, Any] | None]]


def lane_rank(lane: str | None) -> int:
    """0 for ``critical``, 1 for ``default`` (and any other lane), 2 for ``bulk``."""
    return LANE_RANK.get(lane or "default", _DEFAULT_RANK)


def shard_rows(
    shard: int,
    fetch: PageFetch,
    on_page: Callable[[int], None],
    pool: ThreadPoolExecutor | None = None,
) -> Iterator[RunRow]:
    """The rows of one shard, page by page, following ``LastEvaluatedKey`` to the end.

    With ``pool`` the first page is requested at once (so every shard's first page is in flight
    together) and each next page while the current one is consumed: at most two pages alive.
    """

    def request(key: dict[str, Any] | None) -> Future[Any] | tuple[Any, ...]:
        return pool.submit(fetch, shard, key) if pool is not None else (shard, key)

    def result(pending: Any) -> tuple[list[RunRow], dict[str, Any] | None]:
        return pending.result() if isinstance(pending, Future) else fetch(*pending)

    pending: Any = request(None)

    def rows() -> Iterator[RunRow]:
        nonlocal pending
        while pending is not None:
            page, last_key = result(pending)
            on_page(len(page))
            # a missed page is a lost run: follow LastEvaluatedKey to the end
            pending = request(last_key) if last_key else None
            queue = deque(page)  # popleft releases each row as it is consumed
            del page
            while queue:
                yield queue.popleft()

    return rows()


def merged(streams: list[Iterator[RunRow]]) -> Iterator[RunRow]:
    """Earliest ``due_at`` first across ``streams`` (each already sorted by ``due_at``)."""
    return heapq.merge(*streams, key=lambda r: r.due_at or 0)


def by_lane(
    rows: Iterator[RunRow], reorder_rows: int, group_ms: int = 1000
) -> Iterator[RunRow]:
    """Within each due second (each ``group_ms``, or the whole buffer when 0; bounded by
    ``reorder_rows``), critical → default → bulk."""
    buffer: list[RunRow] = []
    second: int | None = None
    for row in rows:
        sec = int(row.due_at or 0) // group_ms if group_ms > 0 else 0
        if buffer and (sec != second or len(buffer) >= reorder_rows):
            yield from _drain(buffer)
        second = sec
        buffer.append(row)
    yield from _drain(buffer)


def _drain(buffer: list[RunRow]) -> Iterator[RunRow]:
    # a stable sort, reversed so that pop() from the end yields critical first and, within a
    # lane, the merge's due order (each row is released as it is handed on)
    buffer.sort(key=lambda r: lane_rank(r.lane))
    buffer.reverse()
    while buffer:
        yield buffer.pop()
