"""Targets (targets.py) through the executor on in-process moto: each target's success,
failure, retry-then-success and dead; the idempotency key on every attempt; no payload in logs."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dynacron import At, RetryPolicy, RunStatus, ValidationError
from dynacron.execute import Outcome, idempotency_key
from dynacron.targets import (
    KEY_ATTRIBUTE,
    EventBus,
    Http,
    Lambda,
    LocalLambda,
    Sns,
    Sqs,
    StateMachine,
    TargetInvoker,
    parse_target,
    target_from_dict,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
MARKER = "PAYLOAD-MARKER-7f3a"  # must never appear in a log line
POLICY = RetryPolicy(max_attempts=3, backoff_base=2, backoff_max=300, jitter=0)


# --- helpers ------------------------------------------------------------------------------------


class Flaky:
    """Wraps a client: the first ``fail`` calls of ``method`` raise ``error``; records kwargs."""

    def __init__(self, client: Any, method: str, fail: int, error: ClientError) -> None:
        self._client, self._method, self._fail, self._error = client, method, fail, error
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name != self._method:
            return real

        def call(**kwargs: Any) -> Any:
            self.calls.append(kwargs)
            if len(self.calls) <= self._fail:
                raise self._error
            return real(**kwargs)

        return call


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> ClientError:
    meta = {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": meta}, "Op")


class Recorder:
    """A logger that keeps every line (message and extra) as text."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, level: str) -> Any:
        return lambda message, extra=None: self.lines.append(f"{level} {message} {extra!r}")


def schedule(env, target, payload=None, in_s=5, **kw):
    s = env.scheduler()
    t = s.schedule(
        target,
        {"marker": MARKER, **(payload or {})},
        trigger=At(env.clock.now() + timedelta(seconds=in_s)),
        retry=kw.pop("retry", POLICY),
        **kw,
    )
    (msg,) = [m for m in env.receive() if json.loads(m["Body"])["task_id"] == t.task_id]
    env.clock.advance(in_s)
    return s, t, msg


def attempt(env, msg, invoker, logger=None):
    executor = env.executor(targets=invoker, logger=logger)
    return executor.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)


def the_run(s, t):
    (run,) = s.runs(t.task_id)
    return run


def key_of(s, t):
    return idempotency_key(t.task_id, the_run(s, t).run_id)


@pytest.fixture
def aws(env):
    """boto3 clients in the same in-process moto as ``env``."""
    return {
        n: boto3.client(n, region_name=REGION) for n in ("sqs", "sns", "events", "stepfunctions")
    }


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Lambda("not an arn"), "target.function_arn"),
        (lambda: Sqs("ftp://x/1/q"), "target.queue_url"),
        (lambda: Sns("arn:aws:sqs:us-east-1:123456789012:q"), "target.topic_arn"),
        (lambda: EventBus("default", "", "my.app"), "target.detail_type"),
        (lambda: EventBus("default", "t", "aws.ec2"), "target.source"),
        (lambda: StateMachine("arn:aws:states:us-east-1:1:stateMachine:m"), "target.arn"),
        (lambda: Http("ftp://example.com"), "target.url"),
        (lambda: Http("https://u:p@example.com"), "target.url"),
        (lambda: Http("https://example.com", method="TRACE"), "target.method"),
        (lambda: Http("https://example.com", headers={"Idempotency-Key": "x"}), "target.headers"),
        (lambda: Http("https://example.com", headers={"A": "b\r\nX: y"}), "target.headers"),
        (lambda: Http("https://example.com", secret="hunter2"), "target.secret"),
    ],
)
def test_bad_targets_are_refused_naming_the_field(make, field):
    with pytest.raises(ValidationError) as err:
        make()
    assert err.value.field == field


