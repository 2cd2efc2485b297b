"""``dynacron local --demo``: a sample workload through the SDK, then an honest summary.

The workload (handlers in ``dynacron.examples``): one-time ``send-email`` tasks (one due at
once, through the SDK's short-notice dispatch, the others a few seconds out), a ``cleanup``
task every 3 s with an ``end_at``, a minutely ``report`` cron, a ``flaky`` task that fails its
first attempt and succeeds on the retry, an ``always-fails`` task that ends ``dead`` with a DLQ
message, and a ``slow`` task (5 s of work, 1 s timeout) that ends ``dead`` after its attempts.

The cron fires on whole minutes. Without ``--duration`` the demo stretches (to at most
``MAX_STRETCH_S``) so that the next minute falls inside it; when it cannot, the cron task's
one occurrence lies after the demo and is cancelled, and the summary says so. (A minute just
after the end always stretches the demo a little: cancelling a run that the poller has already
claimed would race the worker.)

Every figure of the summary is read back from the table (``Scheduler.runs``) and from the
dead-letter queue after the runs have ended, never from counters kept along the way; the one
exception is the lateness of a retried run's first attempt, which the table does not keep (a
run stores the start of its latest attempt) and which the worker reported when it started.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import InvalidStateError
from ..sdk import Scheduler
from ..triggers import At, Cron, Every, Trigger
from ..types import RetryPolicy, Run, RunStatus, TaskStatus
from .progress import fmt_ms, percentile

if TYPE_CHECKING:
    from .runtime import LocalRuntime

DEFAULT_DURATION_S = 25.0
MIN_DURATION_S = 10.0
MAX_STRETCH_S = 40.0
SETTLE_TIMEOUT_S = 20.0

Check = Callable[[list[Run], dict[str, dict[str, Any]]], tuple[bool, str]]


@dataclass
class DemoTask:
    task_id: str
    task_type: str
    trigger: Trigger
    label: str
    check: Check
    payload: dict[str, Any] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    timeout: float = 10.0
    cancel_at_end: bool = False


def _hms(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%H:%M:%S")


# --- what each task must end as -------------------------------------------------------------


def _succeeded_once(runs: list[Run], dlq: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    if len(runs) != 1:
        return False, f"expected 1 run, found {len(runs)}"
    run = runs[0]
    if run.status is not RunStatus.SUCCEEDED or run.attempt != 1:
        return False, f"run is {run.status} after {run.attempt} attempt(s)"
    return True, "succeeded on attempt 1"


def _every_occurrence(expected: list[datetime]) -> Check:
    def check(runs: list[Run], dlq: dict[str, dict[str, Any]]) -> tuple[bool, str]:
        got = sorted(r.scheduled_for for r in runs)
        if got != expected:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            return False, (
                f"occurrences differ: {len(got)} run(s) for {len(expected)} fire(s); "
                f"missing {[_hms(t) for t in missing]}, extra {[_hms(t) for t in extra]}"
            )
        bad = [r for r in runs if r.status is not RunStatus.SUCCEEDED or r.attempt != 1]
        if bad:
            return False, f"{len(bad)} occurrence(s) not succeeded on attempt 1: " + ", ".join(
                f"{_hms(r.scheduled_for)} {r.status}" for r in bad[:3]
            )
        return True, f"{len(expected)}/{len(expected)} fires succeeded, once each"

    return check


def _cron_after_demo(fire: datetime) -> Check:
    def check(runs: list[Run], dlq: dict[str, dict[str, Any]]) -> tuple[bool, str]:
        if len(runs) == 1 and runs[0].status is RunStatus.SKIPPED and runs[0].started_at is None:
            return True, f"fires {_hms(fire)}, after the demo: cancelled"
        return (
            False,
            f"expected its one run skipped by cancel, found {[str(r.status) for r in runs]}",
        )

    return check


def _succeeds_on_retry(runs: list[Run], dlq: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    if len(runs) != 1:
        return False, f"expected 1 run, found {len(runs)}"
    run = runs[0]
    if run.status is RunStatus.SUCCEEDED and run.attempt == 2:
        return True, "failed attempt 1, succeeded on 2"
    return False, f"run is {run.status} after {run.attempt} attempt(s) (expected success on 2)"


def _dead_in_dlq(attempts: int, error_has: str) -> Check:
    def check(runs: list[Run], dlq: dict[str, dict[str, Any]]) -> tuple[bool, str]:
        if len(runs) != 1:
            return False, f"expected 1 run, found {len(runs)}"
        run = runs[0]
        if run.status is not RunStatus.DEAD or run.attempt != attempts:
            return False, f"run is {run.status} after {run.attempt} attempt(s)"
        if error_has not in (run.error or ""):
            return False, f"dead, but its error does not mention {error_has}: {run.error!r}"
        if run.run_id not in dlq:
            return False, "dead, but no DLQ message for it"
        return True, f"{error_has} x{attempts}: dead, in the DLQ"

    return check


# --- the plan --------------------------------------------------------------------------------


def plan(now: datetime, duration: float, stretch: bool) -> tuple[list[DemoTask], float]:
    """The demo's tasks relative to ``now`` (in the order to schedule them), and the duration.

    The duration grows to include the cron's next minute when that is near: always when it
    would otherwise fall within the poller's look-ahead of the end (so a claimed run is never
    cancelled under the worker's feet), and up to ``MAX_STRETCH_S`` when ``stretch``.
    """
    t0 = now.replace(microsecond=0) + timedelta(seconds=3)  # after the scheduling burst
    minute = Cron("* * * * *").first(t0)
    assert minute is not None
    lead = (minute - now).total_seconds()
    if lead <= duration + 6 or (stretch and lead + 3 <= MAX_STRETCH_S):
        duration = max(duration, lead + 3)
    cron_in_demo = lead + 3 <= duration

    def at(seconds: float) -> At:
        return At(t0 + timedelta(seconds=seconds))

    def label(seconds: float) -> str:
        return f"at {_hms(t0 + timedelta(seconds=seconds))}"

    every_start = t0 + timedelta(seconds=2)
    every_end = t0 + timedelta(seconds=max(5.0, min(duration - 6, 17.0)))
    every = Every(3, start_at=every_start, end_at=every_end)
    fires: list[datetime] = []
    fire = every.first(every_start)
    while fire is not None:
        fires.append(fire)
        fire = every.next(fire)

    once = RetryPolicy(max_attempts=1)
    quick = RetryPolicy(max_attempts=3, backoff_base=1, jitter=0)
    tasks = [
        DemoTask(
            "demo-email-welcome",
            "send-email",
            At(now),
            "now (SDK dispatch)",
            _succeeded_once,
            {"to": "ada@example.com", "template": "welcome"},
            once,
        ),
        DemoTask(
            "demo-flaky", "flaky", at(2), label(2), _succeeds_on_retry, {"fail_attempts": 1}, quick
        ),
        DemoTask(
            "demo-cleanup",
            "cleanup",
            every,
            f"every 3s, {len(fires)} fires",
            _every_occurrence(fires),
            {"older_than_days": 30},
            once,
        ),
        DemoTask(
            "demo-always-fails",
            "always-fails",
            at(3),
            label(3),
            _dead_in_dlq(3, "ValueError"),
            {},
            quick,
        ),
        DemoTask(
            "demo-email-invoice",
            "send-email",
            at(3),
            label(3),
            _succeeded_once,
            {"to": "grace@example.com", "template": "invoice"},
            once,
        ),
        DemoTask(
            "demo-slow",
            "slow",
            at(4),
            f"{label(4)}, timeout 1s",
            _dead_in_dlq(2, "HandlerTimeout"),
            {"seconds": 5},
            RetryPolicy(max_attempts=2, backoff_base=1, jitter=0),
            timeout=1,
        ),
        DemoTask(
            "demo-email-reminder",
            "send-email",
            at(6),
            label(6),
            _succeeded_once,
            {"to": "linus@example.com", "template": "reminder"},
            once,
        ),
        DemoTask(
            "demo-report",
            "report",
            # start_at: created at hh:mm:59.x (the demo's own start), the task must not also
            # fire on the boundary just before t0; one fire, at `minute`, whenever it is created.
            Cron("* * * * *", start_at=minute - timedelta(seconds=1), end_at=minute),
            f"cron * * * * * ({_hms(minute)})",
            _succeeded_once if cron_in_demo else _cron_after_demo(minute),
            {"name": "minutely-usage"},
            once,
            cancel_at_end=not cron_in_demo,
        ),
    ]
    return tasks, duration


# --- running it ------------------------------------------------------------------------------


@dataclass
class TaskResult:
    task: DemoTask
    runs: list[Run]
    ok: bool
    note: str
    lateness_ms: list[float]


@dataclass
class DemoOutcome:
    results: list[TaskResult]
    dlq: dict[str, dict[str, Any]]
    dlq_count: int
    elapsed_s: float
    settled: bool
    interrupted: bool
    problems: list[str]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.results)

    def print(self, file: Any = None) -> None:
        from rich.console import Console

        from ..cli_tables import Col, plural, render

        out = file or sys.stdout
        # A terminal (or $COLUMNS) sets the width; piped output is not squeezed.
        console = Console(
            file=out, width=None if out.isatty() or os.environ.get("COLUMNS") else 150
        )

        all_runs = [r for res in self.results for r in res.runs]
        all_late = [v for res in self.results for v in res.lateness_ms]
        sums = _counts(all_runs)
        passed = sum(r.ok for r in self.results)
        # Priorities: what a reader of an 80-column terminal needs first stays (cli_tables).
        columns = [
            Col("task", 0, 10, footer="total"),
            Col("type", 4, 6),
            Col("trigger", 5, 10, wrap=True),
            Col("runs", 1, 4, justify="right", footer=str(len(all_runs))),
            Col("ok", 1, 3, justify="right", footer=str(sums["succeeded"])),
            Col("dead", 1, 4, justify="right", footer=str(sums["dead"])),
            Col("retry", 3, 5, justify="right", footer=str(sums["retried"])),
            Col("p50", 2, 6, justify="right", footer=fmt_ms(percentile(all_late, 50))),
            Col("p99", 3, 6, justify="right", footer=fmt_ms(percentile(all_late, 99))),
            Col("as intended", 0, 20, wrap=True, footer=f"{passed}/{len(self.results)}"),
        ]
        rows = []
        for res in self.results:
            c = _counts(res.runs)
            rows.append(
                (
                    res.task.task_id.removeprefix("demo-"),
                    res.task.task_type,
                    res.task.label,
                    str(len(res.runs)),
                    str(c["succeeded"]),
                    str(c["dead"]),
                    str(c["retried"]),
                    fmt_ms(percentile(res.lateness_ms, 50)),
                    fmt_ms(percentile(res.lateness_ms, 99)),
                    f"{'✓' if res.ok else '✗'} {res.note}",
                )
            )
        title = f"dynacron demo · {len(self.results)} tasks · {self.elapsed_s:.0f} s"
        render(console, title, columns, rows, footer=True)
        console.print(
            "p50/p99: lateness = start of a run's first attempt - its scheduled time; "
            "every figure above is read back from the table and the DLQ."
        )
        console.print(f"dead-letter queue: {plural(self.dlq_count, 'message')}")
        for body in self.dlq.values():
            console.print(
                f"  · {body.get('task_id')} / {body.get('run_id')}: {body.get('reason')}"
                f" — {str(body.get('error') or '')[:80]}"
            )
        for problem in self.problems:
            console.print(f"[bold red]problem:[/] {problem}")
        if self.interrupted:
            ended = sum(r.status.terminal for r in all_runs)
            console.print(f"[yellow]demo interrupted[/]: {ended} of {len(all_runs)} runs had ended")
        elif self.ok:
            console.print(f"[bold green]demo passed[/]: all {len(all_runs)} runs ended as intended")
        else:
            failed = [r.task.task_id for r in self.results if not r.ok]
            console.print(f"[bold red]demo FAILED[/]: {', '.join(failed) or 'see problems above'}")


def _counts(runs: list[Run]) -> dict[str, int]:
    return {
        "succeeded": sum(r.status is RunStatus.SUCCEEDED for r in runs),
        "dead": sum(r.status is RunStatus.DEAD for r in runs),
        "retried": sum(r.attempt > 1 for r in runs),
    }


def run_demo(rt: LocalRuntime, stop: threading.Event, duration: float | None) -> DemoOutcome:
    """Schedule the sample, run it for its duration, wait for every run to end, summarize."""
    assert rt.settings is not None
    sched = Scheduler(settings=rt.settings, on_event=rt.stats.on_event)
    _warm_up(sched)
    stretch = duration is None
    duration = max(MIN_DURATION_S, DEFAULT_DURATION_S if duration is None else duration)
    started = time.monotonic()
    tasks, duration = plan(datetime.now(UTC), duration, stretch)
    for task in tasks:
        sched.schedule(
            task.task_type,
            task.payload,
            trigger=task.trigger,
            task_id=task.task_id,
            retry=task.retry,
            timeout=task.timeout,
        )
    print(
        f"dynacron demo: scheduled {len(tasks)} tasks; running for {duration:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    stop.wait(max(0.0, duration - (time.monotonic() - started)))
    for task in tasks:
        if task.cancel_at_end:
            try:
                sched.cancel(task.task_id)
            except InvalidStateError:
                pass  # it completed after all: its check says whether that was right
    settled = _settle(sched, tasks, stop)
    return _summarize(rt, sched, tasks, time.monotonic() - started, settled, stop.is_set())


def _warm_up(sched: Scheduler) -> None:
    """First calls build clients and connection pools: not while the first runs are due."""
    from ..errors import TaskNotFound

    assert sched.sqs is not None
    try:
        sched.get("demo-warm-up")
    except TaskNotFound:
        pass
    sched.store.get_run_row("demo-warm-up", "warm-up")  # PynamoDB: a connection per model


def _settle(sched: Scheduler, tasks: list[DemoTask], stop: threading.Event) -> bool:
    """Wait (bounded) until no task is active and every run has ended."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set():
        if all(_settled(sched, t.task_id) for t in tasks):
            return True
        stop.wait(0.5)
    return False


