"""The Python SDK: create in one transaction, idempotency, reads, pause/resume/cancel, dispatch."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from dynacron import (
    At,
    Cron,
    DynacronError,
    Every,
    MisfirePolicy,
    RetryPolicy,
    Run,
    RunStatus,
    Task,
    TaskNotFound,
    TaskStatus,
    ValidationError,
)
from dynacron.errors import InvalidStateError
from dynacron.store import shard_of

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)  # the frozen clock's start (conftest)
HOUR = timedelta(hours=1)


def ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


@pytest.fixture(autouse=True)
def _clock_at_t0(env):
    assert env.clock.now() == T0


def record_calls(s) -> list[tuple[str, dict]]:
    """Every DynamoDB call the scheduler's store makes from now on, via botocore event hooks."""
    calls: list[tuple[str, dict]] = []

    def hook(model, params, **_):
        calls.append((model.name, params))

    for model in (s.store.models.Task, s.store.models.Run):
        client = model._get_connection().connection.client
        client.meta.events.register("before-parameter-build.dynamodb", hook)
    return calls


def items(env) -> list[dict]:
    return sorted(env.table_items(), key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def runs_of(env, task_id: str) -> list[dict]:
    return [i for i in items(env) if i["pk"]["S"] == f"T#{task_id}" and i["sk"]["S"] != "TASK"]


def bodies(entries) -> list[dict]:
    return [json.loads(e["MessageBody"]) for e in entries]


# --- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [At(T0 + HOUR), Cron("30 * * * *", tz="Europe/Berlin"), Every(600, start_at=T0 + HOUR)],
    ids=["at", "cron", "every"],
)
def test_schedule_writes_task_and_first_run_in_one_transaction(env, trigger):
    s = env.scheduler()
    calls = record_calls(s)
    t = s.schedule("job", {"k": "v"}, trigger=trigger, task_id="one")

    writes = [(op, p) for op, p in calls if op not in ("GetItem", "Query", "Scan")]
    assert [op for op, _ in writes] == ["TransactWriteItems"]
    tx_items = writes[0][1]["TransactItems"]
    assert sorted(next(iter(i)) for i in tx_items) == ["Put", "Put"]
    keys = sorted((i["Put"]["Item"]["pk"]["S"], i["Put"]["Item"]["sk"]["S"]) for i in tx_items)
    first_ms = ms(t.next_fire_at)
    assert keys == [("T#one", f"RUN#{first_ms:013d}-s"), ("T#one", "TASK")]
    # both conditional on not existing: a create never overwrites
    assert all("attribute_not_exists" in i["Put"]["ConditionExpression"] for i in tx_items)

    stored = items(env)
    assert [(i["pk"]["S"], i["sk"]["S"]) for i in stored] == keys
    run = stored[0]
    assert run["status"]["S"] == "pending"
    assert int(run["due_at"]["N"]) == first_ms
    assert int(run["due_shard"]["N"]) == shard_of("one", env.settings.shards)
    assert env.sqs.sent == []  # not due before the poller's next tick


def test_first_run_is_the_first_fire_at_or_after_now(env):
    s = env.scheduler()
    cron = s.schedule("job", {}, trigger=Cron("0 9 * * MON-FRI", tz="Europe/Berlin"))
    # 2026-03-02 is a Monday, 12:00Z = 13:00 CET: the next 09:00 CET is Tuesday 08:00Z
    assert cron.next_fire_at == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    every = s.schedule("job", {}, trigger=Every(90, start_at=T0 - HOUR))
    assert every.next_fire_at == T0  # start + 40 * 90 s
    assert [r.scheduled_for for r in s.runs(cron.task_id)] == [cron.next_fire_at]


def test_schedule_generates_distinct_task_ids(env):
    s = env.scheduler()
    ids = {s.schedule("job", {}, trigger=At(T0 + HOUR)).task_id for _ in range(3)}
    assert len(ids) == 3
    assert all(s.get(i).status is TaskStatus.ACTIVE for i in ids)


