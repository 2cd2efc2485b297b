"""The AWS targets' calls against two emulators over HTTP: moto's server and ministack.

Each target is invoked through ``TargetInvoker`` (the code the worker runs) with the endpoint
of the server: success with the idempotency key arriving at the target, and dead for a missing
resource; Lambda on ministack only (it runs Python functions in a subprocess; moto needs
Docker). The executor's retry/dead handling is covered on in-process moto (unit tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from dynacron.settings import Settings
from dynacron.targets import (
    KEY_ATTRIBUTE,
    Attempt,
    EventBus,
    Sns,
    Sqs,
    StateMachine,
    TargetInvoker,
)
from helpers.backends import Server, start_ministack, start_moto

pytestmark = pytest.mark.integration
ACCOUNT = "000000000000"
KEY = "0123456789abcdef0123456789abcdef"
AT = Attempt("task-1", "0000000000001-s", 1, "2026-03-02T12:00:00+00:00", KEY)


@pytest.fixture(scope="module", params=["moto", "ministack"])
def server(request) -> Iterator[Server]:
    services = "sqs,sns,events,states,ssm,lambda"
    srv = start_moto() if request.param == "moto" else start_ministack(services)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def aws(server) -> dict[str, Any]:
    kw = {
        "endpoint_url": server.url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    names = ("sqs", "sns", "events", "stepfunctions", "ssm")
    return {n: boto3.client(n, **kw) for n in names}


@pytest.fixture
def invoker(server) -> TargetInvoker:
    return TargetInvoker(Settings(endpoint_url=server.url, region="us-east-1"))


def _queue(aws, name: str, **attrs: str) -> tuple[str, str]:
    url = aws["sqs"].create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, arn["Attributes"]["QueueArn"]


def _receive(aws, url: str) -> list[dict[str, Any]]:
    return (
        aws["sqs"]
        .receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        )
        .get("Messages", [])
    )


def test_sqs_standard_and_fifo(aws, invoker, server):
    url, _ = _queue(aws, f"plain-{server.name}")
    out = invoker.invoke(Sqs(url), {"n": 1}, AT, 10)
    assert out.ok, out.error
    (msg,) = _receive(aws, url)
    assert json.loads(msg["Body"]) == {"n": 1}
    assert msg["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"] == KEY
    fifo, _ = _queue(aws, f"jobs-{server.name}.fifo", FifoQueue="true")
    first = invoker.invoke(Sqs(fifo), {"n": 1}, AT, 10)
    again = invoker.invoke(Sqs(fifo), {"n": 1}, AT, 10)  # a repeated attempt
    assert first.ok and again.ok
    assert len(_receive(aws, fifo)) == 1  # deduplicated by the key


def test_sqs_missing_queue_is_dead(invoker, server):
    out = invoker.invoke(Sqs(f"{server.url}/{ACCOUNT}/no-such-queue"), {}, AT, 10)
    assert out.dead, out


def test_sns_publish_carries_the_key(aws, invoker, server):
    topic = aws["sns"].create_topic(Name=f"t-{server.name}")["TopicArn"]
    url, arn = _queue(aws, f"sns-sink-{server.name}")
    aws["sns"].subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    out = invoker.invoke(Sns(topic), {"n": 2}, AT, 10)
    assert out.ok and out.answer["message_id"], out.error
    (msg,) = _receive(aws, url)
    assert json.loads(msg["Body"]) == {"n": 2}
    assert msg["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"] == KEY


def test_eventbus_detail_carries_the_key(aws, invoker, server):
    bus = f"bus-{server.name}"
    aws["events"].create_event_bus(Name=bus)
    url, arn = _queue(aws, f"bus-sink-{server.name}")
    aws["events"].put_rule(Name="r", EventBusName=bus, EventPattern='{"source":["t.app"]}')
    aws["events"].put_targets(Rule="r", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    out = invoker.invoke(EventBus(bus, "Due", "t.app"), {"n": 3}, AT, 10)
    assert out.ok and out.answer["event_id"], out.error
    (msg,) = _receive(aws, url)
    detail = json.loads(msg["Body"])["detail"]
    assert detail["n"] == 3 and detail["dynacron"]["idempotency_key"] == KEY


def test_state_machine_execution_named_by_the_key(aws, invoker, server):
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    arn = aws["stepfunctions"].create_state_machine(
        name=f"flow-{server.name}",
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/r",
    )["stateMachineArn"]
    first = invoker.invoke(StateMachine(arn), {"n": 4}, AT, 10)
    again = invoker.invoke(StateMachine(arn), {"n": 4}, AT, 10)
    assert first.ok and again.ok, (first, again)
    executions = aws["stepfunctions"].list_executions(stateMachineArn=arn)["executions"]
    assert [e["name"] for e in executions] == [KEY]
    missing = invoker.invoke(StateMachine(arn + "-gone"), {}, AT, 10)
    assert missing.dead, missing


def test_secret_from_ssm(aws, invoker, server):
    aws["ssm"].put_parameter(Name=f"/hooks/{server.name}", Value="v", Type="SecureString")
    assert invoker.secret(f"ssm:/hooks/{server.name}") == "v"


LAMBDA_SOURCE = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"key": event["dynacron"]["idempotency_key"], "n": event["n"]}
"""


def test_lambda_invoke_error_and_missing(server, invoker):
    """On ministack, which runs Python functions in a subprocess (moto needs Docker)."""
    if server.name != "ministack":
        pytest.skip("moto runs Lambda code only in Docker; dynacron local maps names instead")
    import io
    import zipfile

    from dynacron.targets import Lambda

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fn.py", LAMBDA_SOURCE)
    client = boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arn = client.create_function(
        FunctionName="report",
        Runtime="python3.11",
        Role=f"arn:aws:iam::{ACCOUNT}:role/r",
        Handler="fn.handler",
        Code={"ZipFile": buf.getvalue()},
    )["FunctionArn"]
    ok = invoker.invoke(Lambda(arn), {"n": 6}, AT, 30)
    assert ok.ok and ok.answer["response"] == {"key": KEY, "n": 6}, ok
    failed = invoker.invoke(Lambda(arn), {"fail": True}, AT, 30)
    assert not failed.ok and not failed.dead and "asked to fail" in failed.error
    missing = invoker.invoke(Lambda("no-such-function"), {}, AT, 30)
    assert missing.dead and "ResourceNotFound" in missing.error
