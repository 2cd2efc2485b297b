"""The shipping path: ``sam deploy`` of ``make build``'s output onto an emulated AWS account with
IAM enforced (ministack, ``AUTH=true``), then the SDK and the CLI against the deployed stack.

Every run below is claimed by the deployed poller (its EventBridge rule) and executed by the
deployed worker (its SQS event source), each under its own execution role: runs are scheduled
more than a poll period ahead, so the SDK's short-notice path does not dispatch them itself.
Then the stack is updated with changed parameters and deleted. A second stack, deployed with two
statements removed, shows that a permission error reaches the function's log at the default
level. Run with ``make deploy-test`` (part of ``make test``); about four minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from stack import (
    BUILT_TEMPLATE,
    Emulator,
    Stack,
    deploy,
    fix_event_source_concurrency,
    grant_send_message_batch,
    json_lines,
    ministack,
    sam,
    wait_for,
    without_actions,
)

from dynacron import At, Every, RetryPolicy, Run, Scheduler
from dynacron.settings import Settings
from dynacron.targets import KEY_ATTRIBUTE, Sqs

pytestmark = pytest.mark.deploy

AHEAD = timedelta(seconds=75)  # > the 60 s poll period: only the deployed poller claims these
CLI = Path(sys.executable).with_name("dynacron")  # the console script pip installed
FINISHED = {"succeeded", "dead", "skipped", "expired"}
FANOUT = 2  # the template's default ShardCount 8: groups 0-3 and 4-7
WORK_QUEUES = 2  # WorkQueueCount: the default lane's runs spread over WorkQueue and WorkQueue2


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with ministack() as emu, pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("AWS_", "DYNACRON_"))]:
            mp.delenv(key)
        for key, value in emu.env().items():
            mp.setenv(key, value)
        yield emu


@dataclass
class TargetQueues:
    allowed: str  # in the stack's TargetQueueArns: the worker's role may send to it
    other: str  # not listed: the worker must refuse it


@pytest.fixture(scope="module")
def target_queues(emulator: Emulator) -> TargetQueues:
    sqs = emulator.client("sqs")
    return TargetQueues(*(sqs.create_queue(QueueName=n)["QueueUrl"] for n in ("jobs", "other")))


def queue_arn(emulator: Emulator, url: str) -> str:
    attrs = emulator.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


@pytest.fixture(scope="module")
def stack(emulator: Emulator, target_queues: TargetQueues) -> Iterator[Stack]:
    allowed = queue_arn(emulator, target_queues.allowed)
    # PollerFanout=2: every tick below fans out (README "Fan-out"), under the roles' own grants;
    # WorkQueueCount=2 and provisioned concurrency on the worker's alias: the burst parameters.
    deployed = deploy(emulator, "dynacron-it", BUILT_TEMPLATE, f"TargetQueueArns={allowed}",
                      f"PollerFanout={FANOUT}", f"WorkQueueCount={WORK_QUEUES}",
                      "WorkerProvisionedConcurrency=2")
    fix_event_source_concurrency(deployed, 10)
    grant_send_message_batch(deployed)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in deployed.settings_env().items():
            mp.setenv(key, value)
        yield deployed


def scheduler(stack: Stack) -> Scheduler:
    env = stack.settings_env()
    return Scheduler(
        table_name=env["DYNACRON_TABLE"],
        queue_url=env["DYNACRON_QUEUE_URL"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region=env["AWS_REGION"],
    )


def cli(*args: str) -> str:
    """The installed ``dynacron`` command, in an 80-column terminal, with the stack's exports."""
    done = subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def at_iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Workload:
    base: datetime
    runs: dict[str, list[Run]]
    dlq: list[dict[str, Any]]
    redriven: Run


def finished_runs(s: Scheduler, task_id: str, count: int) -> list[Run] | None:
    runs = s.runs(task_id)
    done = [r for r in runs if r.status.value in FINISHED]
    return runs if len(done) >= count else None