def test_idempotent_create_returns_the_existing_task(env):
    s = env.scheduler()
    kw = dict(trigger=Cron("0 9 * * *", tz="Europe/Berlin"), task_id="daily", timeout=30)
    first = s.schedule("report", {"to": "a@b.c", "n": 1}, **kw, retry=RetryPolicy(5))
    before = items(env)
    env.clock.advance(10)
    calls = record_calls(s)
    # equal arguments, spelled differently: timedelta for seconds, another key order
    again = s.schedule(
        "report",
        {"n": 1, "to": "a@b.c"},
        **{**kw, "timeout": timedelta(seconds=30)},
        retry=RetryPolicy(5, timedelta(seconds=2)),
    )
    assert again == first
    assert items(env) == before  # no second run, the task untouched
    assert not [op for op, _ in calls if op in ("PutItem", "UpdateItem", "DeleteItem")]
    assert len(s.runs("daily")) == 1


def test_idempotent_create_of_every_without_start_at_later(env):
    s = env.scheduler()
    first = s.schedule("job", {}, trigger=Every(3600), task_id="hourly")
    assert first.trigger == Every(3600, start_at=T0)  # anchored at creation
    before = items(env)
    env.clock.advance(30)  # anchoring now would give another start_at: still the same task
    again = s.schedule("job", {}, trigger=Every(3600), task_id="hourly")
    assert again == s.get("hourly")
    assert (again.trigger, again.created_at) == (first.trigger, first.created_at)
    assert items(env) == before


def test_idempotent_create_does_not_dispatch_twice(env):
    s = env.scheduler()
    first = s.schedule("job", {}, trigger=At(T0 + timedelta(seconds=10)), task_id="soon")
    assert len(env.sqs.sent) == 1
    again = s.schedule("job", {}, trigger=At(T0 + timedelta(seconds=10)), task_id="soon")
    assert again == s.get("soon")  # as it is now (its one run went out)
    assert (again.trigger, again.created_at) == (first.trigger, first.created_at)
    assert len(env.sqs.sent) == 1
    assert [r.status for r in s.runs("soon")] == [RunStatus.QUEUED]


@pytest.mark.parametrize(
    "trigger",
    [At(T0 + timedelta(seconds=10)), Cron("* * * * *", end_at=T0 + timedelta(minutes=2))],
    ids=["at", "cron-end_at"],
)
def test_idempotent_create_retried_after_the_trigger_time_passed(env, trigger):
    # a client retrying its create (after a timeout, say) gets its task, not "in the past"
    s = env.scheduler()
    first = s.schedule("job", {}, trigger=trigger, task_id="retried")
    env.clock.advance(timedelta(hours=1))
    before = items(env)
    again = s.schedule("job", {}, trigger=trigger, task_id="retried")
    assert again == s.get("retried") and again.created_at == first.created_at
    assert items(env) == before
    with pytest.raises(ValidationError) as err:  # a new id with that trigger is still refused
        s.schedule("job", {}, trigger=trigger, task_id="fresh")
    assert err.value.field.startswith("trigger.")
    with pytest.raises(ValidationError) as err:  # and other arguments under the old id too
        s.schedule("job", {"x": 1}, trigger=trigger, task_id="retried")
    assert err.value.field.startswith("trigger.")
    assert items(env) == before


@pytest.mark.parametrize(
    "change",
    [
        {"task_type": "other"},
        {"payload": {"to": "x@y.z"}},
        {"payload": {"to": "a@b.c", "n": 1.5}},
        {"trigger": At(T0 + 2 * HOUR)},
        {"trigger": Cron("0 * * * *")},
        {"retry": RetryPolicy(max_attempts=2)},
        {"timeout": 31},
        {"misfire": "skip"},
        {"expire_after": 60},
    ],
    ids=lambda c: next(iter(c)),
)
def test_same_task_id_with_different_arguments_is_refused(env, change):
    s = env.scheduler()
    base = {
        "task_type": "report",
        "payload": {"to": "a@b.c", "n": 1},
        "trigger": At(T0 + HOUR),
        "task_id": "dup",
        "timeout": 30,
    }
    s.schedule(**base)
    before, sent = items(env), list(env.sqs.sent)
    with pytest.raises(ValidationError) as err:
        s.schedule(**{**base, **change})
    assert err.value.field == "task_id"
    assert "'dup' already exists with different arguments" in err.value.message
    assert items(env) == before and env.sqs.sent == sent


