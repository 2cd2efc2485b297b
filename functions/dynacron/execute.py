"""One SQS message → one attempt: fence, wait for the second, handler with a timeout, retry, DLQ.

The worker moves a run to ``running`` with a conditional write on the state it read (fence,
status, attempt). Only one delivery can win that write, so a duplicate or stale message does
nothing and is acknowledged; a redelivery after a crash wins it once the running attempt's lease
has expired. Outcomes tell the caller what to do with the message:

* ``ack``: delete it (done, duplicate, stale, dead, skipped, expired);
* ``retry``: keep it; its visibility was set to the backoff, so SQS redelivers it then;
* ``return``: keep it; it could not start in this invocation and counts no attempt.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import random
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

from . import attempts, registry
from .aws import report_error
from .clock import Clock, SystemClock, from_ms, to_ms
from .deadletters import MAX_BODY_CHARS, DeadRecord, clip, send_dead_letter, send_record
from .errors import DynacronError, HandlerTimeout, ValidationError
from .heartbeat import BEATS_PER_LEASE, VISIBILITY_MARGIN_S, Heartbeat, Wait
from .message import Message
from .settings import Settings
from .store import RunRow, Store, TaskRow, alive, alive_until_ms, dumps, start_ms
from .types import (
    MAX_BACKOFF_SECONDS,
    MAX_RESULT_BYTES,
    RetryPolicy,
    RunContext,
    RunStatus,
    TaskStatus,
)

EventHook = Callable[[str, dict[str, Any]], None]
_STARTABLE = (RunStatus.QUEUED.value, RunStatus.RETRYING.value)


class Outcome(StrEnum):
    ACK = "ack"
    RETRY = "retry"
    RETURN = "return"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status: str  # what happened, e.g. "succeeded", "retrying", "duplicate", "dead"
    detail: str = ""


def idempotency_key(task_id: str, run_id: str) -> str:
    """Stable across attempts of one run: handlers key their side effects on it."""
    return hashlib.sha256(f"{task_id}/{run_id}".encode()).hexdigest()[:32]


class Executor:
    """Runs one message's attempt. Shared by the worker Lambda and the local runtime."""

    def __init__(
        self,
        store: Store,
        sqs: Any,
        settings: Settings,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
        logger: Any = None,
        metrics: Any = None,
        on_event: EventHook | None = None,
        max_early_wait_s: float = 2.0,
        safety_margin_s: float = 3.0,
        targets: Any = None,
        concurrency_wait_s: int = 10,
        heartbeat_wait: Wait | None = None,
    ) -> None:
        self.store = store
        self.sqs = sqs
        self.settings = settings
        self.clock = clock or SystemClock()
        self.rand = rand
        self.logger = logger
        self.metrics = metrics
        self.on_event = on_event
        self.max_early_wait_s = max_early_wait_s
        self.safety_margin_s = safety_margin_s
        self._targets = targets  # a targets.TargetInvoker; built on first use
        # A run whose limit is at its concurrency is hidden this long, then tries again.
        self.concurrency_wait_s = concurrency_wait_s
        self.heartbeat_wait = heartbeat_wait  # tests drive the heartbeat (heartbeat.Heartbeat)
        # receipts whose messages ``hide_batch`` already hid for the first heartbeat
        self._hidden: set[str] = set()

    @property
    def targets(self) -> Any:
        if self._targets is None:
            from .targets import TargetInvoker

            self._targets = TargetInvoker(self.settings)
        return self._targets

    # --- entry point ---------------------------------------------------------------------

    def early_wait_s(self, body: str) -> float:
        """Seconds until this message's run is due, when it arrived early by no more than
        ``max_early_wait_s`` (else 0: ``execute`` hides a message that is earlier than that
        again, and starts one that is due). Lets a batch wait for each record's own instant
        concurrently, before a thread is given to it (``batch.process_event``)."""
        try:
            msg = Message.parse(body)
        except ValidationError:
            return 0.0
        wait = (msg.scheduled_for - to_ms(self.clock.now())) / 1000.0
        return wait if 0 < wait <= self.max_early_wait_s else 0.0

    def hide_batch(self, queue_url: str, records: list[tuple[str, float]]) -> set[str]:
        """Hide a batch's messages for the first heartbeat in one ChangeMessageVisibilityBatch
        (``records``: receipt handle, seconds until due), instead of one
        ChangeMessageVisibility per record as its attempt starts: 0.1 request per fire in full
        batches rather than 1. Returns the receipts hidden; a record left out (the call failed,
        or an entry did) is hidden by its own first beat as before. ``forget`` them after."""
        beat_s = self.settings.heartbeat_s
        if beat_s <= 0 or not queue_url or not records:
            return set()
        receipts = [receipt for receipt, _ in records[:10]]  # SQS takes 10 entries a request
        entries = [
            {"Id": str(i), "ReceiptHandle": receipt,
             "VisibilityTimeout": math.ceil(wait) + int(beat_s) + VISIBILITY_MARGIN_S}
            for i, (receipt, wait) in enumerate(records[:10])
        ]  # fmt: skip
        try:
            resp = self.sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        except Exception as exc:  # each record's first beat hides its own message instead
            report_error(exc, "change_visibility", self.logger, self.metrics)
            return set()
        failed = {f["Id"] for f in resp.get("Failed", [])}
        hidden = {r for i, r in enumerate(receipts) if str(i) not in failed}
        self._hidden |= hidden
        return hidden

    def forget(self, receipts: set[str]) -> None:
        """The batch is done: its receipts are never seen again."""
        self._hidden -= receipts

    def execute(
        self,
        body: str,
        receipt_handle: str | None = None,
        queue_url: str | None = None,
        time_left: Callable[[], float] | None = None,
    ) -> Result:
        time_left = time_left or (lambda: math.inf)
        try:
            msg = Message.parse(body)
        except ValidationError as exc:
            return self._undecodable(body, exc)
        try:
            return self._execute(msg, receipt_handle, queue_url, time_left)
        except Exception as exc:
            # The batch processor only logs a failed record at DEBUG: an operator must see it.
            ids = {"task_id": msg.task_id, "run_id": msg.run_id}
            report_error(exc, "execute", self.logger, self.metrics, **ids)
            raise

    def _execute(
        self,
        msg: Message,
        receipt_handle: str | None,
        queue_url: str | None,
        time_left: Callable[[], float],
    ) -> Result:
        run, task = self.store.get_run_and_task(msg.task_id, msg.run_id)
        if run is None:
            return self._orphan(msg)
        if run.fence != msg.fence:
            return Result(Outcome.ACK, "stale", "fence changed: the run was claimed again")
        verdict = self._precheck(run)
        if verdict is not None:
            return verdict
        verdict = self._check_task(run, task)
        if verdict is not None:
            return verdict
        assert task is not None
        slot = (msg.not_before, msg.slot_tol) if msg.not_before is not None else None
        return self._attempt(run, task, receipt_handle, queue_url, time_left, slot)

    # --- checks before an attempt ----------------------------------------------------------

    def _precheck(self, run: RunRow) -> Result | None:
        now_ms = to_ms(self.clock.now())
        if run.status in _STARTABLE:
            return None
        if run.status == RunStatus.RUNNING.value and not alive(run, now_ms):
            if (run.attempt or 0) >= (run.max_attempts or 1):
                reason = (
                    f"attempt {run.attempt} of {run.max_attempts} never finished (worker crashed)"
                )
                return self._dead(run, reason, run.error)
            return None  # the worker of the last attempt died: this redelivery takes over
        return Result(Outcome.ACK, "duplicate", f"run is {run.status}")

    def _check_task(self, run: RunRow, task: TaskRow | None) -> Result | None:
        if task is None:
            return self._dead(run, f"task {run.task_id!r} not found (deleted?)", None)
        if task.status == TaskStatus.CANCELLED.value or (
            task.status == TaskStatus.PAUSED.value and not run.manual
        ):
            return self._finish(run, RunStatus.SKIPPED, error=f"task is {task.status}")
        if task.target:
            verdict = self._check_target(run, task)
            if verdict is not None:
                return verdict
        elif registry.get(task.task_type) is None:
            known = ", ".join(registry.names()) or "none"
            reason = f"unknown handler {task.task_type!r} (registered: {known})"
            return self._dead(run, reason, None)
        try:  # a stored payload that no longer decodes: dead now, not a crash after the start
            if not isinstance(json.loads(task.payload), dict):
                raise ValueError("not a JSON object")
        except (TypeError, ValueError) as exc:
            return self._dead(run, f"bad payload ({exc})", None)
        return None

    # --- the attempt ------------------------------------------------------------------------

    def _attempt(
        self,
        run: RunRow,
        task: TaskRow,
        receipt: str | None,
        queue_url: str | None,
        time_left: Callable[[], float],
        slot: tuple[int, int | None] | None = None,
    ) -> Result:
        timeout = float(task.timeout)
        not_before = start_ms(run)  # scheduled_for + the spread offset
        # A rate limit's slot (limits.py) holds the first start back; its wait is not lateness.
        slot_ms = None
        if slot is not None and not run.attempt:
            slot_ms = max(slot[0], int(run.slot_ms or 0))
            not_before = max(not_before, slot_ms)
        if run.status == RunStatus.RETRYING.value and run.due_at is not None:
            # A retry is due when its backoff ends (_fail keys it at failure + backoff + lease):
            # a duplicate copy of the message must not start it early.
            not_before = max(not_before, int(run.due_at) - int(self.settings.lease_s * 1000))
        wait = (not_before - to_ms(self.clock.now())) / 1000.0
        if wait > self.max_early_wait_s:
            # Early by more than the fraction of a second DelaySeconds cannot express: hide it
            # again rather than hold a worker.
            self._change_visibility(queue_url, receipt, math.ceil(wait - 1))
            return Result(Outcome.RETURN, "early", f"{wait:.1f}s early")
        if time_left() < max(wait, 0) + timeout + self.safety_margin_s:
            self._change_visibility(queue_url, receipt, 0)
            return Result(Outcome.RETURN, "no_time", "not enough time left to start")
        if wait > 0:
            self.clock.sleep(wait)
        now = self.clock.now()
        if (
            slot_ms is not None
            and slot is not None
            and slot[1] is not None
            and to_ms(now) - slot_ms > slot[1]
        ):
            late = self._late_for_slot(run, now, queue_url, receipt)
            if isinstance(late, Result):
                return late
            slot_ms, now = late, self.clock.now()
        throttled_ms = 0 if slot_ms is None else max(0, slot_ms - start_ms(run))
        token = self._gate(run, now, timeout)
        if isinstance(token, Result):
            self._change_visibility(queue_url, receipt, self.concurrency_wait_s)
            return token
        try:
            res = self._attempt_now(
                run, task, receipt, queue_url, time_left, now, timeout, throttled_ms
            )
        except Exception:  # not BaseException: a dying process releases nothing (its lease does)
            if token:
                self._ungate(run, token)
            raise
        if token:
            self._ungate(run, token)
        return res

    def _attempt_now(
        self,
        run: RunRow,
        task: TaskRow,
        receipt: str | None,
        queue_url: str | None,
        time_left: Callable[[], float],
        now: datetime,
        timeout: float,
        throttled_ms: int,
    ) -> Result:
        if task.expire_after is not None and now > from_ms(run.scheduled_for) + timedelta(
            seconds=float(task.expire_after)
        ):
            return self._finish(
                run, RunStatus.EXPIRED, error="missed its deadline before it started"
            )
        if not self._start(run, now, timeout, throttled_ms, queue_url):
            return Result(Outcome.ACK, "duplicate", "another delivery started this attempt")
        budget = max(0.001, min(timeout, time_left() - self.safety_margin_s))
        # The end of a task's last run ends the task: nothing writes that (Store.settle).
        if task.target:
            return self._run_target(run, task, now, budget, receipt, queue_url)
        with self._heartbeat(run, receipt, queue_url):
            ok, value, error = self._run_handler(run, task, now, budget)
        if ok:
            return self._succeed(run, value, now)
        return self._fail(run, task, error or "failed", receipt, queue_url)

    def _gate(self, run: RunRow, now: datetime, timeout: float) -> str | Result | None:
        """A concurrency slot of the run's limit (limits.ConcurrencyGate): its lease token,
        None without a limit, or a Result when the limit is full (the run waits its turn)."""
        if not run.limit:
            return None
        from .limits import ConcurrencyGate, lease_token

        token = lease_token(run.task_id, run.run_id, int(run.attempt or 0) + 1)
        expiry = to_ms(now) + int((timeout + self.settings.lease_s) * 1000)
        if ConcurrencyGate(self.store).acquire(str(run.limit), token, to_ms(now), expiry):
            return token
        self._metric("ConcurrencyWaits", "Count", 1)
        from .lanemetrics import emit

        emit(self.metrics, "LimitWaits", "Count", 1, limit=str(run.limit))
        return Result(Outcome.RETURN, "waiting", f"limit {run.limit!r} is at its concurrency")

    def _ungate(self, run: RunRow, token: str) -> None:
        from .limits import ConcurrencyGate

        try:
            ConcurrencyGate(self.store).release(str(run.limit), token, to_ms(self.clock.now()))
        except Exception as exc:  # the lease expires by itself
            report_error(exc, "release", self.logger, self.metrics, **_run_ids(run))

    def _late_for_slot(
        self, run: RunRow, now: datetime, queue_url: str | None, receipt: str | None
    ) -> Result | int:
        """Too late for its rate-limit slot: take the next free one, wait for it here if it is
        close, else hide the message until then. Returns the new slot, or the Result."""
        from .limits import reslot

        slot_ms = reslot(self.store, run, to_ms(now))
        wait = (slot_ms - to_ms(self.clock.now())) / 1000.0
        if wait > self.max_early_wait_s:
            self._change_visibility(queue_url, receipt, math.ceil(wait - 1))
            return Result(Outcome.RETURN, "throttled", f"late for its slot; next in {wait:.1f}s")
        if wait > 0:
            self.clock.sleep(wait)
        return slot_ms

    def _start(
        self,
        run: RunRow,
        now: datetime,
        timeout: float,
        throttled_ms: int = 0,
        queue_url: str | None = None,
    ) -> bool:
        now_ms = to_ms(now)
        starter = secrets.token_hex(8)
        lease_ms = self._running_lease_ms(timeout)
        started = self.store.start(run, now_ms, lease_ms, starter, throttled_ms)
        if not started and not self._was_ours(run, starter):
            return False
        lateness_ms = now_ms - start_ms(run) - int(run.throttled_ms or 0)
        self._metric("RunsStarted", "Count", 1)
        if throttled_ms:
            self._metric("ThrottledMs", "Milliseconds", throttled_ms)
        # lateness is the first attempt's: a retry starts late on purpose (its backoff)
        first = int(run.attempt or 1) == 1
        if first:
            self._metric("LatenessMs", "Milliseconds", lateness_ms)
        self._lane_limit_metrics(run, lateness_ms if first else None, throttled_ms)
        self._emit(
            "started",
            run,
            lateness_ms=lateness_ms,
            attempt=int(run.attempt),
            lane=run.lane,
            limit=run.limit,
            throttled_ms=throttled_ms,
        )
        # the queue's name says which event source delivered it (WorkQueueCount > 1, lanes)
        queue = (queue_url or "").rstrip("/").rsplit("/", 1)[-1]
        self._log("info", "run started", run, lateness_ms=lateness_ms, queue=queue)
        return True

    def _lane_limit_metrics(
        self, run: RunRow, lateness_ms: int | None, throttled_ms: int
    ) -> None:
        """Started and lateness (None: a retry, none to publish) per lane, started and
        throttled time per limit (lanemetrics)."""
        from .lanemetrics import emit

        lane = run.lane or "default"
        emit(self.metrics, "LaneRunsStarted", "Count", 1, lane=lane)
        if lateness_ms is not None:
            emit(self.metrics, "LaneLatenessMs", "Milliseconds", lateness_ms, lane=lane)
        if run.limit:
            emit(self.metrics, "LimitRunsStarted", "Count", 1, limit=str(run.limit))
            emit(self.metrics, "LimitThrottledMs", "Milliseconds", throttled_ms,
                 limit=str(run.limit))

    # --- the heartbeat (heartbeat.py) -------------------------------------------------------

    def _running_lease_ms(self, timeout: float) -> int:
        """How long a started attempt holds its run before it counts as crashed."""
        if self.settings.heartbeat_s > 0:
            return int(self.settings.heartbeat_s * 1000)
        return int((timeout + self.settings.lease_s) * 1000)

    @contextmanager
    def _heartbeat(self, run: RunRow, receipt: str | None, queue_url: str | None) -> Iterator[None]:
        beat_s = self.settings.heartbeat_s
        if beat_s <= 0:
            yield
            return
        # The heartbeat's own copy of the row: its renewals move the copy's lease, never the
        # row the attempt's thread reads and writes.
        beat_row = self.store.models.Run.from_raw_data(run.serialize())
        renew = partial(self._renew, beat_row, receipt, queue_url)
        # A finished record's message is not hidden longer: if its batch's invocation outlives
        # the last renewal by heartbeat + margin, the message comes back, finds the run
        # finished and is acked ("duplicate"): one extra receive, not one more call per run.
        with Heartbeat(renew, beat_s / BEATS_PER_LEASE, self.heartbeat_wait):
            yield

    def _renew(self, run: RunRow, receipt: str | None, queue_url: str | None) -> bool:
        """Extend the attempt's liveness (only while it is still ours) and hide its message."""
        beat_s = self.settings.heartbeat_s
        until_ms = to_ms(self.clock.now()) + int(beat_s * 1000)
        if alive_until_ms(run) >= until_ms - int(beat_s * 1000 / BEATS_PER_LEASE):
            # The first beat, right after the start wrote this very liveness: renewing it
            # again would write the run for nothing; the message is hidden (by its batch's
            # ChangeMessageVisibilityBatch, or here).
            if receipt not in self._hidden:
                self._change_visibility(queue_url, receipt, int(beat_s) + VISIBILITY_MARGIN_S)
            return True
        try:
            renewed = self.store.renew(run, until_ms)
        except DynacronError as exc:  # a backend failure: the renewal is retried at the next beat
            ids = {"task_id": run.task_id, "run_id": run.run_id}
            report_error(exc, "heartbeat", self.logger, self.metrics, **ids)
            return True
        if not renewed:
            self._log("warning", "lease lost: the run was taken over", run)
            return False
        self._change_visibility(queue_url, receipt, int(beat_s) + VISIBILITY_MARGIN_S)
        return True

    def _was_ours(self, run: RunRow, starter: str) -> bool:
        """A lost response made botocore retry our start, whose condition then failed on the
        write it had already applied: the start token tells that apart from another worker."""
        return self.store.started_by(run, starter)

    def _run_handler(
        self, run: RunRow, task: TaskRow, started: datetime, budget: float
    ) -> tuple[bool, Any, str | None]:
        func = registry.get(task.task_type)
        if func is None:  # present when the attempt was checked; unregistered since
            return False, None, f"unknown handler {task.task_type!r}"
        ctx = self._context(run, task, started, budget)
        payload = json.loads(task.payload)  # a fresh copy per attempt
        return run_with_timeout(func, payload, ctx, budget)

    def _context(self, run: RunRow, task: TaskRow, started: datetime, budget: float) -> RunContext:
        return RunContext(
            task_id=run.task_id,
            run_id=run.run_id,
            attempt=int(run.attempt),
            scheduled_for=from_ms(run.scheduled_for),
            idempotency_key=idempotency_key(run.task_id, run.run_id),
            deadline=started + timedelta(seconds=budget),
            task_type=task.task_type,
            lane=run.lane,
        )

    # --- targets (targets.py): a task with a target runs it instead of a handler -------------

    def _check_target(self, run: RunRow, task: TaskRow) -> Result | None:
        from .targets import target_from_dict

        try:
            target = target_from_dict(json.loads(task.target))
        except (TypeError, ValueError) as exc:  # ValidationError is a ValueError
            return self._dead(run, f"bad target ({exc})", None)
        reason = self.targets.allowed(target)
        return None if reason is None else self._dead(run, reason, None)

    def _run_target(
        self,
        run: RunRow,
        task: TaskRow,
        started: datetime,
        budget: float,
        receipt: str | None,
        queue_url: str | None,
    ) -> Result:
        from .targets import Attempt, failed, target_from_dict

        target = target_from_dict(json.loads(task.target))
        ctx = self._context(run, task, started, budget)
        attempt = Attempt(
            ctx.task_id, ctx.run_id, ctx.attempt, ctx.scheduled_for.isoformat(), ctx.idempotency_key
        )

        def call(payload: dict[str, Any], _ctx: RunContext) -> Any:
            return self.targets.invoke(target, payload, attempt, budget)

        with self._heartbeat(run, receipt, queue_url):
            ok, outcome, error = run_with_timeout(call, json.loads(task.payload), ctx, budget)
        if not ok:  # the call overran the budget (or the invoker itself broke)
            outcome = failed(error or "failed")
        if outcome.ok:
            return self._succeed(run, outcome.answer, started)
        if outcome.dead:
            reason = f"{target.kind} target refused the run"
            return self._dead(run, reason, outcome.error, attempts.FAILED)
        return self._fail(
            run, task, outcome.error, receipt, queue_url, min_backoff=outcome.retry_after
        )

    # --- endings ------------------------------------------------------------------------------

    def _succeed(self, run: RunRow, value: Any, started: datetime) -> Result:
        res = self._finish(
            run,
            RunStatus.SUCCEEDED,
            result=_encode_result(value),
            running=True,
            attempt_outcome=attempts.SUCCEEDED,
        )
        if res.status == RunStatus.SUCCEEDED.value:
            self._metric("RunsSucceeded", "Count", 1)
        return res

    def _fail(
        self,
        run: RunRow,
        task: TaskRow,
        error: str,
        receipt: str | None,
        queue_url: str | None,
        min_backoff: float | None = None,
    ) -> Result:
        self._metric("RunsFailed", "Count", 1)
        attempt = int(run.attempt)
        if attempt >= int(run.max_attempts or 1):
            reason = f"retries exhausted after {attempt} attempts"
            return self._dead(run, reason, error, attempts.FAILED)
        policy = RetryPolicy.from_dict(json.loads(task.retry))
        backoff = policy.backoff(attempt, self.rand())
        if min_backoff is not None:  # the target said when (Retry-After): not sooner
            backoff = min(MAX_BACKOFF_SECONDS, max(backoff, min_backoff))
        now_ms = to_ms(self.clock.now())
        due_ms = now_ms + int((backoff + self.settings.lease_s) * 1000)
        record = attempts.record(attempt, run.started_at, now_ms, attempts.FAILED, error)
        if not self.store.retry(run, clip(error), due_ms, record):
            return Result(Outcome.ACK, "stale", "run was reclaimed while this attempt ran")
        self._change_visibility(queue_url, receipt, math.ceil(backoff))
        self._emit("retrying", run, backoff_s=backoff, error=error[:200])
        self._log("warning", "attempt failed, will retry", run, backoff_s=round(backoff, 3))
        return Result(Outcome.RETRY, RunStatus.RETRYING.value, f"retry in {backoff:.1f}s")

    def _dead(
        self, run: RunRow, reason: str, error: str | None, attempt_outcome: str | None = None
    ) -> Result:
        """DLQ first, then mark dead (a crash between them repeats the message, never loses it)."""
        send_dead_letter(self.sqs, self.settings, run, reason, error, self.clock.now())
        text = f"{reason}: {error}" if error else reason
        res = self._finish(
            run,
            RunStatus.DEAD,
            error=text,
            attempt_outcome=attempt_outcome,
            attempt_error=error or reason,
        )
        if res.status == RunStatus.DEAD.value:
            self._metric("RunsDead", "Count", 1)
            self._log("error", "run dead", run, reason=reason)
        return res

    def _finish(
        self,
        run: RunRow,
        status: RunStatus,
        error: str | None = None,
        result: str | None = None,
        running: bool = False,
        attempt_outcome: str | None = None,
        attempt_error: str | None = None,
    ) -> Result:
        """End the run. ``attempt_outcome``: how this worker's attempt ended (into the history);
        None: no attempt of ours, and one started before that never reported is ``lost``."""
        now_ms = to_ms(self.clock.now())
        record = None
        if attempt_outcome is not None and run.status == RunStatus.RUNNING.value:
            why = attempt_error or error
            record = attempts.record(int(run.attempt), run.started_at, now_ms, attempt_outcome, why)
        # without our record, an attempt started before that never reported is ``lost``
        applied = self.store.finish(
            run,
            status.value,
            now_ms,
            error=None if error is None else clip(error),
            result=result,
            running=running,
            record=record,
        )
        if not applied:
            return Result(Outcome.ACK, "stale", f"run changed before it could be {status}")
        self._emit(status.value, run, error=(error or "")[:200])
        return Result(Outcome.ACK, status.value, error or "")

    def _undecodable(self, body: str, exc: ValidationError) -> Result:
        record = DeadRecord("undecodable", str(exc), body=body[:MAX_BODY_CHARS])
        send_record(self.sqs, self.settings, record)
        self._log("error", "undecodable message", None, reason=str(exc))
        self._emit("undecodable", None, error=str(exc))
        return Result(Outcome.ACK, "undecodable", str(exc))

    def _orphan(self, msg: Message) -> Result:
        """The message names a run that does not exist (its task was deleted): DLQ and ack."""
        reason = f"run {msg.run_id!r} of task {msg.task_id!r} not found (deleted?)"
        record = DeadRecord("orphan", reason, task_id=msg.task_id, run_id=msg.run_id)
        send_record(self.sqs, self.settings, record)
        self._emit("orphan", None, error=reason)
        return Result(Outcome.ACK, "orphan", reason)

    # --- plumbing -----------------------------------------------------------------------------

    def _change_visibility(self, queue_url: str | None, receipt: str | None, seconds: int) -> None:
        if not queue_url or not receipt:
            return
        try:
            self.sqs.change_message_visibility(
                QueueUrl=queue_url,
                ReceiptHandle=receipt,
                VisibilityTimeout=max(0, min(43200, seconds)),
            )
        except Exception as exc:
            # The message comes back at its current visibility instead: later, never lost.
            report_error(exc, "change_visibility", self.logger, self.metrics)

    def _metric(self, name: str, unit: str, value: float) -> None:
        if self.metrics is not None:
            self.metrics.add_metric(name=name, unit=unit, value=value)

    def _emit(self, kind: str, run: RunRow | None, **info: Any) -> None:
        if self.on_event is not None:
            ids = {"task_id": run.task_id, "run_id": run.run_id} if run is not None else {}
            self.on_event(kind, {**ids, **info})

    def _log(self, level: str, message: str, run: RunRow | None, **extra: Any) -> None:
        if self.logger is None:
            return
        if run is not None:  # ids and attempt only: payloads never reach the logs
            extra.update(task_id=run.task_id, run_id=run.run_id, attempt=int(run.attempt or 0))
        getattr(self.logger, level)(message, extra=extra)


