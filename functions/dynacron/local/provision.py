"""Create, on any DynamoDB/SQS endpoint, the table and queues that ``template.yaml`` declares.

The template is the single description of the resources: this module reads their Properties
(keys, index, TTL, queue attributes, redrive) instead of repeating them. Billing and throughput
settings are cloud concerns and are ignored locally.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that understands CloudFormation short tags (!Ref, !Sub, !GetAtt, ...)."""


def _cfn_tag(loader: yaml.Loader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # yaml has no fourth kind of node
        raise yaml.constructor.ConstructorError(None, None, f"unexpected {node!r}", node.start_mark)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_CfnLoader)


_HERE = Path(__file__).resolve()
PACKAGED_TEMPLATE = _HERE.parents[1] / "template.yaml"  # copied in by setup.py when built
_CHECKOUT = _HERE.parents[3]  # the repository root, when this runs from a source checkout


def find_template() -> Path:
    """dynacron's own SAM template: ``$DYNACRON_TEMPLATE``, else the repository root's
    ``template.yaml`` when running from a checkout (an editable install), else the copy shipped
    in the package.

    Never ``template.yaml`` in the working directory: run inside a user's own SAM project, that
    is *their* template, not the description of dynacron's table and queues.
    """
    override = os.environ.get("DYNACRON_TEMPLATE")
    if override:
        if not Path(override).is_file():
            raise FileNotFoundError(f"DYNACRON_TEMPLATE={override}: no such file")
        return Path(override)
    checkout = _CHECKOUT / "template.yaml"
    in_checkout = _HERE.parents[2].name == "functions" and (_CHECKOUT / "pyproject.toml").is_file()
    if in_checkout and checkout.is_file():
        return checkout
    if PACKAGED_TEMPLATE.is_file():
        return PACKAGED_TEMPLATE
    raise FileNotFoundError(
        f"dynacron's template.yaml is missing from {PACKAGED_TEMPLATE.parent} (a broken "
        "install: reinstall dynacron), or set DYNACRON_TEMPLATE"
    )


LANE_TAG = "dynacron:lane"
DEFAULT_LANE = "default"
# WorkQueueCount > 1: the default lane's other queues; the group is the queue's number
EXTRA_WORK_QUEUE = re.compile(r"^WorkQueue([2-9])$")


@dataclass(frozen=True)
class Resources:
    table_name: str
    queue_url: str
    dlq_url: str
    #: lane -> queue URL for every lane queue (WorkQueue, the default lane, is ``queue_url``).
    lane_queues: Mapping[str, str] = field(default_factory=dict)
    #: template logical id -> URL of every queue created
    queue_urls: Mapping[str, str] = field(default_factory=dict)

    @property
    def work_queues(self) -> tuple[str, ...]:
        """The default lane's other queues (WorkQueue2, ...), when the template creates them."""
        extra = sorted(q for q in self.queue_urls if EXTRA_WORK_QUEUE.match(q))
        return tuple(self.queue_urls[q] for q in extra)


@dataclass(frozen=True)
class LaneWorker:
    """What the template's worker event source of one lane says: its queue and its scaling."""

    lane: str
    queue_id: str  # template logical id
    concurrency: int  # ScalingConfig.MaximumConcurrency
    batch_size: int  # BatchSize


def lane_queue_ids(template: dict[str, Any]) -> dict[str, str]:
    """``{lane: logical id}`` of every queue tagged ``dynacron:lane`` (default: WorkQueue)."""
    out = {DEFAULT_LANE: "WorkQueue"}
    for logical_id, props in _resources_of(template, "AWS::SQS::Queue").items():
        for tag in props.get("Tags", []):
            if tag.get("Key") == LANE_TAG:
                out[str(tag["Value"])] = logical_id
    return out


_NO_VALUE = {"Ref": "AWS::NoValue"}


def _parameter(template: dict[str, Any], value: Any) -> Any:
    """A plain value, or the Default of the parameter a ``Ref`` names."""
    return _evaluate(template, value, {})


def condition(template: dict[str, Any], name: str, params: Mapping[str, Any] = {}) -> bool:
    """The template's condition ``name`` with ``params`` (else each parameter's Default): the
    ``Fn::Equals`` / ``Fn::Not`` / ``Fn::And`` / ``Fn::Or`` / ``Condition`` the template uses."""
    return bool(_evaluate(template, template["Conditions"][name], params))


def _evaluate(template: dict[str, Any], node: Any, params: Mapping[str, Any]) -> Any:
    if not isinstance(node, dict) or len(node) != 1:
        return node
    ((key, arg),) = node.items()
    if key == "Ref" and arg in template.get("Parameters", {}):
        return params.get(arg, template["Parameters"][arg].get("Default"))
    if key == "Condition":
        return condition(template, arg, params)
    if key == "Fn::Equals":  # CloudFormation compares the strings the values resolve to
        left, right = (str(_evaluate(template, a, params)) for a in arg)
        return left == right
    if key == "Fn::Not":
        return not _evaluate(template, arg[0], params)
    if key == "Fn::And":
        return all(_evaluate(template, a, params) for a in arg)
    if key == "Fn::Or":
        return any(_evaluate(template, a, params) for a in arg)
    return node


def resolved(template: dict[str, Any], params: Mapping[str, Any] = {}) -> dict[str, Any]:
    """The template as CloudFormation would deploy it with ``params`` (else the defaults):
    resources and outputs whose ``Condition`` is false dropped, every ``Fn::If`` chosen."""
    out = dict(template)
    for section in ("Resources", "Outputs"):
        out[section] = {
            name: {k: v for k, v in resolve_if(template, body, params).items() if k != "Condition"}
            for name, body in template.get(section, {}).items()
            if "Condition" not in body or condition(template, body["Condition"], params)
        }
    if "Globals" in template:
        out["Globals"] = resolve_if(template, template["Globals"], params)
    return out