# --- read ------------------------------------------------------------------------------------


def test_get_unknown_task_raises_task_not_found_naming_it(env):
    s = env.scheduler()
    s.schedule("job", {}, trigger=At(T0 + HOUR), task_id="known")
    for op in (s.get, s.runs, s.pause, s.resume, s.cancel, s.trigger_now):
        with pytest.raises(TaskNotFound) as err:
            op("no-such-task")
        assert "'no-such-task'" in str(err.value)
        assert err.value.task_id == "no-such-task"
        assert isinstance(err.value, DynacronError) and isinstance(err.value, LookupError)
    with pytest.raises(TaskNotFound):
        s.get("")
    assert s.get("known").task_id == "known"


def test_get_returns_what_was_scheduled(env):
    s = env.scheduler()
    trigger = Cron("*/5 9-17 * * MON-FRI", tz="America/New_York", end_at=T0 + 30 * 24 * HOUR)
    retry = RetryPolicy(max_attempts=7, backoff_base=1.5, backoff_max=60, jitter=0.25)
    t = s.schedule(
        "send-email",
        {"to": "a@b.c", "tags": ["x", "ü"], "n": None},
        trigger=trigger,
        task_id="t-1",
        retry=retry,
        timeout=12.5,
        misfire=MisfirePolicy.SKIP,
        expire_after=timedelta(minutes=5),
    )
    got = s.get("t-1")
    assert got == t
    assert (got.task_type, got.payload, got.trigger, got.retry, got.timeout) == (
        "send-email",
        {"to": "a@b.c", "tags": ["x", "ü"], "n": None},
        trigger,
        retry,
        12.5,
    )
    assert (got.status, got.misfire, got.lane, got.expire_after, got.version) == (
        TaskStatus.ACTIVE,
        MisfirePolicy.SKIP,
        "default",
        300.0,
        1,
    )
    assert got.created_at == got.updated_at == T0


def test_list_filters_by_status_and_type(env):
    s = env.scheduler()
    later = At(T0 + HOUR)
    s.schedule("email", {}, trigger=later, task_id="a")
    s.schedule("sms", {}, trigger=later, task_id="b")
    s.schedule("email", {}, trigger=later, task_id="c")
    s.schedule("email", {}, trigger=later, task_id="d")
    s.pause("b")
    s.cancel("c")
    s.pause("d")

    def ids(**kw):
        return sorted(t.task_id for t in s.list(**kw))

    assert ids() == ["a", "b", "c", "d"]  # tasks only, never their runs
    assert ids(status="paused") == ["b", "d"]
    assert ids(status=TaskStatus.CANCELLED) == ["c"]
    assert ids(task_type="email") == ["a", "c", "d"]
    assert ids(status="paused", task_type="email") == ["d"]
    assert ids(status=TaskStatus.ACTIVE, task_type="sms") == []
    assert ids(task_type="nope") == []
    assert all(isinstance(t, Task) for t in s.list())


def test_runs_newest_first(env):
    s = env.scheduler()
    s.schedule("job", {}, trigger=At(T0 + HOUR), task_id="r")
    manual = []
    for _ in range(3):
        manual.append(s.trigger_now("r").scheduled_for)
        env.clock.advance(1.5)
    runs = s.runs("r")
    assert [r.scheduled_for for r in runs] == [T0 + HOUR, *reversed(manual)]
    assert manual == [T0, T0 + timedelta(seconds=1.5), T0 + timedelta(seconds=3)]
    assert [r.manual for r in runs] == [False, True, True, True]
    assert [r.scheduled_for for r in s.runs("r", limit=2)] == [T0 + HOUR, manual[2]]
    assert all(isinstance(r, Run) and r.task_id == "r" for r in runs)