@pytest.fixture(scope="module")
def workload(stack: Stack, target_queues: TargetQueues) -> Workload:
    s = scheduler(stack)
    # Warm the worker (its first invocation is a cold start) through the SDK's short-notice path,
    # once through each work queue's event source (a task's runs take the queue its id picks).
    settings = Settings.from_env(stack.settings_env())
    ids = {settings.queue_for("default", f"warm-{i}"): f"warm-{i}" for i in range(50)}
    assert len(ids) == WORK_QUEUES
    for task_id in ids.values():
        s.schedule("send-email", {"to": "warm@example.com"}, trigger=At(datetime.now(UTC)),
                   task_id=task_id)
    for task_id in ids.values():
        wait_for(f"the warm-up run {task_id}", lambda t=task_id: finished_runs(s, t, 1), 90)

    base = (datetime.now(UTC) + AHEAD).replace(microsecond=0)
    cli("schedule", "send-email", "--payload", '{"to":"a@b.c"}', "--at", at_iso(base),
        "--task-id", "once")
    s.schedule("report", {"name": "r"}, task_id="every",
               trigger=Every(5, start_at=base, end_at=base + timedelta(seconds=15)))
    fast = {"backoff_base": 1, "jitter": 0}
    s.schedule("always-fails", {}, task_id="fails", trigger=At(base),
               retry=RetryPolicy(max_attempts=2, **fast))
    s.schedule("slow", {"seconds": 5}, task_id="timeout", trigger=At(base), timeout=1,
               retry=RetryPolicy(max_attempts=1))
    s.schedule("flaky", {"fail_attempts": 1}, task_id="flaky", trigger=At(base),
               retry=RetryPolicy(max_attempts=3, **fast))
    s.schedule("flaky", {"fail_attempts": 2}, task_id="redrive", trigger=At(base),
               retry=RetryPolicy(max_attempts=2, **fast))
    cli("schedule", "send-email", "--payload", "{}", "--at", at_iso(base), "--task-id", "paused")
    cli("pause", "paused")
    s.schedule("send-email", {}, task_id="cancelled", trigger=At(base))
    s.cancel("cancelled")
    cli("schedule", "--target", f"sqs:{target_queues.allowed}", "--payload", '{"order":42}',
        "--at", at_iso(base), "--task-id", "to-sqs")
    s.schedule(Sqs(target_queues.other), {"order": 43}, task_id="to-other", trigger=At(base),
               retry=RetryPolicy(max_attempts=1))

    expected = {"once": 1, "every": 4, "fails": 1, "timeout": 1, "flaky": 1, "redrive": 1,
                "to-sqs": 1, "to-other": 1}
    until = (base - datetime.now(UTC)).total_seconds() + 90
    runs = {
        task: wait_for(f"{count} finished run(s) of {task}",
                       lambda t=task, c=count: finished_runs(s, t, c), until)
        for task, count in expected.items()
    }
    dlq = json.loads(cli("dlq", "list", "--json"))
    dead = runs["redrive"][0]
    cli("dlq", "redrive", "redrive", dead.run_id)
    redriven = wait_for(
        "the redriven run succeeds",
        lambda: next((r for r in s.runs("redrive") if r.status.value == "succeeded"), None),
        90,
    )
    runs["paused"], runs["cancelled"] = s.runs("paused"), s.runs("cancelled")
    return Workload(base, runs, dlq, redriven)


def test_a_one_time_run_starts_on_its_second(workload: Workload) -> None:
    (run,) = workload.runs["once"]
    assert run.status.value == "succeeded" and run.attempt == 1
    assert run.scheduled_for == workload.base
    assert run.lateness is not None
    assert timedelta(0) <= run.lateness < timedelta(seconds=2), run.lateness


def test_each_occurrence_of_an_interval_task_runs_once(workload: Workload) -> None:
    runs = workload.runs["every"]
    assert sorted(r.scheduled_for for r in runs) == [
        workload.base + timedelta(seconds=k) for k in (0, 5, 10, 15)
    ]
    assert {(r.status.value, r.attempt) for r in runs} == {("succeeded", 1)}


def test_a_failing_task_is_retried_then_dead_lettered_with_its_reason(workload: Workload) -> None:
    (run,) = workload.runs["fails"]
    assert (run.status.value, run.attempt) == ("dead", 2)
    assert "422" in (run.error or "")
    records = [m for m in workload.dlq if (m.get("task_id"), m.get("run_id")) == (
        "fails", run.run_id)]
    assert len(records) == 1, workload.dlq
    assert records[0]["task_id"] == "fails" and "422" in json.dumps(records[0])


