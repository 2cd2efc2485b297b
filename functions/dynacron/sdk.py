"""The Python SDK: ``Scheduler``.

Every write validates first (``ValidationError`` before anything is stored), then writes in one
transaction. A task due sooner than the poller's next tick is dispatched by the SDK itself through
the same claim-and-send code the poller uses (``dispatch.Dispatcher``).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .boundary import guarded, is_backend, translate
from .clock import Clock, SystemClock, from_ms, to_ms
from .dispatch import Dispatcher, EventHook
from .edits import TaskEdits, cancelled_message
from .errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    DynacronError,
    InvalidStateError,
    RunNotFound,
    TaskNotFound,
    ValidationError,
    WaitTimeout,
)
from .registry import check_name
from .settings import Settings
from .store import (
    TASK_SK,
    HeadOp,
    RunRow,
    Store,
    TaskRow,
    dumps,
    manual_run_id,
    run_from_row,
    scheduled_run_id,
    shard_of,
    task_from_row,
    task_pk,
)
from .targets import Target
from .triggers import At, Trigger

if TYPE_CHECKING:
    from .deadletters import DeadLetter, RedriveResult
    from .history import FoundRuns
    from .stats import Stats
from .types import (
    MAX_ID_LENGTH,
    MAX_PAYLOAD_BYTES,
    MisfirePolicy,
    RetryPolicy,
    Run,
    RunStatus,
    Task,
    TaskStatus,
    to_seconds,
)

#: An ``At`` up to this far in the past is accepted and runs at once; older is refused.
PAST_GRACE_SECONDS = 60.0
_OPTIMISTIC_RETRIES = 5
#: DLQ messages a redrive looks through for the run's records.
REDRIVE_SCAN = 1000
#: ``wait()`` without a run id looks at this many of the task's newest runs per poll.
WAIT_WINDOW = 25


@dataclass
class _Plan:
    """The run-side writes of a pause/resume/cancel, and (resume) the task's next fire."""

    run_ops: list[HeadOp] = field(default_factory=list)
    next_fire_ms: int | None = None


