"""Fan-out (fanout.py): a tick's shards spread over parallel poller invocations."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from dynacron import At, Scheduler, handler
from dynacron.errors import ValidationError
from dynacron.fanout import STALE_TICKS, FanOut, ShardTick, handle, lambda_client, shard_groups
from dynacron.settings import Settings

ARN = "arn:aws:lambda:us-east-1:123456789012:function:dynacron-poller"
SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


@handler("fanout-noop")
def _noop(payload, ctx):
    return None


# --- groups ------------------------------------------------------------------------------------


def test_groups_hold_every_shard_once_in_contiguous_near_equal_runs():
    for shards in range(1, 41):
        for groups in range(1, 45):
            got = shard_groups(shards, groups)
            assert [s for g in got for s in g] == list(range(shards)), (shards, groups)
            assert len(got) == min(shards, groups)
            sizes = {len(g) for g in got}
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
            assert all(g == list(range(g[0], g[-1] + 1)) for g in got)


def test_256_shards_in_64_groups_of_four():
    got = shard_groups(256, 64)
    assert len(got) == 64 and got[0] == [0, 1, 2, 3] and got[-1] == [252, 253, 254, 255]


# --- the payload -------------------------------------------------------------------------------


def test_a_shard_tick_survives_its_payload():
    tick = ShardTick((4, 5, 6), 1_767_225_600_000)
    assert ShardTick.parse(json.loads(tick.to_payload()), shard_count=8) == tick


def test_the_schedules_own_event_is_not_a_shard_tick():
    assert ShardTick.parse(SCHEDULED_EVENT, 8) is None
    assert ShardTick.parse({}, 8) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"v": 2}, "event.v"),
        ({"shards": []}, "event.shards"),
        ({"shards": [8]}, "event.shards"),  # the index has 0..7
        ({"shards": [-1]}, "event.shards"),
        ({"shards": ["1"]}, "event.shards"),
        ({"shards": [True]}, "event.shards"),
        ({"shards": 3}, "event.shards"),
        ({"tick_at": "now"}, "event.tick_at"),
        ({"tick_at": None}, "event.tick_at"),
    ],
)
def test_a_malformed_shard_tick_names_its_field(change, field):
    event = {**json.loads(ShardTick((1,), 1_000).to_payload()), **change}
    with pytest.raises(ValidationError) as err:
        ShardTick.parse(event, 8)
    assert err.value.field == field


# --- the handler's decision --------------------------------------------------------------------


class FakeLambda:
    def __init__(self, refuse: set[int] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.refuse = refuse or set()  # first shards of groups whose invoke fails

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        body = json.loads(kwargs["Payload"])
        if body["shards"][0] in self.refuse:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "Invoke")
        self.calls.append({**kwargs, "body": body})
        return {"StatusCode": 202}


class Polls:
    def __init__(self) -> None:
        self.shards: list[Any] = []

    def __call__(self, time_left: Any, shards: Any) -> dict[str, int]:
        self.shards.append(None if shards is None else list(shards))
        return {"claimed": 0}


class Logger:
    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def error(self, message: str, extra: dict[str, Any]) -> None:
        self.errors.append({"message": message, **extra})


def _settings(**kw: Any) -> Settings:
    return Settings(shards=8, **kw)


def test_a_tick_starts_every_group_but_its_own_and_polls_its_own(clock):
    fake, polls = FakeLambda(), Polls()
    settings = _settings(poller_fanout=3)
    out = handle(SCHEDULED_EVENT, polls, lambda: FanOut(fake, ARN, settings), settings,
                 clock=clock)
    assert polls.shards == [[0, 1]]
    assert sorted(c["body"]["shards"] for c in fake.calls) == [[2, 3, 4], [5, 6, 7]]
    assert {(c["FunctionName"], c["InvocationType"]) for c in fake.calls} == {(ARN, "Event")}
    tick_ms = int(clock.now().timestamp() * 1000)
    assert {c["body"]["tick_at"] for c in fake.calls} == {tick_ms}
    assert (out["groups"], out["fanout_failed"]) == (3, 0)


def test_a_group_that_cannot_be_started_is_polled_by_the_tick(clock):
    fake, polls, logger = FakeLambda(refuse={5}), Polls(), Logger()
    settings = _settings(poller_fanout=3)
    out = handle(SCHEDULED_EVENT, polls, lambda: FanOut(fake, ARN, settings, logger=logger),
                 settings, clock=clock)
    assert polls.shards == [[0, 1, 5, 6, 7]]
    assert [c["body"]["shards"] for c in fake.calls] == [[2, 3, 4]]
    assert (out["groups"], out["fanout_failed"]) == (2, 1)
    assert logger.errors[0]["step"] == "fanout"
    assert logger.errors[0]["aws_error_code"] == "AccessDeniedException"


def test_without_fan_out_the_tick_polls_every_shard_and_invokes_nothing(clock):
    polls = Polls()

    def no_fanout() -> FanOut:
        raise AssertionError("a tick with poller_fanout=1 starts no invocation")

    out = handle(SCHEDULED_EVENT, polls, no_fanout, _settings(), clock=clock)
    assert polls.shards == [None] and out["groups"] == 1


def test_a_shard_tick_polls_its_shards_and_never_fans_out_again(clock):
    polls = Polls()
    event = json.loads(ShardTick((2, 3), int(clock.now().timestamp() * 1000)).to_payload())

    def no_fanout() -> FanOut:
        raise AssertionError("a shard invocation must not invoke again")

    out = handle(event, polls, no_fanout, _settings(poller_fanout=4), clock=clock)
    assert polls.shards == [[2, 3]] and "groups" not in out


def test_a_late_shard_tick_is_dropped_and_a_slightly_late_one_polls(clock):
    settings = _settings(poller_fanout=4)
    tick_ms = int(clock.now().timestamp() * 1000)
    event = json.loads(ShardTick((2, 3), tick_ms).to_payload())
    polls = Polls()
    clock.advance(STALE_TICKS * settings.period_s - 1)
    handle(event, polls, None, settings, clock=clock)
    clock.advance(2)
    out = handle(event, polls, None, settings, clock=clock)
    assert polls.shards == [[2, 3]]  # only the first of the two
    assert out["stale"] == 1


def test_a_malformed_shard_tick_is_logged_and_not_raised(clock):
    polls, logger = Polls(), Logger()
    event = {"dynacron": "shards", "v": 1, "shards": [99], "tick_at": 0}
    out = handle(event, polls, None, _settings(), clock=clock, logger=logger)
    assert out == {"refused": 1} and polls.shards == []
    assert logger.errors[0]["field"] == "event.shards"


def test_the_fan_out_calls_lambda_invoke_asynchronously_on_its_own_arn():
    """A real botocore client, stubbed: the call is Invoke(InvocationType=Event) on the
    function's own ARN, the one permission PollerFanoutPolicy grants (test_permissions)."""
    from botocore.stub import Stubber

    settings = _settings(poller_fanout=2)
    client = lambda_client(settings)
    payload = ShardTick((4, 5, 6, 7), 1_000).to_payload()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {"FunctionName": ARN, "InvocationType": "Event", "Payload": payload},
        )
        assert FanOut(client, ARN, settings).start([[4, 5, 6, 7]], 1_000) == []
        stub.assert_no_pending_responses()


