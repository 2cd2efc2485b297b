"""Every target through ``dynacron local`` (LocalRuntime on its moto server, over loopback):
SQS, SNS, EventBridge and Step Functions on the server, HTTP to a loopback receiver, Lambda
through the DYNACRON_LOCAL_LAMBDAS mapping. Waits poll run status with a deadline."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from test_local_runtime import wait_for

from dynacron import At, RetryPolicy, RunStatus, Scheduler
from dynacron.execute import idempotency_key
from dynacron.targets import KEY_ATTRIBUTE, EventBus, Http, Lambda, Sns, Sqs, StateMachine

pytestmark = pytest.mark.integration
ACCOUNT = "123456789012"
LAMBDA_CALLS: list[dict[str, Any]] = []


def local_fn(event: dict[str, Any], context: Any) -> dict[str, Any]:
    LAMBDA_CALLS.append(event)
    return {"seen": event["n"]}


class Receiver:
    """Answers 503 to the first request, 200 after; keeps every request's headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.headers.append(dict(self.headers))
                status = 503 if len(outer.headers) == 1 else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def runtime(monkeypatch) -> Iterator[Any]:
    from dynacron.local.runtime import LocalRuntime

    monkeypatch.setenv("DYNACRON_LOCAL_LAMBDAS", f"report={__name__}:local_fn")
    rt = LocalRuntime(port=0)
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()  # stops its server too


def test_every_target_runs_locally(runtime):
    kw = {
        "endpoint_url": runtime.settings.endpoint_url,
        "region_name": runtime.settings.region,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sqs, sns = boto3.client("sqs", **kw), boto3.client("sns", **kw)
    events, sfn = boto3.client("events", **kw), boto3.client("stepfunctions", **kw)
    queue = sqs.create_queue(QueueName="t-jobs")["QueueUrl"]
    sink = sqs.create_queue(QueueName="t-sink")["QueueUrl"]
    sink_arn = sqs.get_queue_attributes(QueueUrl=sink, AttributeNames=["QueueArn"])
    sink_arn = sink_arn["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="t-topic")["TopicArn"]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=sink_arn, Attributes={"RawMessageDelivery": "true"}
    )
    events.create_event_bus(Name="t-bus")
    events.put_rule(Name="r", EventBusName="t-bus", EventPattern='{"source":["t.app"]}')
    events.put_targets(Rule="r", EventBusName="t-bus", Targets=[{"Id": "s", "Arn": sink_arn}])
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(
        name="t-flow", definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT}:role/r"
    )["stateMachineArn"]
    receiver = Receiver()
    try:
        s = Scheduler(settings=runtime.settings)
        when = At(datetime.now(UTC) + timedelta(seconds=2))
        retry = RetryPolicy(max_attempts=3, backoff_base=1, jitter=0)
        targets = {
            "sqs": Sqs(queue),
            "sns": Sns(topic),
            "eventbus": EventBus("t-bus", "Due", "t.app"),
            "statemachine": StateMachine(machine),
            "http": Http(f"http://127.0.0.1:{receiver.server.server_address[1]}/hook"),
            "lambda": Lambda("report"),
        }
        tasks = {
            kind: s.schedule(target, {"n": i}, trigger=when, retry=retry)
            for i, (kind, target) in enumerate(targets.items())
        }

        def finished() -> dict[str, Any] | None:
            runs = {k: s.runs(t.task_id)[0] for k, t in tasks.items()}
            return runs if all(r.status.terminal for r in runs.values()) else None

        runs = wait_for("every target run to finish", finished, timeout=40.0)
        assert {k: r.status for k, r in runs.items()} == dict.fromkeys(
            targets, RunStatus.SUCCEEDED
        ), {k: r.error for k, r in runs.items()}
        keys = {k: idempotency_key(t.task_id, runs[k].run_id) for k, t in tasks.items()}

        got = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"])["Messages"]
        assert got[0]["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"] == keys["sqs"]
        sunk = []
        wait_for(
            "sns and eventbridge deliveries",
            lambda: (
                sunk.extend(
                    sqs.receive_message(
                        QueueUrl=sink, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
                    ).get("Messages", [])
                )
                or len(sunk) >= 2
            ),
            timeout=10,
        )
        from_sns = [m for m in sunk if KEY_ATTRIBUTE in m.get("MessageAttributes", {})]
        assert from_sns[0]["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"] == keys["sns"]
        from_bus = [json.loads(m["Body"]) for m in sunk if "detail-type" in m["Body"]]
        assert from_bus[0]["detail"]["dynacron"]["idempotency_key"] == keys["eventbus"]
        (execution,) = sfn.list_executions(stateMachineArn=machine)["executions"]
        assert execution["name"] == keys["statemachine"]
        assert [h["Idempotency-Key"] for h in receiver.headers] == [keys["http"]] * 2
        assert runs["http"].attempt == 2 and runs["http"].result == {"status_code": 200}
        assert LAMBDA_CALLS[-1]["dynacron"]["idempotency_key"] == keys["lambda"]
        assert runs["lambda"].result["response"] == {"seen": 5}
    finally:
        receiver.stop()