def test_stored_form_round_trips_every_kind():
    targets = [
        Lambda(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:report"),
        Sqs(f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/jobs.fifo", group_id="g"),
        Sns(f"arn:aws:sns:{REGION}:{ACCOUNT}:topic"),
        EventBus("default", "Job due", "my.app"),
        StateMachine(f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:flow"),
        Http("https://example.com/hook", "PUT", {"X-Team": "a"}, "ssm:/hooks/secret"),
    ]
    for target in targets:
        again = target_from_dict(json.loads(json.dumps(target.to_dict())))
        assert again == target and type(again) is type(target)


def test_cli_syntax():
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/jobs.fifo"
    assert parse_target(f"sqs:{url}?group_id=g1") == Sqs(url, group_id="g1")
    assert parse_target("eventbus:ops?source=my.app&detail_type=Job%20due") == EventBus(
        "ops", "Job due", "my.app"
    )
    assert parse_target("https://e.com/x", method="PUT") == Http("https://e.com/x", "PUT")
    assert parse_target("lambda:report") == Lambda("report")
    with pytest.raises(ValidationError, match="HTTP targets only"):
        parse_target("lambda:report", secret="ssm:/x")
    with pytest.raises(ValidationError, match="unknown kind"):
        parse_target("carrier-pigeon:coo")


def test_sqs_resource_is_the_queue_arn():
    target = Sqs(f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/jobs")
    assert target.resource() == f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs"


def test_schedule_stores_the_target_and_old_rows_stay_readable(env):
    s = env.scheduler()
    target = Http("https://example.com/hook", headers={"X-Team": "a"}, secret="ssm:/s")
    t = s.schedule(target, {"a": 1}, trigger=At(env.clock.now() + timedelta(hours=1)))
    got = s.get(t.task_id)
    assert got.target == target and got.task_type == "target:http" and got.payload == {"a": 1}
    # idempotent create compares the target too
    same = s.schedule(target, {"a": 1}, trigger=t.trigger, task_id=t.task_id)
    assert same.task_id == t.task_id
    with pytest.raises(ValidationError, match="different arguments"):
        s.schedule(
            Http("https://example.com/other"), {"a": 1}, trigger=t.trigger, task_id=t.task_id
        )
    # a handler task has no target; its row has no target attribute at all
    h = s.schedule("exec-ok", {}, trigger=At(env.clock.now() + timedelta(hours=1)))
    assert s.get(h.task_id).target is None
    item = env.dynamodb.get_item(
        TableName=env.settings.table_name, Key={"pk": {"S": f"T#{h.task_id}"}, "sk": {"S": "TASK"}}
    )["Item"]
    assert "target" not in item


def test_schedule_refuses_what_the_configuration_rules_out(env):
    allowed = f"arn:aws:sns:{REGION}:{ACCOUNT}:ok"
    s = replace(env, settings=replace(env.settings, allowed_targets=(allowed,))).scheduler()
    when = At(env.clock.now() + timedelta(hours=1))
    s.schedule(Sns(allowed), {}, trigger=when)
    with pytest.raises(ValidationError) as err:
        s.schedule(Sns(f"arn:aws:sns:{REGION}:{ACCOUNT}:other"), {}, trigger=when)
    assert err.value.field == "target" and "not in the allowed targets" in str(err.value)
    with pytest.raises(ValidationError, match="reserved"):
        s.schedule(Lambda("fn"), {"dynacron": 1}, trigger=when)
    with pytest.raises(ValidationError) as err:
        env.scheduler().schedule(Http("http://example.com/"), {}, trigger=when)
    assert err.value.field == "target.url"


# --- SQS ------------------------------------------------------------------------------------------


def test_sqs_standard_success_carries_the_key_and_the_payload_only(env, aws):
    url = aws["sqs"].create_queue(QueueName="jobs")["QueueUrl"]
    s, t, msg = schedule(env, Sqs(url), {"n": 1})
    res = attempt(env, msg, TargetInvoker(env.settings))
    assert res.status == "succeeded"
    (got,) = aws["sqs"].receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(got["Body"]) == {"marker": MARKER, "n": 1}
    attrs = got["MessageAttributes"]
    assert attrs[KEY_ATTRIBUTE]["StringValue"] == key_of(s, t)
    assert the_run(s, t).result["message_id"] == got["MessageId"]


def test_sqs_fifo_throttled_then_sent_with_the_same_dedup_id(env, aws):
    env.settings = replace(env.settings, heartbeat_s=0)  # backoff only (test_heartbeat.py)
    url = aws["sqs"].create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    flaky = Flaky(aws["sqs"], "send_message", 1, client_error("ThrottlingException", 400))
    invoker = TargetInvoker(env.settings, clients={"sqs": flaky})
    s, t, msg = schedule(env, Sqs(url))
    assert attempt(env, msg, invoker).outcome is Outcome.RETRY
    assert env.sqs.visibility == [2]
    env.clock.advance(2)
    assert attempt(env, msg, invoker).status == "succeeded"
    assert [c["MessageDeduplicationId"] for c in flaky.calls] == [key_of(s, t)] * 2
    assert [c["MessageGroupId"] for c in flaky.calls] == [t.task_id] * 2  # default group
    run = the_run(s, t)
    assert run.status is RunStatus.SUCCEEDED and run.attempt == 2


def test_sqs_missing_queue_is_dead_at_once_with_a_dlq_record(env):
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/missing"
    s, t, msg = schedule(env, Sqs(url))
    res = attempt(env, msg, TargetInvoker(env.settings))
    assert (res.outcome, res.status) == (Outcome.ACK, "dead")
    run = the_run(s, t)
    assert run.attempt == 1 and "NonExistentQueue" in run.error
    (dlq,) = env.receive("dlq")
    assert "sqs target refused the run" in json.loads(dlq["Body"])["reason"]


def test_failures_until_exhausted_end_dead(env, aws):
    url = aws["sqs"].create_queue(QueueName="busy")["QueueUrl"]
    flaky = Flaky(aws["sqs"], "send_message", 99, client_error("InternalError", 500))
    invoker = TargetInvoker(env.settings, clients={"sqs": flaky})
    s, t, msg = schedule(env, Sqs(url))
    outcomes = []
    for _ in range(3):
        outcomes.append(attempt(env, msg, invoker).outcome)
        env.clock.advance(1000)
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.ACK]
    run = the_run(s, t)
    assert run.status is RunStatus.DEAD and "retries exhausted after 3" in run.error
    assert len({c["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"] for c in flaky.calls}) == 1


# --- SNS ------------------------------------------------------------------------------------------


def _subscribed_queue(aws, topic_arn):
    url = aws["sqs"].create_queue(QueueName="sub")["QueueUrl"]
    arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    aws["sns"].subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    return url


def test_sns_publishes_payload_with_the_key_attribute(env, aws):
    topic = aws["sns"].create_topic(Name="events")["TopicArn"]
    url = _subscribed_queue(aws, topic)
    flaky = Flaky(aws["sns"], "publish", 1, client_error("Throttled", 400))
    s, t, msg = schedule(env, Sns(topic), {"n": 2})
    invoker = TargetInvoker(env.settings, clients={"sns": flaky})
    assert attempt(env, msg, invoker).outcome is Outcome.RETRY
    env.clock.advance(2)
    assert attempt(env, msg, invoker).status == "succeeded"
    (got,) = aws["sqs"].receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(got["Body"]) == {"marker": MARKER, "n": 2}
    assert got["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"] == key_of(s, t)
    keys = {c["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"] for c in flaky.calls}
    assert keys == {key_of(s, t)} and len(flaky.calls) == 2
    assert the_run(s, t).result["message_id"]


def test_sns_missing_topic_is_dead(env):
    s, t, msg = schedule(env, Sns(f"arn:aws:sns:{REGION}:{ACCOUNT}:missing"))
    assert attempt(env, msg, TargetInvoker(env.settings)).status == "dead"
    assert "NotFound" in the_run(s, t).error


# --- EventBridge ---------------------------------------------------------------------------------


def test_eventbus_puts_the_payload_and_metadata_as_detail(env, aws):
    aws["events"].create_event_bus(Name="ops")
    url = aws["sqs"].create_queue(QueueName="bus-sink")["QueueUrl"]
    qarn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    aws["events"].put_rule(Name="r", EventBusName="ops", EventPattern='{"source":["my.app"]}')
    aws["events"].put_targets(
        Rule="r", EventBusName="ops", Targets=[{"Id": "q", "Arn": qarn["Attributes"]["QueueArn"]}]
    )
    flaky = Flaky(aws["events"], "put_events", 1, client_error("InternalFailure", 500))
    s, t, msg = schedule(env, EventBus("ops", "Job due", "my.app"), {"n": 3})
    invoker = TargetInvoker(env.settings, clients={"events": flaky})
    assert attempt(env, msg, invoker).outcome is Outcome.RETRY
    env.clock.advance(2)
    assert attempt(env, msg, invoker).status == "succeeded"
    (got,) = aws["sqs"].receive_message(QueueUrl=url)["Messages"]
    event = json.loads(got["Body"])
    assert event["detail-type"] == "Job due" and event["source"] == "my.app"
    meta = event["detail"].pop("dynacron")
    assert event["detail"] == {"marker": MARKER, "n": 3}
    assert meta["idempotency_key"] == key_of(s, t) and meta["attempt"] == 2
    keys = {
        json.loads(c["Entries"][0]["Detail"])["dynacron"]["idempotency_key"] for c in flaky.calls
    }
    assert keys == {key_of(s, t)}
    assert the_run(s, t).result["event_id"]


def test_eventbus_missing_bus_is_dead(env):
    s, t, msg = schedule(env, EventBus("nope", "x", "my.app"))
    assert attempt(env, msg, TargetInvoker(env.settings)).status == "dead"
    assert "ResourceNotFoundException" in the_run(s, t).error


def test_eventbus_failed_entry_is_classified():
    invoker = TargetInvoker(None, clients={"events": _FailedEntry("ThrottlingException")})
    from dynacron.targets import Attempt

    at = Attempt("t", "r", 1, "2026-01-01T00:00:00+00:00", "k")
    out = invoker.invoke(EventBus("b", "d", "s"), {}, at, 5)
    assert not out.ok and not out.dead
    invoker = TargetInvoker(None, clients={"events": _FailedEntry("AccessDeniedException")})
    assert invoker.invoke(EventBus("b", "d", "s"), {}, at, 5).dead


class _FailedEntry:
    def __init__(self, code: str) -> None:
        self.code = code

    def put_events(self, Entries: list) -> dict:
        return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": self.code, "ErrorMessage": "no"}]}


# --- Step Functions ------------------------------------------------------------------------


def _state_machine(aws) -> str:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    return aws["stepfunctions"].create_state_machine(
        name="flow",
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/r",
    )["stateMachineArn"]


def test_state_machine_execution_is_named_by_the_key_on_every_attempt(env, aws):
    arn = _state_machine(aws)
    flaky = Flaky(
        aws["stepfunctions"], "start_execution", 1, client_error("ThrottlingException", 400)
    )
    s, t, msg = schedule(env, StateMachine(arn), {"n": 4})
    invoker = TargetInvoker(env.settings, clients={"stepfunctions": flaky})
    assert attempt(env, msg, invoker).outcome is Outcome.RETRY
    env.clock.advance(2)
    assert attempt(env, msg, invoker).status == "succeeded"
    key = key_of(s, t)
    assert [c["name"] for c in flaky.calls] == [key, key]
    (execution,) = aws["stepfunctions"].list_executions(stateMachineArn=arn)["executions"]
    assert execution["name"] == key
    described = aws["stepfunctions"].describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"marker": MARKER, "n": 4}
    assert the_run(s, t).result["execution_arn"] == execution["executionArn"]


def test_state_machine_already_started_by_a_lost_attempt_counts_as_started(env, aws):
    arn = _state_machine(aws)
    s, t, msg = schedule(env, StateMachine(arn))
    key = key_of(s, t)
    stub = Flaky(
        aws["stepfunctions"], "start_execution", 1, client_error("ExecutionAlreadyExists", 400)
    )
    res = attempt(env, msg, TargetInvoker(env.settings, clients={"stepfunctions": stub}))
    assert res.status == "succeeded"
    assert the_run(s, t).result == {
        "execution_arn": arn.replace(":stateMachine:", ":execution:") + f":{key}",
        "already_started": True,
    }


def test_state_machine_missing_is_dead(env):
    s, t, msg = schedule(env, StateMachine(f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:gone"))
    assert attempt(env, msg, TargetInvoker(env.settings)).status == "dead"
    assert "StateMachineDoesNotExist" in the_run(s, t).error


# --- Lambda (the local mapping: moto runs Lambda code only in Docker) -----------------------------

LAMBDA_EVENTS: list[tuple[dict, dict]] = []


def report(event, context):
    LAMBDA_EVENTS.append((event, context.client_context.custom))
    if len(LAMBDA_EVENTS) == 1:
        raise RuntimeError("first call fails")
    return {"ok": True, "n": event["n"]}


def test_lambda_function_error_then_success_key_in_event_and_client_context(env):
    LAMBDA_EVENTS.clear()
    local = LocalLambda({"report": f"{__name__}:report"})
    invoker = TargetInvoker(env.settings, clients={"lambda": local})
    target = Lambda(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:report")
    s, t, msg = schedule(env, target, {"n": 5})
    assert attempt(env, msg, invoker).outcome is Outcome.RETRY
    assert "first call fails" in the_run(s, t).error
    env.clock.advance(2)
    assert attempt(env, msg, invoker).status == "succeeded"
    key = key_of(s, t)
    for n, (event, custom) in enumerate(LAMBDA_EVENTS, start=1):
        meta = event.pop("dynacron")
        assert event == {"marker": MARKER, "n": 5}
        assert meta["idempotency_key"] == custom["idempotency_key"] == key
        assert meta["attempt"] == custom["attempt"] == n
    assert the_run(s, t).result["response"] == {"ok": True, "n": 5}


def test_lambda_unmapped_function_is_dead(env):
    invoker = TargetInvoker(env.settings, clients={"lambda": LocalLambda({})})
    s, t, msg = schedule(env, Lambda("nobody"))
    assert attempt(env, msg, invoker).status == "dead"
    assert "ResourceNotFoundException" in the_run(s, t).error


def test_lambda_mapping_that_does_not_import_is_dead(env):
    local = LocalLambda({"f": "no_such_module_xyz:handler"})
    s, t, msg = schedule(env, Lambda("f"))
    assert (
        attempt(env, msg, TargetInvoker(env.settings, clients={"lambda": local})).status == "dead"
    )
    assert "does not import" in the_run(s, t).error


def test_lambda_throttle_retries_no_sooner_than_retry_after(env):
    env.settings = replace(env.settings, heartbeat_s=0)  # backoff only (test_heartbeat.py)
    throttled = client_error("TooManyRequestsException", 429, {"retry-after": "45"})
    flaky = Flaky(LocalLambda({"f": lambda e, c: "done"}), "invoke", 1, throttled)
    invoker = TargetInvoker(env.settings, clients={"lambda": flaky})
    s, t, msg = schedule(env, Lambda("f"))
    assert attempt(env, msg, invoker).outcome is Outcome.RETRY
    assert env.sqs.visibility == [45]  # backoff would be 2 s; the target asked for 45
    env.clock.advance(45)
    assert attempt(env, msg, invoker).status == "succeeded"
    contexts = [json.loads(base64.b64decode(c["ClientContext"])) for c in flaky.calls]
    assert {c["custom"]["idempotency_key"] for c in contexts} == {key_of(s, t)}


def test_access_denied_is_dead_with_the_reason(env):
    denied = Flaky(LocalLambda({}), "invoke", 9, client_error("AccessDeniedException", 403))
    s, t, msg = schedule(env, Lambda("f"))
    res = attempt(env, msg, TargetInvoker(env.settings, clients={"lambda": denied}))
    assert res.status == "dead" and the_run(s, t).attempt == 1
    assert "AccessDeniedException" in the_run(s, t).error


def test_worker_refuses_a_target_outside_its_allowed_list(env, aws):
    url = aws["sqs"].create_queue(QueueName="jobs")["QueueUrl"]
    s, t, msg = schedule(env, Sqs(url))
    strict = replace(env.settings, allowed_targets=(f"arn:aws:sqs:{REGION}:{ACCOUNT}:other",))
    res = (
        replace(env, settings=strict)
        .executor(targets=TargetInvoker(strict))
        .execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
    )
    assert res.status == "dead"
    run = the_run(s, t)
    assert run.attempt == 0 and "not in the allowed targets" in run.error
    assert "Messages" not in aws["sqs"].receive_message(QueueUrl=url)


def test_an_emulator_queue_url_matches_its_arn_in_the_allowed_list(env) -> None:
    from dynacron.targets import refusal

    url = f"http://localhost:4566/{ACCOUNT}/jobs"
    listed = replace(env.settings, allowed_targets=(f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs",))
    assert refusal(Sqs(url), listed) is None
    assert "not in the allowed targets" in refusal(Sqs(url + "-other"), listed)
    elsewhere = replace(listed, region="eu-west-1")  # same account and name, another region
    assert refusal(Sqs(url), elsewhere) is not None


# --- logs ---------------------------------------------------------------------------------------


def _log_cases(aws: dict[str, Any]) -> dict[str, tuple[Any, str, Any, str, Any]]:
    """kind → (target, service, client, method, a target of that kind that is dead)."""
    url = aws["sqs"].create_queue(QueueName="jobs")["QueueUrl"]
    topic = aws["sns"].create_topic(Name="events")["TopicArn"]
    aws["events"].create_event_bus(Name="ops")
    machine = _state_machine(aws)
    local = LocalLambda({"f": lambda event, context: "done"})
    return {
        "sqs": (Sqs(url), "sqs", aws["sqs"], "send_message", Sqs(url + "-gone")),
        "sns": (Sns(topic), "sns", aws["sns"], "publish", Sns(topic + "-gone")),
        "eventbus": (
            EventBus("ops", "d", "my.app"),
            "events",
            aws["events"],
            "put_events",
            EventBus("gone", "d", "my.app"),
        ),
        "statemachine": (
            StateMachine(machine),
            "stepfunctions",
            aws["stepfunctions"],
            "start_execution",
            StateMachine(machine + "-gone"),
        ),
        "lambda": (Lambda("f"), "lambda", local, "invoke", Lambda("gone")),
    }


@pytest.mark.parametrize("kind", ["sqs", "sns", "eventbus", "statemachine", "lambda"])
def test_nothing_of_the_payload_reaches_the_logs(env, aws, caplog, kind):
    caplog.set_level(logging.INFO)
    target, service, client, method, gone = _log_cases(aws)[kind]
    logger = Recorder()
    flaky = Flaky(client, method, 1, client_error("ThrottlingException", 400))
    invoker = TargetInvoker(env.settings, clients={service: flaky})
    _, _, msg = schedule(env, target)
    assert attempt(env, msg, invoker, logger).outcome is Outcome.RETRY
    env.clock.advance(2)
    assert attempt(env, msg, invoker, logger).status == "succeeded"
    _, _, msg2 = schedule(env, gone)
    dead_invoker = TargetInvoker(env.settings, clients={"lambda": LocalLambda({})})
    assert attempt(env, msg2, dead_invoker, logger).status == "dead"
    assert len(logger.lines) >= 5  # started, retry, started, started, dead
    text = "\n".join(logger.lines) + caplog.text
    assert MARKER not in text


def test_secret_values_are_fetched_by_reference_and_cached(env):
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name="/hooks/secret", Value="s3cr3t", Type="SecureString")
    sm = boto3.client("secretsmanager", region_name=REGION)
    arn = sm.create_secret(Name="hook", SecretString="other")["ARN"]
    now = [0.0]
    invoker = TargetInvoker(env.settings, clock=lambda: now[0])
    assert invoker.secret("ssm:/hooks/secret") == "s3cr3t"
    assert invoker.secret(arn) == "other"
    ssm.put_parameter(Name="/hooks/secret", Value="rotated", Type="SecureString", Overwrite=True)
    assert invoker.secret("ssm:/hooks/secret") == "s3cr3t"  # cached
    now[0] = 301
    assert invoker.secret("ssm:/hooks/secret") == "rotated"
    missing = invoker.secret("ssm:/nope")
    assert not isinstance(missing, str) and missing.dead and "ParameterNotFound" in missing.error


@pytest.mark.parametrize(
    ("code", "status", "dead"),
    [
        ("KMS.ThrottlingException", 400, False),
        ("TooManyRequestsException", 429, False),
        ("ServiceException", 500, False),
        ("SomethingNew", 503, False),
        ("AccessDenied", 403, True),
        ("ResourceNotFoundException", 404, True),
        ("SomethingNew", 400, True),
    ],
)
def test_aws_errors_are_classified(code, status, dead):
    from dynacron.targets import classify_client_error

    out = classify_client_error(client_error(code, status))
    assert not out.ok and out.dead is dead and code in out.error


def test_a_malformed_stored_target_is_a_validation_error():
    with pytest.raises(ValidationError):
        target_from_dict({"kind": "sqs", "queue_url": "https://sqs.x/1/q", "colour": "red"})
    with pytest.raises(ValidationError):
        target_from_dict({"kind": "fax"})