def test_a_handler_that_overruns_its_timeout_fails(workload: Workload) -> None:
    (run,) = workload.runs["timeout"]
    assert run.status.value == "dead"
    assert "timed out" in (run.error or "").lower() or "timeout" in (run.error or "").lower()


def test_a_flaky_handler_succeeds_on_its_retry(workload: Workload) -> None:
    (run,) = workload.runs["flaky"]
    assert (run.status.value, run.attempt) == ("succeeded", 2)


def test_paused_and_cancelled_tasks_do_not_run(workload: Workload) -> None:
    for task in ("paused", "cancelled"):
        assert all(r.started_at is None for r in workload.runs[task]), workload.runs[task]


def test_dlq_redrive_gives_a_dead_run_new_attempts(workload: Workload) -> None:
    run = workload.redriven
    assert run.run_id == workload.runs["redrive"][0].run_id
    assert (run.status.value, run.attempt) == ("succeeded", 3)


def test_an_sqs_target_in_the_allowed_list_receives_the_payload_under_the_workers_role(
    emulator: Emulator, target_queues: TargetQueues, workload: Workload
) -> None:
    (run,) = workload.runs["to-sqs"]
    assert (run.status.value, run.attempt) == ("succeeded", 1), run.error
    sqs = emulator.client("sqs")
    got = sqs.receive_message(QueueUrl=target_queues.allowed, MaxNumberOfMessages=10,
                              MessageAttributeNames=["All"]).get("Messages", [])
    assert [json.loads(m["Body"]) for m in got] == [{"order": 42}]
    assert got[0]["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"]
    (other,) = workload.runs["to-other"]
    assert other.status.value == "dead" and "not in the allowed targets" in (other.error or "")
    assert not sqs.receive_message(QueueUrl=target_queues.other).get("Messages")


def test_the_deployed_poller_claimed_the_runs(stack: Stack, workload: Workload) -> None:
    lines = json_lines(stack.log_events("poller"))
    polls = [e for e in lines if e.get("message") == "poll finished"]
    assert sum(int(p.get("claimed", 0)) for p in polls) >= 11, polls


def test_each_tick_fanned_out_to_a_second_invocation_of_its_own_shards(
    stack: Stack, workload: Workload
) -> None:
    """The tick polls shards 0-3 and invokes the poller asynchronously for 4-7 (fanout.py)."""
    lines = json_lines(stack.log_events("poller"))
    polls = [e for e in lines if e.get("message") == "poll finished" and "claimed" in e]
    ticks = [p for p in polls if "groups" in p]
    groups = [p for p in polls if "groups" not in p]
    assert any(t["groups"] == FANOUT and t["fanout_failed"] == 0 for t in ticks), ticks[-3:]
    assert groups and {g["shards"] for g in groups} == {4}, groups[-3:]
    assert {t["shards"] for t in ticks if t["fanout_failed"] == 0} == {4}