@guarded
class Scheduler(TaskEdits):
    """Create and manage tasks.

    Everything a method raises derives from ``DynacronError`` (``dynacron.boundary`` turns
    PynamoDB and botocore errors into ours); an unreachable endpoint is ``EndpointUnreachable``
    after a few seconds (``Settings.connect_timeout_s``, ``read_timeout_s``, ``sdk_max_retries``).

    >>> s = Scheduler()  # DYNACRON_TABLE, DYNACRON_QUEUE_URL, AWS_ENDPOINT_URL from the env
    >>> t = s.schedule("send-email", {"to": "a@b.c"}, trigger=Cron("30 9 * * MON-FRI",
    ...                tz="Europe/Berlin"), retry=RetryPolicy(max_attempts=5), timeout=30)
    >>> s.runs(t.task_id)  # newest first
    """

    def __init__(
        self,
        table_name: str | None = None,
        queue_url: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        sqs: Any = None,
        on_event: EventHook | None = None,
    ) -> None:
        """``on_event(kind, info)`` is told of each short-notice dispatch this scheduler makes
        (``schedule``/``trigger_now`` of a run due within the poller's window): the
        ``Dispatcher``'s events, e.g. ``("claimed", {"task_id": ..., "run_id": ...})``, then
        ``"sent"``."""
        self.on_event = on_event
        settings = settings or Settings.from_env(
            table_name=table_name, queue_url=queue_url, endpoint_url=endpoint_url, region=region
        )
        self.settings = settings.for_sdk()
        self.settings.require_table()
        self.clock = clock or SystemClock()
        self.store = Store(self.settings)
        self._sqs = sqs
        self._queues_checked: set[str] = set()

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            from .aws import sqs_client

            self._sqs = sqs_client(self.settings)
        return self._sqs

    def _check_queue(self, lane: str = "default") -> None:
        """Once per queue and Scheduler, before the SDK first sends to it: the queue exists.

        A wrong ``DYNACRON_QUEUE_URL`` is a ``ConfigurationError`` here, instead of a send that
        fails quietly and a run that waits for its lease (300 s) to expire. One
        GetQueueAttributes per Scheduler, never per fire; an AccessDenied on it is not taken as
        a wrong URL (a role may send without being allowed to read attributes).
        """
        lanes = self.settings.lane_queues
        for url in (lanes[lane],) if lane in lanes else self.settings.work_queues:
            if url not in self._queues_checked:
                self._check_one_queue(url)

    def _check_one_queue(self, url: str) -> None:
        try:
            self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except Exception as exc:
            if not is_backend(exc):
                raise
            err = translate(exc)
            if isinstance(err, ConfigurationError):
                var = (
                    "DYNACRON_QUEUE_URL"
                    if url == self.settings.queue_url
                    else "DYNACRON_WORK_QUEUE_URLS"
                    if url in self.settings.work_queues
                    else "DYNACRON_LANE_QUEUES"
                )
                raise ConfigurationError(f"{var} has {url!r}: no such queue ({err})") from exc
            if not (isinstance(err, BackendError) and "AccessDenied" in err.code):
                raise err from exc
        self._queues_checked.add(url)

    def _dispatcher(self) -> Dispatcher:
        return Dispatcher(
            self.store, self.sqs, self.settings, clock=self.clock, on_event=self.on_event
        )

    # --- create ------------------------------------------------------------------------------

    def schedule(
        self,
        task_type: str | Target,
        payload: dict[str, Any] | None = None,
        trigger: Trigger | None = None,
        task_id: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta = 60,
        *,
        misfire: MisfirePolicy | str = MisfirePolicy.RUN_ONCE,
        lane: str = "default",
        expire_after: float | timedelta | None = None,
        spread: float | timedelta | None = None,
        limit: str | None = None,
    ) -> Task:
        """Create a task (idempotent on ``task_id``); returns it.

        Raises ``ValidationError`` (naming the field and the limit) before anything is written.
        Calling again with the same ``task_id`` and the same arguments returns the existing task;
        with different arguments it raises ``ValidationError``. ``task_type`` is a handler name
        or a target from ``dynacron.targets`` (its task type is then ``target:<kind>``).
        ``lane`` picks the queue (README "Lanes"); ``spread`` (≤ 900 s) moves each occurrence
        by a deterministic offset inside that window; ``limit`` names a limit made with
        :meth:`set_limit` whose rate its runs share.
        """
        now = self.clock.now()
        target = task_type if isinstance(task_type, Target) else None
        if target is not None:
            task_type = target.task_type
        spec = self._validate(
            task_type, payload, trigger, task_id, retry, timeout, misfire, lane, expire_after
        )
        if target is not None:
            spec = with_target(spec, target, self.settings)
        spec = self._with_spread_and_limit(spec, spread, limit)
        try:
            anchored, first = self._first_fire(spec["trigger"], now)
        except ValidationError:
            # A retried create whose time has passed since: the task it made, not an error.
            row = self._settled(task_id) if task_id is not None else None
            if row is not None and row.status == TaskStatus.CANCELLED.value:
                raise InvalidStateError(cancelled_message(row.task_id)) from None
            if row is not None and row.spec_hash == spec["hash"]:
                return task_from_row(row)
            raise
        task_id = task_id or secrets.token_hex(12)
        if self.settings.queue_url and self._is_short_notice(to_ms(first)):
            self._check_queue(spec["lane"])  # a wrong URL: refused before anything is written
        task_row, run_row = self._rows(task_id, spec, anchored, first, now)
        if not self.store.create(task_row, run_row):
            return self._existing(task_id, spec["hash"])
        self._short_notice(run_row)
        return task_from_row(task_row)

    def items_for(
        self,
        task_type: str,
        payload: dict[str, Any],
        trigger: Trigger,
        *,
        task_id: str | None = None,
        timeout: float | timedelta = 60,
        lane: str = "default",
    ) -> list[dict[str, Any]]:
        """The raw DynamoDB items (the task and its first run) that :meth:`schedule` would
        write, validated the same way, written by nobody: for bulk loads with BatchWriteItem
        (the benchmarks seed up to a million runs so). Unlike ``schedule()`` there is no
        idempotency check (a BatchWriteItem overwrites an existing task) and no short-notice
        send: load runs due after the poller's next window."""
        now = self.clock.now()
        spec = self._validate(
            task_type, payload, trigger, task_id, None, timeout, MisfirePolicy.RUN_ONCE, lane,
            None,
        )
        anchored, first = self._first_fire(spec["trigger"], now)
        task_row, run_row = self._rows(task_id or secrets.token_hex(12), spec, anchored, first, now)
        return [task_row.serialize(), run_row.serialize()]

    @staticmethod
    def _first_fire(trigger: Trigger, now: datetime) -> tuple[Trigger, datetime]:
        """The trigger anchored at ``now`` and its first fire time; ``ValidationError`` for a
        trigger ``schedule()`` refuses (in the past beyond the grace, never firing)."""
        trigger.validate_for_schedule(now, PAST_GRACE_SECONDS)
        anchored = trigger.anchored(now)
        first = anchored.first(now)
        if first is None:
            raise ValidationError("trigger", "has no fire time in the future")
        return anchored, first

    def _validate(
        self,
        task_type: Any,
        payload: Any,
        trigger: Any,
        task_id: Any,
        retry: Any,
        timeout: Any,
        misfire: Any,
        lane: Any,
        expire_after: Any,
    ) -> dict[str, Any]:
        check_name("task_type", task_type, MAX_ID_LENGTH)
        if task_id is not None:
            check_name("task_id", task_id, MAX_ID_LENGTH)
        check_name("lane", lane, 64)
        if lane not in self.settings.lanes:
            known = ", ".join(self.settings.lanes)
            raise ValidationError(
                "lane", f"unknown lane {lane!r}; known lanes: {known} (DYNACRON_LANE_QUEUES)"
            )
        payload_text = _payload_text({} if payload is None else payload)
        if not isinstance(trigger, Trigger):
            raise ValidationError("trigger", "must be At(...), Every(...) or Cron(...)")
        retry = RetryPolicy() if retry is None else retry
        if not isinstance(retry, RetryPolicy):
            raise ValidationError("retry", "must be a RetryPolicy")
        timeout_s = to_seconds(timeout, "timeout")
        if not 0 < timeout_s <= self.settings.max_timeout_s:
            raise ValidationError(
                "timeout",
                f"must be > 0 and ≤ {self.settings.max_timeout_s:g} s (the worker's maximum), "
                f"got {timeout_s:g}",
            )
        try:
            misfire = MisfirePolicy(misfire)
        except ValueError:
            allowed = ", ".join(p.value for p in MisfirePolicy)
            raise ValidationError("misfire", f"must be one of {allowed}, got {misfire!r}") from None
        expire_s = None
        if expire_after is not None:
            expire_s = to_seconds(expire_after, "expire_after")
            if expire_s <= 0:
                raise ValidationError("expire_after", "must be > 0 seconds")
        spec = {
            "task_type": task_type,
            # parsed back so that dumps() sorts its keys: equal dicts hash equal (idempotency)
            "payload": json.loads(payload_text),
            "trigger": trigger.to_dict(),
            "retry": retry.to_dict(),
            "timeout": timeout_s,
            "misfire": misfire.value,
            "lane": lane,
            "expire_after": expire_s,
        }
        digest = hashlib.sha256(dumps(spec).encode()).hexdigest()
        return {**spec, "payload": payload_text, "trigger": trigger, "retry": retry, "hash": digest}

    def _with_spread_and_limit(
        self, spec: dict[str, Any], spread: Any, limit: Any
    ) -> dict[str, Any]:
        """Fold spread and limit into the spec and its hash (tasks without them keep theirs)."""
        from .spread import check_spread

        spread_ms = check_spread(spread)
        if limit is not None:
            from .limits import check_limit_name

            check_limit_name(limit)
            self._limit_config(limit)  # refuses a limit that was never set
        if spread_ms is None and limit is None:
            return spec
        extra = dumps({"spread_ms": spread_ms, "limit": limit})
        digest = hashlib.sha256(f"{spec['hash']}|{extra}".encode()).hexdigest()
        return {**spec, "spread_ms": spread_ms, "limit": limit, "hash": digest}

    def _limit_config(self, name: str) -> Any:
        from .limits import LimitStore

        return LimitStore(self.store).get(name)

    def _rows(
        self, task_id: str, spec: dict[str, Any], trigger: Trigger, first: Any, now: Any
    ) -> tuple[TaskRow, RunRow]:
        now_ms, first_ms = to_ms(now), to_ms(first)
        shard = shard_of(task_id, self.settings.shards)
        trigger_text = dumps(trigger.to_dict())
        task_row = self.store.new_task_row(
            pk=task_pk(task_id),
            sk=TASK_SK,
            task_id=task_id,
            task_type=spec["task_type"],
            payload=spec["payload"],
            trigger=trigger_text,
            retry=dumps(spec["retry"].to_dict()),
            timeout=spec["timeout"],
            status=TaskStatus.ACTIVE.value,
            next_fire_at=first_ms,
            created_at=now_ms,
            updated_at=now_ms,
            version=1,
            misfire=spec["misfire"],
            lane=spec["lane"],
            expire_after=spec["expire_after"],
            spec_hash=spec["hash"],
            shard=shard,
            target=spec.get("target_text"),
            spread_ms=spec.get("spread_ms"),
            limit=spec.get("limit"),
        )
        run_row = self._run_row(task_row, scheduled_run_id(first_ms), first_ms, manual=False)
        return task_row, run_row

    def _run_row(self, task: TaskRow, run_id: str, when_ms: int, manual: bool) -> RunRow:
        max_attempts = RetryPolicy.from_dict(json.loads(task.retry)).max_attempts
        return self.store.pending_run(task, run_id, when_ms, max_attempts, int(task.shard), manual)

    def _existing(self, task_id: str, spec_hash: str) -> Task:
        row = self._settled(task_id)
        if row is None:  # its run id was taken, yet no task: it was deleted meanwhile
            raise ConflictError(f"task {task_id!r} changed while it was created; try again")
        if row.status == TaskStatus.CANCELLED.value:
            raise InvalidStateError(cancelled_message(task_id)) from None
        if row.spec_hash != spec_hash:
            raise ValidationError(
                "task_id", f"task {task_id!r} already exists with different arguments"
            ) from None
        return task_from_row(row)

    def _short_notice(self, run_row: RunRow) -> None:
        """Dispatch now what would otherwise wait for the poller's next tick."""
        if not self.settings.queue_url:
            return  # no queue configured: the poller will pick it up
        if self._is_short_notice(int(run_row.scheduled_for)):
            self._check_queue(run_row.lane)
            self._dispatcher().dispatch([run_row])

    def _is_short_notice(self, when_ms: int) -> bool:
        tick_ms = to_ms(self.clock.now()) + int(self.settings.period_s * 1000)
        return when_ms <= tick_ms

    # --- read ----------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        """The task; raises ``TaskNotFound``."""
        return task_from_row(self._task_row(task_id))

    def _task_row(self, task_id: str) -> TaskRow:
        if not isinstance(task_id, str) or not task_id:
            raise TaskNotFound(str(task_id))
        row = self._settled(task_id)
        if row is None:
            raise TaskNotFound(task_id)
        return row

    def _settled(self, task_id: str) -> TaskRow | None:
        return self.store.settled_task_row(task_id, to_ms(self.clock.now()))

    def list(
        self, status: TaskStatus | str | None = None, task_type: str | None = None
    ) -> Iterator[Task]:
        """All tasks, optionally filtered (a table Scan: meant for operators, not hot paths)."""
        wanted = None if status is None else TaskStatus(status).value
        for row in self.store.scan_tasks(to_ms(self.clock.now())):
            if (wanted is None or row.status == wanted) and (task_type in (None, row.task_type)):
                yield task_from_row(row)

    def runs(self, task_id: str, limit: int | None = None) -> builtins.list[Run]:
        """The task's runs, newest first."""
        self._task_row(task_id)
        return [run_from_row(r) for r in self.store.query_runs(task_id, limit=limit)]

    def find_runs(
        self,
        since: timedelta | float = timedelta(hours=1),
        *,
        status: RunStatus | str | None = None,
        max_items: int | None = None,
    ) -> FoundRuns:
        """Runs of every task scheduled or finished in the last ``since``, newest first,
        optionally of one ``status``. A bounded Scan: see ``dynacron.history`` for its cost."""
        from .history import DEFAULT_MAX_ITEMS, find

        window = to_seconds(since, "since")
        if window <= 0:
            raise ValidationError("since", f"must be > 0 seconds, got {window:g}")
        cap = DEFAULT_MAX_ITEMS if max_items is None else max_items
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 10_000_000:
            raise ValidationError("max_items", f"must be an integer 1..10000000, got {cap!r}")
        try:
            wanted = None if status is None else RunStatus(status).value
        except ValueError:
            allowed = ", ".join(s.value for s in RunStatus)
            raise ValidationError("status", f"must be one of {allowed}, got {status!r}") from None
        since_at = self.clock.now() - timedelta(seconds=window)
        return find(self.store, since_at, wanted, cap)

    def get_run(self, task_id: str, run_id: str) -> Run:
        row = self.store.get_run_row(task_id, run_id)
        if row is None:
            raise RunNotFound(task_id, run_id)
        return run_from_row(row)

    def wait(
        self,
        task_id: str,
        run_id: str | None = None,
        timeout: float | timedelta = 60,
        *,
        poll_interval: float | timedelta = 1.0,
    ) -> Run:
        """The run once it has finished (succeeded, dead, skipped or expired).

        With ``run_id``, that run (at once if it already has); without, the next run of the task
        to finish after this call (runs already finished do not count). Raises ``WaitTimeout``
        (a ``TimeoutError``) when ``timeout`` seconds pass first, ``TaskNotFound`` or
        ``RunNotFound`` for an id that does not exist. Polls every ``poll_interval`` seconds:
        with ``run_id`` one GetItem, without it a GetItem of the task and one Query of its
        ``WAIT_WINDOW`` newest runs (so a wait without ``run_id`` does not see a redrive of an
        older run). Time passes on the Scheduler's clock: in ``dynacron.testing`` it is
        virtual and waiting plays the deployment forward.
        """
        timeout_s = to_seconds(timeout, "timeout")
        interval = to_seconds(poll_interval, "poll_interval")
        if timeout_s < 0:
            raise ValidationError("timeout", f"must be ≥ 0 seconds, got {timeout_s:g}")
        if interval <= 0:
            raise ValidationError("poll_interval", f"must be > 0 seconds, got {interval:g}")
        deadline = self.clock.now() + timedelta(seconds=timeout_s)
        check = self._finished_check(task_id, run_id)
        while True:
            found = check()
            if found is not None:
                return found
            left = (deadline - self.clock.now()).total_seconds()
            if left <= 0:
                raise WaitTimeout(task_id, run_id, timeout_s)
            # dynacron.testing's clock plays virtual time forward and wakes when a run finishes.
            until_change = getattr(self.clock, "sleep_until_change", None)
            if until_change is not None:
                until_change(left)
            else:
                self.clock.sleep(min(interval, left))

    def _finished_check(self, task_id: str, run_id: str | None) -> Callable[[], Run | None]:
        """A function returning the awaited run once finished, else None."""
        if run_id is not None:
            self.get_run(task_id, run_id)  # RunNotFound now rather than a timeout later

            def one() -> Run | None:
                run = self.get_run(task_id, run_id)
                return run if run.status.terminal else None

            return one
        done_before = {r.run_id for r in self.runs(task_id, WAIT_WINDOW) if r.status.terminal}

        def next_one() -> Run | None:
            done = [r for r in self.runs(task_id, WAIT_WINDOW) if r.status.terminal]
            fresh = [r for r in done if r.run_id not in done_before]
            if not fresh:
                return None
            return min(fresh, key=lambda r: (r.finished_at or r.scheduled_for, r.run_id))

        return next_one

    def stats(
        self, since: timedelta | float = timedelta(hours=1), *, max_items: int | None = None
    ) -> Stats:
        """Runs by status, first-attempt lateness p50/p99/max, retries, dead, DLQ and work-queue
        depth, the oldest overdue run, over runs scheduled in the last ``since``.

        Bounded: the Scan behind it stops after ``max_items`` items read (default 20,000) and
        the result says ``complete=False``; see ``dynacron.stats`` for what each figure costs.
        """
        from .stats import DEFAULT_MAX_ITEMS, collect

        window = to_seconds(since, "since")
        if window <= 0:
            raise ValidationError("since", f"must be > 0 seconds, got {window:g}")
        cap = DEFAULT_MAX_ITEMS if max_items is None else max_items
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 10_000_000:
            raise ValidationError("max_items", f"must be an integer 1..10000000, got {cap!r}")
        now = self.clock.now()
        try:
            return collect(
                self.store, self.sqs, self.settings, now, now - timedelta(seconds=window), cap
            )
        except Exception as exc:
            if not is_backend(exc):
                raise
            raise DynacronError(f"cannot read stats: {exc}") from exc

    # --- change --------------------------------------------------------------------------------

    def pause(self, task_id: str) -> Task:
        """Stop future occurrences; the pending run leaves the due index (it stays ``pending``)."""
        return self._change(task_id, self._pause_plan, {TaskStatus.ACTIVE.value}, TaskStatus.PAUSED)

    def resume(self, task_id: str) -> Task:
        """Continue at the next *future* fire; occurrences missed while paused are not replayed."""
        self._check_queue()
        return self._change(
            task_id, self._resume_plan, {TaskStatus.PAUSED.value}, TaskStatus.ACTIVE
        )

    def cancel(self, task_id: str) -> Task:
        """End the task: nothing of it stays due (a run already executing may finish)."""
        allowed = {TaskStatus.ACTIVE.value, TaskStatus.PAUSED.value}
        task = self._change(task_id, self._cancel_plan, allowed, TaskStatus.CANCELLED)
        self._skip_claimed_runs(task_id, "task cancelled")
        return task

    def _change(
        self,
        task_id: str,
        plan: Callable[[TaskRow], _Plan],
        allowed: set[str],
        target: TaskStatus,
    ) -> Task:
        """Move the task to ``target`` and its head run with it, in one transaction.

        Optimistic: the task's version is the condition; if the poller moved the task meanwhile
        (it claimed the head and chained the next one), read again and retry.
        """
        for _ in range(_OPTIMISTIC_RETRIES):
            row = self._task_row(task_id)
            if row.status == target.value:
                return task_from_row(row)
            if row.status not in allowed:
                raise InvalidStateError(
                    f"task {task_id!r} is {row.status}; cannot make it {target}"
                )
            if not self._commit(row, target, plan(row)):
                continue
            if target is TaskStatus.ACTIVE:
                self._short_notice_head(task_id)
            return self.get(task_id)
        raise InvalidStateError(f"task {task_id!r} kept changing; try again")

    def _commit(self, row: TaskRow, target: TaskStatus, plan: _Plan) -> bool:
        """The task's move and its head's, in one transaction; False: it moved, read again."""
        now_ms = to_ms(self.clock.now())
        if target is TaskStatus.PAUSED:
            return self.store.pause(row, now_ms, plan.run_ops)
        if target is TaskStatus.ACTIVE:  # with nothing left to fire: completed
            return self.store.resume(row, now_ms, plan.next_fire_ms, plan.run_ops)
        return self.store.cancel(row, now_ms, plan.run_ops)

    def _pending_head(self, row: TaskRow) -> RunRow | None:
        """The task's next occurrence, if it is still waiting (not yet claimed)."""
        if row.next_fire_at is None:
            return None
        head = self.store.get_run_row(row.task_id, scheduled_run_id(int(row.next_fire_at)))
        return head if head is not None and head.status == RunStatus.PENDING.value else None

    def _pause_plan(self, row: TaskRow) -> _Plan:
        head = self._pending_head(row)
        return _Plan([self.store.op_leave_index(head)] if head else [])

    def _cancel_plan(self, row: TaskRow) -> _Plan:
        head = self._pending_head(row)
        now_ms = to_ms(self.clock.now())
        return _Plan([self.store.op_skip(head, "task cancelled", now_ms)] if head else [])

    def _resume_plan(self, row: TaskRow) -> _Plan:
        from .triggers import trigger_from_dict

        now = self.clock.now()
        trigger = trigger_from_dict(json.loads(row.trigger))
        # Not before the pending head: occurrences before it were already created (and claimed).
        head_ms = row.next_fire_at
        nxt = trigger.first(max(now, from_ms(head_ms)) if head_ms else now)
        if nxt is None and isinstance(trigger, At):
            nxt = now  # a one-time task resumed after its time runs once, now
        nxt_ms = None if nxt is None else to_ms(nxt)
        head = self._pending_head(row)
        if head is not None and nxt_ms == int(head.scheduled_for):
            due = nxt_ms + int(head.offset_ms or 0)  # a spread run is due at its offset
            return _Plan([self.store.op_back_in(head, int(row.shard), due)], nxt_ms)
        ops = []
        if head is not None:
            reason = "missed while the task was paused"
            ops.append(self.store.op_skip(head, reason, to_ms(now)))
        if nxt_ms is not None:
            new = self._run_row(row, scheduled_run_id(nxt_ms), nxt_ms, manual=False)
            ops.append(self.store.op_create(new))
        return _Plan(ops, nxt_ms)

    def _short_notice_head(self, task_id: str) -> None:
        row = self.store.get_task_row(task_id)
        head = self._pending_head(row) if row is not None else None
        if head is not None:
            self._short_notice(head)

    def _skip_claimed_runs(self, task_id: str, reason: str) -> None:
        """Queued or retrying runs of a cancelled task leave the index (the worker skips them)."""
        for r in self.store.query_runs(task_id):
            if r.status in (
                RunStatus.QUEUED.value,
                RunStatus.RETRYING.value,
                RunStatus.PENDING.value,
            ):
                try:
                    self.store.skip(r, reason, to_ms(self.clock.now()))
                except Exception:
                    continue

    def trigger_now(self, task_id: str) -> Run:
        """An extra run now, outside the trigger (also for a paused task, not a cancelled one)."""
        row = self._task_row(task_id)
        if row.status == TaskStatus.CANCELLED.value:
            raise InvalidStateError(f"task {task_id!r} is cancelled")
        if self.settings.queue_url:
            self._check_queue(row.lane)
        now_ms = to_ms(self.clock.now())
        run_id = manual_run_id(now_ms, secrets.token_hex(3))
        run_row = self._run_row(row, run_id, now_ms, manual=True)
        if not self.store.add_run(run_row):
            raise ConflictError(f"run {run_id!r} of task {task_id!r} exists; try again")
        self._short_notice(run_row)
        return self.get_run(task_id, run_row.run_id)

    # --- limits (limits.py) ----------------------------------------------------------------

    def set_limit(
        self, name: str, rate: str | None = "10/s", burst: int = 1, concurrency: int | None = None
    ) -> Any:
        """Create or change a limit that runs of tasks scheduled with ``limit=name`` share.

        ``rate`` is ``COUNT/UNIT`` (``"10/s"``, ``"100/m"``, ``"5/10s"``; None = no rate),
        ``burst`` how many may start together after a quiet spell, ``concurrency`` how many may
        run at once (None = no cap). Returns the ``Limit``; ``ValidationError`` on bad input.
        """
        from .limits import LimitStore, make_limit

        return LimitStore(self.store).put(make_limit(name, rate, burst, concurrency))

    def get_limit(self, name: str) -> Any:
        """The limit; ``ValidationError`` (field ``limit``) if it does not exist."""
        from .limits import LimitStore, check_limit_name

        return LimitStore(self.store).get(check_limit_name(name))

    def limits(self) -> builtins.list[Any]:
        """Every limit, by name (a table Scan: for operators)."""
        from .limits import LimitStore

        return sorted(LimitStore(self.store).all(), key=lambda limit: limit.name)

    def clear_limit(self, name: str) -> bool:
        """Delete a limit; its tasks' runs then start unthrottled. False if there was none."""
        from .limits import LimitStore, check_limit_name

        return LimitStore(self.store).delete(check_limit_name(name))

    # --- the dead-letter queue --------------------------------------------------------------

    def _dlq_url(self) -> str:
        if not self.settings.dlq_url:
            raise ConfigurationError("no DLQ: set DYNACRON_DLQ_URL or pass settings.dlq_url")
        return self.settings.dlq_url

    def dead_letters(self, max_messages: int = 100) -> builtins.list[DeadLetter]:
        """The DLQ's records (at most ``max_messages``), without consuming them."""
        from .deadletters import list_messages

        return list_messages(self.sqs, self._dlq_url(), max_messages)

    def redrive(self, task_id: str, run_id: str) -> Run:
        """Give a ``dead`` or ``expired`` run a fresh set of attempts, now, then delete its DLQ
        messages (only once the run is revived: a failure leaves them on the queue; and only
        records of deaths before this revive: if the run dies again meanwhile, its new record
        stays).

        Raises ``RunNotFound``, or ``InvalidStateError`` for a run that is not dead or expired.
        """
        from .deadletters import redrive_messages

        self._check_queue()
        if not self.settings.dlq_url:
            return self._redrive_run(task_id, run_id)
        revived: list[Run] = []

        def revive(t: str, r: str) -> Run:
            revived.append(self._redrive_run(t, r))
            return revived[-1]

        redrive_messages(self.sqs, self.settings.dlq_url, revive, REDRIVE_SCAN, (task_id, run_id))
        # no record of it on the queue (sent elsewhere, or expired there): revive it all the same
        return revived[-1] if revived else self._redrive_run(task_id, run_id)

    def redrive_all(self, max_messages: int = REDRIVE_SCAN) -> builtins.list[RedriveResult]:
        """Redrive the run of every redrivable DLQ message (at most ``max_messages`` looked at);
        undecodable and orphan records, and runs no longer dead, are left on the queue."""
        from .deadletters import redrive_messages

        self._check_queue()
        return redrive_messages(self.sqs, self._dlq_url(), self._redrive_run, max_messages)

    def _redrive_run(self, task_id: str, run_id: str) -> Run:
        """Give a ``dead`` or ``expired`` run a fresh set of attempts, now."""
        row = self.store.get_run_row(task_id, run_id)
        if row is None:
            raise RunNotFound(task_id, run_id)
        if row.status not in (RunStatus.DEAD.value, RunStatus.EXPIRED.value):
            raise InvalidStateError(
                f"run {run_id!r} is {row.status}; only dead or expired runs redrive"
            )
        task = self._task_row(task_id)
        allowed = int(row.attempt or 0) + RetryPolicy.from_dict(json.loads(task.retry)).max_attempts
        # a lost race (a concurrent redrive) is a ConflictError (an InvalidStateError)
        self.store.redrive(row, allowed, int(task.shard), to_ms(self.clock.now()))
        self._short_notice(row)
        return self.get_run(task_id, run_id)


