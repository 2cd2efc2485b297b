"""``dynacron schedule --target`` and ``show`` of a target task (in-process moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from dynacron.cli import cli
from dynacron.targets import EventBus, Http, Lambda, Sqs
from helpers.cli import checked, clear_config_env

FN = "arn:aws:lambda:us-east-1:123456789012:function:report"


@pytest.fixture
def dc(env, monkeypatch):
    clear_config_env(monkeypatch)

    def invoke(*args: str, code: int = 0):
        return checked(env, *args, code=code)

    return invoke


def _soon() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("spec", "extra", "expected"),
    [
        (f"lambda:{FN}", [], Lambda(FN)),
        (
            "sqs:https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo?group_id=g",
            [],
            Sqs("https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo", "g"),
        ),
        ("eventbus:ops?source=my.app&detail_type=Due", [], EventBus("ops", "Due", "my.app")),
        (
            "https://example.com/hook",
            ["--method", "PUT", "--header", "X-Team: ops", "--secret", "ssm:/hooks/s"],
            Http("https://example.com/hook", "PUT", {"X-Team": "ops"}, "ssm:/hooks/s"),
        ),
    ],
)
def test_schedule_with_a_target_then_show_it(env, dc, spec, extra, expected):
    out = dc(
        "schedule", "--target", spec, *extra, "--at", _soon(), "--payload", '{"a": 1}', "--json"
    )
    task = json.loads(out.stdout)
    assert task["task_type"] == f"target:{expected.kind}"
    stored = env.scheduler().get(task["task_id"])
    assert stored.target == expected and stored.payload == {"a": 1}
    shown = json.loads(dc("show", task["task_id"], "--json").stdout)
    assert shown["target"]["kind"] == expected.kind
    assert shown["target"]["description"] == expected.describe()
    text = dc("show", task["task_id"]).stdout
    assert expected.describe().split(":", 1)[1][:20] in text.replace("\n", "")


def test_show_lists_header_names_not_values(dc):
    out = dc(
        "schedule",
        "--target",
        "https://example.com/h",
        "--header",
        "X-Token: abc123",
        "--at",
        _soon(),
        "--json",
    )
    text = dc("show", json.loads(out.stdout)["task_id"]).stdout
    assert "X-Token" in text and "abc123" not in text


@pytest.mark.parametrize(
    "args",
    [
        ["job", "--target", "lambda:report"],  # both
        [],  # neither
        ["job", "--secret", "ssm:/x"],  # http option without a target
    ],
)
def test_usage_errors(dc, args):
    result = dc("schedule", *args, "--at", _soon(), code=2)
    assert "error" in result.stderr.lower() or "Usage" in result.output


def test_a_bad_target_names_the_option(dc):
    result = dc("schedule", "--target", "sns:not-an-arn", "--at", _soon(), code=2)
    assert "--target" in result.stderr
    result = dc(
        "schedule", "--target", "https://e.com", "--method", "TRACE", "--at", _soon(), code=2
    )
    assert "--method" in result.stderr


def test_local_refuses_a_malformed_lambda_mapping_before_starting(monkeypatch):
    monkeypatch.delenv("DYNACRON_LOCAL_LAMBDAS", raising=False)
    result = CliRunner().invoke(cli, ["local", "--lambda", "report-without-module"])
    assert result.exit_code == 2 and "--lambda" in result.output
