"""The table: PynamoDB models, keys, the sharded due index. The only module that knows them.

One table holds both kinds of item, side by side under the task's partition key so that a task
and its history are one Query:

========  ==================  =====================================================
item      pk                  sk
========  ==================  =====================================================
task      ``T#<task_id>``     ``TASK``
run       ``T#<task_id>``     ``RUN#<run_id>``; run_id = ``<scheduled ms, 13 digits>-<kind>``
========  ==================  =====================================================

The ``due-index`` GSI is sparse: only runs the poller must look at carry ``due_shard`` (hash)
and ``due_at`` (range, epoch ms). A pending run is keyed by its ``scheduled_for``; a claimed,
running or retrying run by its lease expiry, so a claim that was never followed through falls
due again by itself; a finished run removes both attributes and leaves the index. A running
attempt's liveness is ``alive_until``, outside the index keys, so that starting an attempt and
renewing it do not re-key the index (a delete and a put of its entry: one WRU more each).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from .aws import is_loopback, loopback_credentials
from .clock import from_ms
from .settings import Settings
from .transitions import HeadOp as HeadOp  # re-exported: a write on a task's pending head
from .transitions import Transitions
from .types import MisfirePolicy, RetryPolicy, Run, RunStatus, Task, TaskStatus

TASK_SK = "TASK"
_BATCH_GET_TRIES = 3  # UnprocessedKeys (throttling) before falling back to GetItem
RUN_PREFIX = "RUN#"
DUE_INDEX = "due-index"
LIMIT_SK = "LIMIT"


def limit_pk(name: str) -> str:
    return f"L#{name}"


def start_ms(row: RunRow) -> int:
    """When the run is planned to start: its trigger time plus its spread offset."""
    return int(row.scheduled_for) + int(row.offset_ms or 0)


def alive_until_ms(row: RunRow) -> int:
    """Until when a running attempt's worker holds it: its ``alive_until`` (rows started
    before that attribute existed kept it in ``due_at``)."""
    return int(row.alive_until or row.due_at or 0)


def alive(row: RunRow, now_ms: int) -> bool:
    """A running attempt whose worker still renews it."""
    return row.status == RunStatus.RUNNING.value and alive_until_ms(row) > now_ms


def task_pk(task_id: str) -> str:
    return f"T#{task_id}"


def run_sk(run_id: str) -> str:
    return f"{RUN_PREFIX}{run_id}"


def scheduled_run_id(scheduled_ms: int) -> str:
    """The id of a trigger occurrence: derived from its time, so it can only be created once."""
    return f"{scheduled_ms:013d}-s"


def manual_run_id(scheduled_ms: int, token: str) -> str:
    return f"{scheduled_ms:013d}-m{token}"


def shard_of(task_id: str, shards: int) -> int:
    # crc32 is stable across processes (hash() is salted per interpreter).
    return zlib.crc32(task_id.encode()) % shards


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class DueIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = DUE_INDEX
        projection = AllProjection()

    due_shard = NumberAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class _Row(Model):
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class TaskRow(_Row):
    """Storage row of a task (never leaves this module's callers in the package)."""

    task_id = UnicodeAttribute()
    task_type = UnicodeAttribute()
    payload = UnicodeAttribute()  # compact JSON, kept as text so it round-trips exactly
    trigger = UnicodeAttribute()
    retry = UnicodeAttribute()
    timeout = NumberAttribute()
    status = UnicodeAttribute()
    next_fire_at = NumberAttribute(null=True)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    version = NumberAttribute(default=1)
    misfire = UnicodeAttribute(default=MisfirePolicy.RUN_ONCE.value)
    lane = UnicodeAttribute(default="default")
    expire_after = NumberAttribute(null=True)
    spec_hash = UnicodeAttribute()
    shard = NumberAttribute()
    # JSON of a dynacron.targets target (no secret values: a secret is a reference); absent on
    # handler tasks and on rows written before targets existed.
    target = UnicodeAttribute(null=True)
    # Lanes, limits and spread (README): absent = none.
    spread_ms = NumberAttribute(null=True)
    limit = UnicodeAttribute(null=True)


class RunRow(_Row):
    """Storage row of a run."""

    task_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    task_type = UnicodeAttribute(null=True)
    scheduled_for = NumberAttribute()
    status = UnicodeAttribute()
    attempt = NumberAttribute(default=0)
    max_attempts = NumberAttribute(default=1)
    fence = UnicodeAttribute(null=True)
    starter = UnicodeAttribute(null=True)  # token of the worker that started the attempt
    dispatches = NumberAttribute(default=0)
    started_at = NumberAttribute(null=True)
    finished_at = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)
    result = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # TTL, epoch seconds
    manual = BooleanAttribute(default=False)
    lane = UnicodeAttribute(default="default")
    # How many times the run was redriven (absent = 0): the dead-letter record carries it, so a
    # redrive deletes only records of deaths it revived, never one of a later death.
    redrives = NumberAttribute(null=True)
    # One compact JSON record per ended attempt (dynacron.attempts), appended by the update
    # that records the attempt's outcome.
    attempts = ListAttribute(of=UnicodeAttribute, null=True)
    # Copied from the task so that the poller can chain occurrences without reading the task.
    trigger = UnicodeAttribute(null=True)
    misfire = UnicodeAttribute(null=True)
    due_shard = NumberAttribute(null=True)
    due_at = NumberAttribute(null=True)
    due_index = DueIndex()
    # Spread (spread.py): the task's window, copied for chaining, and this run's offset in it.
    spread_ms = NumberAttribute(null=True)
    offset_ms = NumberAttribute(null=True)
    # Rate limit (limits.py): the limit's name, and the start delay it imposed (set at start).
    limit = UnicodeAttribute(null=True)
    throttled_ms = NumberAttribute(null=True)
    slot_ms = NumberAttribute(null=True)  # a later slot the worker reserved (it came late)
    # A running attempt's liveness (epoch ms), renewed by its heartbeat. Not an index key: the
    # start and the renewals change it without moving the run in the due index, whose
    # ``due_at`` stays the claim's lease (the poller's backstop for a lost message).
    alive_until = NumberAttribute(null=True)


