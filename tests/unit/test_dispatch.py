"""The poller's claim-and-send path (dispatch.py) on in-process moto with a frozen clock."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from itertools import pairwise

import pytest

from dynacron import At, Cron, Every, MisfirePolicy, RunStatus, Scheduler, handler
from dynacron.dispatch import Message, delay_seconds
from dynacron.types import CATCH_UP_LIMIT


@handler("noop")
def _noop(payload, ctx):
    return None


def quiet_scheduler(env):
    """A scheduler without a queue: tasks wait for the poller (no short-notice dispatch)."""
    return Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs)


def bodies(env):
    return [json.loads(e["MessageBody"]) for e in env.sqs.sent]


def run_items(env, task_id):
    return [
        i for i in env.table_items() if i["pk"]["S"] == f"T#{task_id}" and i["sk"]["S"] != "TASK"
    ]


@pytest.mark.parametrize(
    ("scheduled_in", "expected"),
    [(0.0, 0), (0.9, 0), (1.0, 0), (1.5, 1), (2.0, 1), (30.3, 30), (-5, 0), (5000, 900)],
)
def test_delay_makes_message_visible_at_most_one_second_early(scheduled_in, expected):
    now_ms = 1_000_000
    delay = delay_seconds(now_ms + int(scheduled_in * 1000), now_ms)
    assert delay == expected
    if 0 < scheduled_in <= 900:
        early = scheduled_in - delay
        assert 0 <= early <= 1.0


def test_poll_claims_due_run_and_sends_it_with_its_delay(env):
    s = quiet_scheduler(env)
    t = s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=45)))
    report = env.dispatcher().poll()
    assert (report.claimed, report.sent) == (1, 1)
    (entry,) = env.sqs.sent
    assert entry["DelaySeconds"] == 44
    msg = Message.parse(entry["MessageBody"])
    (run,) = s.runs(t.task_id)
    assert run.status is RunStatus.QUEUED
    assert msg.fence == run.fence and msg.run_id == run.run_id
    assert "payload" not in entry["MessageBody"]


def test_run_beyond_the_window_waits_for_a_later_tick(env):
    s = quiet_scheduler(env)
    s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=200)))
    assert env.dispatcher().poll().sent == 0
    env.clock.advance(120)
    assert env.dispatcher().poll().sent == 1


def test_claimed_run_is_not_resent_until_its_lease_expires_then_gets_a_new_fence(env):
    s = quiet_scheduler(env)
    t = s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=10)))
    d = env.dispatcher()
    assert d.poll().sent == 1
    assert d.poll().sent == 0  # lease still running: the same run is not sent twice
    env.clock.advance(10 + env.settings.lease_s + 1)
    report = d.poll()
    assert report.sent == 1
    first, second = (Message.parse(e["MessageBody"]) for e in env.sqs.sent)
    assert first.run_id == second.run_id and first.fence != second.fence
    assert s.runs(t.task_id)[0].dispatches == 2


def test_run_dispatched_too_often_goes_dead_with_a_dlq_message(env):
    env.settings = replace(env.settings, max_dispatches=2)
    s = quiet_scheduler(env)
    t = s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=5)))
    d = env.dispatcher()
    for _ in range(3):
        d.poll()
        env.clock.advance(env.settings.lease_s + 10)
    (run,) = s.runs(t.task_id)
    assert run.status is RunStatus.DEAD and "dispatched 2 times" in run.error
    (dlq,) = env.receive("dlq")
    body = json.loads(dlq["Body"])
    assert body["task_id"] == t.task_id and "dispatched 2 times" in body["reason"]


def test_recurring_claim_creates_next_occurrence_exactly_once(env):
    s = quiet_scheduler(env)
    env.clock.advance(30)
    t = s.schedule("noop", {}, trigger=Cron("*/5 * * * *"))
    env.clock.advance(210)  # 12:04: the first fire, 12:05, is inside the window now
    racer = env.dispatcher()
    # The racer read the index before the winner claimed: its view is stale.
    stale = [
        r
        for shard in range(env.settings.shards)
        for r in racer.store.due_page(shard, 10**13, None)[0]
    ]
    assert len(stale) == 1
    assert env.dispatcher().poll().sent == 1
    report = racer.dispatch(stale)
    assert (report.sent, report.lost_races) == (0, 1)
    runs = s.runs(t.task_id)
    assert [r.status for r in runs] == [RunStatus.PENDING, RunStatus.QUEUED]
    assert runs[0].scheduled_for - runs[1].scheduled_for == timedelta(minutes=5)
    assert s.get(t.task_id).next_fire_at == runs[0].scheduled_for
    assert len(env.sqs.sent) == 1


def test_short_interval_sends_every_occurrence_inside_the_window(env):
    s = quiet_scheduler(env)
    t = s.schedule("noop", {}, trigger=Every(10))
    report = env.dispatcher().poll()
    window = env.settings.window_s
    assert report.sent == int(window // 10) + 1
    delays = [e["DelaySeconds"] for e in env.sqs.sent]
    assert delays == sorted(delays) and len(set(delays)) == len(delays)
    times = sorted(b["scheduled_for"] for b in bodies(env))
    assert all(b - a == 10_000 for a, b in pairwise(times))
    pending = [r for r in s.runs(t.task_id) if r.status is RunStatus.PENDING]
    assert len(pending) == 1  # the chain head beyond the window waits for the next tick


def test_every_page_of_every_shard_is_followed(env):
    s = quiet_scheduler(env)
    for i in range(60):
        s.schedule(
            "noop", {}, trigger=At(env.clock.now() + timedelta(seconds=5 + i % 30)), task_id=f"t{i}"
        )
    report = env.dispatcher(page_size=7).poll()
    assert report.found == 60 and report.sent == 60
    assert report.pages >= 60 // 7 + env.settings.shards - 1
    assert {b["task_id"] for b in bodies(env)} == {f"t{i}" for i in range(60)}


def _failing_sends(env, fails):
    """Make SendMessageBatch fail the entries of the task ids ``fails(task_id)`` names, as SQS
    does inside a successful call (``SenderFault`` false: its own side)."""
    real = env.sqs.send_message_batch

    def send(QueueUrl, Entries):
        bad = [e for e in Entries if fails(json.loads(e["MessageBody"])["task_id"])]
        good = [e for e in Entries if e not in bad]
        response = real(QueueUrl=QueueUrl, Entries=good) if good else {"Successful": []}
        failed = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in bad]
        return {"Successful": response["Successful"], "Failed": failed}

    env.sqs.send_message_batch = send
    return real


def _schedule_four(env):
    s = quiet_scheduler(env)
    for i in range(4):
        s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=5)), task_id=f"p{i}")
    return s


def test_entries_sqs_fails_on_its_side_are_sent_again_in_the_same_poll(env):
    _schedule_four(env)
    tries: dict[str, int] = {}

    def once(task_id):  # p2 and p3 fail on their first send only
        tries[task_id] = tries.get(task_id, 0) + 1
        return task_id in ("p2", "p3") and tries[task_id] == 1

    _failing_sends(env, once)
    report = env.dispatcher().poll()
    assert (report.claimed, report.sent, report.send_failed, report.released) == (4, 4, 0, 0)
    assert sorted(b["task_id"] for b in bodies(env)) == ["p0", "p1", "p2", "p3"]
    assert tries == {"p0": 1, "p1": 1, "p2": 2, "p3": 2}


def test_a_run_sqs_keeps_failing_is_due_again_at_once_not_after_its_lease(env):
    s = _schedule_four(env)
    real = _failing_sends(env, lambda task_id: task_id in ("p2", "p3"))
    report = env.dispatcher().poll()
    assert (report.claimed, report.sent, report.send_failed, report.released) == (4, 2, 2, 2)
    env.sqs.send_message_batch = real
    env.sqs.sent.clear()
    env.clock.advance(1)  # the next tick, not a lease (300 s) later
    report = env.dispatcher().poll()
    assert report.sent == 2 and sorted(b["task_id"] for b in bodies(env)) == ["p2", "p3"]
    env.clock.advance(5)
    for m in env.receive():
        assert env.executor().execute(m["Body"], m["ReceiptHandle"]).status == "succeeded"
    assert [r.status for i in range(4) for r in s.runs(f"p{i}")] == [RunStatus.SUCCEEDED] * 4


def test_a_run_sqs_always_refuses_ends_dead_after_max_dispatches(env):
    s = _schedule_four(env)
    _failing_sends(env, lambda task_id: task_id == "p1")
    for _ in range(env.settings.max_dispatches + 1):
        env.dispatcher().poll()
        env.clock.advance(1)
    (run,) = s.runs("p1")
    assert run.status is RunStatus.DEAD
    assert f"dispatched {env.settings.max_dispatches} times" in run.error


def test_a_refused_send_releases_its_runs(env):
    _schedule_four(env)
    real = env.sqs.send_message_batch

    def refuse(**_):
        raise RuntimeError("connection reset")

    env.sqs.send_message_batch = refuse
    report = env.dispatcher().poll()
    assert (report.sent, report.send_failed, report.released) == (0, 4, 4)
    env.sqs.send_message_batch = real
    env.clock.advance(1)
    assert env.dispatcher().poll().sent == 4


def _lose_first_response(dispatcher, operation):
    """The dispatcher's first ``operation`` call is applied by the server but its response is
    lost: the client retries it (as botocore does after a read timeout). Returns the count."""
    client = dispatcher.store.models.Run._get_connection().connection.client
    calls = {"n": 0}

    def retry_first(attempts, **_):
        calls["n"] += 1
        return 0 if attempts == 1 and calls["n"] == 1 else None

    client.meta.events.register(f"needs-retry.dynamodb.{operation}", retry_first)
    return calls


@pytest.mark.parametrize(
    ("trigger", "operation"), [("at", "UpdateItem"), ("every", "TransactWriteItems")]
)
def test_a_claim_whose_response_was_lost_is_sent_all_the_same(env, trigger, operation):
    s = quiet_scheduler(env)
    when = At(env.clock.now() + timedelta(seconds=5))
    if trigger == "every":
        when = Every(3600, start_at=env.clock.now() + timedelta(seconds=5))
    t = s.schedule("noop", {}, trigger=when)
    dispatcher = env.dispatcher()
    calls = _lose_first_response(dispatcher, operation)
    report = dispatcher.poll()
    assert calls["n"] >= 2  # the write was sent twice: the retry found it already applied
    assert (report.claimed, report.sent, report.lost_races) == (1, 1, 0)
    (body,) = bodies(env)
    queued = [r for r in s.runs(t.task_id) if r.status is RunStatus.QUEUED]
    assert [r.fence for r in queued] == [body["fence"]]


def test_poller_stops_taking_work_when_time_runs_low(env):
    s = quiet_scheduler(env)
    for i in range(25):
        s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=5)), task_id=f"r{i}")
    report = env.dispatcher().poll(time_left=lambda: 1.0)
    assert report.sent == 0 and report.left == 25
    assert all(r.status is RunStatus.PENDING for i in range(25) for r in s.runs(f"r{i}"))


def _down_for_an_hour(env, misfire):
    s = quiet_scheduler(env)
    env.clock.advance(30)
    t = s.schedule("noop", {}, trigger=Cron("*/10 * * * *"), misfire=misfire)
    env.clock.advance(
        timedelta(hours=1, minutes=1)
    )  # 12:00:30 → 13:01:30; fires 12:10 … 13:00 missed
    env.dispatcher().poll()
    return s, t


def test_misfire_run_once_runs_one_catch_up_then_continues_on_schedule(env):
    s, t = _down_for_an_hour(env, MisfirePolicy.RUN_ONCE)
    runs = s.runs(t.task_id)
    assert [(r.status, r.scheduled_for.strftime("%H:%M")) for r in runs] == [
        (RunStatus.PENDING, "13:10"),
        (RunStatus.QUEUED, "12:10"),
    ]
    assert env.sqs.sent[0]["DelaySeconds"] == 0


def test_misfire_skip_records_the_miss_and_continues_at_the_next_future_fire(env):
    s, t = _down_for_an_hour(env, MisfirePolicy.SKIP)
    runs = s.runs(t.task_id)
    assert [(r.status, r.scheduled_for.strftime("%H:%M")) for r in runs] == [
        (RunStatus.PENDING, "13:10"),
        (RunStatus.SKIPPED, "12:10"),
    ]
    assert env.sqs.sent == []


def test_misfire_catch_up_runs_every_missed_occurrence(env):
    s, t = _down_for_an_hour(env, MisfirePolicy.CATCH_UP)
    runs = s.runs(t.task_id)
    queued = sorted(r.scheduled_for.strftime("%H:%M") for r in runs if r.status is RunStatus.QUEUED)
    assert queued == ["12:10", "12:20", "12:30", "12:40", "12:50", "13:00"]
    assert [r.status for r in runs if r.status is RunStatus.PENDING] == [RunStatus.PENDING]
    assert len(env.sqs.sent) == 6


def test_catch_up_is_bounded_by_its_limit(env):
    s = quiet_scheduler(env)
    t = s.schedule("noop", {}, trigger=Every(60), misfire="catch_up")
    env.clock.advance(timedelta(hours=5))  # 300 missed occurrences
    env.dispatcher().poll()
    runs = s.runs(t.task_id)
    queued = [
        r for r in runs if r.status is RunStatus.QUEUED and r.scheduled_for <= env.clock.now()
    ]
    skipped = [r for r in runs if r.status is RunStatus.SKIPPED]
    assert len(queued) == CATCH_UP_LIMIT
    assert len(skipped) == 1 and "catch_up limit" in skipped[0].error
    assert max(r.scheduled_for for r in queued) <= env.clock.now()


def test_paused_task_head_is_not_claimed(env):
    s = quiet_scheduler(env)
    t = s.schedule("noop", {}, trigger=Every(30))
    s.pause(t.task_id)
    assert env.dispatcher().poll().sent == 0


def test_one_time_task_completes_when_its_run_finishes(env):
    s = quiet_scheduler(env)
    t = s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=3)))
    env.dispatcher().poll()
    task = s.get(t.task_id)
    # claimed, not yet run: the claim (one UpdateItem of the run) leaves the task as it was
    assert task.status.value == "active" and task.next_fire_at == t.next_fire_at
    env.clock.advance(3)
    (msg,) = env.receive()
    assert env.executor().execute(msg["Body"], msg["ReceiptHandle"]).status == "succeeded"
    done = s.get(t.task_id)
    assert done.status.value == "completed" and done.next_fire_at is None


def test_end_at_stops_the_chain(env):
    s = quiet_scheduler(env)
    t = s.schedule("noop", {}, trigger=Every(20, end_at=env.clock.now() + timedelta(seconds=50)))
    env.dispatcher().poll()
    assert len(env.sqs.sent) == 3  # +0, +20, +40
    # the last occurrence is claimed alone: the task points at it until it ends
    assert s.get(t.task_id).next_fire_at == t.next_fire_at + timedelta(seconds=40)
    assert len(run_items(env, t.task_id)) == 3