# --- trigger_now -------------------------------------------------------------------------------


def test_trigger_now_dispatches_a_manual_run_at_once(env):
    s = env.scheduler()
    t = s.schedule("job", {}, trigger=Cron("0 0 1 1 *"), task_id="yearly")
    env.clock.advance(0.25)
    run = s.trigger_now("yearly")
    assert run.manual and run.scheduled_for == T0 + timedelta(seconds=0.25)
    assert run.status is RunStatus.QUEUED and run.fence
    (entry,) = env.sqs.sent
    assert entry["DelaySeconds"] == 0
    assert bodies([entry])[0]["run_id"] == run.run_id and bodies([entry])[0]["fence"] == run.fence
    # the trigger is untouched: its next occurrence is still pending and due
    assert s.get("yearly").next_fire_at == t.next_fire_at
    assert [r.status for r in s.runs("yearly")] == [RunStatus.PENDING, RunStatus.QUEUED]


def test_trigger_now_works_for_a_paused_task(env):
    s = env.scheduler()
    s.schedule("job", {}, trigger=At(T0 + HOUR), task_id="p")
    s.pause("p")
    run = s.trigger_now("p")
    assert run.status is RunStatus.QUEUED and run.manual
    assert [b["run_id"] for b in bodies(env.sqs.sent)] == [run.run_id]
    assert s.get("p").status is TaskStatus.PAUSED


def test_trigger_now_is_refused_for_a_cancelled_task(env):
    s = env.scheduler()
    s.schedule("job", {}, trigger=At(T0 + HOUR), task_id="c")
    s.cancel("c")
    before = items(env)
    with pytest.raises(InvalidStateError, match="cancelled"):
        s.trigger_now("c")
    assert items(env) == before and env.sqs.sent == []


# --- pause / resume / cancel -------------------------------------------------------------------


def test_pause_takes_the_pending_run_out_of_the_due_index(env):
    s = env.scheduler()
    t = s.schedule("job", {}, trigger=Cron("30 * * * *"), task_id="p")
    assert t.next_fire_at == T0 + timedelta(minutes=30)
    paused = s.pause("p")
    assert paused.status is TaskStatus.PAUSED and paused.version == t.version + 1
    (run,) = runs_of(env, "p")
    assert run["status"]["S"] == "pending"
    assert "due_at" not in run and "due_shard" not in run
    assert s.pause("p") == paused  # pausing again changes nothing

    d = env.dispatcher()
    env.clock.advance(timedelta(minutes=29, seconds=30))  # 30 s before the fire
    assert d.poll().found == 0
    env.clock.advance(timedelta(minutes=2))  # and after it
    assert d.poll().found == 0
    assert env.sqs.sent == []
    assert [r.status for r in s.runs("p")] == [RunStatus.PENDING]


def test_resume_after_missed_fires_continues_at_the_next_future_fire(env):
    s = env.scheduler()
    s.schedule("job", {}, trigger=Cron("30 * * * *"), task_id="h")  # first fire 12:30
    s.pause("h")
    env.clock.advance(5 * HOUR + timedelta(minutes=10))  # 17:10: five fires missed
    resumed = s.resume("h")
    nxt = datetime(2026, 3, 2, 17, 30, tzinfo=UTC)
    assert resumed.status is TaskStatus.ACTIVE and resumed.next_fire_at == nxt

    runs = s.runs("h")
    assert [(r.scheduled_for, r.status) for r in runs] == [
        (nxt, RunStatus.PENDING),
        (T0 + timedelta(minutes=30), RunStatus.SKIPPED),  # the stale head, not replayed
    ]
    head, stale = runs_of(env, "h")[1], runs_of(env, "h")[0]
    assert int(head["due_at"]["N"]) == ms(nxt)
    assert int(head["due_shard"]["N"]) == shard_of("h", env.settings.shards)
    assert "due_at" not in stale

    d = env.dispatcher()
    assert d.poll().found == 0 and env.sqs.sent == []  # 20 min out: not yet
    env.clock.advance(timedelta(minutes=19))  # 17:29
    d.poll()
    assert [
        (b["scheduled_for"], e["DelaySeconds"])
        for b, e in zip(bodies(env.sqs.sent), env.sqs.sent, strict=True)
    ] == [(ms(nxt), 59)]