class LimitRow(_Row):
    """Storage row of a rate/concurrency limit (``limits.py``): pk ``L#<name>``, sk ``LIMIT``.

    ``tat_ms`` is the rate limiter's counter (GCRA's theoretical arrival time); ``leases`` maps
    a lease token to its expiry (epoch ms) for the concurrency limit.
    """

    name = UnicodeAttribute()
    rate = UnicodeAttribute(null=True)
    per_s = NumberAttribute(null=True)
    burst = NumberAttribute(default=1)
    concurrency = NumberAttribute(null=True)
    tat_ms = NumberAttribute(null=True)
    leases: MapAttribute[str, Any] = MapAttribute(null=True)  # "task/run/attempt" -> expiry ms
    version = NumberAttribute(default=0)


@dataclass(frozen=True)
class Models:
    """Model classes bound to one table/endpoint (PynamoDB keeps connection info on the class)."""

    Task: type[TaskRow]
    Run: type[RunRow]
    Limit: type[LimitRow] = LimitRow


def bind_models(settings: Settings) -> Models:
    table = settings.require_table()
    meta_attrs: dict[str, Any] = {
        "table_name": table,
        "region": settings.region,
        "host": settings.endpoint_url,
        "max_pool_connections": 32,
        "connect_timeout_seconds": settings.connect_timeout_s,
        "read_timeout_seconds": settings.read_timeout_s,
        "max_retry_attempts": settings.max_retries,
    }
    if settings.endpoint_url and is_loopback(settings.endpoint_url):
        meta_attrs.update(loopback_credentials())
    task_meta = type("Meta", (), dict(meta_attrs))
    run_meta = type("Meta", (), dict(meta_attrs))
    task_cls = type("TaskRow", (TaskRow,), {"Meta": task_meta, "__module__": __name__})
    run_cls = type("RunRow", (RunRow,), {"Meta": run_meta, "__module__": __name__})
    limit_meta = type("Meta", (), dict(meta_attrs))
    limit_cls = type("LimitRow", (LimitRow,), {"Meta": limit_meta, "__module__": __name__})
    return Models(Task=task_cls, Run=run_cls, Limit=limit_cls)


