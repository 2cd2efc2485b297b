"""Guarantee 4 with bad input: refused at ``schedule()`` and by the CLI before anything is
written; a malformed or impossible SQS message ends as a DLQ record or a ``dead`` run with its
reason; none of it crashes a worker, and a healthy task scheduled alongside still succeeds."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dynacron import At, Cron, Every, RetryPolicy, ValidationError
from dynacron.batch import process_event, sqs_event
from dynacron.clock import to_ms
from dynacron.dispatch import Message
from helpers.harness import VirtualSQS, deliver, statuses

pytestmark = pytest.mark.reliability


def _schedule_cases(now: datetime) -> list[tuple[str, str, dict[str, Any] | Any]]:
    """(case, field the error must name, schedule() kwargs or a callable building them)."""
    ok = {"task_type": "rel-ok", "payload": {}, "trigger": At(now + timedelta(seconds=5))}

    def kw(**over: Any) -> dict[str, Any]:
        return {**ok, **over}

    naive = datetime(2030, 1, 1, 12, 0)
    return [
        ("type empty", "task_type", kw(task_type="")),
        ("type None", "task_type", kw(task_type=None)),
        ("type int", "task_type", kw(task_type=123)),
        ("type key delimiter #", "task_type", kw(task_type="a#b")),
        ("type slash", "task_type", kw(task_type="a/b")),
        ("type 129 chars", "task_type", kw(task_type="x" * 129)),
        ("type unicode", "task_type", kw(task_type="naïve")),
        ("type leading space", "task_type", kw(task_type=" lead")),
        ("type newline", "task_type", kw(task_type="line\nbreak")),
        ("id pk delimiter", "task_id", kw(task_id="T#evil")),
        ("id sk delimiter", "task_id", kw(task_id="RUN#1")),
        ("id empty", "task_id", kw(task_id="")),
        ("id emoji", "task_id", kw(task_id="😀")),
        ("id 200 chars", "task_id", kw(task_id="x" * 200)),
        ("id NUL", "task_id", kw(task_id="a\x00b")),
        ("payload list", "payload", kw(payload=[1, 2])),
        ("payload str", "payload", kw(payload='{"a": 1}')),
        ("payload NaN", "payload", kw(payload={"x": math.nan})),
        ("payload infinity", "payload", kw(payload={"x": math.inf})),
        ("payload object", "payload", kw(payload={"x": object()})),
        ("payload tuple key", "payload", kw(payload={(1, 2): 1})),
        ("payload huge", "payload", kw(payload={"big": "x" * 250_000})),
        ("payload huge unicode", "payload", kw(payload={"big": "😀" * 70_000})),
        ("trigger None", "trigger", kw(trigger=None)),
        ("trigger str", "trigger", kw(trigger="every 5 minutes")),
        ("at naive", "trigger.when", lambda: kw(trigger=At(naive))),
        ("at 2h ago", "trigger.when", kw(trigger=At(now - timedelta(hours=2)))),
        ("at epoch 0", "trigger.when", lambda: kw(trigger=At(datetime.fromtimestamp(0, UTC)))),
        ("every 0", "trigger.interval", lambda: kw(trigger=Every(0))),
        ("every negative", "trigger.interval", lambda: kw(trigger=Every(-5))),
        ("every NaN", "trigger.interval", lambda: kw(trigger=Every(math.nan))),
        ("every inf", "trigger.interval", lambda: kw(trigger=Every(math.inf))),
        ("every str", "trigger.interval", lambda: kw(trigger=Every("5"))),
        ("every bool", "trigger.interval", lambda: kw(trigger=Every(True))),
        ("every enormous", "trigger.interval", lambda: kw(trigger=Every(10**12))),
        ("every naive start", "trigger.start_at", lambda: kw(trigger=Every(10, start_at=naive))),
        (
            "every end before start",
            "trigger.end_at",
            lambda: kw(trigger=Every(10, start_at=now, end_at=now - timedelta(seconds=1))),
        ),
        (
            "every ended",
            "trigger.end_at",
            lambda: kw(
                trigger=Every(10, start_at=now - timedelta(days=2), end_at=now - timedelta(days=1))
            ),
        ),
        ("cron garbage", "trigger.expr", lambda: kw(trigger=Cron("not a cron"))),
        ("cron minute 61", "trigger.expr", lambda: kw(trigger=Cron("61 * * * *"))),
        ("cron seconds field", "trigger.expr", lambda: kw(trigger=Cron("* * * * * *"))),
        ("cron empty", "trigger.expr", lambda: kw(trigger=Cron(""))),
        ("cron unknown zone", "trigger.tz", lambda: kw(trigger=Cron("* * * * *", tz="Mars/Base"))),
        ("cron never (Feb 30)", "trigger.expr", lambda: kw(trigger=Cron("0 0 30 2 *"))),
        ("retry str", "retry", kw(retry="3")),
        ("retry 0 attempts", "retry.max_attempts", lambda: kw(retry=RetryPolicy(max_attempts=0))),
        (
            "retry 10**6 attempts",
            "retry.max_attempts",
            lambda: kw(retry=RetryPolicy(max_attempts=10**6)),
        ),
        (
            "retry negative backoff",
            "retry.backoff_base",
            lambda: kw(retry=RetryPolicy(backoff_base=-1)),
        ),
        ("retry jitter 2", "retry.jitter", lambda: kw(retry=RetryPolicy(jitter=2))),
        ("timeout 0", "timeout", kw(timeout=0)),
        ("timeout negative", "timeout", kw(timeout=-1)),
        ("timeout NaN", "timeout", kw(timeout=math.nan)),
        ("timeout str", "timeout", kw(timeout="30")),
        ("timeout bool", "timeout", kw(timeout=True)),
        ("timeout enormous", "timeout", kw(timeout=10**9)),
        ("misfire unknown", "misfire", kw(misfire="sometimes")),
        ("lane unknown", "lane", kw(lane="nope")),
        ("expire_after 0", "expire_after", kw(expire_after=0)),
        ("expire_after negative", "expire_after", kw(expire_after=-5)),
        ("same id, other args", "task_id", kw(task_id="healthy", payload={"other": True})),
    ]


def test_schedule_refuses_bad_input(dep, clock, figures):
    sdk = dep.scheduler(short_notice=False)
    healthy = sdk.schedule(
        "rel-ok", {"ok": True}, trigger=At(clock.now() + timedelta(seconds=5)), task_id="healthy"
    )
    before = dep.ddb.scan(TableName=dep.settings.table_name)["Count"]
    cases = _schedule_cases(clock.now())
    unclear: list[str] = []
    for name, field, spec in cases:
        try:
            kwargs = spec() if callable(spec) else spec
            sdk.schedule(**kwargs)
        except ValidationError as exc:
            if not exc.field.startswith(field) or not exc.message:
                unclear.append(f"{name}: field {exc.field!r} ({exc})")
        except Exception as exc:
            unclear.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            unclear.append(f"{name}: accepted")
    after = dep.ddb.scan(TableName=dep.settings.table_name)["Count"]
    ok = _run_healthy(dep, clock, [healthy.task_id])
    figures(
        "bad_input_schedule",
        dep.backend,
        runs=len(cases),
        duplicates=0,
        lost=0 if ok else 1,
        faults=len(cases),
        unclear=len(unclear),
        written=after - before,
    )
    assert not unclear, unclear
    assert after == before, "a refused schedule() wrote something"
    assert ok


# --- the CLI ------------------------------------------------------------------------------------

CLI_CASES: list[tuple[str, list[str], int]] = [
    ("no trigger", ["schedule", "rel-ok"], 2),
    ("two triggers", ["schedule", "rel-ok", "--every", "5", "--cron", "* * * * *"], 2),
    ("at not a date", ["schedule", "rel-ok", "--at", "tomorrow"], 2),
    ("at naive", ["schedule", "rel-ok", "--at", "2030-01-01T00:00:00"], 2),
    ("at in the past", ["schedule", "rel-ok", "--at", "2001-01-01T00:00:00Z"], 2),
    ("every 0", ["schedule", "rel-ok", "--every", "0"], 2),
    ("every negative", ["schedule", "rel-ok", "--every", "-5"], 2),
    ("every garbage", ["schedule", "rel-ok", "--every", "abc"], 2),
    ("every enormous", ["schedule", "rel-ok", "--every", "1e300"], 2),
    ("cron garbage", ["schedule", "rel-ok", "--cron", "bad"], 2),
    ("cron unknown zone", ["schedule", "rel-ok", "--cron", "* * * * *", "--tz", "Mars/Base"], 2),
    ("payload truncated", ["schedule", "rel-ok", "--every", "60", "--payload", '{"a":'], 2),
    ("payload list", ["schedule", "rel-ok", "--every", "60", "--payload", "[1]"], 2),
    (
        "payload huge",
        ["schedule", "rel-ok", "--every", "60", "--payload", json.dumps({"x": "y" * 250_000})],
        2,
    ),
    ("type delimiter", ["schedule", "a#b", "--every", "60"], 2),
    ("type unicode", ["schedule", "日本", "--every", "60"], 2),
    ("id delimiter", ["schedule", "rel-ok", "--every", "60", "--task-id", "T#1"], 2),
    ("max attempts 0", ["schedule", "rel-ok", "--every", "60", "--max-attempts", "0"], 2),
    ("timeout negative", ["schedule", "rel-ok", "--every", "60", "--timeout", "-1"], 2),
    ("misfire unknown", ["schedule", "rel-ok", "--every", "60", "--misfire", "maybe"], 2),
    ("show missing", ["show", "no-such-task"], 3),
    ("runs bad limit", ["runs", "x", "--limit", "0"], 2),
]


def test_cli_refuses_bad_input(dep, clock, figures):
    cli_mod = pytest.importorskip("dynacron.cli", reason="dynacron.cli not written yet")
    from click.testing import CliRunner

    runner = CliRunner()
    env = {
        "DYNACRON_TABLE": dep.settings.table_name,
        "DYNACRON_QUEUE_URL": "",
        "AWS_ENDPOINT_URL": dep.url,
        "AWS_REGION": "us-east-1",
    }
    sdk = dep.scheduler(short_notice=False)
    healthy = sdk.schedule(
        "rel-ok", {}, trigger=At(clock.now() + timedelta(seconds=5)), task_id="healthy"
    )
    before = dep.ddb.scan(TableName=dep.settings.table_name)["Count"]
    unclear: list[str] = []
    for name, args, code in CLI_CASES:
        result = runner.invoke(cli_mod.cli, args, env=env, catch_exceptions=True)
        text = result.output or ""  # stdout and stderr, interleaved
        error_lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
        if result.exit_code != code or len(error_lines) != 1 or "Traceback" in text:
            unclear.append(f"{name}: exit {result.exit_code} ({text.strip()[:200]!r})")
    after = dep.ddb.scan(TableName=dep.settings.table_name)["Count"]
    ok = _run_healthy(dep, clock, [healthy.task_id])
    figures(
        "bad_input_cli",
        dep.backend,
        runs=len(CLI_CASES),
        duplicates=0,
        lost=0 if ok else 1,
        faults=len(CLI_CASES),
        unclear=len(unclear),
        written=after - before,
    )
    assert not unclear, unclear
    assert after == before
    assert ok


# --- the worker's messages ----------------------------------------------------------------------


def _body(**over: Any) -> str:
    base = {
        "v": 1,
        "task_id": "ghost",
        "run_id": "0000000000001-s",
        "fence": "f00d",
        "scheduled_for": 1,
        "lane": "default",
    }
    base.update(over)
    return json.dumps({k: v for k, v in base.items() if v is not _DROP}, ensure_ascii=False)


_DROP = object()

#: (case, body) → the worker must acknowledge it and put an ``undecodable`` record on the DLQ.
UNDECODABLE: list[tuple[str, str]] = [
    ("truncated JSON", '{"v": 1, "task_id": "a"'),
    ("whitespace", "   "),
    ("null", "null"),
    ("list", "[1, 2]"),
    ("string", '"hello"'),
    ("number", "42"),
    ("no version", _body(v=_DROP)),
    ("version 2", _body(v=2)),
    ("task_id int", _body(task_id=123)),
    ("task_id empty", _body(task_id="")),
    ("run_id null", _body(run_id=None)),
    ("fence list", _body(fence=["a"])),
    ("lane int", _body(lane=5)),
    ("scheduled_for str", _body(scheduled_for="soon")),
    ("scheduled_for negative", _body(scheduled_for=-1)),
    ("scheduled_for enormous", _body(scheduled_for=10**20)),
    ("scheduled_for float", _body(scheduled_for=1.5)),
    ("scheduled_for bool", _body(scheduled_for=True)),
    ("huge non-JSON body", "x" * 250_000),
    ("task_id 256 emoji (key > 1 KB)", _body(task_id="😀" * 256)),
    ("run_id 256 emoji", _body(run_id="😀" * 256)),
    ("task_id with key delimiter", _body(task_id="T#other")),
    ("run_id with key delimiter", _body(run_id="RUN#0000000000001-s")),
    ("task_id control char", _body(task_id="a\u0007b")),
    ("task_id line separator", _body(task_id="a\u2028b")),
]


def test_worker_survives_bad_messages(dep, clock, behaviour, ledger, figures):
    """Every bad message is acknowledged with a DLQ record or a dead run naming the reason;
    a healthy run in the same batches succeeds; no record crashes the worker."""
    sdk = dep.scheduler(short_notice=False)
    at = At(clock.now() + timedelta(seconds=2))
    healthy = [
        sdk.schedule("rel-ok", {"i": i}, trigger=at, task_id=f"healthy-{i}").task_id
        for i in range(3)
    ]
    unknown = sdk.schedule("no-such-handler", {}, trigger=at, task_id="unknown-handler").task_id
    deleted = sdk.schedule("rel-ok", {}, trigger=at, task_id="deleted-task").task_id
    deleted_all = sdk.schedule("rel-ok", {}, trigger=at, task_id="deleted-everything").task_id
    corrupt = sdk.schedule("rel-ok", {"a": 1}, trigger=at, task_id="corrupt-payload").task_id
    stale = sdk.schedule("rel-ok", {}, trigger=at, task_id="stale-fence").task_id
    vsqs = VirtualSQS(dep.new_sqs(), clock)
    report = dep.dispatcher(vsqs).poll()
    assert report.sent == 8
    store = dep.reader
    # now break things behind the queued messages
    store.get_task_row(deleted).delete()
    run_row = next(store.query_runs(deleted_all))
    run_row.delete()
    store.get_task_row(deleted_all).delete()
    task_row = store.get_task_row(corrupt)
    task_row.update(actions=[store.models.Task.payload.set('{"a": 1')])  # truncated JSON
    stale_body = next(e["MessageBody"] for e in vsqs.sent if stale in e["MessageBody"])
    stale_copy = json.dumps({**json.loads(stale_body), "fence": "0123456789abcdef"})
    url = dep.settings.queue_url
    bodies = [b for _n, b in UNDECODABLE] + [stale_copy, _body(task_id="ghost-task")]
    for i in range(0, len(bodies), 10):
        dep.sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i : i + 10])],
        )

    executor = dep.executor(vsqs)
    clock.advance(3)
    results: dict[str, str] = {}
    crashes: list[str] = []
    for _ in range(20):
        msgs = dep.receive(url, visibility=60)
        if not msgs:
            break
        arn = "arn:aws:sqs:us-east-1:000000000000:" + url.rsplit("/", 1)[-1]
        event = sqs_event(msgs, arn, "us-east-1")
        out = process_event(event, _Ctx(), executor)
        failed = {f["itemIdentifier"] for f in out["batchItemFailures"]}
        for m in msgs:
            results[m["Body"]] = "failed" if m["MessageId"] in failed else "acked"
            if m["MessageId"] in failed:
                crashes.append(m["Body"][:120])
            dep.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    dlq = dep.dlq()
    rows = statuses(dep)
    by_task = {t: r for (t, _r), r in rows.items()}
    undecodable = [d for d in dlq if d.get("kind") == "undecodable"]
    orphans = [d for d in dlq if d.get("kind") == "orphan"]
    dead = {d["task_id"]: d for d in dlq if d.get("kind") == "dead_run"}
    problems: list[str] = [f"record not acknowledged (worker failed on it): {c!r}" for c in crashes]
    for name, body in UNDECODABLE:
        match = [d for d in undecodable if d["body"] == body[:2048]]
        if len(match) != 1 or not match[0]["reason"]:
            problems.append(f"{name}: {len(match)} undecodable DLQ records")
    for task_id in ("ghost-task", deleted_all):
        if not any(d["task_id"] == task_id and "not found" in d["reason"] for d in orphans):
            problems.append(f"orphan message for {task_id} left no DLQ record: {orphans}")
    for task_id, needle in [
        (unknown, "unknown handler"),
        (deleted, "not found"),
        (corrupt, "payload"),
    ]:
        row = by_task.get(task_id)
        if row is None or row.status != "dead" or needle not in (row.error or ""):
            problems.append(f"{task_id}: {row.status if row else None} {row and row.error!r}")
        if task_id not in dead or needle not in dead[task_id]["reason"]:
            problems.append(f"{task_id}: DLQ record {dead.get(task_id)}")
    if by_task[stale].status != "succeeded":
        problems.append(f"stale-fence copy disturbed the real run: {by_task[stale].status}")
    lost = sum(1 for t in healthy if by_task[t].status != "succeeded")
    figures(
        "bad_input_worker",
        dep.backend,
        runs=len(bodies) + 8,
        duplicates=ledger.duplicates(),
        lost=lost,
        faults=len(bodies) + 4,
        problems=len(problems),
        dlq=len(dlq),
    )
    assert not problems, problems
    assert lost == 0 and ledger.duplicates() == 0
    assert ledger.attempts_of(corrupt, by_task[corrupt].run_id) == []  # never started


def test_message_parse_rejects_with_field_names():
    """Message.parse names the offending field for each malformed body (no I/O)."""
    for name, body in UNDECODABLE:
        with pytest.raises(ValidationError) as info:
            Message.parse(body)
        assert info.value.field.startswith("message"), name


class _Ctx:
    def get_remaining_time_in_millis(self) -> int:
        return 600_000


def _run_healthy(dep: Any, clock: Any, task_ids: list[str]) -> bool:
    vsqs = VirtualSQS(dep.new_sqs(), clock)
    dep.dispatcher(vsqs).poll()
    deliver(dep, vsqs, dep.executor(vsqs), clock)
    rows = statuses(dep)
    return all(
        r.status == "succeeded"
        for (t, _r), r in rows.items()
        if t in task_ids and r.scheduled_for <= to_ms(clock.now())
    )
