"""Lanes end to end on in-process moto: the template's lane queues, routing, the worker, the CLI.

The poll and the failed attempt below also feed ``test_permissions``: they are the calls that use
the poller's SendMessage and the worker's ChangeMessageVisibility on each lane queue.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from dynacron import At, RetryPolicy, ValidationError, handler
from dynacron.execute import Outcome
from dynacron.local.provision import (
    LANE_TAG,
    event_sources,
    find_template,
    lane_workers,
    load_template,
    resolve_if,
    resolved,
)
from helpers.cli import invoke

TEMPLATE = resolved(load_template(find_template()))  # as deployed with the defaults
LANES = ("critical", "bulk")


@handler("lane-fails-once")
def _fails_once(payload, ctx):
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"lane": ctx.lane}


# --- the template -------------------------------------------------------------------------


def _queue_of_lane(lane: str) -> tuple[str, dict]:
    for name, res in TEMPLATE["Resources"].items():
        tags = res.get("Properties", {}).get("Tags", [])
        if res["Type"] == "AWS::SQS::Queue" and {"Key": LANE_TAG, "Value": lane} in tags:
            return name, res["Properties"]
    raise AssertionError(f"no queue tagged {LANE_TAG}={lane}")


@pytest.mark.parametrize("lane", LANES)
def test_each_lane_queue_is_encrypted_and_redrives_to_the_dlq(lane):
    _, props = _queue_of_lane(lane)
    work = TEMPLATE["Resources"]["WorkQueue"]["Properties"]
    assert props["SqsManagedSseEnabled"] is True
    assert props["RedrivePolicy"] == work["RedrivePolicy"]
    assert props["VisibilityTimeout"] == work["VisibilityTimeout"]


def test_each_lane_has_its_own_event_source_and_concurrency_parameter():
    workers = {w.lane: w for w in lane_workers(TEMPLATE)}
    assert set(workers) == {"default", *LANES}
    sources = event_sources(TEMPLATE).values()
    assert all(s["FunctionName"] == {"Ref": "WorkerFunction.Alias"} for s in sources)
    refs = [resolve_if(TEMPLATE, s)["ScalingConfig"]["MaximumConcurrency"]["Ref"] for s in sources]
    assert len(set(refs)) == len(refs) == 3, refs
    params = TEMPLATE["Parameters"]
    for ref in refs:
        assert params[ref]["MinValue"] == 2  # Lambda's lowest MaximumConcurrency


def test_lane_queue_variable_names_exactly_the_lane_queues():
    text = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["DYNACRON_LANE_QUEUES"]
    pairs = dict(p.split("=", 1) for p in text["Fn::Sub"].split(","))
    assert pairs == {lane: f"${{{_queue_of_lane(lane)[0]}}}" for lane in LANES}


def test_the_poller_may_send_to_every_lane_queue():
    role = TEMPLATE["Resources"]["PollerFunctionRole"]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    (dispatch,) = [s for s in statements if s["Sid"] == "DispatchRuns"]
    granted = {r["Fn::GetAtt"][0] for r in dispatch["Resource"]}
    assert {_queue_of_lane(lane)[0] for lane in LANES} <= granted


# --- routing and the worker ---------------------------------------------------------------


def test_provision_creates_one_queue_per_lane(env):
    assert set(env.settings.lane_queues) == set(LANES)
    urls = set(env.settings.lane_queues.values())
    assert len(urls) == 2 and env.settings.queue_url not in urls
    for url in urls:
        env.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])


def _receive(env, url):
    return env.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0
    ).get("Messages", [])


def test_runs_go_to_their_lane_queue_and_retry_there(env):
    s = env.scheduler()
    far = env.clock.now() + timedelta(minutes=10)  # past the short-notice path: the poller sends
    policy = RetryPolicy(max_attempts=2, backoff_base=1, jitter=0)
    tasks = {
        lane: s.schedule("lane-fails-once", {}, trigger=At(far), lane=lane, retry=policy)
        for lane in ("default", *LANES)
    }
    env.clock.set(far - timedelta(seconds=30))
    report = env.dispatcher().poll()
    assert report.sent == 3
    sent = {json.loads(e["MessageBody"])["task_id"]: e["QueueUrl"] for e in env.sqs.sent}
    for lane, task in tasks.items():
        assert sent[task.task_id] == env.settings.queue_for(lane)
    env.clock.set(far)
    for lane in LANES:
        url = env.settings.lane_queues[lane]
        (msg,) = _receive(env, url)
        ex = env.executor()
        first = ex.execute(msg["Body"], msg["ReceiptHandle"], url)
        assert first.outcome is Outcome.RETRY  # the visibility change went to the lane queue
        (again,) = _receive(env, url)
        env.clock.advance(1)
        assert ex.execute(again["Body"], again["ReceiptHandle"], url).status == "succeeded"
        assert s.runs(tasks[lane].task_id)[0].lane == lane


def test_unknown_lane_is_refused_naming_the_known_lanes(env):
    s = env.scheduler()
    with pytest.raises(ValidationError) as info:
        s.schedule("lane-fails-once", {}, trigger=At(env.clock.now() + timedelta(hours=1)),
                   lane="urgent")
    assert info.value.field == "lane"
    assert "bulk, critical, default" in str(info.value)
    assert env.table_items() == []


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_schedule_lane_and_show(env, monkeypatch):
    lanes = ",".join(f"{k}={v}" for k, v in env.settings.lane_queues.items())
    monkeypatch.setenv("DYNACRON_LANE_QUEUES", lanes)
    when = (env.clock.now() + timedelta(days=400)).isoformat()
    made = invoke(env, "schedule", "x", "--at", when, "--lane", "bulk", "--json")
    assert made.exit_code == 0, made.output
    task_id = json.loads(made.stdout)["task_id"]
    shown = invoke(env, "show", task_id)
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.stdout.splitlines()]
    assert ["lane", "bulk"] in cells, shown.stdout
    bad = invoke(env, "schedule", "x", "--at", when, "--lane", "nope")
    assert bad.exit_code != 0 and "lane" in bad.stderr and "known lanes" in bad.stderr
