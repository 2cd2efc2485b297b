"""The streaming poll (dispatch.py + duestream.py): bounded memory, earliest due first, lanes.

The memory tests use a fake store that makes due rows on demand, page by page, and counts the
rows alive at any moment (a row is alive from its construction until the last reference to it
is dropped), so they prove the bound without a table of 300,000 items.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from dynacron import At, Scheduler, handler
from dynacron.clock import FrozenClock, to_ms
from dynacron.dispatch import Dispatcher
from dynacron.duestream import by_lane, lane_rank
from dynacron.settings import Settings
from dynacron.store import bind_models, shard_of
from dynacron.transitions import Transitions


@handler("noop")
def _noop(payload, ctx):
    return None


class LiveRows:
    """Counts rows alive now and the most ever alive at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.made = 0
        self.lock = threading.Lock()

    def born(self) -> None:
        with self.lock:
            self.now += 1
            self.made += 1
            self.peak = max(self.peak, self.now)

    def died(self) -> None:
        with self.lock:
            self.now -= 1


class FakeStore(Transitions):
    """``rows_per_shard`` pending manual runs per shard, due within the next ``spread_s``,
    made only when their page is asked for; a claim is accepted without any I/O (the storage
    layer's transitions run on the rows' own ``update``, overridden below)."""

    def __init__(self, settings: Settings, clock: FrozenClock, rows_per_shard: int, spread_s: int):
        self.settings = settings
        self.models = bind_models(settings)
        self.client = object()
        self.live = LiveRows()
        self.claims = 0
        self._lock = threading.Lock()
        self._t0 = to_ms(clock.now())
        self._per_shard = rows_per_shard
        self._spread_ms = spread_s * 1000
        live, store = self.live, self

        class CountedRun(self.models.Run):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                live.born()

            def __del__(self) -> None:
                live.died()

            def update(self, actions: Any = None, condition: Any = None, **_kw: Any) -> None:
                with store._lock:
                    store.claims += 1

        self._row_cls = CountedRun

    def _row(self, shard: int, i: int) -> Any:
        due = self._t0 + (i * self._spread_ms) // self._per_shard
        return self._row_cls(
            f"T#s{shard}-{i}", f"R#{i}", task_id=f"s{shard}-{i}", run_id=f"r{i}",
            scheduled_for=due, status="pending", manual=True, due_shard=shard, due_at=due,
        )

    def due_page(self, shard: int, horizon_ms: int, last_key: Any, page_size: int = 500) -> Any:
        start = 0 if last_key is None else last_key["i"]
        stop = min(start + page_size, self._per_shard)
        rows = [r for i in range(start, stop) if (r := self._row(shard, i)).due_at <= horizon_ms]
        more = stop < self._per_shard and len(rows) == stop - start
        return rows, ({"i": stop} if more else None)


    def pending_ahead(self, shard: int, after_ms: int, horizon_ms: int, limit: int) -> int:
        return 0  # every row lies inside the window: nothing beyond it for the look-ahead


class CountingSQS:
    def __init__(self) -> None:
        self.sent = 0
        self.last_due: list[int] = []
        self.lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        with self.lock:
            self.sent += len(Entries)
            due = (json.loads(e["MessageBody"])["scheduled_for"] for e in Entries)
            self.last_due.append(max(due))
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def _fake(shards: int, rows: int, concurrency: int, page_size: int) -> tuple[Any, Any, Any]:
    clock = FrozenClock()
    settings = Settings(table_name="fake", queue_url="https://q.example/q", shards=shards)
    store = FakeStore(settings, clock, rows // shards, spread_s=80)
    sqs = CountingSQS()
    d = Dispatcher(store, sqs, settings, clock=clock, concurrency=concurrency, page_size=page_size)
    return d, store, sqs


def test_poll_over_300k_due_rows_holds_a_few_pages_not_the_window():
    d, store, sqs = _fake(shards=4, rows=300_000, concurrency=1, page_size=250)
    report = d.poll()
    assert store.live.made == 300_000 and report.found == 300_000
    assert (report.claimed, report.sent, report.left) == (300_000, 300_000, 0)
    assert sqs.sent == 300_000
    # one page per shard being read + the lane reorder buffer (one page) + one batch
    assert store.live.peak <= 6 * 250, store.live.peak


def test_with_threads_the_bound_is_still_pages_in_flight():
    d, store, _sqs = _fake(shards=4, rows=40_000, concurrency=4, page_size=200)
    report = d.poll()
    assert report.sent == 40_000 == store.claims
    # two pages per shard (one read ahead) + reorder buffer + 2 x 4 batches of 10 in flight
    assert store.live.peak <= 4 * 2 * 200 + 200 + 80, store.live.peak


def test_time_budget_stops_between_batches_and_reports_what_it_read():
    d, _store, sqs = _fake(shards=2, rows=100_000, concurrency=1, page_size=100)
    budget = iter([60.0] * 30)  # 30 checks with time to spare, then none left
    report = d.poll(time_left=lambda: next(budget, 0.0))
    assert report.sent == 300 and report.stopped == 1
    assert report.left == report.found - 300 and report.found < 1_000  # it stopped reading too
    assert sqs.last_due == sorted(sqs.last_due)  # and what it sent was the earliest due


def _quiet(env: Any) -> Scheduler:
    return Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs)