def test_resume_before_the_next_fire_keeps_the_same_run(env):
    s = env.scheduler()
    t = s.schedule("job", {}, trigger=Cron("30 * * * *"), task_id="h")
    s.pause("h")
    env.clock.advance(timedelta(minutes=10))
    assert s.resume("h").next_fire_at == t.next_fire_at
    (run,) = runs_of(env, "h")
    assert run["status"]["S"] == "pending" and int(run["due_at"]["N"]) == ms(t.next_fire_at)
    assert s.resume("h").status is TaskStatus.ACTIVE  # resuming again changes nothing
    assert len(s.runs("h")) == 1


def test_resume_right_before_a_fire_dispatches_it_at_once(env):
    s = env.scheduler()
    s.schedule("job", {}, trigger=Cron("0 * * * *"), task_id="h")  # first fire 12:00 = now
    assert len(env.sqs.sent) == 1  # dispatched at creation
    s.pause("h")
    env.clock.advance(3 * HOUR - timedelta(seconds=10))  # 14:59:50
    s.resume("h")
    assert [
        (b["scheduled_for"], e["DelaySeconds"])
        for b, e in zip(bodies(env.sqs.sent[1:]), env.sqs.sent[1:], strict=True)
    ] == [(ms(T0 + 3 * HOUR), 9)]


def test_resume_and_pause_are_refused_in_the_wrong_state(env):
    s = env.scheduler()
    s.schedule("job", {}, trigger=Cron("30 * * * *"), task_id="x")
    s.cancel("x")
    for op in (s.pause, s.resume):
        with pytest.raises(InvalidStateError):
            op("x")
    assert s.cancel("x").status is TaskStatus.CANCELLED  # cancelling again is a no-op


@pytest.mark.parametrize("paused_first", [False, True])
def test_cancel_leaves_nothing_due(env, paused_first):
    s = env.scheduler()
    s.schedule("job", {}, trigger=Every(10), task_id="e")  # dispatches the next 90 s at once
    s.schedule("job", {}, trigger=At(T0 + HOUR), task_id="other")
    s.trigger_now("e")
    sent = len(env.sqs.sent)
    assert sent == 11
    if paused_first:
        s.pause("e")
    cancelled = s.cancel("e")
    assert cancelled.status is TaskStatus.CANCELLED and cancelled.next_fire_at is None

    runs = runs_of(env, "e")
    assert len(runs) == sent + 1  # every queued run and the pending one
    assert [r for r in runs if "due_at" in r or "due_shard" in r] == []
    assert {r["status"]["S"] for r in runs} == {"skipped"}
    assert [r for r in runs_of(env, "other") if "due_at" in r]  # other tasks untouched

    d = env.dispatcher()
    for _ in range(3):
        env.clock.advance(timedelta(minutes=10))
        d.poll()
    assert [b["task_id"] for b in bodies(env.sqs.sent[sent:])] == []
    assert s.get("other").status is TaskStatus.ACTIVE


# --- dispatch at short notice --------------------------------------------------------------------