# --- Dispatcher.poll on a shard group ----------------------------------------------------------


def _due_runs(env, n: int) -> dict[str, int]:
    """``n`` one-time runs due in 10 s; {task_id: its shard}."""
    quiet = Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock,
                      sqs=env.sqs)
    at = At(env.clock.now() + timedelta(seconds=10))
    ids = [quiet.schedule("fanout-noop", {}, trigger=at, task_id=f"f{i}").task_id
           for i in range(n)]
    shards = {}
    for item in env.table_items():
        if "due_shard" in item and item["sk"]["S"].startswith("RUN#"):
            shards[item["pk"]["S"].split("#", 1)[1]] = int(item["due_shard"]["N"])
    assert set(shards) == set(ids)
    assert len(set(shards.values())) == env.settings.shards, "every shard holds some run"
    return shards


def _sent(env) -> list[str]:
    return [json.loads(e["MessageBody"])["task_id"] for e in env.sqs.sent]


def test_a_group_poll_claims_only_the_runs_of_its_shards(env):
    shards = _due_runs(env, 40)
    first = env.dispatcher().poll(shards=[0, 1])
    assert sorted(_sent(env)) == sorted(t for t, s in shards.items() if s in (0, 1))
    assert first.shards == 2 and first.lost_races == 0
    second = env.dispatcher().poll(shards=[2, 3])
    assert sorted(_sent(env)) == sorted(shards)  # the two groups together: every run, once
    assert second.lost_races == 0 and first.claimed + second.claimed == 40


