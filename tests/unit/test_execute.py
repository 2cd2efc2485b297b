"""The worker's attempt (execute.py) and batch handling (batch.py) on in-process moto."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest

from dynacron import At, RetryPolicy, RunStatus, handler
from dynacron.batch import process_event, queue_url_for_arn
from dynacron.execute import Outcome, idempotency_key

CALLS: Counter = Counter()
SEEN: list = []


@handler("exec-ok")
def _ok(payload, ctx):
    CALLS[(ctx.run_id, ctx.attempt)] += 1
    SEEN.append(ctx)
    return {"n": payload.get("n"), "big": "x" * payload.get("big", 0)}


@handler("exec-fail")
def _fail(payload, ctx):
    CALLS[(ctx.run_id, ctx.attempt)] += 1
    raise RuntimeError(f"boom on attempt {ctx.attempt}")


@handler("exec-flaky")
def _flaky(payload, ctx):
    if ctx.attempt < 2:
        raise ConnectionError("transient")
    return "ok"


RELEASE = threading.Event()


@handler("exec-hang")
def _hang(payload, ctx):
    RELEASE.wait(30)  # never set: the timeout must stop the attempt
    return "unreachable"


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    SEEN.clear()


def one_message(env, task_type="exec-ok", payload=None, in_s=5, **kw):
    s = env.scheduler()
    t = s.schedule(
        task_type, payload or {}, trigger=At(env.clock.now() + timedelta(seconds=in_s)), **kw
    )
    (msg,) = env.receive()
    env.clock.advance(in_s)
    return s, t, msg


def run_once(env, msg, **kw):
    return env.executor(**kw).execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)


def test_success_stores_result_and_leaves_the_due_index(env):
    s, t, msg = one_message(env, payload={"n": 7})
    res = run_once(env, msg)
    assert (res.outcome, res.status) == (Outcome.ACK, "succeeded")
    (run,) = s.runs(t.task_id)
    assert run.status is RunStatus.SUCCEEDED and run.attempt == 1
    assert run.result == {"n": 7, "big": ""}
    assert run.finished_at == env.clock.now() and run.expires_at > env.clock.now()
    item = next(i for i in env.table_items() if i["sk"]["S"].startswith("RUN#"))
    assert "due_at" not in item and "due_shard" not in item


def test_result_is_truncated_to_the_stated_size(env):
    from dynacron.types import MAX_RESULT_BYTES

    s, t, msg = one_message(env, payload={"big": 10_000})
    run_once(env, msg)
    (run,) = s.runs(t.task_id)
    assert isinstance(run.result, str) and len(run.result.encode()) <= MAX_RESULT_BYTES


def test_context_carries_ids_and_a_stable_idempotency_key(env):
    s, t, msg = one_message(env)
    run_once(env, msg)
    (ctx,) = SEEN
    (run,) = s.runs(t.task_id)
    assert (ctx.task_id, ctx.run_id, ctx.attempt) == (t.task_id, run.run_id, 1)
    assert ctx.scheduled_for == run.scheduled_for
    assert ctx.idempotency_key == idempotency_key(t.task_id, run.run_id)
    assert ctx.deadline == run.started_at + timedelta(seconds=60)


def test_duplicate_delivery_does_nothing_and_is_acknowledged(env):
    _, _, msg = one_message(env)
    assert run_once(env, msg).status == "succeeded"
    res = run_once(env, msg)
    assert (res.outcome, res.status) == (Outcome.ACK, "duplicate")
    assert sum(CALLS.values()) == 1


def test_duplicate_while_the_first_delivery_runs_does_not_start_twice(env):
    s = env.scheduler()
    gate, inside = threading.Event(), threading.Event()
    results = []

    @handler("exec-gated")
    def _gated(payload, ctx):
        CALLS[(ctx.run_id, ctx.attempt)] += 1
        inside.set()
        gate.wait(10)

    t2 = s.schedule("exec-gated", {}, trigger=At(env.clock.now() + timedelta(seconds=3)))
    (m2,) = env.receive()
    env.clock.advance(3)
    th = threading.Thread(target=lambda: results.append(run_once(env, m2)))
    th.start()
    assert inside.wait(10)
    second = run_once(env, m2)
    gate.set()
    th.join(10)
    assert (second.outcome, second.status) == (Outcome.ACK, "duplicate")
    assert results[0].status == "succeeded"
    assert list(CALLS.values()) == [1]
    assert s.runs(t2.task_id)[0].attempt == 1


def test_stale_fence_is_acknowledged_without_running(env):
    s, t, msg = one_message(env)
    body = json.loads(msg["Body"])
    body["fence"] = "0" * 16
    res = env.executor().execute(json.dumps(body), msg["ReceiptHandle"], env.settings.queue_url)
    assert (res.outcome, res.status) == (Outcome.ACK, "stale")
    assert not CALLS and s.runs(t.task_id)[0].status is RunStatus.QUEUED


def test_failure_retries_with_exponential_backoff_then_goes_dead_with_dlq_record(env):
    env.settings = replace(env.settings, heartbeat_s=0)  # backoff only (see test_heartbeat.py)
    policy = RetryPolicy(max_attempts=3, backoff_base=2, backoff_max=300, jitter=0)
    s, t, msg = one_message(env, "exec-fail", retry=policy)
    outcomes = []
    for _ in range(3):
        outcomes.append(run_once(env, msg).outcome)
        env.clock.advance(1000)
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.ACK]
    assert env.sqs.visibility == [2, 4]  # 2 s after attempt 1, 4 s after attempt 2
    (run,) = s.runs(t.task_id)
    assert run.status is RunStatus.DEAD and run.attempt == 3
    assert "retries exhausted after 3 attempts" in run.error and "boom on attempt 3" in run.error
    (dlq,) = env.receive("dlq")
    record = json.loads(dlq["Body"])
    assert record["task_id"] == t.task_id and record["run_id"] == run.run_id
    assert record["attempts"] == 3 and "boom on attempt 3" in record["error"]
    assert "payload" not in record


def test_backoff_is_capped_and_jittered():
    policy = RetryPolicy(max_attempts=10, backoff_base=1, backoff_max=10, jitter=0.5)
    assert [policy.backoff(n, 0.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.backoff(3, 0.999) == pytest.approx(4 * (1 - 0.5 * 0.999))


def test_flaky_handler_succeeds_on_retry(env):
    policy = RetryPolicy(max_attempts=3, backoff_base=1, jitter=0)
    s, t, msg = one_message(env, "exec-flaky", retry=policy)
    assert run_once(env, msg).outcome is Outcome.RETRY
    env.clock.advance(1)
    assert run_once(env, msg).status == "succeeded"
    (run,) = s.runs(t.task_id)
    assert run.status is RunStatus.SUCCEEDED and run.attempt == 2
    assert "transient" in (run.error or "")  # the failed attempt's error stays visible


def test_timeout_counts_as_a_failed_attempt(env):
    s, t, msg = one_message(env, "exec-hang", timeout=0.2, retry=RetryPolicy(max_attempts=1))
    res = run_once(env, msg)
    assert res.status == "dead"
    (run,) = s.runs(t.task_id)
    assert "HandlerTimeout" in run.error and "0.2s" in run.error


def test_lambda_remaining_time_bounds_the_attempt(env):
    s, t, msg = one_message(env, "exec-hang", timeout=600, retry=RetryPolicy(max_attempts=1))
    ex = env.executor(safety_margin_s=0.1)
    # Not enough time for the full timeout: returned to the queue, no attempt counted.
    res = ex.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url, lambda: 5.0)
    assert (res.outcome, res.status) == (Outcome.RETURN, "no_time")
    assert s.runs(t.task_id)[0].attempt == 0


def test_unknown_handler_is_dead_at_once_without_retries(env):
    s, t, msg = one_message(env, "nobody-handles-this", retry=RetryPolicy(max_attempts=5))
    res = run_once(env, msg)
    assert (res.outcome, res.status) == (Outcome.ACK, "dead")
    (run,) = s.runs(t.task_id)
    assert run.attempt == 0 and "unknown handler 'nobody-handles-this'" in run.error
    record = json.loads(env.receive("dlq")[0]["Body"])
    assert "unknown handler" in record["reason"]


@pytest.mark.parametrize(
    "body",
    [
        "",
        "{",
        "null",
        "[]",
        '{"v":1}',
        '{"v":2,"task_id":"a","run_id":"b","fence":"c"}',
        '{"v":1,"task_id":"a","run_id":"b","fence":"c","scheduled_for":"soon"}',
    ],
)
def test_undecodable_message_goes_to_the_dlq_with_the_reason(env, body):
    res = env.executor().execute(body, "rh", env.settings.queue_url)
    assert (res.outcome, res.status) == (Outcome.ACK, "undecodable")
    record = json.loads(env.receive("dlq")[0]["Body"])
    assert record["kind"] == "undecodable" and record["reason"].startswith("message")


def test_message_for_a_deleted_task_is_recorded_not_crashed(env):
    s, t, msg = one_message(env)
    env.dynamodb.delete_item(
        TableName=env.settings.table_name, Key={"pk": {"S": f"T#{t.task_id}"}, "sk": {"S": "TASK"}}
    )
    res = run_once(env, msg)
    assert res.status == "dead"
    (run,) = s.runs.__self__.store.query_runs(t.task_id)
    assert "not found" in run.error


def test_cancelled_task_run_is_skipped(env):
    s, t, msg = one_message(env)
    s.cancel(t.task_id)
    res = run_once(env, msg)
    assert res.outcome is Outcome.ACK and not CALLS


def test_early_message_waits_for_its_second(env):
    s = env.scheduler()
    t = s.schedule("exec-ok", {}, trigger=At(env.clock.now() + timedelta(seconds=3.4)))
    (msg,) = env.receive()
    env.clock.advance(2.7)  # arrives 0.7 s early
    run_once(env, msg)
    (run,) = s.runs(t.task_id)
    assert run.started_at == run.scheduled_for


def test_very_early_message_is_hidden_again(env):
    s = env.scheduler()
    s.schedule("exec-ok", {}, trigger=At(env.clock.now() + timedelta(seconds=30)))
    (msg,) = env.receive()
    res = run_once(env, msg)
    assert (res.outcome, res.status) == (Outcome.RETURN, "early")
    assert env.sqs.visibility == [29] and not CALLS


def test_expired_run_is_not_started(env):
    s, t, msg = one_message(env, expire_after=10)
    env.clock.advance(11)
    assert run_once(env, msg).status == "expired"
    assert not CALLS and s.runs(t.task_id)[0].status is RunStatus.EXPIRED


def test_crashed_worker_redelivery_takes_over_after_the_lease(env):
    s, t, msg = one_message(env)
    ex = env.executor()
    # Simulate a crash right after the start write: the attempt is "running" and nobody acks.
    run_row = ex.store.get_run_row(t.task_id, s.runs(t.task_id)[0].run_id)
    assert ex._start(run_row, env.clock.now(), 60)
    assert run_once(env, msg).status == "duplicate"  # lease still running
    env.clock.advance(60 + env.settings.lease_s + 1)
    assert run_once(env, msg).status == "succeeded"
    assert s.runs(t.task_id)[0].attempt == 2


def _sqs_event(env, messages):
    arn = "arn:aws:sqs:us-east-1:123456789012:" + env.settings.queue_url.rsplit("/", 1)[-1]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def test_a_failing_record_never_breaks_the_batch(env):
    s = env.scheduler()
    when = env.clock.now() + timedelta(seconds=2)
    ok = [s.schedule("exec-ok", {"n": i}, trigger=At(when)) for i in range(4)]
    bad = s.schedule("exec-fail", {}, trigger=At(when), retry=RetryPolicy(max_attempts=2))
    messages = env.receive()
    env.clock.advance(2)
    out = process_event(_sqs_event(env, messages), None, env.executor())
    bad_msg = next(m for m in messages if json.loads(m["Body"])["task_id"] == bad.task_id)
    assert out == {"batchItemFailures": [{"itemIdentifier": bad_msg["MessageId"]}]}
    assert all(s.runs(t.task_id)[0].status is RunStatus.SUCCEEDED for t in ok)
    assert s.runs(bad.task_id)[0].status is RunStatus.RETRYING


def test_queue_url_is_found_from_the_event_source_arn(env):
    name = env.settings.queue_url.rsplit("/", 1)[-1]
    assert (
        queue_url_for_arn(f"arn:aws:sqs:us-east-1:1:{name}", env.settings) == env.settings.queue_url
    )
    other = queue_url_for_arn("arn:aws:sqs:eu-west-1:42:other", env.settings)
    assert other == "https://sqs.eu-west-1.amazonaws.com/42/other"


def test_start_whose_response_was_lost_still_runs_the_handler(env, monkeypatch):
    """botocore retries a start whose response was lost; the retry fails the condition on the
    write the first try applied. The start token recognises it: the handler still runs once."""
    from dynacron.store import RunRow

    s, t, msg = one_message(env, retry=RetryPolicy(max_attempts=1))
    original = RunRow.update
    state = {"retried": False}

    def applied_then_retried(self, actions, condition=None, **kw):
        result = original(self, actions=actions, condition=condition, **kw)
        if not state["retried"] and self.status == RunStatus.RUNNING.value:
            state["retried"] = True
            return original(self, actions=actions, condition=condition, **kw)  # raises
        return result

    monkeypatch.setattr(RunRow, "update", applied_then_retried)
    res = run_once(env, msg)
    assert state["retried"]
    assert res.status == "succeeded" and sum(CALLS.values()) == 1
    assert s.runs(t.task_id)[0].attempt == 1