def _ids_on_shard(shard: int, shards: int, prefix: str, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        if shard_of(f"{prefix}{i}", shards) == shard:
            out.append(f"{prefix}{i}")
        i += 1
    return out


def test_run_due_sooner_on_another_shard_is_not_stuck_behind_a_burst_due_later(env):
    s = _quiet(env)
    burst_at = env.clock.now() + timedelta(seconds=30)
    for task_id in _ids_on_shard(0, env.settings.shards, "burst", 40):
        s.schedule("noop", {}, trigger=At(burst_at), task_id=task_id)
    (early,) = _ids_on_shard(1, env.settings.shards, "early", 1)
    s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=40)), task_id="late")
    s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=10)), task_id=early)
    budget = iter([60.0])  # time for one batch of 10 only
    report = env.dispatcher(page_size=4).poll(time_left=lambda: next(budget, 0.0))
    sent = [json.loads(e["MessageBody"])["task_id"] for e in env.sqs.sent]
    assert report.sent == 10 and sent[0] == early
    assert "late" not in sent and sum(t.startswith("burst") for t in sent) == 9


def test_within_a_second_critical_goes_before_default_before_bulk(env):
    q = env.settings.queue_url
    env.settings = replace(env.settings, lane_queues={"critical": q, "bulk": q})
    s = _quiet(env)
    at = At(env.clock.now() + timedelta(seconds=20))
    for i in range(12):
        lane = ("bulk", "default", "critical")[i % 3]
        s.schedule("noop", {}, trigger=at, task_id=f"{lane}-{i}", lane=lane)
    budget = iter([60.0])
    env.dispatcher().poll(time_left=lambda: next(budget, 0.0))
    lanes = [json.loads(e["MessageBody"])["lane"] for e in env.sqs.sent]
    assert lanes == ["critical"] * 4 + ["default"] * 4 + ["bulk"] * 2


class _Row:
    def __init__(self, due_at: int, lane: str) -> None:
        self.due_at, self.lane = due_at, lane


@pytest.mark.parametrize("reorder", [1, 3, 100])
def test_lane_order_never_moves_a_row_ahead_of_an_earlier_second(reorder):
    rows = [_Row(1000 * (k // 5) + k, ("bulk", "x", "critical")[k % 3]) for k in range(40)]
    out = list(by_lane(iter(rows), reorder))
    assert sorted(id(r) for r in out) == sorted(id(r) for r in rows)
    seconds = [r.due_at // 1000 for r in out]
    assert seconds == sorted(seconds)
    if reorder >= 5:  # each second fits the buffer: exact lane order inside it
        for sec in set(seconds):
            ranks = [lane_rank(r.lane) for r in out if r.due_at // 1000 == sec]
            assert ranks == sorted(ranks)


def test_group_zero_orders_by_lane_across_the_whole_buffer():
    """``dynacron local``'s order (issue 13): a critical run due seconds after a bulk herd is
    handed on before the herd, within a buffer-full; within a lane the due order stays."""
    rows = [_Row(1000 * k, "bulk") for k in range(8)] + [_Row(7500, "critical"), _Row(9000, "x")]
    out = list(by_lane(iter(rows), 100, group_ms=0))
    assert [r.lane for r in out] == ["critical", "x"] + ["bulk"] * 8
    assert [r.due_at for r in out[2:]] == [1000 * k for k in range(8)]
    # the buffer still bounds it: with 4 rows a buffer, the critical row waits its turn
    small = list(by_lane(iter(rows), 4, group_ms=0))
    assert small.index(rows[8]) == 8


def test_a_lane_look_ahead_claims_that_lane_early_and_leaves_the_others(env):
    """``lane_lookahead_s={"critical": 30}`` with a 5 s window: a critical run due in 20 s is
    claimed and sent now (with its delay); a bulk run due then stays pending for later polls."""
    q = env.settings.queue_url
    env.settings = replace(env.settings, window_s=5, lane_queues={"critical": q, "bulk": q})
    s = _quiet(env)
    for lane, after in (("critical", 20), ("bulk", 20), ("bulk", 3), ("critical", 40)):
        at = At(env.clock.now() + timedelta(seconds=after))
        s.schedule("noop", {}, trigger=at, task_id=f"{lane}-{after}", lane=lane)
    report = env.dispatcher(lane_lookahead_s={"critical": 30}).poll()
    sent = {json.loads(e["MessageBody"])["task_id"]: e["DelaySeconds"] for e in env.sqs.sent}
    assert sent == {"critical-20": 19, "bulk-3": 2}
    assert report.found == 2 and report.left == 0  # the rows read past the window are not owed
    assert s.runs("bulk-20")[0].status == s.runs("critical-40")[0].status == "pending"
    env.clock.advance(17)  # bulk-20 is inside the window now, critical-40 inside its 30 s
    env.sqs.sent.clear()
    env.dispatcher(lane_lookahead_s={"critical": 30}).poll()
    sent = {json.loads(e["MessageBody"])["task_id"]: e["DelaySeconds"] for e in env.sqs.sent}
    assert sent == {"bulk-20": 2, "critical-40": 22}
