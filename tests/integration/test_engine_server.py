"""The two Lambda entrypoints against moto's server over HTTP, with a mixed workload.

The poller handler is invoked once a second (as EventBridge would, faster) and the worker
handler gets Lambda-shaped SQS batches; every run must end as its task intends.
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import boto3
import pytest
from moto.server import ThreadedMotoServer

from dynacron import At, Every, RetryPolicy, RunStatus, Scheduler, handler
from dynacron.batch import sqs_event
from dynacron.local.provision import find_template, load_template, provision

pytestmark = pytest.mark.integration
ATTEMPTS: dict[str, int] = {}


@handler("it-ok")
def _ok(payload, ctx):
    return {"hello": payload["name"]}


@handler("it-flaky")
def _flaky(payload, ctx):
    ATTEMPTS[ctx.run_id] = ctx.attempt
    if ctx.attempt == 1:
        raise ConnectionError("first attempt always fails")
    return "recovered"


@handler("it-broken")
def _broken(payload, ctx):
    raise ValueError("never works")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def deployed(monkeypatch):
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    kw = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "x",
        "aws_secret_access_key": "x",
    }
    ddb, sqs = boto3.client("dynamodb", **kw), boto3.client("sqs", **kw)
    res = provision(ddb, sqs, load_template(find_template()), prefix="it")
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "DYNACRON_TABLE": res.table_name,
        "DYNACRON_QUEUE_URL": res.queue_url,
        "DYNACRON_DLQ_URL": res.dlq_url,
        "DYNACRON_SHARDS": "3",
        "DYNACRON_WINDOW_SECONDS": "5",
        "DYNACRON_POLL_PERIOD_SECONDS": "1",
        "DYNACRON_LEASE_SECONDS": "30",
        "DYNACRON_HANDLERS": __name__,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from dynacron.handlers import poller, worker

    poller._dispatcher.cache_clear()
    worker._executor.cache_clear()
    yield SimpleNamespace(sqs=sqs, res=res, poller=poller, worker=worker)
    poller._dispatcher.cache_clear()
    worker._executor.cache_clear()
    server.stop()


class _Context:
    function_name = "dynacron-worker"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:dynacron-worker"
    aws_request_id = "req"

    def __init__(self, seconds: float = 900) -> None:
        self._end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


def _worker_round(d) -> int:
    got = d.sqs.receive_message(
        QueueUrl=d.res.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
    ).get("Messages", [])
    if not got:
        return 0
    arn = "arn:aws:sqs:us-east-1:123456789012:" + d.res.queue_url.rsplit("/", 1)[-1]
    event = sqs_event(got, arn, "us-east-1")
    out = d.worker.handler(event, _Context())
    failed = {f["itemIdentifier"] for f in out["batchItemFailures"]}
    done = [
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
        for i, m in enumerate(got)
        if m["MessageId"] not in failed
    ]
    if done:
        d.sqs.delete_message_batch(QueueUrl=d.res.queue_url, Entries=done)
    return len(got)


def test_mixed_workload_ends_as_intended(deployed):
    s = Scheduler()  # everything from the environment, as a user would
    now = datetime.now(UTC)
    fast = RetryPolicy(max_attempts=2, backoff_base=1, jitter=0)
    tasks = {
        "once": s.schedule("it-ok", {"name": "a"}, trigger=At(now + timedelta(seconds=2))),
        "every": s.schedule(
            "it-ok", {"name": "b"}, trigger=Every(1, end_at=now + timedelta(seconds=4))
        ),
        "flaky": s.schedule("it-flaky", {}, trigger=At(now + timedelta(seconds=1)), retry=fast),
        "broken": s.schedule("it-broken", {}, trigger=At(now + timedelta(seconds=1)), retry=fast),
        "unknown": s.schedule("it-nobody", {}, trigger=At(now + timedelta(seconds=1))),
    }
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        deployed.poller.handler({"source": "aws.events"}, _Context(60))
        _worker_round(deployed)
        runs = {k: s.runs(t.task_id) for k, t in tasks.items()}
        if all(r.status.terminal for rs in runs.values() for r in rs):
            break
    assert [r.status for r in runs["once"]] == [RunStatus.SUCCEEDED]
    assert runs["once"][0].result == {"hello": "a"}
    every = runs["every"]
    assert 4 <= len(every) <= 5 and all(r.status is RunStatus.SUCCEEDED for r in every)
    assert len({r.scheduled_for for r in every}) == len(every)  # each occurrence once
    assert runs["flaky"][0].status is RunStatus.SUCCEEDED and runs["flaky"][0].attempt == 2
    assert runs["broken"][0].status is RunStatus.DEAD and "never works" in runs["broken"][0].error
    assert runs["unknown"][0].status is RunStatus.DEAD and runs["unknown"][0].attempt == 0
    for key in ("once", "every", "flaky"):
        for r in runs[key]:
            # A sanity bound only: precision is measured by bench/ on an idle machine.
            assert r.lateness is not None and timedelta(0) <= r.lateness < timedelta(seconds=15)
    dlq = deployed.sqs.receive_message(
        QueueUrl=deployed.res.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", [])
    assert sorted(m["Body"].count("never works") for m in dlq) == [0, 1]
    assert s.get(tasks["once"].task_id).status.value == "completed"
