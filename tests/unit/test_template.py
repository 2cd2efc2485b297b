"""The SAM template keeps the invariants the code relies on (offline: no AWS, no sam).

``sam validate`` and ``sam build`` run from the Makefile; this file parses ``template.yaml``
itself and runs cfn-lint through its Python API.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dynacron import handler as register_handler
from dynacron.local.provision import event_sources, resolve_if

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REQUIREMENTS = ROOT / "functions" / "requirements.txt"
TYPES_PY = ROOT / "functions" / "dynacron" / "types.py"

OWN_RESOURCES = {
    "TasksTable", "WorkQueue", "WorkQueue2", "WorkQueue3", "CriticalQueue", "BulkQueue",
    "DeadLetterQueue",
}
LOG_GROUPS = {"PollerFunction": "PollerLogGroup", "WorkerFunction": "WorkerLogGroup"}
POLLER_HANDLER = "dynacron.handlers.poller.handler"
WORKER_HANDLER = "dynacron.handlers.worker.handler"


@register_handler("tpl-fail-once")
def _fail_once(payload: dict[str, Any], ctx: Any) -> None:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")


# --- helpers ----------------------------------------------------------------------------------


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    # The same CloudFormation-aware loader the local runtime provisions from.
    from dynacron.local.provision import load_template as load

    return load(path)


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def is_intrinsic(node: Any) -> bool:
    return isinstance(node, dict) and any(k == "Ref" or k.startswith("Fn::") for k in node)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def referenced_resources(node: Any) -> set[str]:
    """Logical ids that ``node`` refers to through Ref, GetAtt or ${...} in Sub."""
    found: set[str] = set()
    for item in walk(node):
        if not isinstance(item, dict):
            continue
        if "Ref" in item and not item["Ref"].startswith("AWS::"):  # not a pseudo parameter
            found.add(item["Ref"])
        if "Fn::GetAtt" in item:
            found.add(item["Fn::GetAtt"][0])
        if "Fn::Sub" in item:
            text = item["Fn::Sub"] if isinstance(item["Fn::Sub"], str) else item["Fn::Sub"][0]
            found.update(m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text))
    return found


def module_constant(name: str) -> float:
    """A constant of ``dynacron.types``, read from source so the package need not import."""
    tree = ast.parse(TYPES_PY.read_text(encoding="utf-8"))
    for stmt in tree.body:
        targets = [stmt.target] if isinstance(stmt, ast.AnnAssign) else getattr(stmt, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            expr = ast.Expression(stmt.value)
            return eval(compile(expr, str(TYPES_PY), "eval"), {"__builtins__": {}})
    raise AssertionError(f"{name} not found in {TYPES_PY}")


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def res(tpl: dict[str, Any]) -> dict[str, Any]:
    return tpl["Resources"]


def fn_prop(tpl: dict[str, Any], logical_id: str, prop: str) -> Any:
    """A function property, falling back to Globals.Function like SAM does."""
    props = tpl["Resources"][logical_id]["Properties"]
    if prop in props:
        return props[prop]
    return tpl.get("Globals", {}).get("Function", {}).get(prop)


def param_default(tpl: dict[str, Any], value: Any) -> Any:
    """Resolve a literal or a {"Ref": Parameter} to the parameter's default."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return tpl["Parameters"][value["Ref"]]["Default"]
    return value


def functions(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in res.items() if v["Type"] == "AWS::Serverless::Function"}


