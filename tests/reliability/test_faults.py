"""Guarantees 1, 3 and 4 under injected faults: crashes, throttling, SQS errors, clock skew.

Every test runs on a frozen clock: SQS delays and visibility are kept in virtual time by
``VirtualSQS`` and ``settle()`` polls every 30 virtual seconds while workers drain in between.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dynacron import At, Every, RetryPolicy
from dynacron.clock import to_ms
from helpers.clocks import SkewedClock
from helpers.harness import (
    FaultRule,
    Faults,
    ProcessCrash,
    VirtualSQS,
    deliver,
    fast_botocore_backoff,
    settle,
    statuses,
)

pytestmark = pytest.mark.reliability

LEASE_S = 60.0


def _workload(
    dep: Any,
    clock: Any,
    manual: int = 40,
    recurring: int = 2,
    every_s: float = 5,
    span_s: float = 40,
    task_prefix: str = "t",
) -> set[tuple[str, str]]:
    """Manual runs due now..+30 s and bounded recurring tasks; returns the manual run keys."""
    sdk = dep.scheduler(short_notice=False)
    now = clock.now()
    end = now + timedelta(seconds=span_s)
    for i in range(recurring):
        sdk.schedule(
            "rel-ok",
            {"r": i},
            trigger=Every(every_s, start_at=now, end_at=end),
            task_id=f"{task_prefix}-every-{i}",
            timeout=10,
        )
    keys: set[tuple[str, str]] = set()
    holder = sdk.schedule(
        "rel-ok",
        {},
        trigger=At(now + timedelta(days=1)),
        task_id=f"{task_prefix}-manual",
        timeout=10,
    ).task_id
    times = [to_ms(now) + (k * 739) % 30_000 for k in range(manual)]
    keys |= {(holder, r) for r in dep.write_runs(dep.reader, holder, times, "rel-ok")}
    return keys


def _check_once(dep: Any, ledger: Any, skip: set[tuple[str, str]] = frozenset()) -> tuple[int, int]:
    """(lost, duplicates): runs not succeeded; handler starts beyond one per attempt, and runs
    that succeeded without their handler ever starting."""
    rows = statuses(dep)
    lost = sum(
        1
        for k, r in rows.items()
        if k not in skip and r.status != "succeeded" and r.scheduled_for <= to_ms(dep.clock.now())
    )
    started = ledger.runs_started()
    never = sum(1 for k, r in rows.items() if r.status == "succeeded" and k not in started)
    return lost + never, ledger.duplicates()


def _expected_occurrences(dep: Any, n_every: int, every_s: float, span_s: float) -> None:
    for i in range(n_every):
        rows = list(dep.reader.query_runs(f"t-every-{i}", newest_first=False))
        times = [int(r.scheduled_for) for r in rows]
        assert len(times) == len(set(times)) == int(span_s // every_s) + 1, times


# --- poller crashes -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["claim_send", "page", "half_batch", "partial_failed"])
def test_poller_dies(make_dep, clock, ledger, figures, where):
    """The poller dies between claim and send, between two pages, or after sending half a
    batch, or SQS refuses half a batch: after the leases expire every run completes once."""
    dep = make_dep(lease_s=LEASE_S)
    keys = _workload(dep, clock)
    vsqs = VirtualSQS(dep.new_sqs(), clock)
    faults = 0
    page_size = 3 if where == "page" else 500
    crashing = dep.dispatcher(vsqs, page_size=page_size)

    if where == "claim_send":

        def hook(entries: list[dict]) -> Any:
            raise ProcessCrash("poller died between claim and send")
    elif where == "half_batch":

        def hook(entries: list[dict]) -> Any:
            return entries[: len(entries) // 2], [], True
    else:  # partial_failed

        def hook(entries: list[dict]) -> Any:
            half = len(entries) // 2
            return entries[:half], [e["Id"] for e in entries[half:]], False

    if where == "page":
        queries = {"n": 0}

        def die_on_second_page(**_kw: Any) -> None:
            queries["n"] += 1
            if queries["n"] == 2:
                raise ProcessCrash("poller died between a page and the next")

        client = crashing.store.models.Run._get_connection().connection.client
        client.meta.events.register("before-call.dynamodb.Query", die_on_second_page)
    else:
        vsqs.batch_hook = hook

    if where == "partial_failed":
        report = crashing.poll()
        faults = report.send_failed
        assert report.send_failed > 0 and report.sent > 0
    else:
        with pytest.raises(ProcessCrash):
            crashing.poll()
        faults = 1
    vsqs.batch_hook = None
    # also the SDK dies between its short-notice claim and the send
    sdk_sqs = VirtualSQS(dep.new_sqs(), clock)
    sdk_sqs.batch_hook = lambda entries: (_ for _ in ()).throw(ProcessCrash("SDK died"))
    with pytest.raises(ProcessCrash):
        dep.scheduler(sqs=sdk_sqs).schedule(
            "rel-ok", {}, trigger=At(clock.now()), task_id="sdk-crash"
        )
    faults += 1

    healthy = dep.dispatcher(vsqs, page_size=page_size)
    rounds = settle(dep, healthy, dep.executor(vsqs), vsqs, clock)
    rows = statuses(dep)
    lost, dups = _check_once(dep, ledger)
    sent = vsqs.sent_runs()
    # the poller itself never sends a run twice unless SQS refused it or the sender died
    resent = sum(n - 1 for n in sent.values() if n > 1)
    figures(
        f"poller_dies_{where}",
        dep.backend,
        runs=len(rows),
        duplicates=dups,
        lost=lost,
        faults=faults,
        rounds=rounds,
        sent_twice=resent,
    )
    assert lost == 0 and dups == 0
    assert all(rows[k].status == "succeeded" for k in keys)
    assert [r.status for (t, _r), r in rows.items() if t == "sdk-crash"] == ["succeeded"]
    _expected_occurrences(dep, 2, 5, 40)
    if where in ("claim_send", "page"):
        assert resent == 0  # nothing had been sent before the crash


# --- worker crashes -----------------------------------------------------------------------------


@pytest.mark.parametrize("recovery", ["redelivery", "lease"])
def test_worker_dies_mid_handler(
    make_dep, clock, behaviour, ledger, figures, crash_aware, recovery
):
    """A worker dies inside the handler (no ack). ``redelivery``: SQS shows the message again
    after its visibility timeout and the next worker takes over; ``lease``: the message is gone
    and the poller reclaims the run when its lease expires. A handler that always kills the
    worker ends ``dead`` with a DLQ message saying why."""
    dep = make_dep(lease_s=LEASE_S)
    sdk = dep.scheduler(short_notice=False)
    retry = RetryPolicy(max_attempts=3, backoff_base=1, backoff_max=1)
    at = At(clock.now() + timedelta(seconds=5))
    once = [
        sdk.schedule(
            "rel-ok", {"k": i}, trigger=at, task_id=f"once-{i}", retry=retry, timeout=10
        ).task_id
        for i in range(4)
    ]
    always = [
        sdk.schedule(
            "rel-ok", {"k": i}, trigger=at, task_id=f"always-{i}", retry=retry, timeout=10
        ).task_id
        for i in range(2)
    ]
    healthy = [
        sdk.schedule(
            "rel-ok", {"k": i}, trigger=at, task_id=f"fine-{i}", retry=retry, timeout=10
        ).task_id
        for i in range(4)
    ]
    behaviour.crash_attempts = {**{t: {1} for t in once}, **{t: {1, 2, 3} for t in always}}
    vsqs = VirtualSQS(dep.new_sqs(), clock)
    poller = dep.dispatcher(vsqs)
    executor = dep.executor(vsqs)
    if recovery == "redelivery":
        poller.poll()  # once; from here on only SQS redelivery brings runs back
        # the queue's visibility timeout is longer than a lease (timeout + lease_s)
        log = deliver(dep, vsqs, executor, clock, crash_visibility_s=LEASE_S + 10 + 1)
        crashes = sum(d.outcome == "crash" for d in log)
    else:
        crashes = 0
        settle(dep, poller, executor, vsqs, clock)
    rows = statuses(dep)
    dlq = dep.dlq()
    by_task = {k[0]: r for k, r in rows.items()}
    lost = sum(1 for t in once + healthy if by_task[t].status != "succeeded")
    lost += sum(1 for t in always if by_task[t].status != "dead")
    figures(
        f"worker_dies_{recovery}",
        dep.backend,
        runs=len(rows),
        duplicates=ledger.duplicates(),
        lost=lost,
        faults=sum(len(v) for v in behaviour.crash_attempts.values()),
        dead=sum(r.status == "dead" for r in rows.values()),
        dlq=len(dlq),
        crashes_seen=crashes,
    )
    assert ledger.duplicates() == 0 and lost == 0
    for t in once:
        assert ledger.attempts_of(t, by_task[t].run_id) == [1, 2]
    for t in healthy:
        assert ledger.attempts_of(t, by_task[t].run_id) == [1]
    for t in always:
        assert ledger.attempts_of(t, by_task[t].run_id) == [1, 2, 3]
        assert "never finished" in (by_task[t].error or "")
    dead_records = [d for d in dlq if d.get("kind") == "dead_run"]
    assert sorted(d["task_id"] for d in dead_records) == sorted(always), dlq
    assert all("never finished" in d["reason"] and d["attempts"] == 3 for d in dead_records)


# --- throttling and service errors --------------------------------------------------------------


def test_throttling_and_sqs_errors(make_dep, clock, behaviour, ledger, figures, monkeypatch):
    """20 % of DynamoDB calls throttled or failing (plus transaction conflicts) and 15 % of SQS
    calls failing, everywhere: retried, nothing lost, nothing run twice."""
    fast_botocore_backoff(monkeypatch)
    dep = make_dep(lease_s=LEASE_S)
    keys = _workload(dep, clock, manual=60)
    faults = Faults(seed=11)
    faults.add(
        FaultRule(
            "dynamodb",
            None,
            0.20,
            [
                ("ProvisionedThroughputExceededException", 400),
                ("ThrottlingException", 400),
                ("InternalServerError", 500),
            ],
            transaction_conflict_rate=0.10,
        )
    )
    faults.add(
        FaultRule(
            "sqs",
            None,
            0.15,
            [
                ("InternalError", 500),
                ("ServiceUnavailable", 503),
                ("RequestThrottled", 400),
            ],
        )
    )
    sqs = faults.attach(dep.new_sqs())
    vsqs = VirtualSQS(sqs, clock)
    poller = dep.dispatcher(vsqs, store=faults.attach_store(dep.store()))
    executor = dep.executor(vsqs, store=faults.attach_store(dep.store()))
    sdk_store = dep.store()
    for model in (sdk_store.models.Run, sdk_store.models.Task):  # no tx conflicts for the SDK
        sdk_faults = Faults(seed=5)
        sdk_faults.add(FaultRule("dynamodb", None, 0.20, [("ThrottlingException", 400)]))
        sdk_faults.attach(model._get_connection().connection.client)
    sdk = dep.scheduler(sqs=vsqs, store=sdk_store)
    short = [
        sdk.schedule(
            "rel-ok",
            {"s": i},
            trigger=At(clock.now() + timedelta(seconds=i)),
            task_id=f"short-{i}",
            timeout=10,
        ).task_id
        for i in range(10)
    ]
    rounds = settle(dep, poller, executor, vsqs, clock)
    rows = statuses(dep)
    lost, dups = _check_once(dep, ledger)
    figures(
        "throttling",
        dep.backend,
        runs=len(rows),
        duplicates=dups,
        lost=lost,
        faults=faults.total,
        rounds=rounds,
        ddb_faults=sum(n for k, n in faults.injected.items() if k.startswith("dynamodb:")),
        sqs_faults=sum(n for k, n in faults.injected.items() if k.startswith("sqs:")),
    )
    assert faults.total > 50
    assert lost == 0 and dups == 0
    assert all(rows[k].status == "succeeded" for k in keys)
    assert all(r.status == "succeeded" for (t, _r), r in rows.items() if t in short)
    _expected_occurrences(dep, 2, 5, 40)


# --- clock skew ---------------------------------------------------------------------------------

SKEW_S = 2.0
EARLY_BOUND_S = SKEW_S + 1.0  # DelaySeconds lands a message at most 1 s early, plus the skew


@pytest.mark.parametrize("poller_skew,worker_skew", [(2, -2), (-2, 2), (2, 2), (-2, -2)])
def test_clock_skew(make_dep, clock, behaviour, ledger, figures, poller_skew, worker_skew):
    """Poller and worker clocks off by ±2 s: no handler starts more than 3 s before its
    scheduled time (true time), no run is lost."""
    dep = make_dep(lease_s=LEASE_S)
    sdk = dep.scheduler(short_notice=False)
    now = clock.now()
    for i in range(12):
        sdk.schedule(
            "rel-ok",
            {},
            trigger=At(now + timedelta(seconds=3 + i * 7.3)),
            task_id=f"at-{i}",
            timeout=10,
        )
    sdk.schedule(
        "rel-ok",
        {},
        trigger=Every(3, start_at=now, end_at=now + timedelta(seconds=60)),
        task_id="every",
        timeout=10,
    )
    vsqs = VirtualSQS(dep.new_sqs(), clock)
    poller = dep.dispatcher(vsqs, clock=SkewedClock(clock, poller_skew))
    executor = dep.executor(vsqs, clock=SkewedClock(clock, worker_skew))
    settle(dep, poller, executor, vsqs, clock, step_s=20)
    rows = statuses(dep)
    leads = [  # seconds a handler started before its scheduled time (true clock)
        (int(rows[(t, r)].scheduled_for) - to_ms(started)) / 1000.0
        for (t, r, _a), started in ledger.start_times.items()
    ]
    lost, dups = _check_once(dep, ledger)
    worst = max(leads)
    figures(
        f"clock_skew_p{poller_skew:+d}_w{worker_skew:+d}",
        dep.backend,
        runs=len(rows),
        duplicates=dups,
        lost=lost,
        faults=2,
        max_early_s=round(worst, 3),
        bound_s=EARLY_BOUND_S,
    )
    assert lost == 0 and dups == 0
    assert worst <= EARLY_BOUND_S, f"a handler started {worst:.3f} s early"
    assert len(rows) == 12 + 21


# --- duplicates and backoff ---------------------------------------------------------------------


def test_duplicate_delivery_respects_backoff(make_dep, clock, behaviour, ledger, figures):
    """A duplicate copy of a message arriving while its run waits out a retry backoff must not
    start the next attempt early (and must not start it twice)."""
    dep = make_dep(lease_s=LEASE_S)
    sdk = dep.scheduler(short_notice=False)
    retry = RetryPolicy(max_attempts=3, backoff_base=30, backoff_max=30, jitter=0)
    at = At(clock.now() + timedelta(seconds=1))
    tasks = [
        sdk.schedule(
            "rel-ok", {}, trigger=at, task_id=f"flaky-{i}", retry=retry, timeout=10
        ).task_id
        for i in range(5)
    ]
    behaviour.fail_attempts = {t: {1} for t in tasks}
    vsqs = VirtualSQS(dep.new_sqs(), clock, duplicate_sends=True)  # every message twice
    dep.dispatcher(vsqs).poll()
    deliver(dep, vsqs, dep.executor(vsqs), clock)
    rows = statuses(dep)
    gaps = []
    for t, r in rows:
        first = ledger.start_times.get((t, r, 1))
        second = ledger.start_times.get((t, r, 2))
        if first and second:
            gaps.append((second - first).total_seconds())
    early = sum(1 for g in gaps if g < 30)
    lost = sum(1 for r in rows.values() if r.status != "succeeded")
    figures(
        "duplicate_during_backoff",
        dep.backend,
        runs=len(rows),
        duplicates=ledger.duplicates(),
        lost=lost,
        faults=len(rows),
        early_retries=early,
        min_gap_s=min(gaps) if gaps else None,
        backoff_s=30,
    )
    assert ledger.duplicates() == 0 and lost == 0
    assert len(gaps) == len(tasks)
    assert early == 0, f"retries started {gaps} s after the failed attempt (backoff 30 s)"
