"""Template invariant: every target permission is scoped to the Target* parameter lists.

The grants are evaluated for concrete parameter values with a small evaluator of the intrinsics
the target block uses (Ref, Join, Equals, Not, Or, Condition, If), so "an empty list grants
nothing" and "a list grants exactly its entries" are checked, not just the shape.
"""

from __future__ import annotations

from typing import Any

import pytest

from dynacron.local.provision import find_template, load_template

#: parameter → the actions it may grant (and nothing else may grant them)
TARGET_PARAMETERS = {
    "TargetFunctionArns": {"lambda:InvokeFunction"},
    "TargetQueueArns": {"sqs:SendMessage"},
    "TargetTopicArns": {"sns:Publish"},
    "TargetEventBusArns": {"events:PutEvents"},
    "TargetStateMachineArns": {"states:StartExecution"},
    "TargetSecretArns": {"secretsmanager:GetSecretValue"},
    "TargetParameterArns": {"ssm:GetParameter"},
}
TARGET_ACTIONS = set().union(*TARGET_PARAMETERS.values()) - {"sqs:SendMessage"}
NO_VALUE = object()


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    return load_template(find_template())


class Evaluator:
    """Resolves the intrinsics of the target block for one set of parameter values."""

    def __init__(self, tpl: dict[str, Any], params: dict[str, list[str]]) -> None:
        self.tpl = tpl
        self.params = {
            name: params.get(name, [""]) for name in tpl["Parameters"] if name.startswith("Target")
        }

    def condition(self, name: str) -> bool:
        return bool(self.value(self.tpl["Conditions"][name]))

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        key, arg = next(iter(node.items()), (None, None))
        if len(node) != 1 or not (key == "Ref" or key == "Condition" or key.startswith("Fn::")):
            return {k: self.value(v) for k, v in node.items()}
        if key == "Ref":
            if arg == "AWS::NoValue":
                return NO_VALUE
            return self.params[arg]
        if key == "Fn::Join":
            return arg[0].join(self.value(arg[1]))
        if key == "Fn::Equals":
            return self.value(arg[0]) == self.value(arg[1])
        if key == "Fn::Not":
            return not self.value(arg[0])
        if key == "Fn::Or":
            return any(self.value(a) for a in arg)
        if key in ("Condition", "Fn::Condition"):
            return self.condition(arg)
        if key == "Fn::If":
            return self.value(arg[1] if self.condition(arg[0]) else arg[2])
        raise AssertionError(f"intrinsic {key} is not expected in the target block")

    def grants(self) -> list[tuple[set[str], list[str]]]:
        policy = self.tpl["Resources"]["WorkerTargetsPolicy"]
        if not self.condition(policy["Condition"]):
            return []
        statements = self.value(policy["Properties"]["PolicyDocument"]["Statement"])
        out = []
        for st in statements:
            assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st
            resources = st["Resource"]
            out.append(
                (set(st["Action"]), resources if isinstance(resources, list) else [resources])
            )
        return out


def test_parameters_are_comma_lists_that_default_to_empty(tpl):
    for name in TARGET_PARAMETERS:
        param = tpl["Parameters"][name]
        assert (param["Type"], param["Default"]) == ("CommaDelimitedList", ""), name


def test_empty_lists_grant_nothing(tpl):
    assert Evaluator(tpl, {}).grants() == []


@pytest.mark.parametrize("name", sorted(TARGET_PARAMETERS))
def test_each_list_grants_exactly_its_entries_and_actions(tpl, name):
    entries = ["arn:aws:x:us-east-1:123456789012:one", "arn:aws:x:us-east-1:123456789012:two"]
    grants = Evaluator(tpl, {name: entries}).grants()
    assert grants == [(TARGET_PARAMETERS[name], entries)]


def test_all_lists_together_grant_each_its_own(tpl):
    params = {name: [f"arn:aws:x:::{name}"] for name in TARGET_PARAMETERS}
    grants = Evaluator(tpl, params).grants()
    assert sorted((sorted(a), r) for a, r in grants) == sorted(
        (sorted(TARGET_PARAMETERS[n]), [f"arn:aws:x:::{n}"]) for n in TARGET_PARAMETERS
    )
    for actions, resources in grants:
        assert not any("*" in a for a in actions)
        assert "*" not in resources


def test_the_policy_is_on_the_worker_role_only(tpl):
    props = tpl["Resources"]["WorkerTargetsPolicy"]["Properties"]
    assert props["Roles"] == [{"Ref": "WorkerFunctionRole"}]


def test_no_other_statement_grants_a_target_action(tpl):
    """Target actions appear only in WorkerTargetsPolicy (sqs:SendMessage elsewhere is for the
    stack's own queues, which test_template checks)."""
    checked = 0
    for logical_id, res in tpl["Resources"].items():
        if logical_id == "WorkerTargetsPolicy":
            continue
        for policy in res.get("Properties", {}).get("Policies", []) or []:
            for st in policy["PolicyDocument"]["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                assert not TARGET_ACTIONS & set(actions), (logical_id, st)
                checked += 1
    assert checked >= 8  # the roles' statements were read


def test_the_worker_is_told_the_allowed_targets(tpl):
    env = tpl["Globals"]["Function"]["Environment"]["Variables"]
    params = {
        "TargetFunctionArns": ["arn:f"],
        "TargetQueueArns": ["arn:q1", "arn:q2"],
        "TargetEventBusArns": ["arn:b"],
    }
    allowed = Evaluator(tpl, params).value(env["DYNACRON_ALLOWED_TARGETS"])
    assert sorted(filter(None, allowed.split(","))) == ["arn:b", "arn:f", "arn:q1", "arn:q2"]
    empty = Evaluator(tpl, {}).value(env["DYNACRON_ALLOWED_TARGETS"])
    assert not list(filter(None, empty.split(",")))


@pytest.mark.parametrize(
    ("name", "good"),
    [
        ("TargetFunctionArns", "arn:aws:lambda:eu-west-1:123456789012:function:report:live"),
        ("TargetQueueArns", "arn:aws:sqs:eu-west-1:123456789012:jobs.fifo"),
        ("TargetTopicArns", "arn:aws:sns:eu-west-1:123456789012:alerts"),
        ("TargetEventBusArns", "arn:aws:events:eu-west-1:123456789012:event-bus/default"),
        ("TargetStateMachineArns", "arn:aws:states:eu-west-1:123456789012:stateMachine:etl"),
        ("TargetSecretArns", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hook-AbC123"),
        ("TargetParameterArns", "arn:aws:ssm:eu-west-1:123456789012:parameter/hooks/secret"),
    ],
)
def test_each_entry_must_be_one_full_arn_without_wildcards(tpl, name, good):
    import re

    pattern = re.compile(tpl["Parameters"][name]["AllowedPattern"])
    assert pattern.fullmatch(good) and pattern.fullmatch("")  # "" is the empty default
    for bad in ("*", good.rsplit(":", 1)[0] + ":*", good + "*", good.replace("123456789012", "*")):
        assert not pattern.fullmatch(bad), (name, bad)