def role_of(fn: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    """The function's execution role: an ``AWS::IAM::Role`` of this stack, never one SAM makes
    (SAM's attaches AWSLambdaBasicExecutionRole, and for SQS events
    AWSLambdaSQSQueueExecutionRole, both on every resource)."""
    role = fn["Properties"].get("Role")
    assert isinstance(role, dict) and "Fn::GetAtt" in role, f"no explicit role: {role!r}"
    name, attr = role["Fn::GetAtt"]
    assert attr == "Arn" and res[name]["Type"] == "AWS::IAM::Role", role
    return res[name]["Properties"]


def statements(fn: dict[str, Any], res: dict[str, Any]) -> list[dict[str, Any]]:
    role = role_of(fn, res)
    assert "ManagedPolicyArns" not in role and "Policies" not in fn["Properties"], role
    out: list[dict[str, Any]] = []
    for policy in as_list(role["Policies"]):
        out.extend(as_list(policy["PolicyDocument"]["Statement"]))
    return out


def allowed(fn: dict[str, Any], res: dict[str, Any], action: str, resource: str) -> bool:
    """Does some statement allow ``action`` on a resource that refers to ``resource``?"""
    for st in statements(fn, res):
        if (
            st.get("Effect") == "Allow"
            and action in as_list(st["Action"])
            and any(resource in referenced_resources(r) for r in as_list(st["Resource"]))
        ):
            return True
    return False


# --- resources and names ----------------------------------------------------------------------


def test_resources_have_the_names_the_code_uses(res: dict[str, Any]) -> None:
    expected = {
        "TasksTable": "AWS::DynamoDB::Table",
        "WorkQueue": "AWS::SQS::Queue",
        "DeadLetterQueue": "AWS::SQS::Queue",
        "PollerFunction": "AWS::Serverless::Function",
        "WorkerFunction": "AWS::Serverless::Function",
        "DeadLetterQueueAlarm": "AWS::CloudWatch::Alarm",
        "PollerErrorsAlarm": "AWS::CloudWatch::Alarm",
        "PollerNotRunningAlarm": "AWS::CloudWatch::Alarm",
    }
    assert {k: res.get(k, {}).get("Type") for k in expected} == expected
    assert [k for k, v in res.items() if v["Type"] == "AWS::DynamoDB::Table"] == ["TasksTable"]


def test_handlers_runtime_and_code(tpl: dict[str, Any]) -> None:
    assert fn_prop(tpl, "PollerFunction", "Handler") == POLLER_HANDLER
    assert fn_prop(tpl, "WorkerFunction", "Handler") == WORKER_HANDLER
    for name in ("PollerFunction", "WorkerFunction"):
        assert fn_prop(tpl, name, "Runtime") == "python3.11", name
        assert fn_prop(tpl, name, "CodeUri") in ("functions/", "functions"), name
        assert fn_prop(tpl, name, "Architectures") == ["x86_64"], name
    for handler in (POLLER_HANDLER, WORKER_HANDLER):
        module = handler.rsplit(".", 1)[0]
        assert re.fullmatch(r"[a-z_][a-z0-9_.]*", module)


def test_requirements_hold_the_lambda_dependencies_only() -> None:
    names = {
        re.split(r"[<>=!~\[ ;]", line.strip(), maxsplit=1)[0].lower()
        for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    # python-dateutil: the poller evaluates RRule triggers; cron-descriptor: describe(), so
    # that a handler or log line that describes a trigger works in the Lambda too.
    assert names == {
        "pynamodb", "croniter", "aws-lambda-powertools", "tzdata", "python-dateutil",
        "cron-descriptor",
    }  # fmt: skip


# --- table --------------------------------------------------------------------------------------


def test_table_keys_and_due_index(res: dict[str, Any]) -> None:
    props = res["TasksTable"]["Properties"]
    attrs = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert attrs == {"pk": "S", "sk": "S", "due_shard": "N", "due_at": "N"}
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    (gsi,) = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "due-index"
    assert gsi["KeySchema"] == [
        {"AttributeName": "due_shard", "KeyType": "HASH"},
        {"AttributeName": "due_at", "KeyType": "RANGE"},
    ]
    assert gsi["Projection"] == {"ProjectionType": "ALL"}


def test_table_ttl_pitr_sse_and_protection(tpl: dict[str, Any], res: dict[str, Any]) -> None:
    props = res["TasksTable"]["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    protection = props["DeletionProtectionEnabled"]
    assert protection["Fn::If"][1:] == [True, False]
    condition = tpl["Conditions"][protection["Fn::If"][0]]
    assert {"Ref": "DeletionProtection"} in condition["Fn::Equals"]
    assert tpl["Parameters"]["DeletionProtection"]["Default"] == "false"


def test_billing_mode_is_a_parameter_with_on_demand_default(
    tpl: dict[str, Any], res: dict[str, Any]
) -> None:
    props = res["TasksTable"]["Properties"]
    assert props["BillingMode"] == {"Ref": "BillingMode"}
    param = tpl["Parameters"]["BillingMode"]
    assert param["Default"] == "PAY_PER_REQUEST"
    assert set(param["AllowedValues"]) == {"PAY_PER_REQUEST", "PROVISIONED"}
    for throughput in (
        props["ProvisionedThroughput"],
        props["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"],
    ):
        cond, provisioned, otherwise = throughput["Fn::If"]
        assert {"Ref": "BillingMode"} in tpl["Conditions"][cond]["Fn::Equals"]
        assert "PROVISIONED" in tpl["Conditions"][cond]["Fn::Equals"]
        assert provisioned == {
            "ReadCapacityUnits": {"Ref": "ReadCapacity"},
            "WriteCapacityUnits": {"Ref": "WriteCapacity"},
        }
        assert otherwise == {"Ref": "AWS::NoValue"}


def test_structure_read_by_the_local_runtime_is_plain(res: dict[str, Any]) -> None:
    """``dynacron local`` provisions from these properties; intrinsics would defeat it."""
    props = res["TasksTable"]["Properties"]
    plain = [props["AttributeDefinitions"], props["KeySchema"], props["TimeToLiveSpecification"]]
    for gsi in props["GlobalSecondaryIndexes"]:
        plain += [gsi["IndexName"], gsi["KeySchema"], gsi["Projection"]]
    for queue in ("WorkQueue", "CriticalQueue", "BulkQueue", "DeadLetterQueue"):
        qprops = dict(res[queue]["Properties"])
        redrive = dict(qprops.pop("RedrivePolicy", {}))
        redrive.pop("deadLetterTargetArn", None)
        plain += [qprops, redrive]
    for node in plain:
        assert not any(is_intrinsic(n) for n in walk(node)), node


# --- queues -------------------------------------------------------------------------------------


def test_queues_are_encrypted(res: dict[str, Any]) -> None:
    for queue in ("WorkQueue", "CriticalQueue", "BulkQueue", "DeadLetterQueue"):
        assert res[queue]["Properties"]["SqsManagedSseEnabled"] is True, queue


def test_visibility_is_at_least_six_times_the_worker_timeout(tpl: dict[str, Any]) -> None:
    timeout = fn_prop(tpl, "WorkerFunction", "Timeout")
    visibility = tpl["Resources"]["WorkQueue"]["Properties"]["VisibilityTimeout"]
    assert isinstance(timeout, int) and isinstance(visibility, int)
    assert visibility >= 6 * timeout
    assert tpl["Resources"]["WorkQueue"]["Properties"]["ReceiveMessageWaitTimeSeconds"] == 20


def test_redrive_to_dlq_stays_above_the_retry_cap(res: dict[str, Any]) -> None:
    redrive = res["WorkQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    # every retry is one more receive of the same message (visibility change, not a resend)
    assert redrive["maxReceiveCount"] > module_constant("MAX_ATTEMPTS_CAP")


def test_messages_outlive_the_longest_retry_schedule(tpl: dict[str, Any]) -> None:
    cap = module_constant("MAX_ATTEMPTS_CAP")
    longest = (cap - 1) * module_constant("MAX_BACKOFF_SECONDS") + cap * fn_prop(
        tpl, "WorkerFunction", "Timeout"
    )
    work = tpl["Resources"]["WorkQueue"]["Properties"]
    dlq = tpl["Resources"]["DeadLetterQueue"]["Properties"]
    assert work["MessageRetentionPeriod"] >= longest
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600


# --- functions ----------------------------------------------------------------------------------


def test_poller_runs_every_minute(tpl: dict[str, Any]) -> None:
    events = tpl["Resources"]["PollerFunction"]["Properties"]["Events"]
    schedules = [e for e in events.values() if e["Type"] in ("Schedule", "ScheduleV2")]
    assert len(schedules) == 1
    expr = schedules[0]["Properties"].get("Schedule") or schedules[0]["Properties"].get(
        "ScheduleExpression"
    )
    assert expr == "rate(1 minute)"
    assert param_default(tpl, fn_prop(tpl, "PollerFunction", "Timeout")) == 60
    env = fn_prop(tpl, "PollerFunction", "Environment")["Variables"]
    assert env["DYNACRON_POLL_PERIOD_SECONDS"] == "60"


def test_worker_consumes_the_work_queue_with_partial_batch_failures(tpl: dict[str, Any]) -> None:
    # One event source per lane: WorkQueue (default) and the lane queues.
    by_queue = {s["EventSourceArn"]["Fn::GetAtt"][0]: s for s in event_sources(tpl).values()}
    assert set(by_queue) == {"WorkQueue", "CriticalQueue", "BulkQueue"}
    for queue, sqs in by_queue.items():
        # the alias, where provisioned concurrency lives (WorkerProvisionedConcurrency)
        assert sqs["FunctionName"] == {"Ref": "WorkerFunction.Alias"}
        assert sqs["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert "ReportBatchItemFailures" in sqs["FunctionResponseTypes"]
        assert sqs["MaximumBatchingWindowInSeconds"] == 0
        batch = tpl["Parameters"][sqs["BatchSize"]["Ref"]]
        # beyond 10 messages SQS requires a batching window, which we keep at 0
        assert batch["Default"] == 10 and batch["MaxValue"] <= 10
        concurrency = resolve_if(tpl, sqs)["ScalingConfig"]["MaximumConcurrency"]
        assert isinstance(concurrency, dict) and "Ref" in concurrency
        param = tpl["Parameters"][concurrency["Ref"]]
        assert param["MinValue"] >= 2  # the SQS minimum
    assert by_queue["WorkQueue"]["BatchSize"] == {"Ref": "BatchSize"}
    assert tpl["Parameters"]["MaximumConcurrency"]["Default"] == 10


def test_environment(tpl: dict[str, Any]) -> None:
    env = tpl["Globals"]["Function"]["Environment"]["Variables"]
    assert env["DYNACRON_TABLE"] == {"Ref": "TasksTable"}
    assert env["DYNACRON_QUEUE_URL"] == {"Ref": "WorkQueue"}
    assert env["DYNACRON_DLQ_URL"] == {"Ref": "DeadLetterQueue"}
    assert env["POWERTOOLS_SERVICE_NAME"] == "dynacron"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Dynacron"
    assert param_default(tpl, env["POWERTOOLS_LOG_LEVEL"]) == "INFO"
    assert param_default(tpl, env["DYNACRON_HANDLERS"]) == "dynacron.examples"
    shards = tpl["Parameters"][env["DYNACRON_SHARDS"]["Ref"]]
    assert (shards["Default"], shards["MinValue"], shards["MaxValue"]) == (8, 1, 1000)
    assert param_default(tpl, env["DYNACRON_LEASE_SECONDS"]) == 300
    # a task's timeout must end before the worker Lambda does
    assert int(env["DYNACRON_MAX_TIMEOUT_SECONDS"]) < fn_prop(tpl, "WorkerFunction", "Timeout")
    for name in ("PollerFunction", "WorkerFunction"):
        assert "Environment" not in tpl["Resources"][name]["Properties"], name
    for key, value in env.items():
        assert not re.search(r"PAYLOAD|SECRET|PASSWORD|TOKEN|CREDENTIAL|ACCESS_KEY", key), key
        assert not (isinstance(value, str) and len(value) > 64), key


def test_look_ahead_is_longer_than_the_period_and_fits_sqs_delay(tpl: dict[str, Any]) -> None:
    env = tpl["Globals"]["Function"]["Environment"]["Variables"]
    param = tpl["Parameters"][env["DYNACRON_WINDOW_SECONDS"]["Ref"]]
    period = int(env["DYNACRON_POLL_PERIOD_SECONDS"])
    assert period < param["Default"] <= 900
    assert period < param["MinValue"] and param["MaxValue"] <= 900


# --- least privilege ----------------------------------------------------------------------------


def test_policies_are_inline_and_scoped_to_this_stack(res: dict[str, Any]) -> None:
    fns = functions(res)
    assert set(fns) == {"PollerFunction", "WorkerFunction"}
    for name, fn in fns.items():
        sts = statements(fn, res)
        assert sts, name
        for st in sts:
            assert st["Effect"] == "Allow", (name, st)
            assert "NotAction" not in st and "NotResource" not in st, (name, st)
            for action in as_list(st["Action"]):
                assert "*" not in action, (name, action)
                assert action.split(":")[0] in ("dynamodb", "sqs", "logs"), (name, action)
            for resource in as_list(st["Resource"]):
                assert resource != "*", (name, st)
                assert is_intrinsic(resource), (name, resource)  # no hand-written ARNs
                refs = referenced_resources(resource)
                assert refs and refs <= OWN_RESOURCES | {LOG_GROUPS[name]}, (name, resource)
                logs = any(a.startswith("logs:") for a in as_list(st["Action"]))
                assert logs == (refs == {LOG_GROUPS[name]}), (name, st)  # logs: its own group
                if "Fn::Sub" in resource:
                    # the one Sub allowed: an index of our own table, named
                    assert re.fullmatch(
                        r"\$\{TasksTable\.Arn\}/index/[a-z-]+", resource["Fn::Sub"]
                    ), (name, resource)
                assert "*" not in str(resource), (name, resource)


def test_no_wildcard_resource_anywhere(tpl: dict[str, Any]) -> None:
    for node in walk(tpl):
        if isinstance(node, dict) and "Statement" in node:
            for st in as_list(node["Statement"]):
                for resource in as_list(st.get("Resource", [])):
                    assert resource != "*", st
                    assert not (isinstance(resource, str) and resource.endswith(":*")), st


def test_no_function_gets_a_role_or_event_that_attaches_managed_policies(
    res: dict[str, Any],
) -> None:
    for name, fn in functions(res).items():
        role_of(fn, res)
        events = fn["Properties"].get("Events", {})
        assert all(e["Type"] != "SQS" for e in events.values()), (name, events)


def test_no_broad_dynamodb_actions(res: dict[str, Any]) -> None:
    broad = {
        "dynamodb:Scan",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteTable",
    }
    for name, fn in functions(res).items():
        for st in statements(fn, res):
            assert not broad & set(as_list(st["Action"])), (name, st)


# --- alarms, logs, outputs ----------------------------------------------------------------------


def test_alarms(tpl: dict[str, Any], res: dict[str, Any]) -> None:
    dlq = res["DeadLetterQueueAlarm"]["Properties"]
    assert (dlq["Namespace"], dlq["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert referenced_resources(dlq["Dimensions"]) == {"DeadLetterQueue"}
    assert dlq["Threshold"] == 1 and dlq["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"

    errors = res["PollerErrorsAlarm"]["Properties"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert referenced_resources(errors["Dimensions"]) == {"PollerFunction"}
    assert (
        errors["Threshold"] == 1 and errors["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    )

    dead_man = res["PollerNotRunningAlarm"]["Properties"]
    assert (dead_man["Namespace"], dead_man["MetricName"]) == ("AWS/Lambda", "Invocations")
    assert referenced_resources(dead_man["Dimensions"]) == {"PollerFunction"}
    assert dead_man["ComparisonOperator"] == "LessThanThreshold" and dead_man["Threshold"] == 1
    assert dead_man["Period"] * dead_man["EvaluationPeriods"] == 300
    assert dead_man["TreatMissingData"] == "breaching"

    assert tpl["Parameters"]["AlarmTopicArn"]["Default"] == ""
    for alarm in (
        "DeadLetterQueueAlarm",
        "PollerErrorsAlarm",
        "PollerNotRunningAlarm",
        "AwsErrorsAlarm",
        "LatenessAlarm",
    ):
        cond, actions, otherwise = res[alarm]["Properties"]["AlarmActions"]["Fn::If"]
        assert cond in tpl["Conditions"], alarm
        assert actions == [{"Ref": "AlarmTopicArn"}] and otherwise == {"Ref": "AWS::NoValue"}


def test_an_alarm_watches_the_metric_aws_errors_are_counted_in(res: dict[str, Any]) -> None:
    """Whatever metric the entrypoints count an AWS error in, an alarm fires on its first one."""
    from botocore.exceptions import ClientError

    from dynacron.aws import report_error
    from dynacron.handlers import poller, worker

    class Recorder:
        names: list[str] = []

        def add_metric(self, name: str, unit: str, value: float) -> None:
            self.names.append(name)

    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "BatchGetItem")
    report_error(denied, "execute", None, Recorder())
    for module in (poller, worker):
        namespace = module.metrics.namespace
        watched = [
            a["Properties"]
            for a in res.values()
            if a["Type"] == "AWS::CloudWatch::Alarm"
            and a["Properties"]["Namespace"] == namespace
            and a["Properties"]["MetricName"] in Recorder.names
        ]
        assert watched, (module.__name__, namespace, Recorder.names)
        for alarm in watched:
            assert alarm["Threshold"] == 1
            assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
            dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
            assert dims == {"service": module.metrics.service}


def test_an_alarm_fires_on_the_lateness_the_worker_publishes(
    env: Any, tpl: dict[str, Any], res: dict[str, Any]
) -> None:
    """Runs started late make the worker publish a LatenessMs that an alarm's p99 catches;
    on-time runs and retries (late on purpose: the backoff) do not."""
    from datetime import timedelta

    from dynacron import At, RetryPolicy
    from dynacron.handlers import worker

    class Recorder:
        def __init__(self) -> None:
            self.values: dict[str, list[float]] = {}

        def add_metric(self, name: str, unit: str, value: float) -> None:
            self.values.setdefault(name, []).append(value)

        def add_dimensioned_metric(self, *_: Any) -> None:
            pass

    def started(late_s: float, retry: RetryPolicy | None = None, attempts: int = 1) -> Any:
        s = env.scheduler()
        task = s.schedule("tpl-fail-once", {}, trigger=At(env.clock.now() + timedelta(seconds=5)),
                          retry=retry)
        (msg,) = [m for m in env.receive() if json.loads(m["Body"])["task_id"] == task.task_id]
        env.clock.advance(5 + late_s)
        recorder = Recorder()
        for _ in range(attempts):
            env.executor(metrics=recorder).execute(
                msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
            env.clock.advance(60)
        return recorder.values

    late, on_time = started(20), started(0)
    retried = started(0, RetryPolicy(max_attempts=2, backoff_base=30, jitter=0), attempts=2)
    (alarm,) = [
        a["Properties"] for a in res.values()
        if a["Type"] == "AWS::CloudWatch::Alarm"
        and (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        == (worker.metrics.namespace, "LatenessMs")
    ]
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        "service": worker.metrics.service}
    assert alarm["ExtendedStatistic"] == "p99"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    threshold = tpl["Parameters"][alarm["Threshold"]["Ref"]]["Default"]
    assert late["LatenessMs"] == [20_000] and threshold < 20_000
    assert on_time["LatenessMs"] == [0] and retried["LatenessMs"] == [0]
    assert retried["RunsStarted"] == [1, 1]  # the retry started, and published no lateness


def test_log_groups_have_retention(tpl: dict[str, Any], res: dict[str, Any]) -> None:
    for name in ("PollerFunction", "WorkerFunction"):
        group = fn_prop(tpl, name, "LoggingConfig")["LogGroup"]
        props = res[group["Ref"]]["Properties"]
        assert props["RetentionInDays"] == 30, name


def test_outputs(tpl: dict[str, Any]) -> None:
    outputs = tpl["Outputs"]
    assert outputs["TableName"]["Value"] == {"Ref": "TasksTable"}
    assert outputs["QueueUrl"]["Value"] == {"Ref": "WorkQueue"}
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": "DeadLetterQueue"}
    assert outputs["PollerFunctionArn"]["Value"] == {"Fn::GetAtt": ["PollerFunction", "Arn"]}
    assert outputs["WorkerFunctionArn"]["Value"] == {"Fn::GetAtt": ["WorkerFunction", "Arn"]}
    sub = outputs["ExportLine"]["Value"]["Fn::Sub"]
    line = sub[0] if isinstance(sub, list) else sub
    for var, ref in (
        ("DYNACRON_TABLE", "TasksTable"),
        ("DYNACRON_QUEUE_URL", "WorkQueue"),
        ("DYNACRON_DLQ_URL", "DeadLetterQueue"),
    ):
        assert f"{var}=${{{ref}}}" in line, var
    assert line.startswith("export ")


# --- cfn-lint -----------------------------------------------------------------------------------


def test_cfn_lint_reports_no_errors_or_warnings() -> None:
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE)
    problems = [f"{m.rule.id} {m.message} ({m.filename}:{m.linenumber})" for m in matches]
    assert problems == []