def resolve_if(template: dict[str, Any], props: Any, params: Mapping[str, Any] = {}) -> Any:
    """``props`` with every ``Fn::If`` replaced by its chosen branch and ``AWS::NoValue``
    properties dropped, as CloudFormation would deploy them with ``params``."""
    if isinstance(props, list):
        items = (resolve_if(template, v, params) for v in props)
        return [v for v in items if v != _NO_VALUE]
    if not isinstance(props, dict):
        return props
    if set(props) == {"Fn::If"}:
        name, yes, no = props["Fn::If"]
        return resolve_if(template, yes if condition(template, name, params) else no, params)
    out = {k: resolve_if(template, v, params) for k, v in props.items()}
    return {k: v for k, v in out.items() if v != _NO_VALUE}


def event_sources(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{logical id: properties}`` of the template's SQS event source mappings (the worker's,
    one per lane queue), in template order."""
    return {
        name: props
        for name, props in _resources_of(template, "AWS::Lambda::EventSourceMapping").items()
        if isinstance(props.get("EventSourceArn"), dict)
    }


def lane_workers(template: dict[str, Any]) -> list[LaneWorker]:
    """One entry per lane queue that the worker function consumes (its event source mappings)."""
    by_queue = {queue: lane for lane, queue in lane_queue_ids(template).items()}
    queues = _resources_of(template, "AWS::SQS::Queue")
    by_queue.update({q: DEFAULT_LANE for q in queues if EXTRA_WORK_QUEUE.match(q)})
    out = []
    for props in event_sources(template).values():
        queue_id = props["EventSourceArn"]["Fn::GetAtt"][0]
        scaling = resolve_if(template, props).get("ScalingConfig", {})  # none: provisioned mode
        out.append(
            LaneWorker(
                lane=by_queue.get(queue_id, queue_id),
                queue_id=queue_id,
                concurrency=int(_parameter(template, scaling.get("MaximumConcurrency", 2))),
                batch_size=int(_parameter(template, props.get("BatchSize", 10))),
            )
        )
    return out


def _resources_of(
    template: dict[str, Any], cfn_type: str, params: Mapping[str, Any] = {}
) -> dict[str, dict[str, Any]]:
    """The template's resources of ``cfn_type`` that ``params`` (else the defaults) create."""
    return {
        name: res.get("Properties", {})
        for name, res in template.get("Resources", {}).items()
        if res.get("Type") == cfn_type
        and ("Condition" not in res or condition(template, res["Condition"], params))
    }


def provision(
    dynamodb: Any,
    sqs: Any,
    template: dict[str, Any],
    prefix: str = "dynacron",
    params: Mapping[str, Any] = {},
) -> Resources:
    """Create the template's table and queues (idempotent) and return their names/URLs;
    ``params`` overrides parameter defaults where they decide which queues exist."""
    tables = _resources_of(template, "AWS::DynamoDB::Table", params)
    queues = _resources_of(template, "AWS::SQS::Queue", params)
    if len(tables) != 1 or "WorkQueue" not in queues or "DeadLetterQueue" not in queues:
        raise ValueError("template.yaml must declare one table, WorkQueue and DeadLetterQueue")
    ((table_id, table_props),) = tables.items()
    table_name = f"{prefix}-{table_id}"
    _create_table(dynamodb, table_name, table_props)
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    # Dead-letter queues first, so a redrive policy can point at them.
    for logical_id in sorted(queues, key=lambda q: "RedrivePolicy" in queues[q]):
        url = _create_queue(sqs, f"{prefix}-{logical_id}", queues[logical_id], arns)
        urls[logical_id] = url
        arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
    lanes = {
        lane: urls[queue_id]
        for lane, queue_id in lane_queue_ids(template).items()
        if lane != DEFAULT_LANE
    }
    return Resources(table_name, urls["WorkQueue"], urls["DeadLetterQueue"], lanes, urls)


def _plain(value: Any) -> bool:
    return not (isinstance(value, dict) and any(k == "Ref" or k.startswith("Fn::") for k in value))


def _create_table(dynamodb: Any, name: str, props: dict[str, Any]) -> None:
    gsis = [
        {k: v for k, v in gsi.items() if k in ("IndexName", "KeySchema", "Projection")}
        for gsi in props.get("GlobalSecondaryIndexes", [])
    ]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if gsis:
        kwargs["GlobalSecondaryIndexes"] = gsis
    try:
        dynamodb.create_table(**kwargs)
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
    ttl = props.get("TimeToLiveSpecification")
    if ttl and _plain(ttl) and ttl.get("Enabled"):
        spec = {"Enabled": True, "AttributeName": ttl["AttributeName"]}
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=spec)


_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
)


def _create_queue(sqs: Any, name: str, props: dict[str, Any], arns: dict[str, str]) -> str:
    attributes = {k: str(props[k]) for k in _QUEUE_ATTRIBUTES if k in props and _plain(props[k])}
    redrive = props.get("RedrivePolicy")
    if redrive:
        target = redrive["deadLetterTargetArn"]
        if isinstance(target, dict):  # {"Fn::GetAtt": [LogicalId, "Arn"]}
            target = arns[target["Fn::GetAtt"][0]]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": target, "maxReceiveCount": int(redrive["maxReceiveCount"])}
        )
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
