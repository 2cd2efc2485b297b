"""Worker-scale parameters of template.yaml (issue 12): memory, provisioned pollers, shards."""

from __future__ import annotations

from typing import Any

import pytest
from test_template import load_template

from dynacron.errors import ConfigurationError
from dynacron.local.provision import event_sources
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
    ref = _sqs_event(tpl)["ScalingConfig"]["MaximumConcurrency"]["Ref"]
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