def test_minimum_pollers_1_is_refused_before_anything_is_created(emulator: Emulator) -> None:
    """The template's Rule: SQS provisioned mode keeps at least 2 pollers, so 1 never deploys."""
    with pytest.raises(AssertionError) as refused:
        deploy(emulator, "dynacron-one-poller", BUILT_TEMPLATE, "MinimumPollers=1")
    assert "MinimumPollers must be 0 (on-demand polling) or 2..200" in str(refused.value)
    names = [s["StackName"] for s in emulator.client("cloudformation").list_stacks()[
        "StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert "dynacron-one-poller" not in names or not emulator.client(
        "cloudformation").list_stack_resources(StackName="dynacron-one-poller")[
        "StackResourceSummaries"]


def test_the_deployed_roles_grant_nothing_on_every_resource(stack: Stack) -> None:
    """Read back from IAM: no managed policy (SAM's would grant logs and, with SQS events, queue
    access on "*") and no inline statement on "*". The other tests show these roles suffice:
    the event sources deliver and every run finishes."""
    iam = stack.emulator.client("iam")
    for function in ("PollerFunction", "WorkerFunction"):
        role = stack.role_name(function)
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        assert attached == [], (function, attached)
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        assert names, function
        for name in names:
            document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            if isinstance(document, str):
                document = json.loads(urllib.parse.unquote(document))
            for st in document["Statement"]:
                resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                assert "*" not in resources, (function, name, st)


def test_no_call_was_refused(stack: Stack, workload: Workload) -> None:
    for which in ("poller", "worker"):
        lines = stack.log_events(which)
        assert lines, f"no log lines from the {which}"
        refused = [ln for ln in lines if "AccessDenied" in ln or "not authorized" in ln]
        assert not refused, refused[:5]


# --- a permission error is seen -----------------------------------------------------------------


def test_a_permission_error_reaches_the_log_at_the_default_level(emulator: Emulator) -> None:
    broken_template = without_actions(
        BUILT_TEMPLATE, ["dynamodb:BatchGetItem", "dynamodb:Query"], "template-broken.json"
    )
    broken = deploy(emulator, "dynacron-broken", broken_template)
    fix_event_source_concurrency(broken, 10)
    assert broken.function("WorkerFunction")["Environment"]["Variables"][
        "POWERTOOLS_LOG_LEVEL"] == "INFO"
    # Every setting from this stack's exports: the process environment holds the main stack's
    # (its DYNACRON_WORK_QUEUE_URLS would route some runs to the main stack's WorkQueue2).
    s = Scheduler(settings=Settings.from_env(broken.settings_env()))
    s.schedule("send-email", {"to": "never-logged@example.com"}, trigger=At(datetime.now(UTC)))

    def refused(which: str, operation: str) -> list[dict[str, Any]]:
        return [
            e for e in json_lines(broken.log_events(which))
            if e.get("level") == "ERROR" and e.get("aws_operation") == operation
            and "AccessDenied" in str(e.get("aws_error_code"))
        ]

    try:
        worker = wait_for("the worker logs its refused BatchGetItem", lambda: refused(
            "worker", "BatchGetItem"), 90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{emulator.log_text()[-3000:]}") from None
    try:
        poller = wait_for("the poller logs its refused Query", lambda: refused("poller", "Query"),
                          90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(broken.log_events("poller"))[-4000:]) from None
    assert worker[0]["task_id"] and worker[0]["run_id"]
    everything = "\n".join(broken.log_events("worker") + broken.log_events("poller"))
    assert "never-logged@example.com" not in everything
    assert poller[0]["step"] == "query"
    sam(emulator, "delete", "--stack-name", broken.name, "--no-prompts", "--region", "us-east-1")


def test_the_default_lanes_runs_came_through_both_work_queues(
    stack: Stack, workload: Workload
) -> None:
    """WorkQueueCount=2: the poller spread the workload's tasks over WorkQueue and WorkQueue2,
    and each queue's event source invoked the worker (its alias) under the worker's role."""
    urls = [stack.outputs["QueueUrl"], *stack.outputs["WorkQueueUrls"].split(",")]
    names = {url.rstrip("/").rsplit("/", 1)[-1] for url in urls}
    assert len(names) == WORK_QUEUES
    lines = json_lines(stack.log_events("worker"))
    by_queue = {e.get("queue") for e in lines if e.get("message") == "run started"}
    assert names <= by_queue, (names, by_queue)


# --- update and delete (last: they change the stack the tests above read) -----------------------


def test_an_update_changes_the_functions_and_keeps_the_tasks(
    emulator: Emulator, stack: Stack, workload: Workload
) -> None:
    updated = deploy(emulator, stack.name, BUILT_TEMPLATE, "LogLevel=DEBUG",
                     "MaximumConcurrency=5")
    cfn = emulator.client("cloudformation")
    assert cfn.describe_stacks(StackName=stack.name)["Stacks"][0]["StackStatus"] == (
        "UPDATE_COMPLETE")
    variables = updated.function("WorkerFunction")["Environment"]["Variables"]
    assert variables["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    assert updated.outputs["TableName"] == stack.outputs["TableName"]
    assert scheduler(updated).get("once").task_id == "once"


def test_sam_delete_removes_the_stack_and_its_table(emulator: Emulator, stack: Stack) -> None:
    sam(emulator, "delete", "--stack-name", stack.name, "--no-prompts", "--region", "us-east-1")
    cfn, ddb = emulator.client("cloudformation"), emulator.client("dynamodb")
    names = {s["StackName"] for s in cfn.list_stacks()["StackSummaries"]
             if s["StackStatus"] != "DELETE_COMPLETE"}
    assert stack.name not in names
    assert stack.outputs["TableName"] not in ddb.list_tables()["TableNames"]