class Store(Transitions):
    """Reads of task, run and limit items here; every write is a named transition
    (``transitions.Transitions``, mixed in)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models = bind_models(settings)

    # --- connection-level helpers --------------------------------------------------------

    @property
    def client(self) -> Any:
        """The botocore DynamoDB client underneath (used to count requests in benchmarks)."""
        return self.models.Run._get_connection().connection.client

    # --- tasks ---------------------------------------------------------------------------

    def get_task_row(self, task_id: str, consistent: bool = True) -> TaskRow | None:
        try:
            return self.models.Task.get(task_pk(task_id), TASK_SK, consistent_read=consistent)
        except self.models.Task.DoesNotExist:
            return None

    def scan_tasks(self, now_ms: int) -> Iterator[TaskRow]:
        """Every task, settled (``settle``) at ``now_ms``, a page of heads read at a time."""
        page: list[TaskRow] = []
        for row in self.models.Task.scan(self.models.Task.sk == TASK_SK):
            page.append(row)
            if len(page) == _SETTLE_PAGE:
                yield from self.settle(page, now_ms)
                page = []
        yield from self.settle(page, now_ms)

    def settled_task_row(self, task_id: str, now_ms: int) -> TaskRow | None:
        """The task as callers see it at ``now_ms``: ``completed`` once its last run ended."""
        row = self.get_task_row(task_id)
        return None if row is None else self.settle([row], now_ms)[0]

    def settle(self, rows: list[TaskRow], now_ms: int) -> list[TaskRow]:
        """Mark ``completed`` (in memory) the active tasks whose last run has ended.

        The end of a chain is read, not written: the claim of a task's last occurrence leaves
        ``next_fire_at`` at it (every other claim moves it on, in the same write), so an active
        task whose ``next_fire_at`` run has ended has nothing left. That saves the worker a
        task write (1 WRU; 3 with a 2 KB payload) at the end of every one-time task, for one
        head read when a task that may be at its last occurrence is read. A trigger that still
        fires after both ``next_fire_at`` and now cannot be at its end: no read.
        """
        maybe = [r for r in rows if _may_have_ended(r, now_ms)]
        heads = self._heads(maybe)
        for row in maybe:
            head = heads.get(row.task_id)
            if head is not None and RunStatus(head.status).terminal:
                row.status, row.next_fire_at = TaskStatus.COMPLETED.value, None
        return rows

    def _heads(self, rows: list[TaskRow]) -> dict[str, RunRow]:
        keys = [(r.pk, run_sk(scheduled_run_id(int(r.next_fire_at or 0)))) for r in rows]
        if not keys:
            return {}
        return {h.task_id: h for h in self.models.Run.batch_get(keys, consistent_read=True)}

    # --- runs ----------------------------------------------------------------------------

    def get_run_row(self, task_id: str, run_id: str, consistent: bool = True) -> RunRow | None:
        try:
            return self.models.Run.get(task_pk(task_id), run_sk(run_id), consistent_read=consistent)
        except self.models.Run.DoesNotExist:
            return None

    def get_run_and_task(
        self, task_id: str, run_id: str
    ) -> tuple[RunRow | None, TaskRow | None]:
        """A run and its task in one strongly consistent BatchGetItem: the worker's one round
        trip before an attempt (two GetItems cost the same read units and twice the latency)."""
        pk, wanted = task_pk(task_id), [run_sk(run_id), TASK_SK]
        table = self.models.Run.Meta.table_name
        connection = self.models.Run._get_connection()
        found: dict[str, dict[str, Any]] = {}
        for _ in range(_BATCH_GET_TRIES):
            out = connection.batch_get_item(
                # PynamoDB annotates keys as str (hash-only tables); a hash+range key is a dict.
                [{"pk": pk, "sk": sk} for sk in wanted],  # type: ignore[misc]
                consistent_read=True,
            )
            for item in out.get("Responses", {}).get(table, []):
                found[item["sk"]["S"]] = item
            unprocessed = out.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            wanted = [key["sk"]["S"] for key in unprocessed]
            if not wanted:
                break
        else:  # throttled every time: one item at a time, as before
            return self.get_run_row(task_id, run_id), self.get_task_row(task_id)
        run, task = found.get(run_sk(run_id)), found.get(TASK_SK)
        return (
            None if run is None else self.models.Run.from_raw_data(run),
            None if task is None else self.models.Task.from_raw_data(task),
        )

    def query_runs(
        self, task_id: str, newest_first: bool = True, limit: int | None = None
    ) -> Iterator[RunRow]:
        return self.models.Run.query(
            task_pk(task_id),
            self.models.Run.sk.startswith(RUN_PREFIX),
            scan_index_forward=not newest_first,
            limit=limit,
        )

    def due_page(
        self, shard: int, horizon_ms: int, last_key: dict[str, Any] | None, page_size: int = 500
    ) -> tuple[list[RunRow], dict[str, Any] | None]:
        """One page of the due index for ``shard``: runs with ``due_at <= horizon_ms``."""
        result = self.models.Run.due_index.query(
            shard,
            self.models.Run.due_at <= horizon_ms,
            last_evaluated_key=last_key,
            page_size=page_size,
        )
        page = next(result.page_iter, None) or {}
        rows = [self.models.Run.from_raw_data(item) for item in page.get("Items", [])]
        return rows, result.page_iter.last_evaluated_key

    def next_due(self, shard: int, after_ms: int, until_ms: int) -> int | None:
        """The earliest ``due_at`` in ``(after_ms, until_ms]`` of one shard, or None (one
        Query returning at most one item: what ``dynacron.testing`` jumps its clock to)."""
        model = self.models.Run
        for row in model.due_index.query(
            shard, model.due_at.between(after_ms + 1, until_ms), limit=1
        ):
            return int(row.due_at)
        return None

    def scan_runs_page(
        self, since_ms: int, until_ms: int, last_key: dict[str, Any] | None, page_size: int
    ) -> tuple[list[RunRow], dict[str, Any] | None, int]:
        """One Scan page of runs scheduled in ``[since_ms, until_ms]``: (rows, next key, items
        the page read). A Scan is billed for every item it reads, filtered out or not."""
        model = self.models.Run
        result = model.scan(
            model.sk.startswith(RUN_PREFIX) & model.scheduled_for.between(since_ms, until_ms),
            last_evaluated_key=last_key,
            page_size=page_size,
        )
        page = next(result.page_iter, None) or {}
        rows = [model.from_raw_data(item) for item in page.get("Items", [])]
        return rows, result.page_iter.last_evaluated_key, int(page.get("ScannedCount", 0))

    def scan_runs_since(
        self, since_ms: int, status: str | None, last_key: dict[str, Any] | None, page_size: int
    ) -> tuple[list[RunRow], dict[str, Any] | None, int]:
        """One Scan page of runs scheduled or finished at/after ``since_ms`` (of ``status``):
        (rows, next key, items the page read; every one is billed, filtered out or not)."""
        model = self.models.Run
        recent = (model.scheduled_for >= since_ms) | (model.finished_at >= since_ms)
        condition = model.sk.startswith(RUN_PREFIX) & recent
        if status is not None:
            condition &= model.status == status
        result = model.scan(condition, last_evaluated_key=last_key, page_size=page_size)
        page = next(result.page_iter, None) or {}
        rows = [model.from_raw_data(item) for item in page.get("Items", [])]
        return rows, result.page_iter.last_evaluated_key, int(page.get("ScannedCount", 0))

    def due_page_between(
        self,
        shard: int,
        after_ms: int,
        horizon_ms: int,
        last_key: dict[str, Any] | None,
        page_size: int = 500,
        lane: str | None = None,
    ) -> tuple[list[RunRow], dict[str, Any] | None]:
        """One page of ``shard``'s due index with ``after_ms < due_at <= horizon_ms`` (only
        ``lane``'s rows when given: a filter, so only those are returned and decoded)."""
        run = self.models.Run
        result = run.due_index.query(
            shard,
            run.due_at.between(after_ms + 1, horizon_ms),
            filter_condition=None if lane is None else run.lane == lane,
            last_evaluated_key=last_key,
            page_size=page_size,
        )
        page = next(result.page_iter, None) or {}
        rows = [run.from_raw_data(item) for item in page.get("Items", [])]
        return rows, result.page_iter.last_evaluated_key

    def pending_ahead(self, shard: int, after_ms: int, horizon_ms: int, limit: int) -> int:
        """How many of the first ``limit`` index rows of ``shard`` in (after, horizon] are
        ``pending``: one Query page, so it never reads more than ``limit`` items."""
        from .types import RunStatus

        run = self.models.Run
        result = run.due_index.query(
            shard,
            run.due_at.between(after_ms + 1, horizon_ms),
            filter_condition=run.status == RunStatus.PENDING.value,
            attributes_to_get=["due_at"],
            page_size=max(1, limit),
        )
        page = next(result.page_iter, None) or {}
        return int(page.get("Count", 0))

    def pending_run(
        self,
        source: TaskRow | RunRow,
        run_id: str,
        when_ms: int,
        max_attempts: int,
        shard: int,
        manual: bool = False,
    ) -> RunRow:
        """A new ``pending`` run in the due index, copying what the poller needs from ``source``
        (the task, or the previous occurrence): type, lane, and for a scheduled occurrence the
        trigger and misfire policy it chains with."""
        from .spread import offset_ms
        from .types import RunStatus

        spread_ms = getattr(source, "spread_ms", None)
        # A manual run (trigger_now, redrive) runs now: spread is for the trigger's occurrences.
        offset = 0 if manual else offset_ms(source.task_id, run_id, spread_ms)
        return self.models.Run(
            pk=source.pk,
            sk=run_sk(run_id),
            task_id=source.task_id,
            run_id=run_id,
            task_type=source.task_type,
            scheduled_for=when_ms,
            status=RunStatus.PENDING.value,
            attempt=0,
            max_attempts=max_attempts,
            dispatches=0,
            manual=manual,
            lane=source.lane,
            trigger=None if manual else source.trigger,
            misfire=None if manual else source.misfire,
            due_shard=shard,
            due_at=when_ms + offset,
            spread_ms=spread_ms,
            offset_ms=offset or None,
            limit=getattr(source, "limit", None),
        )

    def new_task_row(self, **values: Any) -> TaskRow:
        return self.models.Task(**values)