def with_target(spec: dict[str, Any], target: Target, settings: Settings) -> dict[str, Any]:
    """Refuse what the configuration can already tell will not run; fold the target into the
    stored spec and its hash (handler tasks keep the hash they always had)."""
    from urllib.parse import urlparse

    from .aws import is_loopback
    from .targets import Http, refusal

    target.check_payload(json.loads(spec["payload"]))
    reason = refusal(target, settings)
    if reason is not None:
        raise ValidationError("target", reason)
    if (
        isinstance(target, Http)
        and urlparse(target.url).scheme != "https"
        and not is_loopback(target.url)
    ):
        raise ValidationError("target.url", "must be https:// (plain http only to loopback)")
    text = dumps(target.to_dict())
    digest = hashlib.sha256(f"{spec['hash']}|{text}".encode()).hexdigest()
    return {**spec, "target_text": text, "hash": digest}


def _payload_text(payload: Any) -> str:
    if not isinstance(payload, dict):
        raise ValidationError(
            "payload", f"must be a JSON object (dict), got {type(payload).__name__}"
        )
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("payload", f"is not JSON-serializable ({exc})") from None
    size = len(text.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            "payload", f"is {size} bytes as JSON, the limit is {MAX_PAYLOAD_BYTES} bytes"
        )
    return text
