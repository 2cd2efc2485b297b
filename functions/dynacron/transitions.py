"""Every state change of a task, run or limit item: one named method each, its condition once.

With ``store.py`` (models, keys, reads) this module is the storage layer: the only modules that
import PynamoDB (``tests/unit/test_layering.py`` asserts it). ``Store`` mixes :class:`Transitions`
in, so callers write ``store.claim(row, ...)``, ``store.finish(run, ...)``. A method returns
True when its write applied and False when its condition failed (the item moved: someone else
owns it now); any other backend failure comes out as one of ``dynacron.errors``
(``boundary.translate``: ``BackendError``, ``EndpointUnreachable``, ``ConflictError``...), with
the PynamoDB/botocore original chained as ``__cause__``. The Dispatcher, Executor, Scheduler,
CLI and local runtime decide *which* transition to make; the conditions that make each one safe
against the others (guarantees 1-4 of DESIGN.md) are written here only.

Operations that ride on a task transaction (pause/resume/cancel/update move the pending head
with the task) are given as :class:`HeadOp` values built by the ``op_*`` methods.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from . import attempts
from . import store as keys
from .boundary import translate
from .errors import ConflictError, DynacronError
from .types import RunStatus, TaskStatus

if TYPE_CHECKING:
    from .settings import Settings
    from .store import Models, RunRow, TaskRow

_CONDITION_FAILED = "ConditionalCheckFailedException"
_RACE_CODES = {"ConditionalCheckFailed"}
_TRANSIENT_CODES = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
_CHAIN_TRIES = 4
_FINISHED = (TaskStatus.CANCELLED.value, TaskStatus.COMPLETED.value)


@dataclass(frozen=True)
class HeadOp:
    """One write on a task's pending head inside the task's transaction (opaque to callers)."""

    apply: Callable[[TransactWrite], None]


def _applied(write: Callable[[], Any]) -> bool:
    """Run one conditional write: True if it applied, False if its condition failed."""
    try:
        write()
    except PynamoDBException as exc:
        if getattr(exc, "cause_response_code", None) == _CONDITION_FAILED:
            return False
        raise translate(exc) from exc
    return True


def _set_or_remove(model: Any, values: dict[str, Any]) -> list[Any]:
    """Update actions for ``{attribute: value}``: a value of None removes the attribute."""
    return [
        getattr(model, name).remove() if value is None else getattr(model, name).set(value)
        for name, value in values.items()
    ]


def _reason_codes(exc: TransactWriteError) -> set[Any]:
    return {getattr(r, "code", None) for r in (exc.cancellation_reasons or []) if r}


class Transitions:
    """The write half of ``Store`` (mixed into it)."""

    settings: Settings
    models: Models

    # --- shared pieces -------------------------------------------------------------------

    def transaction(self, client_request_token: str | None = None) -> TransactWrite:
        return TransactWrite(
            connection=self.models.Run._get_connection().connection,
            client_request_token=client_request_token,
        )

    def ttl(self, now_ms: int) -> int:
        """The TTL (epoch seconds) of a run that ends at ``now_ms``."""
        return now_ms // 1000 + int(self.settings.retention_days * 86400)

    def _ended(self, status: str, now_ms: int) -> list[Any]:
        """What every end of a run sets: its status, when, its TTL; it leaves the due index."""
        run = self.models.Run
        return [
            run.status.set(status),
            run.finished_at.set(now_ms),
            run.expires_at.set(self.ttl(now_ms)),
            run.due_shard.remove(),
            run.due_at.remove(),
        ]

    def _skipped(self, reason: str, now_ms: int) -> list[Any]:
        return [*self._ended(RunStatus.SKIPPED.value, now_ms), self.models.Run.error.set(reason)]

    def _claim_actions(self, row: RunRow, fence: str, now_ms: int) -> list[Any]:
        """A claim: ``queued`` under a new fence, in the index at its lease expiry."""
        run = self.models.Run
        lease_ms = max(now_ms, keys.start_ms(row)) + int(self.settings.lease_s * 1000)
        return [
            run.status.set(RunStatus.QUEUED.value),
            run.fence.set(fence),
            run.due_at.set(lease_ms),
            run.dispatches.set(run.dispatches + 1),
        ]

    def _same_attempt(self, run: RunRow, status: str) -> Any:
        """The attempt we hold: same fence, status and attempt number as we read."""
        model = self.models.Run
        return (
            (model.fence == run.fence)
            & (model.status == status)
            & (model.attempt == int(run.attempt or 0))
        )

    # --- the poller ----------------------------------------------------------------------

    def claim(self, row: RunRow, fence: str, now_ms: int) -> bool:
        """Claim a single run (one-time, manual) or re-claim one whose lease expired."""
        run = self.models.Run
        condition = run.status == row.status
        if row.status != RunStatus.PENDING.value:
            condition &= (run.fence == row.fence) & (run.due_at <= now_ms)
            condition = self._unless_alive(condition, row, now_ms)
        actions = self._claim_actions(row, fence, now_ms)
        return self._ours(
            lambda: _applied(lambda: row.update(actions=actions, condition=condition)), row, fence
        )

    def _ours(self, claim: Callable[[], bool], row: RunRow, fence: str) -> bool:
        """Make a claim: True when the run is claimed under ``fence``, also when ``claim``
        lost its condition, or raised, because an earlier try of this very write applied: the
        SDK retried a write whose response was lost (a read timeout under load), and the retry
        found the run already claimed under our fence. Without this the claim's message is
        never sent and the run waits a whole lease (300 s at the defaults) for the next poll
        to take it back. One strongly consistent read per lost race; ``row`` is refreshed
        when it is ours."""
        try:
            applied = claim()
        except DynacronError:
            if self._carries(row, "fence", fence):
                return True
            raise
        return applied or self._carries(row, "fence", fence)

    def _carries(self, row: RunRow, name: str, token: str) -> bool:
        """Whether the stored run's ``name`` is ``token`` (our write applied although its
        response was lost); if so ``row`` is refreshed from it. One consistent read."""
        current = self.get_run_row(row.task_id, row.run_id)  # type: ignore[attr-defined]
        if current is None or getattr(current, name) != token:
            return False
        row.deserialize(current.serialize())
        return True

    def claim_occurrence(self, row: RunRow, fence: str, nxt: RunRow | None, now_ms: int) -> bool:
        """Claim an occurrence, create the next one, move the task's ``next_fire_at``: at once.

        The last occurrence (a one-time task's run, the end of a bounded chain) has nothing to
        create: one conditional UpdateItem, not a transaction with the task (1 WRU, not 4). The
        task keeps ``next_fire_at`` at this run and is completed when it ends
        (``Store.settle``). That the task is still active is read from the run itself: a pause
        takes its head out of the index (``due_at`` gone), a cancel skips it, an update deletes
        or retunes it, and each of those fails this condition."""
        actions = self._claim_actions(row, fence, now_ms)
        condition = self._as_read(row) & self.models.Run.due_at.exists()

        def claim() -> bool:
            if nxt is None:
                return _applied(lambda: row.update(actions=actions, condition=condition))
            return self._chain(row, actions, nxt, now_ms, False)

        return self._ours(claim, row, fence)

    def skip_occurrence(self, row: RunRow, nxt: RunRow | None, reason: str, now_ms: int) -> bool:
        """Skip an occurrence (misfire policy) and chain the next one, atomically."""
        return self._chain(row, self._skipped(reason, now_ms), nxt, now_ms, True)

    def _chain(
        self, row: RunRow, row_actions: list[Any], nxt: RunRow | None, now_ms: int, skip: bool
    ) -> bool:
        run, task = self.models.Run, self.models.Task
        task_actions: list[Any] = [task.updated_at.set(now_ms), task.version.add(1)]
        if nxt is None:
            # The chain ends. A claimed last run keeps the task active until the run ends
            # (Store.settle reads that); a skipped one ends it now.
            task_actions.append(task.next_fire_at.remove())
            if skip:
                task_actions.append(task.status.set(TaskStatus.COMPLETED.value))
        else:
            task_actions.append(task.next_fire_at.set(nxt.scheduled_for))
        for attempt in range(_CHAIN_TRIES):
            try:
                # A token per try: the SDK's own retries of a transaction whose response was
                # lost then succeed as the same transaction instead of failing its conditions.
                with self.transaction(client_request_token=uuid.uuid4().hex) as tx:
                    tx.update(row, actions=row_actions, condition=self._as_read(row))
                    if nxt is not None:
                        tx.save(nxt, condition=run.sk.does_not_exist())
                    tx.update(
                        task(keys.task_pk(row.task_id), keys.TASK_SK),
                        actions=task_actions,
                        condition=task.status == TaskStatus.ACTIVE.value,
                    )
                return True
            except TransactWriteError as exc:
                codes = _reason_codes(exc)
                if codes & _RACE_CODES:
                    return False
                if not codes & _TRANSIENT_CODES or attempt == _CHAIN_TRIES - 1:
                    raise translate(exc) from exc
                time.sleep(0.05 * (2**attempt))  # a concurrent transaction on the same items
        return False

    def _as_read(self, row: RunRow) -> Any:
        """The occurrence is still pending *and* chains as we read it: a ``Scheduler.update``
        that changed what the next occurrence copies from it (trigger, misfire policy,
        attempts, lane, spread, limit) meanwhile makes this claim lose the race, so no next
        occurrence is ever created from the old values."""
        run = self.models.Run
        condition = run.status == RunStatus.PENDING.value
        for name in ("trigger", "misfire", "lane", "spread_ms", "limit"):
            attr, value = getattr(run, name), getattr(row, name)
            condition &= attr.does_not_exist() if value is None else attr == value
        return condition & (run.max_attempts == int(row.max_attempts or 1))

    def _unless_alive(self, condition: Any, row: RunRow, now_ms: int) -> Any:
        """``condition``, and for a running attempt: its worker stopped renewing it (the
        write-side twin of ``store.alive``; other states' ``alive_until`` is an earlier
        attempt's, or absent)."""
        if row.status != RunStatus.RUNNING.value:
            return condition
        run = self.models.Run
        return condition & (run.alive_until.does_not_exist() | (run.alive_until <= now_ms))

    def leave_index(self, row: RunRow) -> bool:
        """A finished run that kept its index keys leaves the index (never dispatched)."""
        run = self.models.Run
        actions: list[Any] = [run.due_shard.remove(), run.due_at.remove()]
        return _applied(lambda: row.update(actions=actions, condition=run.status == row.status))

    def mark_dead(self, row: RunRow, error: str, now_ms: int) -> bool:
        """A claimed run that will never finish (attempts or dispatches exhausted) is ``dead``;
        its last attempt, if its worker died, is recorded ``lost``."""
        run = self.models.Run
        lost = attempts.unreported(run, row)
        actions = [
            *([] if lost is None else [lost]),
            *self._ended(RunStatus.DEAD.value, now_ms),
            run.error.set(error),
        ]
        condition = (run.status == row.status) & (run.fence == row.fence)
        condition = self._unless_alive(condition, row, now_ms)
        return _applied(lambda: row.update(actions=actions, condition=condition))

    def defer(self, row: RunRow, fence: str, due_ms: int) -> bool:
        """A claimed run left for a later tick (rate limit): due again at ``due_ms``, this
        dispatch not counted."""
        return self._due_again(row, fence, due_ms, [self.models.Run.dispatches.add(-1)])

    def release(self, row: RunRow, fence: str, now_ms: int) -> bool:
        """A claimed run whose message SQS did not take: due again now, so the next poll
        takes it back at once rather than when its lease ends. The dispatch counts, so a run
        that SQS always refuses ends ``dead`` after ``max_dispatches`` polls."""
        return self._due_again(row, fence, now_ms, [])

    def _due_again(self, row: RunRow, fence: str, due_ms: int, extra: list[Any]) -> bool:
        """Our claim (fence), not yet started: back in the index at ``due_ms``."""
        m = self.models.Run
        actions: list[Any] = [m.due_at.set(due_ms), *extra]
        condition = (m.fence == fence) & (m.status == RunStatus.QUEUED.value)
        return _applied(lambda: row.update(actions=actions, condition=condition))

    # --- the worker ----------------------------------------------------------------------

    def start(
        self, run: RunRow, now_ms: int, lease_ms: int, starter: str, throttled_ms: int = 0
    ) -> bool:
        """Start the next attempt: ``running``, attempt + 1, our start token, alive for
        ``lease_ms``. The index keeps the claim's lease when it outlasts that (an on-time start):
        no re-key; a late or long attempt moves it to cover the attempt (``_backstop``)."""
        model = self.models.Run
        observed = int(run.attempt or 0)
        until = now_ms + lease_ms
        actions: list[Any] = [
            model.status.set(RunStatus.RUNNING.value),
            model.attempt.set(observed + 1),
            model.starter.set(starter),
            model.started_at.set(now_ms),
            model.alive_until.set(until),
            *self._backstop(run, until),
        ]
        if throttled_ms:
            actions.append(model.throttled_ms.set(throttled_ms))
        lost = attempts.unreported(model, run)  # taking over from a worker that died
        if lost is not None:
            actions.append(lost)
        condition = self._same_attempt(run, run.status)
        return _applied(lambda: run.update(actions=actions, condition=condition))

    def _backstop(self, run: RunRow, until_ms: int) -> list[Any]:
        """Keep the index lease (``due_at``, when the poller takes a run back whose message
        was lost) beyond the attempt's liveness. Moved a whole lease ahead when it must move,
        so a long attempt's renewals re-key the index once per lease, not once per beat."""
        if int(run.due_at or 0) >= until_ms:
            return []
        return [self.models.Run.due_at.set(until_ms + int(self.settings.lease_s * 1000))]

    def started_by(self, run: RunRow, starter: str) -> bool:
        """Whether the run's current attempt carries our start token (a start whose response
        was lost and whose retry failed its condition); if so ``run`` is refreshed."""
        return self._carries(run, "starter", starter)

    def renew(self, run: RunRow, until_ms: int) -> bool:
        """Extend a running attempt's liveness, only while it is still ours (heartbeat); the
        index lease moves only when the liveness would outlast it. ``run`` is updated from the
        response: pass the heartbeat's own copy of the row, not the attempt's."""
        model = self.models.Run
        condition = (
            (model.fence == run.fence)
            & (model.status == RunStatus.RUNNING.value)
            & (model.starter == run.starter)
        )
        actions = [model.alive_until.set(until_ms), *self._backstop(run, until_ms)]
        return _applied(lambda: run.update(actions=actions, condition=condition))

    def retry(self, run: RunRow, error: str, due_ms: int, record: str) -> bool:
        """The attempt failed and another follows: ``retrying``, due again at ``due_ms``."""
        model = self.models.Run
        actions = [
            model.status.set(RunStatus.RETRYING.value),
            model.error.set(error),
            model.due_at.set(due_ms),
            attempts.append_action(model, record),
        ]
        condition = self._same_attempt(run, RunStatus.RUNNING.value)
        return _applied(lambda: run.update(actions=actions, condition=condition))

    def finish(
        self,
        run: RunRow,
        status: str,
        now_ms: int,
        error: str | None = None,
        result: str | None = None,
        running: bool = False,
        record: str | None = None,
    ) -> bool:
        """End the run (succeeded, dead, expired, skipped). ``record``: our attempt's history
        entry; without one, an attempt started before that never reported is ``lost``.
        ``running``: the end of our own attempt (conditioned on its number too)."""
        model = self.models.Run
        actions = self._ended(status, now_ms)
        if record is not None:
            actions.append(attempts.append_action(model, record))
        else:
            lost = attempts.unreported(model, run)
            if lost is not None:
                actions.append(lost)
        if error is not None:
            actions.append(model.error.set(error))
        if result is not None:
            actions.append(model.result.set(result))
        if running:
            condition = self._same_attempt(run, RunStatus.RUNNING.value)
        else:
            condition = (model.fence == run.fence) & (model.status == run.status)
        return _applied(lambda: run.update(actions=actions, condition=condition))

    def reslot(self, run: RunRow, slot_ms: int) -> bool:
        """Keep a later rate-limit slot on the run, so a redelivery waits for it."""
        m = self.models.Run
        condition = (m.fence == run.fence) & (m.status == run.status)
        return _applied(lambda: run.update(actions=[m.slot_ms.set(slot_ms)], condition=condition))

    # --- the SDK: tasks ------------------------------------------------------------------

    def create(self, task_row: TaskRow, run_row: RunRow) -> bool:
        """A new task and its first run, together; False if the task id exists."""
        try:
            with self.transaction() as tx:
                tx.save(task_row, condition=self.models.Task.pk.does_not_exist())
                tx.save(run_row, condition=self.models.Run.pk.does_not_exist())
        except TransactWriteError as exc:
            if _reason_codes(exc) & _RACE_CODES:
                return False
            raise translate(exc) from exc
        return True

    def pause(self, row: TaskRow, now_ms: int, ops: Iterable[HeadOp]) -> bool:
        return self._set_status(row, TaskStatus.PAUSED.value, now_ms, ops, keep_next=True)

    def resume(
        self, row: TaskRow, now_ms: int, next_fire_ms: int | None, ops: Iterable[HeadOp]
    ) -> bool:
        """Active again from ``next_fire_ms``; with nothing left to fire, ``completed``."""
        if next_fire_ms is None:
            return self._set_status(row, TaskStatus.COMPLETED.value, now_ms, ops)
        return self._set_status(row, TaskStatus.ACTIVE.value, now_ms, ops, next_fire_ms)

    def cancel(self, row: TaskRow, now_ms: int, ops: Iterable[HeadOp]) -> bool:
        return self._set_status(row, TaskStatus.CANCELLED.value, now_ms, ops)

    def _set_status(
        self,
        row: TaskRow,
        status: str,
        now_ms: int,
        ops: Iterable[HeadOp],
        next_fire_ms: int | None = None,
        keep_next: bool = False,
    ) -> bool:
        """False if the task moved since ``row`` was read (or the transaction was refused):
        the caller reads again and retries."""
        task = self.models.Task
        actions: list[Any] = [task.updated_at.set(now_ms), task.version.add(1)]
        if next_fire_ms is not None:
            actions.append(task.next_fire_at.set(next_fire_ms))
        elif not keep_next:
            actions.append(task.next_fire_at.remove())
        actions.append(task.status.set(status))
        try:
            self._task_tx(row, actions, ops)
        except TransactWriteError:
            return False
        return True

    def update(self, row: TaskRow, values: dict[str, Any], ops: Iterable[HeadOp]) -> bool:
        """Set the task's ``values`` (attribute -> value) and apply ``ops`` to its head, in
        one transaction conditioned on the version read; False if it lost a race."""
        task = self.models.Task
        actions = _set_or_remove(task, values)
        actions.append(task.version.add(1))
        try:
            self._task_tx(row, actions, ops)
        except TransactWriteError as exc:
            if _reason_codes(exc) & {"ConditionalCheckFailed", "TransactionConflict"}:
                return False
            raise translate(exc) from exc
        return True

    def _task_tx(self, row: TaskRow, actions: list[Any], ops: Iterable[HeadOp]) -> None:
        with self.transaction() as tx:
            tx.update(row, actions=actions, condition=self.models.Task.version == row.version)
            for op in ops:
                op.apply(tx)

    def delete(self, task_id: str, now_ms: int) -> int:
        """Delete every run of the task (BatchWriteItem) and the task if it has ended."""
        task = self.models.Task
        current = self.get_task_row(task_id)  # type: ignore[attr-defined]
        # Ended (cancelled or completed): nothing can revive it now. A task whose last run
        # ended is completed without saying so (Store.settle): then nothing may have touched
        # it since it was read (its runs go first, so the head cannot be read afterwards).
        condition = task.status.is_in(*_FINISHED)
        if current is not None and current.status == TaskStatus.ACTIVE.value:
            settled = self.settle([current], now_ms)[0]  # type: ignore[attr-defined]
            if settled.status == TaskStatus.COMPLETED.value:
                condition |= task.version == current.version
        deleted = 0
        with self.models.Run.batch_write() as batch:
            for run_row in self.query_runs(task_id):  # type: ignore[attr-defined]
                batch.delete(run_row)
                deleted += 1
        if current is not None and not _applied(lambda: current.delete(condition=condition)):
            raise ConflictError(f"task {task_id!r} was revived while it was deleted")
        return deleted

    # --- the SDK: runs -------------------------------------------------------------------

    def add_run(self, run_row: RunRow) -> bool:
        """A new run (``trigger_now``); False if its id exists."""
        condition = self.models.Run.sk.does_not_exist()
        return _applied(lambda: run_row.save(condition=condition))

    def skip(self, run: RunRow, reason: str, now_ms: int) -> bool:
        """A pending, queued or retrying run of a cancelled task is ``skipped``."""
        model = self.models.Run
        condition = model.status == run.status
        if run.fence:
            condition &= model.fence == run.fence
        actions = self._skipped(reason, now_ms)
        return _applied(lambda: run.update(actions=actions, condition=condition))

    def redrive(self, row: RunRow, max_attempts: int, shard: int, now_ms: int) -> None:
        """Give a dead or expired run a fresh set of attempts, due now; ``ConflictError`` if
        it changed (or was redriven) since it was read."""
        run = self.models.Run
        revive: list[Any] = [
            run.status.set(RunStatus.PENDING.value),
            run.max_attempts.set(max_attempts),
            run.dispatches.set(0),
            run.due_shard.set(shard),
            run.due_at.set(now_ms),
            run.expires_at.remove(),
            run.trigger.remove(),  # a redriven run does not chain: its successor exists
            run.manual.set(True),
            run.redrives.add(1),
        ]
        # the life we read: a concurrent redrive (and re-death) in between makes this fail
        same_life = (
            run.redrives.does_not_exist() if row.redrives is None else run.redrives == row.redrives
        )
        condition = (run.status == row.status) & same_life
        if not _applied(lambda: row.update(actions=revive, condition=condition)):
            raise ConflictError(f"run {row.run_id!r} changed meanwhile; read and retry")

    # --- ops on a task's pending head (inside the task's transaction) ----------------------

    def _on_pending(self, head: RunRow, actions: list[Any]) -> HeadOp:
        condition = self.models.Run.status == RunStatus.PENDING.value
        return HeadOp(lambda tx: tx.update(head, actions=actions, condition=condition))

    def op_leave_index(self, head: RunRow) -> HeadOp:
        """The paused task's head waits outside the due index (still ``pending``)."""
        run = self.models.Run
        return self._on_pending(head, [run.due_shard.remove(), run.due_at.remove()])

    def op_back_in(self, head: RunRow, shard: int, due_ms: int) -> HeadOp:
        run = self.models.Run
        return self._on_pending(head, [run.due_shard.set(shard), run.due_at.set(due_ms)])

    def op_skip(self, head: RunRow, reason: str, now_ms: int) -> HeadOp:
        return self._on_pending(head, self._skipped(reason, now_ms))

    def op_retune(
        self,
        head: RunRow,
        max_attempts: int,
        misfire: str | None,
        trigger: str | None,
        values: dict[str, Any] | None = None,
    ) -> HeadOp:
        """The head keeps its occurrence; what it copies from the task (and chains with)
        changes, and ``values`` (attribute -> value, None removes it) with it."""
        run = self.models.Run
        actions = [run.max_attempts.set(max_attempts), *_set_or_remove(run, values or {})]
        if misfire is not None:
            actions.append(run.misfire.set(misfire))
        if trigger is not None:
            actions.append(run.trigger.set(trigger))
        return self._on_pending(head, actions)

    def op_drop(self, head: RunRow) -> HeadOp:
        condition = self.models.Run.status == RunStatus.PENDING.value
        return HeadOp(lambda tx: tx.delete(head, condition=condition))

    def op_create(self, new: RunRow) -> HeadOp:
        condition = self.models.Run.sk.does_not_exist()
        return HeadOp(lambda tx: tx.save(new, condition=condition))

    # --- limits (limits.py) ----------------------------------------------------------------

    def get_limit_row(self, name: str) -> Any:
        model = self.models.Limit
        try:
            return model.get(keys.limit_pk(name), keys.LIMIT_SK, consistent_read=True)
        except model.DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise translate(exc) from exc

    def scan_limit_rows(self) -> Iterable[Any]:
        model = self.models.Limit
        try:
            yield from model.scan(model.sk == keys.LIMIT_SK)
        except PynamoDBException as exc:
            raise translate(exc) from exc

    def put_limit(
        self, name: str, rate: str | None, per_s: float | None, burst: int, concurrency: int | None
    ) -> None:
        """Create or change a limit; the counter and leases survive a change of rate."""
        m = self.models.Limit
        actions: list[Any] = [
            m.name.set(name),
            m.burst.set(burst),
            m.version.add(1),
            *_set_or_remove(m, {"rate": rate, "per_s": per_s, "concurrency": concurrency}),
        ]
        row = m(keys.limit_pk(name), keys.LIMIT_SK)
        _applied(lambda: row.update(actions=actions))

    def delete_limit(self, row: Any) -> bool:
        return _applied(row.delete)

    def move_counter(self, row: Any, tat_ms: float) -> bool:
        """Move the rate counter (GCRA's TAT) only if nobody moved it since ``row`` was read."""
        m = self.models.Limit
        observed = m.tat_ms.does_not_exist() if row.tat_ms is None else m.tat_ms == row.tat_ms
        return _applied(lambda: row.update(actions=[m.tat_ms.set(tat_ms)], condition=observed))

    def set_leases(self, row: Any, leases: dict[str, int]) -> bool:
        """Replace the concurrency leases, only if the limit's version is the one read."""
        m = self.models.Limit
        actions = [m.leases.set(leases), m.version.add(1)]
        return _applied(lambda: row.update(actions=actions, condition=m.version == row.version))