_SETTLE_PAGE = 100  # BatchGetItem's limit


def _may_have_ended(row: TaskRow, now_ms: int) -> bool:
    """Whether an active task may be past its last run: only a trigger with no occurrence
    after both its ``next_fire_at`` and now can be (a claim made before now that found an
    occurrence after its own time moved ``next_fire_at`` to it)."""
    if row.status != TaskStatus.ACTIVE.value or row.next_fire_at is None:
        return False
    from .triggers import trigger_from_dict

    try:
        trigger = trigger_from_dict(json.loads(row.trigger))
        after = from_ms(max(int(row.next_fire_at), now_ms))
        return after is None or trigger.next(after) is None
    except (TypeError, ValueError):  # a trigger this version cannot read: look at the head
        return True


# --- conversion to the public frozen values ---------------------------------------------------


def task_from_row(row: TaskRow) -> Task:
    from .triggers import trigger_from_dict

    return Task(
        task_id=row.task_id,
        task_type=row.task_type,
        payload=json.loads(row.payload),
        trigger=trigger_from_dict(json.loads(row.trigger)),
        retry=RetryPolicy.from_dict(json.loads(row.retry)),
        timeout=float(row.timeout),
        status=TaskStatus(row.status),
        next_fire_at=from_ms(row.next_fire_at),
        created_at=from_ms(row.created_at),
        updated_at=from_ms(row.updated_at),
        version=int(row.version),
        misfire=MisfirePolicy(row.misfire),
        lane=row.lane,
        expire_after=None if row.expire_after is None else float(row.expire_after),
        target=_target_of(row),
        spread=None if row.spread_ms is None else float(row.spread_ms) / 1000.0,
        limit=row.limit,
    )