def test_overlapping_group_polls_send_each_run_once(env):
    shards = _due_runs(env, 40)
    env.dispatcher().poll(shards=[0, 1, 2])
    env.dispatcher().poll(shards=[1, 2, 3])  # a duplicated or late invocation overlaps
    sent = _sent(env)
    assert len(sent) == len(set(sent)) == 40 and set(sent) == set(shards)


@pytest.mark.parametrize("bad", [[], [4], [-1], [True]])
def test_a_poll_refuses_shards_outside_the_index(env, bad):
    with pytest.raises(ValidationError) as err:
        env.dispatcher().poll(shards=bad)
    assert err.value.field == "shards"


# --- the template ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    from dynacron.local.provision import find_template, load_template

    return load_template(find_template())


def test_the_template_wires_the_fan_out_off_by_default(tpl):
    param = tpl["Parameters"]["PollerFanout"]
    assert (param["Default"], param["MinValue"], param["MaxValue"]) == (1, 1, 256)
    env = tpl["Globals"]["Function"]["Environment"]["Variables"]
    assert env["DYNACRON_POLLER_FANOUT"] == {"Ref": "PollerFanout"}
    assert Settings.from_env({"DYNACRON_POLLER_FANOUT": "4"}).poller_fanout == 4
    assert tpl["Conditions"]["FanOutPollers"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PollerFanout"}, 1]}]
    }


def test_the_fan_out_grant_is_one_action_on_the_pollers_own_arn_only_when_used(tpl):
    policy = tpl["Resources"]["PollerFanoutPolicy"]
    assert policy["Condition"] == "FanOutPollers"
    props = policy["Properties"]
    assert props["Roles"] == [{"Ref": "PollerFunctionRole"}]
    (statement,) = props["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["lambda:InvokeFunction"]
    assert statement["Resource"] == [{"Fn::GetAtt": ["PollerFunction", "Arn"]}]


def test_late_or_failed_ticks_are_not_retried_by_lambda(tpl):
    config = tpl["Resources"]["PollerFunction"]["Properties"]["EventInvokeConfig"]
    assert config == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}


def test_a_rule_refuses_one_provisioned_poller(tpl):
    (assertion,) = tpl["Rules"]["ProvisionedPollersRange"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MinimumPollers"}, "1"]}]}
    assert "2..200" in assertion["AssertDescription"]


def test_a_group_looks_ahead_when_its_share_of_the_backlog_waits(env):
    """6 runs wait 600 s ahead, all in shards 0-1; the backlog threshold is 8 over 4 shards.
    The whole index holds fewer than 8, but group 0-1 holds more than its share (4)."""
    from dynacron.store import shard_of

    env.settings = replace(env.settings, lookahead_backlog=8)
    quiet = Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock,
                      sqs=env.sqs)
    at = At(env.clock.now() + timedelta(seconds=600))
    ids = [f"ahead{i}" for i in range(200) if shard_of(f"ahead{i}", 4) in (0, 1)][:6]
    assert {shard_of(t, 4) for t in ids} == {0, 1}
    for task_id in ids:
        quiet.schedule("fanout-noop", {}, trigger=at, task_id=task_id)
    assert env.dispatcher().poll().lookahead_s == 90  # 6 < 8: not a burst for the whole index
    assert env.dispatcher().poll(shards=[2, 3]).lookahead_s == 90  # nothing in its shards
    group = env.dispatcher().poll(shards=[0, 1])
    assert group.lookahead_s == 900 and sorted(_sent(env)) == sorted(ids)
