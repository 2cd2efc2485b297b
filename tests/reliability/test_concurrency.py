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

    vsqs = VirtualSQS(dep.new_sqs(), clock)
    pollers = [dep.dispatcher(vsqs, concurrency=2) for _ in range(POLLERS)]
    barrier = threading.Barrier(POLLERS)
    reports: list[Any] = [None] * POLLERS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            reports[i] = pollers[i].poll()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(POLLERS)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    poll_s = time.monotonic() - started
    assert not errors, errors

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
    totals = Counter()
    for r in reports:
        totals.update(r.as_dict())
    figures(
        "four_pollers",
        dep.backend,
        runs=len(expected),
        duplicates=duplicates + occurrence_dups,
        lost=lost,
        faults=0,
        pollers=POLLERS,
        claimed=totals["claimed"],
        lost_races=totals["lost_races"],
        errors=totals["errors"],
        poll_s=round(poll_s, 2),
    )
    assert not unexpected, sorted(unexpected)[:5]
    assert duplicates == 0 and occurrence_dups == 0
    assert lost == 0, [(k, store.get_run_row(*k).attribute_values) for k in missing[:3]]
    assert totals["claimed"] == RUNS and totals["sent"] == RUNS


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