def _target_of(row: TaskRow) -> Any:
    if not row.target:
        return None
    from .targets import target_from_dict

    return target_from_dict(json.loads(row.target))


def run_from_row(row: RunRow) -> Run:
    from datetime import UTC, datetime

    result = None
    if row.result is not None:
        try:
            result = json.loads(row.result)
        except ValueError:
            result = row.result  # truncated results are kept as text
    return Run(
        task_id=row.task_id,
        run_id=row.run_id,
        scheduled_for=from_ms(row.scheduled_for),
        status=RunStatus(row.status),
        attempt=int(row.attempt or 0),
        fence=row.fence,
        started_at=from_ms(row.started_at),
        finished_at=from_ms(row.finished_at),
        error=row.error,
        result=result,
        expires_at=None
        if row.expires_at is None
        else datetime.fromtimestamp(int(row.expires_at), UTC),
        manual=bool(row.manual),
        lane=row.lane,
        max_attempts=int(row.max_attempts or 1),
        dispatches=int(row.dispatches or 0),
        offset_ms=int(row.offset_ms or 0),
        limit=row.limit,
        throttled_ms=int(row.throttled_ms or 0),
        redrives=int(row.redrives or 0),
        attempts=_attempts_of(row),
    )


def _attempts_of(row: RunRow) -> Any:
    from .attempts import parse

    return parse(row.attempts)
