"""The frozen values users see: Task, Run, RetryPolicy, RunContext, and the status enums.

Storage rows (PynamoDB models) never leave ``store.py``; these dataclasses are what the SDK,
the CLI and handlers receive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .errors import ValidationError

if TYPE_CHECKING:
    from .targets import Target
    from .triggers import Trigger

# --- limits (each one is named in the error that enforces it and in the README) -------------

#: Serialized (compact UTF-8 JSON) payload size. It is stored once on the task item (DynamoDB
#: items hold 400 KB) and must also fit in one SQS message (256 KiB) with the envelope.
MAX_PAYLOAD_BYTES = 240_000
#: task_id and task_type length.
MAX_ID_LENGTH = 128
#: RetryPolicy.max_attempts cap (the queue's redrive maxReceiveCount is set well above it).
MAX_ATTEMPTS_CAP = 25
#: SQS visibility can be changed to at most 12 hours, so a backoff cannot be longer.
MAX_BACKOFF_SECONDS = 12 * 3600.0
#: Smallest Every interval.
MIN_INTERVAL_SECONDS = 1.0
#: Stored run result (JSON, truncated beyond this) and error text.
MAX_RESULT_BYTES = 4096
MAX_ERROR_CHARS = 2048


class TaskStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class RunStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    EXPIRED = "expired"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {RunStatus.SUCCEEDED, RunStatus.DEAD, RunStatus.EXPIRED, RunStatus.SKIPPED}


class MisfirePolicy(StrEnum):
    """What the poller does with an occurrence it finds overdue (the poller was down).

    ``run_once``: run the most overdue occurrence once, then continue at the next future fire.
    ``skip``: record the overdue occurrence as ``skipped`` and continue at the next future fire.
    ``catch_up``: run every missed occurrence, oldest first, at most ``CATCH_UP_LIMIT`` of them.
    """

    RUN_ONCE = "run_once"
    SKIP = "skip"
    CATCH_UP = "catch_up"


#: catch_up replays at most this many missed occurrences of one task; older ones are skipped.
CATCH_UP_LIMIT = 100


def to_seconds(value: float | int | timedelta, field_name: str) -> float:
    """Accept seconds (int/float) or a timedelta; refuse anything else, NaN and infinity."""
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise ValidationError(
            field_name, f"must be seconds (int or float) or a timedelta, got {type(value).__name__}"
        )
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds):
        raise ValidationError(field_name, "must be a finite number of seconds")
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed attempt is retried.

    ``max_attempts`` counts the first attempt (1 = never retry, cap ``MAX_ATTEMPTS_CAP``).
    Attempt *n* fails → the next one waits ``min(backoff_max, backoff_base * 2**(n-1))`` seconds,
    shortened by a random fraction up to ``jitter`` (0 = exact, 1 = "full jitter").
    """

    max_attempts: int = 3
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValidationError("retry.max_attempts", "must be an integer")
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_CAP:
            raise ValidationError(
                "retry.max_attempts",
                f"must be between 1 and {MAX_ATTEMPTS_CAP}, got {self.max_attempts}",
            )
        base = to_seconds(self.backoff_base, "retry.backoff_base")
        cap = to_seconds(self.backoff_max, "retry.backoff_max")
        if not 0 <= base <= MAX_BACKOFF_SECONDS:
            raise ValidationError("retry.backoff_base", f"must be 0..{MAX_BACKOFF_SECONDS:.0f} s")
        if not base <= cap <= MAX_BACKOFF_SECONDS:
            raise ValidationError(
                "retry.backoff_max", f"must be between backoff_base and {MAX_BACKOFF_SECONDS:.0f} s"
            )
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, int | float):
            raise ValidationError("retry.jitter", "must be a number between 0 and 1")
        if not 0 <= self.jitter <= 1:
            raise ValidationError("retry.jitter", f"must be between 0 and 1, got {self.jitter}")
        object.__setattr__(self, "backoff_base", base)
        object.__setattr__(self, "backoff_max", cap)
        object.__setattr__(self, "jitter", float(self.jitter))

    def backoff(self, failed_attempt: int, rand: float = 0.0) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based); ``rand`` in [0, 1)."""
        exp = min(failed_attempt - 1, 62)
        delay = min(self.backoff_max, self.backoff_base * (2**exp))
        return delay * (1.0 - self.jitter * rand)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "backoff_base": self.backoff_base,
            "backoff_max": self.backoff_max,
            "jitter": self.jitter,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        return cls(
            max_attempts=int(data["max_attempts"]),
            backoff_base=float(data["backoff_base"]),
            backoff_max=float(data["backoff_max"]),
            jitter=float(data["jitter"]),
        )


@dataclass(frozen=True)
class Task:
    """A task as the user created it, plus its current status."""

    task_id: str
    task_type: str
    payload: dict[str, Any]
    trigger: Trigger
    retry: RetryPolicy
    timeout: float
    status: TaskStatus
    next_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    misfire: MisfirePolicy = MisfirePolicy.RUN_ONCE
    lane: str = "default"
    expire_after: float | None = None
    #: What the task runs instead of a handler (``dynacron.targets``); None for a handler.
    target: Target | None = None
    #: Seconds each occurrence may be moved later (``spread.py``); None = on the second.
    spread: float | None = None
    #: Name of the rate/concurrency limit its runs share (``Scheduler.set_limit``).
    limit: str | None = None


@dataclass(frozen=True)
class RunAttempt:
    """One finished attempt of a run: when it started and ended, how it ended, its error.

    ``outcome`` is ``succeeded``, ``failed`` or ``lost`` (its worker never reported: the lease
    expired); ``finished_at`` is None for a lost attempt.
    """

    number: int
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str
    error: str | None = None


@dataclass(frozen=True)
class Run:
    """One occurrence of a task."""

    task_id: str
    run_id: str
    scheduled_for: datetime
    status: RunStatus
    attempt: int = 0
    fence: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    result: Any = None
    expires_at: datetime | None = None
    manual: bool = False
    lane: str = "default"
    max_attempts: int = 1
    dispatches: int = 0
    #: This occurrence's spread offset (ms after ``scheduled_for``; 0 without spread).
    offset_ms: int = 0
    limit: str | None = None
    #: How long the run's limit held its start back (ms), kept apart from lateness.
    throttled_ms: int = 0
    #: How many times ``Scheduler.redrive`` revived this run.
    redrives: int = 0
    #: Every attempt that has ended, oldest first (the one running now is ``started_at``).
    attempts: tuple[RunAttempt, ...] = ()

    @property
    def planned_start(self) -> datetime:
        """``scheduled_for`` plus the spread offset and the rate limit's delay."""
        return self.scheduled_for + timedelta(milliseconds=self.offset_ms + self.throttled_ms)

    @property
    def lateness(self) -> timedelta | None:
        """The first attempt's start minus ``planned_start``, once it has started (without
        spread or a limit, ``planned_start`` is ``scheduled_for``).

        A run whose history predates ``attempts`` (or that is in its first attempt) falls back
        to ``started_at``, the latest attempt's start.
        """
        first = self.attempts[0].started_at if self.attempts else None
        if first is None:
            first = self.started_at
        return None if first is None else first - self.planned_start


@dataclass(frozen=True)
class RunContext:
    """What a handler learns about the run it executes.

    ``idempotency_key`` is the same for every attempt of the run: use it to make side effects
    safe to repeat. ``deadline`` is the instant the attempt is stopped (timeout or Lambda end).
    """

    task_id: str
    run_id: str
    attempt: int
    scheduled_for: datetime
    idempotency_key: str
    deadline: datetime
    task_type: str = ""
    lane: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)
