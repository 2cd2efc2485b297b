"""Several work queues for the default lane (WorkQueueCount) and the worker's provisioned
concurrency (WorkerProvisionedConcurrency): README "Bursts", "The model"."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from test_template import statements

from conftest import Env, RecordingSQS
from dynacron import At, RetryPolicy, handler
from dynacron.batch import queue_url_for_arn
from dynacron.execute import Outcome
from dynacron.local.provision import (
    event_sources,
    find_template,
    load_template,
    provision,
    resolved,
)
from dynacron.settings import Settings

TEMPLATE = load_template(find_template())
URLS = ("https://q/1", "https://q/2", "https://q/3")


@handler("work-queues-fails-once")
def _fails_once(payload: Any, ctx: Any) -> dict[str, int]:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"attempt": ctx.attempt}


# --- settings ---------------------------------------------------------------------------------


def test_the_extra_queues_come_from_the_environment_after_the_work_queue():
    s = Settings.from_env(
        {"DYNACRON_QUEUE_URL": URLS[0], "DYNACRON_WORK_QUEUE_URLS": f"{URLS[1]}, {URLS[2]},"}
    )
    assert s.work_queues == URLS
    assert Settings.from_env({"DYNACRON_QUEUE_URL": URLS[0]}).work_queues == URLS[:1]


def test_a_task_always_takes_the_same_queue_and_many_tasks_spread_over_all():
    s = Settings(queue_url=URLS[0], work_queue_urls=URLS[1:], lane_queues={"bulk": "https://b"})
    ids = [f"task-{i}" for i in range(600)]
    first = {i: s.queue_for("default", i) for i in ids}
    assert all(s.queue_for("default", i) == first[i] for i in ids)
    counts = Counter(first.values())
    assert set(counts) == set(URLS)
    assert min(counts.values()) >= 600 / 3 * 0.8, counts  # crc32 spreads evenly
    # a lane with its own queue is not spread
    assert {s.queue_for("bulk", i) for i in ids} == {"https://b"}
    assert s.all_queues == (*URLS, "https://b")


# --- the template -----------------------------------------------------------------------------


def _queues(tpl: dict[str, Any]) -> set[str]:
    return {n for n, r in tpl["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}


def _statement(tpl: dict[str, Any], function: str, sid: str) -> set[str]:
    res = tpl["Resources"]
    (st,) = [s for s in statements(res[function], res) if s["Sid"] == sid]
    return {r["Fn::GetAtt"][0] for r in st["Resource"]}


@pytest.mark.parametrize("count", [1, 2, 3])
def test_each_work_queue_has_its_event_source_and_both_roles_reach_it(count):
    tpl = resolved(TEMPLATE, {"WorkQueueCount": count})
    work = {"WorkQueue", *(f"WorkQueue{n}" for n in range(2, count + 1))}
    assert work <= _queues(tpl) and not ({"WorkQueue2", "WorkQueue3"} - work) & _queues(tpl)
    mappings = [
        r["Properties"]
        for r in tpl["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    by_queue = {m["EventSourceArn"]["Fn::GetAtt"][0]: m for m in mappings}
    assert work <= set(by_queue)
    first = {k: v for k, v in by_queue["WorkQueue"].items() if k != "EventSourceArn"}
    for queue in work:  # the same scaling: a burst spread over them gets each one's share
        assert {k: v for k, v in by_queue[queue].items() if k != "EventSourceArn"} == first
        assert by_queue[queue]["FunctionName"] == {"Ref": "WorkerFunction.Alias"}
    assert work <= _statement(tpl, "PollerFunction", "DispatchRuns")
    assert work <= _statement(tpl, "WorkerFunction", "ConsumeWorkQueue")
    extra = tpl["Globals"]["Function"]["Environment"]["Variables"]["DYNACRON_WORK_QUEUE_URLS"]
    named = {extra["Ref"]} if isinstance(extra, dict) and "Ref" in extra else set()
    if isinstance(extra, dict) and "Fn::Sub" in extra:
        named = {p.strip("${}") for p in extra["Fn::Sub"].split(",")}
    assert named == work - {"WorkQueue"}


def test_the_local_runtime_and_tests_see_one_work_queue_by_default():
    queues = {s["EventSourceArn"]["Fn::GetAtt"][0] for s in event_sources(TEMPLATE).values()}
    assert "WorkQueue2" not in queues and "WorkQueue3" not in queues


@pytest.mark.parametrize("pc", [0, 5])
def test_provisioned_concurrency_is_on_the_alias_the_event_sources_invoke(pc):
    tpl = resolved(TEMPLATE, {"WorkerProvisionedConcurrency": pc})
    worker = tpl["Resources"]["WorkerFunction"]["Properties"]
    assert worker["AutoPublishAlias"] == "live"
    config = worker.get("ProvisionedConcurrencyConfig")
    if pc:
        pcs = {"Ref": "WorkerProvisionedConcurrency"}
        assert config == {"ProvisionedConcurrentExecutions": pcs}
    else:
        assert config is None  # no charge unless asked


# --- dispatch and the worker on three queues -------------------------------------------------


@pytest.fixture
def env3(clock: Any) -> Iterator[Env]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        res = provision(dynamodb, sqs, TEMPLATE, prefix="wq", params={"WorkQueueCount": 3})
        assert len(res.work_queues) == 2
        settings = Settings(
            table_name=res.table_name,
            queue_url=res.queue_url,
            dlq_url=res.dlq_url,
            lane_queues=res.lane_queues,
            work_queue_urls=res.work_queues,
            region="us-east-1",
            shards=4,
        )
        yield Env(settings, dynamodb, RecordingSQS(sqs, clock), clock)


def test_runs_go_to_their_tasks_queue_and_retry_on_it(env3):
    s = env3.scheduler()
    far = env3.clock.now() + timedelta(minutes=10)  # past the short-notice path: the poller sends
    policy = RetryPolicy(max_attempts=2, backoff_base=1, jitter=0)
    tasks = [
        s.schedule("work-queues-fails-once", {}, trigger=At(far), retry=policy) for _ in range(30)
    ]
    env3.clock.set(far - timedelta(seconds=30))
    assert env3.dispatcher().poll().sent == 30
    sent = {json.loads(e["MessageBody"])["task_id"]: e["QueueUrl"] for e in env3.sqs.sent}
    assert {t.task_id: env3.settings.queue_for("default", t.task_id) for t in tasks} == sent
    assert set(sent.values()) == set(env3.settings.work_queues)  # all three carried some
    # the worker finds the queue of a record by its ARN and retries on that queue
    env3.clock.set(far)
    ex = env3.executor()
    for url in env3.settings.work_queues:
        attrs = env3.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        assert queue_url_for_arn(attrs["Attributes"]["QueueArn"], env3.settings) == url
        msg = _receive(env3, url)[0]
        assert ex.execute(msg["Body"], msg["ReceiptHandle"], url).outcome is Outcome.RETRY
        (again,) = _receive(env3, url)  # the retry's visibility change went to this queue
        env3.clock.advance(1)
        assert ex.execute(again["Body"], again["ReceiptHandle"], url).status == "succeeded"


def _receive(env: Env, url: str) -> list[dict[str, Any]]:
    return env.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30, WaitTimeSeconds=0
    ).get("Messages", [])


def test_a_stack_named_by_argument_takes_none_of_the_environments_queues():
    """The environment describes stack A; a Scheduler built for stack B by argument must not
    route B's runs to A's extra work queues, lanes or DLQ (the deploy test's intermittent
    failure: half its task ids hashed to the main stack's WorkQueue2)."""
    env = {"DYNACRON_TABLE": "a-table", "DYNACRON_QUEUE_URL": URLS[0],
           "DYNACRON_WORK_QUEUE_URLS": f"{URLS[1]},{URLS[2]}", "DYNACRON_DLQ_URL": "https://a-dlq",
           "DYNACRON_LANE_QUEUES": "bulk=https://a-bulk"}
    b = Settings.from_env(env, table_name="b-table", queue_url="https://b-work")
    assert b.work_queues == ("https://b-work",)
    assert (b.lane_queues, b.dlq_url) == ({}, None)
    only_table = Settings.from_env(env, table_name="b-table")
    assert only_table.work_queues == () and only_table.lane_queues == {}
    # the environment's own stack, named again, keeps everything
    same = Settings.from_env(env, table_name="a-table", queue_url=URLS[0])
    assert same.work_queues == URLS and same.lane_queues == {"bulk": "https://a-bulk"}
    assert same.dlq_url == "https://a-dlq"
    # queues passed with the other stack's name are used
    b2 = Settings.from_env(env, table_name="b-table", queue_url="https://b-work",
                           work_queue_urls=("https://b-2",))
    assert b2.work_queues == ("https://b-work", "https://b-2")


def _substitute(node: Any, names: dict[str, str]) -> str:
    """An ``Fn::Sub``/``Fn::Join`` value rendered with ``${X.QueueName}`` / ``${X}`` replaced by
    ``<X>`` and its variable map rendered first (after ``resolved`` chose every ``Fn::If``)."""
    if isinstance(node, str):
        return node
    ((key, arg),) = node.items()
    if key == "Fn::Join":
        return arg[0].join(_substitute(v, names) for v in arg[1])
    assert key == "Fn::Sub", key
    body, variables = (arg, {}) if isinstance(arg, str) else arg
    values = {**names, **{k: _substitute(v, names) for k, v in variables.items()}}
    return re.sub(r"\$\{([^}.]+)(?:\.QueueName)?\}", lambda m: values.get(m[1], m[0]), body)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_the_dashboard_shows_every_queue_the_stack_has(count):
    """The Queues widget of the dashboard has a line for each SQS queue the template creates
    with WorkQueueCount=count, and for nothing else (derived from the resources, not listed)."""
    tpl = resolved(TEMPLATE, {"WorkQueueCount": count})
    queues = {n for n, r in tpl["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}
    names = {n: f"<{n}>" for n in tpl["Resources"]} | {"AWS::Region": "us-east-1"}
    body = json.loads(_substitute(tpl["Resources"]["Dashboard"]["Properties"]["DashboardBody"],
                                  names))
    (widget,) = [w for w in body["widgets"] if w["properties"]["title"] == "Queues"]
    shown = [line[-1] for line in widget["properties"]["metrics"]]
    assert sorted(shown) == sorted(f"<{q}>" for q in queues)
    assert len(queues) == 4 + (count - 1)  # work, critical, bulk, DLQ and the extra ones