def _run_ids(run: RunRow) -> dict[str, str]:
    return {"task_id": run.task_id, "run_id": run.run_id}


def _encode_result(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = dumps(value)
    except (TypeError, ValueError):
        text = dumps(repr(value))
    if len(text.encode()) > MAX_RESULT_BYTES:
        text = text.encode()[: MAX_RESULT_BYTES - 3].decode(errors="ignore") + "…"
    return text


def run_with_timeout(
    func: Callable[..., Any], payload: dict[str, Any], ctx: RunContext, timeout_s: float
) -> tuple[bool, Any, str | None]:
    """Call the handler in a thread; past ``timeout_s`` it is stopped and the attempt fails.

    Python cannot kill a thread: an overrunning handler gets ``HandlerTimeout`` raised inside it
    (which ends pure-Python code at its next bytecode) and is then abandoned as a daemon thread,
    so a handler blocked in C code may keep running in the background until the process ends.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = func(payload, ctx)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"dynacron-{ctx.run_id}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        _raise_in(thread, HandlerTimeout)
        return False, None, f"HandlerTimeout: timed out after {timeout_s:g}s"
    if "error" in box:
        exc = box["error"]
        return False, None, f"{type(exc).__name__}: {exc}"
    return True, box.get("value"), None


def _raise_in(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
        )
