"""Each function's IAM statements in ``template.yaml`` against the calls its code really makes.

``helpers.awscalls`` records, across the whole test run (unit, integration and reliability
suites), every AWS call made inside the poller's and the worker's code paths, as the IAM action
and resource that AWS would authorize. This module runs last (see ``tests/conftest.py``) and
checks both ways: every recorded call is allowed by that function's statements (a call added
without its permission fails here, as ``BatchGetItem`` did), and every statement is used by
some call (so removing any statement fails the first check, and no unused permission ships).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from dynacron.local.provision import lane_workers, load_template, resolved
from helpers.awscalls import RECORDED, Grant

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
# The parameters under which every conditional grant of the stack exists: the fan-out's
# self-invocation and the extra work queues (the suite exercises both).
EVERY_GRANT = {"PollerFanout": 2, "WorkQueueCount": 3}

# Calls made with the worker's role by Lambda's SQS event source itself, not by our code: "The
# Lambda execution role must include sqs:DeleteMessage, sqs:GetQueueAttributes,
# sqs:ReceiveMessage" (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/
# sqs-configure-lambda-function-trigger.html). The local runtime plays the event source.
# Every queue the worker has an SQS event for (one per lane) is read by its own event source.
EVENT_SOURCE = {
    Grant("WorkerFunction", f"sqs:{action}", lane.queue_id)
    for lane in lane_workers(resolved(load_template(TEMPLATE), EVERY_GRANT))
    for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
}

# Calls made with each function's role by Lambda itself: it writes the function's logs, which
# needs "logs:CreateLogStream, logs:PutLogEvents" on the log group (https://docs.aws.amazon.com/
# lambda/latest/dg/monitoring-cloudwatchlogs.html; the stack creates the group, so not
# CreateLogGroup).
PLATFORM_LOGS = {
    Grant(fn, f"logs:{action}", group)
    for fn, group in (("PollerFunction", "PollerLogGroup"), ("WorkerFunction", "WorkerLogGroup"))
    for action in ("CreateLogStream", "PutLogEvents")
}


def role_policies(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """The inline policy documents of ``function``'s own role (``Role: !GetAtt <Role>.Arn``)."""
    role = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [p["PolicyDocument"] for p in template["Resources"][role]["Properties"]["Policies"]]


def _resource(node: Any) -> str:
    """A statement's resource as a pattern over logical ids: ``TasksTable``, ``TasksTable/*``."""
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        name, attr = node["Fn::GetAtt"]
        assert attr == "Arn", node
        return name
    if isinstance(node, dict) and "Fn::Sub" in node and isinstance(node["Fn::Sub"], str):
        text = node["Fn::Sub"]
        head, _, rest = text.partition(".Arn}")
        assert head.startswith("${") and rest, node
        return head[2:] + rest
    raise AssertionError(f"a resource this check cannot read: {node!r}")


def granted(template: dict[str, Any]) -> dict[str, list[tuple[str, str, int]]]:
    """``{function: [(action, resource pattern, statement index), ...]}`` of Allow statements:
    the inline policies of the function's role (``<Function>Role``) and every
    ``AWS::IAM::Policy`` on that role, such as the poller's fan-out grant on its own ARN."""
    out: dict[str, list[tuple[str, str, int]]] = {}
    resources = template["Resources"]
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        rows = out.setdefault(name, [])
        for policy in role_policies(template, name):
            rows.extend(_rows(name, policy["Statement"], template))
        for other in resources.values():
            props = other.get("Properties", {})
            if other["Type"] == "AWS::IAM::Policy" and {"Ref": f"{name}Role"} in props["Roles"]:
                rows.extend(_rows(name, props["PolicyDocument"]["Statement"], template))
    return out


def _rows(fn: str, statements: list[Any], template: dict[str, Any]) -> list[tuple[str, str, int]]:
    rows = []
    for index, st in enumerate(statements):
        if isinstance(st, dict) and "Fn::If" in st:  # a conditional statement: its grant
            st = st["Fn::If"][1]
        assert st["Effect"] == "Allow", (fn, st)
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for r in resources:
            if isinstance(r, dict) and r.get("Ref") in template.get("Parameters", {}):
                continue  # resources outside the stack, listed by the user (targets' own test)
            rows.extend((a, _resource(r), index) for a in actions)
    return rows


def allows(grants: Iterable[tuple[str, str, int]], call: Grant) -> bool:
    return any(a == call.action and fnmatch.fnmatchcase(call.resource, r) for a, r, _ in grants)


def missing(template: dict[str, Any], calls: Iterable[Grant]) -> list[Grant]:
    table = granted(template)
    return sorted(
        (c for c in calls if not allows(table.get(c.function, []), c)),
        key=lambda c: (c.function, c.action, c.resource),
    )


@pytest.fixture(scope="module")
def calls(request: pytest.FixtureRequest) -> set[Grant]:
    others = [i for i in request.session.items if "test_permissions" not in i.nodeid]
    if not others:
        pytest.skip("checks the calls the rest of the suite makes: run it with the other tests")
    functions = {c.function for c in RECORDED}
    assert functions == {"PollerFunction", "WorkerFunction"}, (
        f"the suite recorded calls of {sorted(functions)} only: is helpers.awscalls installed?"
    )
    return RECORDED | EVENT_SOURCE | PLATFORM_LOGS


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    # As deployed with every conditional grant on (EVERY_GRANT); the deploy test checks the
    # same grants under AUTH=true with PollerFanout=2, WorkQueueCount=2.
    return resolved(load_template(TEMPLATE), EVERY_GRANT)


def test_every_call_is_made_to_a_resource_of_the_stack(calls: set[Grant]) -> None:
    unknown = sorted(c for c in calls if c.resource.startswith("?"))
    assert not unknown, f"calls to resources the template does not declare: {unknown}"


def test_every_call_is_granted(template: dict[str, Any], calls: set[Grant]) -> None:
    assert not missing(template, calls), "calls the function's role does not allow"


def test_every_statement_is_used(template: dict[str, Any], calls: set[Grant]) -> None:
    unused = [
        (fn, action, resource)
        for fn, rows in granted(template).items()
        for action, resource, _ in rows
        if not any(
            c.function == fn and c.action == action and fnmatch.fnmatchcase(c.resource, resource)
            for c in calls
        )
    ]
    assert not unused, f"permissions no recorded call uses (least privilege): {unused}"


def test_removing_any_action_fails_the_check(template: dict[str, Any], calls: set[Grant]) -> None:
    for fn, res in template["Resources"].items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        statements = role_policies(template, fn)[0]["Statement"]
        for st in statements:
            for action in list(st["Action"]):
                st["Action"].remove(action)
                try:
                    assert missing(template, calls), f"{fn} works without {action}"
                finally:
                    st["Action"].append(action)