def _settled(sched: Scheduler, task_id: str) -> bool:
    if sched.get(task_id).status is TaskStatus.ACTIVE:
        return False
    return all(r.status.terminal for r in sched.runs(task_id))


def _read_dlq(rt: LocalRuntime) -> tuple[dict[str, dict[str, Any]], int]:
    assert rt.settings is not None
    bodies: dict[str, dict[str, Any]] = {}
    count = 0
    while True:
        got = rt.sqs.receive_message(
            QueueUrl=rt.settings.dlq_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not got:
            return bodies, count
        for msg in got:
            count += 1
            try:
                body = json.loads(msg["Body"])
            except ValueError:
                continue
            if isinstance(body, dict) and body.get("run_id"):
                bodies[str(body["run_id"])] = body


def _summarize(
    rt: LocalRuntime,
    sched: Scheduler,
    tasks: list[DemoTask],
    elapsed: float,
    settled: bool,
    interrupted: bool,
) -> DemoOutcome:
    dlq, dlq_count = _read_dlq(rt)
    first = rt.stats.first_lateness or {}
    results = []
    for task in tasks:
        runs = sorted(sched.runs(task.task_id), key=lambda r: r.scheduled_for)
        ok, note = task.check(runs, dlq)
        lateness = []
        for run in runs:
            if run.started_at is None:
                continue
            if run.attempt == 1:
                lateness.append((run.started_at - run.scheduled_for).total_seconds() * 1000)
            elif (run.task_id, run.run_id) in first:
                lateness.append(first[(run.task_id, run.run_id)])
        results.append(TaskResult(task, runs, ok, note, lateness))
    problems = []
    if interrupted:
        problems.append("interrupted before every run ended")
    elif not settled:
        problems.append(f"some runs had not ended {SETTLE_TIMEOUT_S:.0f} s after the demo")
    dead = sum(r.status is RunStatus.DEAD for res in results for r in res.runs)
    if dlq_count != dead:
        problems.append(f"{dlq_count} DLQ message(s) for {dead} dead run(s)")
    return DemoOutcome(results, dlq, dlq_count, elapsed, settled, interrupted, problems)
