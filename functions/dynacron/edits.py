"""``Scheduler.update`` and ``Scheduler.delete``: change a task in place, or remove it.

``update`` writes the task and its pending occurrence (the *head*) in one transaction,
conditioned on the task's version and on the head still being ``pending``. A head the poller
claimed first is left to run (it is the old schedule's occurrence, already on its way); the
update then reads again and replaces the head the claim chained. The poller's claim of an
occurrence is conditioned on the head's trigger, misfire policy and attempt count as it read
them (``dispatch``), so it can never chain a next occurrence from a head an update changed
meanwhile. A new trigger takes effect from now: its first fire at or after now, skipping an
instant the task already has a run for (that run *is* that occurrence: none is doubled).

``delete`` cancels the task first (nothing of it is due any more, claimed runs are skipped),
then deletes every run and finally the task: the id is free again. A message already in flight
for a deleted run ends on the DLQ as an ``orphan`` record ("not found (deleted?)").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .clock import to_ms
from .errors import ConflictError, InvalidStateError, ValidationError
from .store import RunRow, TaskRow, dumps, scheduled_run_id
from .types import MisfirePolicy, RetryPolicy, Task, TaskStatus

if TYPE_CHECKING:
    from .triggers import Trigger

_RETRIES = 5
#: The free instant search for a new trigger's first fire stops after this many occupied ones.
_MAX_OCCUPIED = 100


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Leave this field as it is" (the default of every ``update`` argument).
UNSET: Any = _Unset()


@dataclass
class _Edit:
    """What one update writes: task values, head operations, the head to dispatch soon."""

    task_values: dict[str, Any] = field(default_factory=dict)
    run_ops: list[Any] = field(default_factory=list)
    new_head: RunRow | None = None


def cancelled_message(task_id: str) -> str:
    return (
        f"task {task_id!r} is cancelled: delete it (Scheduler.delete / dynacron delete "
        f"{task_id}) to use the id again"
    )


class TaskEdits:
    """The update/delete half of ``Scheduler`` (mixed into it; uses its helpers)."""

    # provided by Scheduler
    store: Any
    settings: Any
    clock: Any

    def update(
        self,
        task_id: str,
        *,
        payload: dict[str, Any] = UNSET,
        trigger: Trigger = UNSET,
        retry: RetryPolicy = UNSET,
        timeout: float | timedelta = UNSET,
        misfire: MisfirePolicy | str = UNSET,
        lane: str = UNSET,
        spread: float | timedelta | None = UNSET,
        limit: str | None = UNSET,
    ) -> Task:
        """Change what the task runs and when; returns the updated task.

        Only the arguments given change; each is validated as ``schedule()`` validates it
        (``ValidationError`` before anything is written; a task with a target keeps it and its
        payload is checked against it again). A new ``trigger`` replaces the pending occurrence
        atomically and fires from now on. ``payload`` and ``timeout`` apply to every attempt
        that starts after the update, ``retry`` to runs not yet claimed. A cancelled task
        raises ``InvalidStateError``; a completed one given a new trigger becomes active.
        ``lane``, ``spread`` and ``limit`` are checked as ``schedule()`` checks them (an unknown
        lane, a spread outside (0, 900 s], a limit never set: ``ValidationError``);
        ``spread=None`` / ``limit=None`` remove them. They apply to the pending occurrence
        (its lane, its limit, its offset and so the instant it is due) and every later one; a
        run already claimed keeps what it was sent with.
        """
        given = {"payload": payload, "trigger": trigger, "retry": retry, "timeout": timeout,
                 "misfire": misfire, "lane": lane, "spread": spread,
                 "limit": limit}  # fmt: skip
        if all(v is UNSET for v in given.values()):
            return self.get(task_id)  # type: ignore[attr-defined]
        for _ in range(_RETRIES):
            row = self._task_row(task_id)  # type: ignore[attr-defined]
            if row.status == TaskStatus.CANCELLED.value:
                raise InvalidStateError(cancelled_message(task_id))
            spec = self._edited_spec(row, given)
            edit = self._edit(row, spec, trigger is not UNSET)
            soon = edit.new_head if row.status != TaskStatus.PAUSED.value else None
            if soon is not None:
                self._needs_queue_for(soon)
            if not self.store.update(row, edit.task_values, edit.run_ops):
                continue  # the poller (or another update) moved the task: read again
            if soon is not None:
                self._short_notice(soon)  # type: ignore[attr-defined]
            return self.get(task_id)  # type: ignore[attr-defined]
        raise ConflictError(f"task {task_id!r} kept changing during the update; try again")

    def _needs_queue_for(self, head: RunRow) -> None:
        if self.settings.queue_url and self._is_short_notice(int(head.scheduled_for)):  # type: ignore[attr-defined]
            self._check_queue(head.lane)  # type: ignore[attr-defined]

    def _edited_spec(self, row: TaskRow, given: dict[str, Any]) -> dict[str, Any]:
        """The task's spec with the given fields replaced, validated as schedule() does."""
        from .sdk import with_target
        from .targets import target_from_dict
        from .triggers import trigger_from_dict

        def pick(name: str, current: Any) -> Any:
            return current if given[name] is UNSET else given[name]

        spec = self._validate(  # type: ignore[attr-defined]
            row.task_type,
            pick("payload", json.loads(row.payload)),
            pick("trigger", trigger_from_dict(json.loads(row.trigger))),
            row.task_id,
            pick("retry", RetryPolicy.from_dict(json.loads(row.retry))),
            pick("timeout", float(row.timeout)),
            pick("misfire", row.misfire),
            pick("lane", row.lane or "default"),
            None if row.expire_after is None else float(row.expire_after),
        )
        if row.target:  # keeps its target; the reserved payload key is checked again
            spec = with_target(spec, target_from_dict(json.loads(row.target)), self.settings)
        spread_now = None if row.spread_ms is None else int(row.spread_ms) / 1000
        return self._with_spread_and_limit(  # type: ignore[attr-defined]
            spec, pick("spread", spread_now), pick("limit", row.limit)
        )

    def _edit(self, row: TaskRow, spec: dict[str, Any], new_trigger: bool) -> _Edit:
        now = self.clock.now()
        values: dict[str, Any] = {
            "payload": spec["payload"],
            "retry": dumps(spec["retry"].to_dict()),
            "timeout": spec["timeout"],
            "misfire": spec["misfire"],
            "spec_hash": spec["hash"],
            "updated_at": to_ms(now),
            "lane": spec["lane"],
            # None removes the attribute (update(spread=None) / update(limit=None))
            "spread_ms": spec.get("spread_ms"),
            "limit": spec.get("limit"),
        }
        edit = _Edit(task_values=values)
        head = self._pending_head(row)  # type: ignore[attr-defined]
        if not new_trigger:
            if head is not None:
                edit.run_ops.append(self._retune(head, None, spec))
            return edit
        trigger = spec["trigger"]
        trigger.validate_for_schedule(now, self._past_grace())
        anchored = trigger.anchored(now)
        first = self._free_first(row, anchored, now, head)
        trigger_text = dumps(anchored.to_dict())
        values["trigger"] = trigger_text
        if row.status == TaskStatus.COMPLETED.value:
            values["status"] = TaskStatus.ACTIVE.value
        values["next_fire_at"] = to_ms(first)
        if head is not None and int(head.scheduled_for) == to_ms(first):
            edit.run_ops.append(self._retune(head, trigger_text, spec))
            return edit
        if head is not None:
            edit.run_ops.append(self.store.op_drop(head))
        edit.new_head = self._new_head(row, to_ms(first), trigger_text, spec)
        edit.run_ops.append(self.store.op_create(edit.new_head))
        return edit

    def _past_grace(self) -> float:
        from .sdk import PAST_GRACE_SECONDS

        return PAST_GRACE_SECONDS

    def _free_first(
        self, row: TaskRow, trigger: Trigger, now: datetime, head: RunRow | None
    ) -> datetime:
        """The new trigger's first fire at or after now whose run id is free (or is the head
        being replaced): an instant the task already ran or claimed is that occurrence."""
        first = trigger.first(now)
        for _ in range(_MAX_OCCUPIED):
            if first is None:
                raise ValidationError("trigger", "has no fire time in the future")
            ms = to_ms(first)
            taken = self.store.get_run_row(row.task_id, scheduled_run_id(ms))
            if taken is None or (head is not None and taken.sk == head.sk):
                return first
            first = trigger.next(first)
        raise ValidationError("trigger", f"its next {_MAX_OCCUPIED} fire times already have runs")

    def _retune(self, head: RunRow, trigger_text: str | None, spec: dict[str, Any]) -> Any:
        """The head keeps its time; what it copies from the task (and chains with) changes."""
        misfire = None if head.manual else spec["misfire"]
        trigger = None if head.manual else trigger_text
        return self.store.op_retune(
            head, spec["retry"].max_attempts, misfire, trigger, _lane_values(head, spec)
        )

    def _new_head(
        self, row: TaskRow, when_ms: int, trigger_text: str, spec: dict[str, Any]
    ) -> RunRow:
        head = self.store.pending_run(
            row, scheduled_run_id(when_ms), when_ms, spec["retry"].max_attempts, int(row.shard)
        )
        head.trigger, head.misfire = trigger_text, spec["misfire"]
        _apply_lane(head, spec)
        if row.status == TaskStatus.PAUSED.value:
            head.due_shard = head.due_at = None  # a paused task's head waits outside the index
        return head

    # --- delete ---------------------------------------------------------------------------

    def delete(self, task_id: str) -> int:
        """Remove the task, its pending runs and its whole history; the id is free again.

        Cancels it first (so nothing of it is claimed while its runs go), then deletes every
        run (a Query and a BatchWriteItem per 25 runs: one write unit per run item ≤ 1 KB) and
        the task. Returns how many runs were deleted. ``TaskNotFound`` if there is no task.
        """
        row = self._task_row(task_id)  # type: ignore[attr-defined]
        if row.status in (TaskStatus.ACTIVE.value, TaskStatus.PAUSED.value):
            self.cancel(task_id)  # type: ignore[attr-defined]
        return int(self.store.delete(task_id, to_ms(self.clock.now())))


def _lane_values(head: RunRow, spec: dict[str, Any]) -> dict[str, Any]:
    """The head's lane, limit and spread as the spec says (None: removed); a new spread moves
    its offset and (when it is in the due index) the instant it is due."""
    from .spread import offset_ms

    spread_ms = spec.get("spread_ms")
    offset = 0 if head.manual else offset_ms(head.task_id, head.run_id, spread_ms)
    values: dict[str, Any] = {
        "lane": spec["lane"],
        "limit": spec.get("limit"),
        "spread_ms": spread_ms,
        "offset_ms": offset or None,
    }
    if head.due_at is not None:  # a paused task's head waits outside the index
        values["due_at"] = int(head.scheduled_for) + offset
    return values


def _apply_lane(head: RunRow, spec: dict[str, Any]) -> None:
    """A new head made from the task row as it was: give it the spec's lane, limit, spread."""
    from .spread import offset_ms

    spread_ms = spec.get("spread_ms")
    offset = offset_ms(head.task_id, head.run_id, spread_ms)
    head.lane, head.limit, head.spread_ms = spec["lane"], spec.get("limit"), spread_ms
    head.offset_ms = offset or None
    head.due_at = int(head.scheduled_for) + offset