def test_at_ten_seconds_out_is_sent_at_once(env):
    s = env.scheduler()
    t = s.schedule("job", {"a": 1}, trigger=At(T0 + timedelta(seconds=10)), task_id="soon")
    (entry,) = env.sqs.sent
    assert entry["DelaySeconds"] == 9
    assert entry["QueueUrl"] == env.settings.queue_url
    body = json.loads(entry["MessageBody"])
    assert (body["task_id"], body["scheduled_for"]) == ("soon", ms(T0) + 10_000)
    assert "payload" not in body and "a" not in body  # a pointer, never the payload
    assert [r.status for r in s.runs(t.task_id)] == [RunStatus.QUEUED]
    assert env.dispatcher().poll().sent == 0  # claimed already: the poller leaves it


def test_on_event_hears_the_short_notice_dispatches_and_nothing_else(env):
    events = []
    s = env.scheduler(on_event=lambda kind, info: events.append((kind, info["task_id"])))
    s.schedule("job", {}, trigger=At(T0 + timedelta(seconds=10)), task_id="soon")
    s.schedule("job", {}, trigger=At(T0 + timedelta(minutes=10)), task_id="later")  # the poller's
    assert events == [("claimed", "soon"), ("sent", "soon")]


def test_at_ten_minutes_out_waits_for_a_poll_within_the_window(env):
    s = env.scheduler()
    s.schedule("job", {}, trigger=At(T0 + timedelta(minutes=10)), task_id="later")
    assert env.sqs.sent == []
    d = env.dispatcher()
    assert d.poll().sent == 0
    env.clock.advance(timedelta(minutes=8))  # 120 s out: beyond the 90 s window
    assert d.poll().sent == 0 and env.sqs.sent == []
    env.clock.advance(timedelta(seconds=40))  # 80 s out
    assert d.poll().sent == 1
    (entry,) = env.sqs.sent
    assert entry["DelaySeconds"] == 79
    assert d.poll().sent == 0  # sent once


