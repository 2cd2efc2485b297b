"""Guarantees 2 and 3 under concurrency: overlapping pollers, competing workers, duplicates."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from dynacron import Every, RetryPolicy
from dynacron.batch import process_event
from dynacron.clock import to_ms
from dynacron.dispatch import Dispatcher
from helpers.harness import VirtualSQS, run_keys, wait_for

pytestmark = pytest.mark.reliability

RUNS = 2000
POLLERS = 4
RECURRING_TASKS = 4
EVERY_S = 2


def test_four_pollers_send_each_run_once(dep, clock, figures):
    """4 pollers race over the same 2,000 due runs: one message per run, one row per occurrence."""
    store, now, expected, recurring, per_task = _due_workload(dep, clock)
    vsqs = VirtualSQS(dep.new_sqs(), clock)
    pollers = [dep.dispatcher(vsqs, concurrency=2) for _ in range(POLLERS)]
    reports, poll_s = _poll_together([p.poll for p in pollers])
    lost, duplicates, totals = _check_sent_once(
        dep, vsqs, store, now, expected, recurring, per_task, reports
    )
    figures(
        "four_pollers",
        dep.backend,
        runs=len(expected),
        duplicates=duplicates,
        lost=lost,
        faults=0,
        pollers=POLLERS,
        claimed=totals["claimed"],
        lost_races=totals["lost_races"],
        errors=totals["errors"],
        poll_s=round(poll_s, 2),
    )
    assert duplicates == 0 and lost == 0
    assert totals["claimed"] == RUNS and totals["sent"] == RUNS


def test_fanned_out_pollers_never_race_and_a_duplicate_stays_safe(dep, clock, figures):
    """The same 2,000 runs, one poller per shard group (fanout.shard_groups, as a tick fans out)
    plus a duplicated delivery of group 0: one message per run; the disjoint groups lose no
    race to each other, only the duplicate races its twin."""
    from dynacron.fanout import shard_groups

    store, now, expected, recurring, per_task = _due_workload(dep, clock)
    vsqs = VirtualSQS(dep.new_sqs(), clock)
    groups = shard_groups(dep.settings.shards, POLLERS)
    plan = [*groups, groups[0]]  # the last: Lambda delivering group 0's event twice
    pollers = [dep.dispatcher(vsqs, concurrency=2) for _ in plan]
    calls = [lambda p=p, g=g: p.poll(shards=g) for p, g in zip(pollers, plan, strict=True)]
    reports, poll_s = _poll_together(calls)
    lost, duplicates, totals = _check_sent_once(
        dep, vsqs, store, now, expected, recurring, per_task, reports
    )
    disjoint_races = sum(r.lost_races for r in reports[1:-1])
    group0_races = reports[0].lost_races + reports[-1].lost_races
    figures(
        "fanned_out_pollers",
        dep.backend,
        runs=len(expected),
        duplicates=duplicates,
        lost=lost,
        faults=0,
        groups=len(groups),
        duplicated_groups=1,
        claimed=totals["claimed"],
        lost_races=totals["lost_races"],
        lost_races_disjoint=disjoint_races,
        errors=totals["errors"],
        poll_s=round(poll_s, 2),
    )
    assert duplicates == 0 and lost == 0
    assert totals["claimed"] == RUNS and totals["sent"] == RUNS
    assert disjoint_races == 0, [r.as_dict() for r in reports]
    assert reports[0].claimed + reports[-1].claimed == sum(
        1 for t, _ in expected if _shard(dep, t) in groups[0]
    )
    assert group0_races <= reports[0].found


def _shard(dep, task_id: str) -> int:
    from dynacron.store import shard_of

    return shard_of(task_id, dep.settings.shards)


def _due_workload(dep, clock):
    """2,000 due runs: recurring occurrences over the window and manual runs spread over the
    past half minute and the window ahead; (store, now, expected keys, recurring ids, per_task)."""
    sdk = dep.scheduler(short_notice=False)  # no queue: only the pollers send
    now = clock.now()
    window_ms = int(dep.settings.window_s * 1000)
    recurring = [
        sdk.schedule("rel-ok", {"i": i}, trigger=Every(EVERY_S), task_id=f"every-{i}").task_id
        for i in range(RECURRING_TASKS)
    ]
    per_task = window_ms // (EVERY_S * 1000) + 1  # occurrences at now, now+2 s, ... now+window
    manual_total = RUNS - RECURRING_TASKS * per_task
    store = dep.store()
    expected: set[tuple[str, str]] = set()
    n_tasks = 40
    for t in range(n_tasks):
        task_id = sdk.schedule(
            "rel-ok", {"t": t}, task_id=f"one-{t}", trigger=_far_future(now)
        ).task_id
        count = manual_total // n_tasks + (1 if t < manual_total % n_tasks else 0)
        # spread over the past half minute and the window ahead
        times = [
            to_ms(now) - 30_000 + (k * 7919 + t * 104_729) % (30_000 + window_ms)
            for k in range(count)
        ]
        expected |= {(task_id, r) for r in dep.write_runs(store, task_id, times, "rel-ok")}
    for task_id in recurring:
        expected |= {
            (task_id, f"{to_ms(now) + k * EVERY_S * 1000:013d}-s") for k in range(per_task)
        }
    assert len(expected) == RUNS
    return store, now, expected, recurring, per_task


def _poll_together(calls: list[Any]) -> tuple[list[Any], float]:
    """Run the poll ``calls`` at once (a barrier), on threads; their reports and the seconds."""
    barrier = threading.Barrier(len(calls))
    reports: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            reports[i] = calls[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    return reports, time.monotonic() - started


def _check_sent_once(dep, vsqs, store, now, expected, recurring, per_task, reports):
    """Every expected run sent exactly once, each recurring occurrence one row; returns
    (lost, duplicates, summed report counts)."""
    sent = vsqs.sent_runs()
    drained = run_keys(dep.drain())
    duplicates = sum(n - 1 for n in sent.values() if n > 1)
    missing = sorted(k for k in expected if sent[k] == 0)
    lost = len(missing)
    unexpected = set(sent) - expected
    assert drained == sent, "the queue holds exactly what the pollers sent"

    # every recurring occurrence exists exactly once: contiguous times, no gaps, no extras
    occurrence_dups = 0
    for task_id in recurring:
        rows = list(store.query_runs(task_id, newest_first=False))
        times = [int(r.scheduled_for) for r in rows]
        occurrence_dups += len(times) - len(set(times))
        want = [to_ms(now) + k * EVERY_S * 1000 for k in range(per_task + 1)]
        assert times == want, f"{task_id}: occurrences {times[:5]}... != {want[:5]}..."
        assert [r.status for r in rows] == ["queued"] * per_task + ["pending"]
    totals: Counter[str] = Counter()
    for r in reports:
        totals.update(r.as_dict())
    assert not unexpected, sorted(unexpected)[:5]
    assert lost == 0, [(k, store.get_run_row(*k).attribute_values) for k in missing[:3]]
    return lost, duplicates + occurrence_dups, totals


def _far_future(now):
    from dynacron import At

    return At(now + timedelta(days=30))


# --- workers ------------------------------------------------------------------------------------

WORKER_RUNS = 150
WORKERS = 3


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 600_000


def test_three_workers_start_each_attempt_once(dep, clock, behaviour, ledger, figures):
    """3 workers on one queue; every message duplicated, a third redelivered mid-run."""
    sdk = dep.scheduler(short_notice=False)
    retry = RetryPolicy(max_attempts=3, backoff_base=0, backoff_max=0)
    tasks = [
        sdk.schedule(
            "rel-ok", {"n": n}, task_id=f"w-{n}", retry=retry, trigger=_far_future(clock.now())
        ).task_id
        for n in range(5)
    ]
    behaviour.fail_attempts = {tasks[0]: {1}, tasks[1]: {1, 2}}  # two tasks retry
    behaviour.sleep_s = 0.02  # long enough for a redelivery to overlap the first delivery
    store = dep.store()
    expected = set()
    for i, task_id in enumerate(tasks):
        ms = [to_ms(clock.now()) - 1000 - k for k in range(WORKER_RUNS // len(tasks))]
        expected |= {
            (task_id, r) for r in dep.write_runs(store, task_id, ms, "rel-ok", max_attempts=3)
        }
        assert i < len(tasks)

    class DuplicatingSQS:
        """Every batch the poller sends is sent twice (an at-least-once duplicate)."""

        def __init__(self, client: Any) -> None:
            self._c = client
            self.duplicated = 0

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
            resp = self._c.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)
            self._c.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)
            self.duplicated += len(Entries)
            return resp

        def __getattr__(self, name: str) -> Any:
            return getattr(self._c, name)

    dup_sqs = DuplicatingSQS(dep.new_sqs())
    report = Dispatcher(dep.store(), dup_sqs, dep.settings, clock=clock).poll()
    assert report.sent == len(expected)

    url = dep.settings.queue_url
    stop = threading.Event()
    redelivered = Counter()
    worker_errors: list[BaseException] = []
    lock = threading.Lock()

    finished: set[tuple[str, str]] = set()

    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind in ("succeeded", "dead"):
            with lock:
                finished.add((info["task_id"], info["run_id"]))

    def worker(n: int) -> None:
        sqs = dep.new_sqs()
        executor = dep.executor(sqs, on_event=on_event)
        seen = 0
        try:
            while not stop.is_set():
                msgs = dep.receive(url, sqs, visibility=30)
                if not msgs:
                    time.sleep(0.05)
                    continue
                for m in msgs:
                    seen += 1
                    if seen % 3 == 0:  # SQS hands it to someone else while this one runs
                        try:
                            sqs.change_message_visibility(
                                QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                            )
                        except sqs.exceptions.ClientError:
                            continue  # gone already (another copy deleted it)
                        with lock:
                            redelivered["count"] += 1
                event = {"Records": [_record(m, url) for m in msgs]}
                out = process_event(event, _Context(), executor)
                failed = {f["itemIdentifier"] for f in out["batchItemFailures"]}
                for m in msgs:
                    if m["MessageId"] not in failed:
                        try:
                            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                        except sqs.exceptions.ReceiptHandleIsInvalid:
                            pass  # a newer delivery holds the current handle
        except BaseException as exc:
            worker_errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(WORKERS)]
    for th in threads:
        th.start()

    def settled() -> bool:  # the workers say so; the table is checked once at the end
        with lock:
            return expected <= finished

    # A redelivered copy acknowledged as a duplicate while the first delivery still runs
    # deletes the message; if that attempt then fails, its retry has no message left and
    # comes back through the lease (the poller reclaims it), as designed.
    lease_recoveries = 0
    done = wait_for(settled, timeout_s=20, interval_s=0.1)
    for _ in range(3):
        if done:
            break
        clock.advance(dep.settings.lease_s + 61)
        lease_recoveries += Dispatcher(dep.store(), dup_sqs, dep.settings, clock=clock).poll().sent
        done = wait_for(settled, timeout_s=20, interval_s=0.1)
    stop.set()
    for th in threads:
        th.join(10)
    assert not worker_errors, worker_errors

    rows = {(r.task_id, r.run_id): r for r in store.models.Run.scan() if r.sk.startswith("RUN#")}
    lost = sum(1 for k in expected if rows[k].status not in ("succeeded", "dead"))
    duplicates = ledger.duplicates()
    figures(
        "three_workers",
        dep.backend,
        runs=len(expected),
        duplicates=duplicates,
        lost=lost,
        faults=dup_sqs.duplicated + redelivered["count"],
        workers=WORKERS,
        duplicated=dup_sqs.duplicated,
        redelivered=redelivered["count"],
        lease_recoveries=lease_recoveries,
        starts=sum(ledger.starts.values()),
    )
    assert done, "runs did not settle"
    assert duplicates == 0, [k for k, n in ledger.starts.items() if n > 1][:5]
    assert lost == 0
    for key in expected:
        task_id, run_id = key
        want = {tasks[0]: [1, 2], tasks[1]: [1, 2, 3]}.get(task_id, [1])
        assert ledger.attempts_of(task_id, run_id) == want, (key, rows[key].status)
        assert rows[key].status == "succeeded", (key, rows[key].status, rows[key].error)


def _record(m: dict[str, Any], url: str) -> dict[str, Any]:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return {
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": m.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:000000000000:{name}",
        "awsRegion": "us-east-1",
    }
