"""Worker-scale parameters of template.yaml (issue 12): memory, provisioned pollers, shards."""

from __future__ import annotations

from typing import Any

import pytest
from test_template import load_template

from dynacron.errors import ConfigurationError
from dynacron.local.provision import condition, event_sources, lane_workers, resolve_if
from dynacron.settings import Settings


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    return load_template()


def _sqs_event(tpl: dict[str, Any]) -> dict[str, Any]:
    """The default lane's event source (WorkQueue): the one provisioned mode applies to."""
    (sqs,) = [
        s
        for s in event_sources(tpl).values()
        if s["EventSourceArn"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    ]
    return sqs


def test_shard_count_reaches_256_and_the_code_accepts_every_value(tpl):
    shards = tpl["Parameters"]["ShardCount"]
    assert shards["MaxValue"] >= 256
    Settings(shards=int(shards["MaxValue"]))  # the poller and SDK take what the template allows
    with pytest.raises(ConfigurationError):
        Settings(shards=0)


def test_worker_memory_is_a_parameter_within_lambda_limits(tpl):
    memory = tpl["Resources"]["WorkerFunction"]["Properties"]["MemorySize"]
    param = tpl["Parameters"][memory["Ref"]]
    assert 128 <= param["MinValue"] <= param["Default"] <= param["MaxValue"] <= 10240


def test_maximum_concurrency_goes_up_to_the_event_source_limit(tpl):
    ref = resolve_if(tpl, _sqs_event(tpl))["ScalingConfig"]["MaximumConcurrency"]["Ref"]
    assert tpl["Parameters"][ref]["MaxValue"] == 1000  # ScalingConfig's documented maximum


def test_provisioned_pollers_are_off_by_default_and_within_the_sqs_ranges(tpl):
    config = _sqs_event(tpl)["ProvisionedPollerConfig"]["Fn::If"]
    condition, on, off = config
    assert off == {"Ref": "AWS::NoValue"}
    # the condition is "MinimumPollers is not 0", and 0 is the default: no cost unless asked
    assert tpl["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [on["MinimumPollers"], 0]}]}
    low = tpl["Parameters"][on["MinimumPollers"]["Ref"]]
    high = tpl["Parameters"][on["MaximumPollers"]["Ref"]]
    assert low["Default"] == 0 and low["MaxValue"] == 200  # SQS: 2..200 when set
    assert high["MinValue"] >= 2 and high["MaxValue"] <= 2000


@pytest.mark.parametrize("pollers", [0, 2, 200])
def test_provisioned_mode_and_maximum_concurrency_are_never_both_set(tpl, pollers):
    """AWS: "maximum concurrency settings or ... provisioned mode. These are mutually exclusive
    options" (services-sqs-scaling). The event source as CloudFormation deploys it, for the
    parameter values a user can pass: exactly one of the two."""
    deployed = resolve_if(tpl, _sqs_event(tpl), {"MinimumPollers": pollers})
    assert ("ScalingConfig" in deployed) != ("ProvisionedPollerConfig" in deployed), deployed
    assert ("ProvisionedPollerConfig" in deployed) == (pollers > 0)


def test_condition_resolution_follows_cloudformation_string_equality(tpl):
    # Parameters arrive as strings (a stack update passes "0"): the condition must agree
    assert condition(tpl, "UseProvisionedPollers", {"MinimumPollers": "0"}) is False
    assert condition(tpl, "UseProvisionedPollers", {"MinimumPollers": "2"}) is True


def test_the_local_runtime_reads_the_default_lanes_concurrency_through_the_condition(tpl):
    workers = {w.lane: w for w in lane_workers(tpl)}
    assert workers["default"].concurrency == tpl["Parameters"]["MaximumConcurrency"]["Default"]