def test_every_two_seconds_sends_every_occurrence_in_the_window(env):
    s = env.scheduler()
    t = s.schedule("job", {}, trigger=Every(2), task_id="e")
    window = env.settings.window_s
    expected = [ms(T0) + 2000 * k for k in range(int(window // 2) + 1)]
    got = bodies(env.sqs.sent)
    assert [b["scheduled_for"] for b in got] == expected
    assert len({b["run_id"] for b in got}) == len(expected)
    delays = [e["DelaySeconds"] for e in env.sqs.sent]
    assert delays == [max(0, math.ceil((x - ms(T0)) / 1000 - 1)) for x in expected]
    assert all(a < b for a, b in itertools.pairwise(delays))
    after = ms(T0) + 2000 * (len(expected))
    assert ms(s.get(t.task_id).next_fire_at) == after  # the first one beyond the window
    runs = s.runs(t.task_id)
    assert runs[0].status is RunStatus.PENDING and ms(runs[0].scheduled_for) == after
    assert {r.status for r in runs[1:]} == {RunStatus.QUEUED}


# --- the values ----------------------------------------------------------------------------------


def test_task_and_run_are_frozen_dataclasses(env):
    s = env.scheduler()
    t = s.schedule("job", {}, trigger=At(T0 + timedelta(seconds=5)), task_id="f")
    (r,) = s.runs("f")
    for value, name in ((t, "status"), (t, "payload"), (r, "status"), (r, "attempt")):
        assert dataclasses.is_dataclass(value)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, None)
    fields = {f.name for f in dataclasses.fields(Task)}
    assert {
        "task_id",
        "task_type",
        "payload",
        "trigger",
        "retry",
        "timeout",
        "status",
        "next_fire_at",
        "created_at",
        "updated_at",
        "version",
    } <= fields
    fields = {f.name for f in dataclasses.fields(Run)}
    assert {
        "run_id",
        "scheduled_for",
        "status",
        "attempt",
        "fence",
        "started_at",
        "finished_at",
        "error",
        "result",
    } <= fields


def test_durations_accept_timedelta(env):
    s = env.scheduler()
    retry = RetryPolicy(backoff_base=timedelta(milliseconds=500), backoff_max=timedelta(minutes=2))
    assert (retry.backoff_base, retry.backoff_max) == (0.5, 120.0)
    assert retry == RetryPolicy(backoff_base=0.5, backoff_max=120)
    t = s.schedule(
        "job",
        {},
        trigger=Every(timedelta(minutes=5), start_at=T0 + HOUR),
        timeout=timedelta(seconds=90),
        retry=retry,
        expire_after=timedelta(hours=1),
    )
    got = s.get(t.task_id)
    assert got.timeout == 90.0 and got.expire_after == 3600.0
    assert got.trigger.interval == 300 and got.trigger == Every(300, start_at=T0 + HOUR)
    assert got.retry == retry
    assert s.schedule("job", {}, trigger=At(T0 + HOUR), timeout=2.5).timeout == 2.5


def test_statuses_are_str_enums_with_lowercase_values(env):
    assert [m.value for m in TaskStatus] == ["active", "paused", "cancelled", "completed"]
    assert {m.value for m in RunStatus} == {
        "pending",
        "queued",
        "running",
        "retrying",
        "succeeded",
        "dead",
        "expired",
        "skipped",
    }
    for member in [*TaskStatus, *RunStatus]:
        assert isinstance(member, str)
        assert member == member.name.lower() == member.value
        assert str(member) == member.value and f"{member}" == member.value
    assert TaskStatus("paused") is TaskStatus.PAUSED and RunStatus("dead") is RunStatus.DEAD
    s = env.scheduler()
    t = s.schedule("job", {}, trigger=At(T0 + HOUR))
    assert type(t.status) is TaskStatus and t.status == "active"
    assert json.dumps({"s": t.status}) == '{"s": "active"}'
    assert type(s.runs(t.task_id)[0].status) is RunStatus


# --- items_for: schedule()'s items for a bulk load ------------------------------------------


def test_items_for_gives_what_schedule_writes_and_loaded_items_fire(env):
    """The items ``items_for`` returns are the ones ``schedule`` writes (same task and run,
    but for the timestamps' source); loaded with BatchWriteItem, the task reads back and its
    run is claimed by the poller at its time."""
    s = env.scheduler()
    when = T0 + HOUR
    s.schedule("noop", {"n": 1}, trigger=At(when), task_id="by-sdk", timeout=30)
    written = {i["sk"]["S"]: i for i in items(env) if i["pk"]["S"].endswith("by-sdk")}
    loaded = s.items_for("noop", {"n": 1}, At(when), task_id="by-load", timeout=30)
    assert sorted(i["sk"]["S"] for i in loaded) == sorted(written)

    def same(item: dict) -> dict:  # what does not derive from the task id
        return {k: v for k, v in item.items() if k not in ("pk", "task_id", "shard", "due_shard")}

    shard = str(shard_of("by-load", env.settings.shards))
    for item in loaded:
        assert same(item) == same(written[item["sk"]["S"]])
        assert item.get("shard", item.get("due_shard"))["N"] == shard
    env.dynamodb.batch_write_item(RequestItems={
        env.settings.table_name: [{"PutRequest": {"Item": it}} for it in loaded]})
    assert s.get("by-load").next_fire_at == when
    env.clock.set(when - timedelta(seconds=5))
    env.dispatcher().poll()
    assert {m["Body"] for m in env.receive() if "by-load" in m["Body"]}


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"task_type": "bad name!"}, "task_type"), ({"payload": [1]}, "payload"),
    ({"timeout": -1}, "timeout"), ({"lane": "no-such-lane"}, "lane"),
    ({"trigger": At(T0 - HOUR)}, "trigger.when"),
])
def test_items_for_refuses_what_schedule_refuses(env, kwargs, field):
    args = {"task_type": "noop", "payload": {}, "trigger": At(T0 + HOUR), **kwargs}
    with pytest.raises(ValidationError) as info:
        env.scheduler().items_for(**args)
    assert info.value.field == field
    with pytest.raises(ValidationError) as by_schedule:
        env.scheduler().schedule(**args)
    assert by_schedule.value.field == field
