"""Scheduler.update and Scheduler.delete: atomic replacement of the pending run, no occurrence
lost or doubled under a racing poller, validation as schedule(), ids freed by delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import dynacron.testing
from dynacron import At, Every, RetryPolicy, handler
from dynacron.errors import InvalidStateError, TaskNotFound, ValidationError

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
seen: list[tuple[str, dict, datetime]] = []


@handler("ed-job")
def _job(payload: dict, ctx) -> None:
    seen.append((ctx.task_id, payload, ctx.scheduled_for))


@pytest.fixture
def env():
    seen.clear()
    # a short look-ahead (claims 10 s ahead, short notice 5 s ahead) keeps the heads pending
    with dynacron.testing.local(start=T0, window_s=10, period_s=5) as e:
        yield e


def _fired(task_id: str) -> list[datetime]:
    return [when for t, _, when in seen if t == task_id]


def test_update_payload_applies_to_the_next_run_and_keeps_the_schedule(env):
    s = env.scheduler
    t = s.schedule("ed-job", {"n": 1}, trigger=Every(60), task_id="a")
    env.advance(1)
    updated = s.update("a", payload={"n": 2})
    assert updated.payload == {"n": 2} and updated.version > t.version
    assert updated.next_fire_at == t.next_fire_at + timedelta(seconds=60)
    env.advance(60)
    assert [p for _, p, _ in seen] == [{"n": 1}, {"n": 2}]


def test_update_trigger_replaces_the_pending_run_and_fires_from_now(env):
    s = env.scheduler
    s.schedule("ed-job", {}, trigger=Every(3600), task_id="a")
    env.advance(1)  # the occurrence at T0 ran; the next is at T0 + 1 h
    s.update("a", trigger=Every(10, start_at=T0))
    env.advance(30)
    assert _fired("a") == [T0 + timedelta(seconds=k) for k in (0, 10, 20, 30)]
    scheduled = [r.scheduled_for for r in s.runs("a")]
    assert len(scheduled) == len(set(scheduled))  # every instant once
    assert T0 + timedelta(hours=1) not in scheduled  # the old head was replaced, not left


def test_an_instant_that_already_has_a_run_is_not_run_again(env):
    s = env.scheduler
    s.schedule("ed-job", {}, trigger=Every(60, start_at=T0 + timedelta(seconds=5)), task_id="a")
    # T0+5 was claimed at once (short notice); the head is T0+65. The new trigger's first fire
    # at/after now is T0+5 again: that occurrence exists, so the new head is T0+35.
    s.update("a", trigger=Every(30, start_at=T0 + timedelta(seconds=5)))
    env.advance(70)
    assert _fired("a") == [T0 + timedelta(seconds=k) for k in (5, 35, 65)]


def test_a_poller_claiming_the_head_during_the_update_loses_nothing_and_doubles_nothing(env):
    s = env.scheduler
    s.schedule("ed-job", {}, trigger=Every(60, start_at=T0 + timedelta(seconds=30)), task_id="a")
    real = s.store.transaction
    raced = []

    def transaction():
        if not raced:  # between the update's read and its write, the poller claims the head
            raced.append(env.dispatcher.poll())
        return real()

    env.clock.advance(25)  # the head (T0+30) is inside the poller's look-ahead now
    s.store.transaction = transaction
    s.update("a", trigger=Every(45, start_at=T0 + timedelta(seconds=30)))
    s.store.transaction = real
    assert raced[0].claimed == 1
    env.advance(200)
    # the claimed head (T0+30) runs once; the chained old-trigger head (T0+90) was replaced
    assert _fired("a") == [T0 + timedelta(seconds=k) for k in (30, 75, 120, 165, 210)]


def test_a_claim_from_a_stale_read_cannot_chain_with_the_old_trigger(env):
    s = env.scheduler
    s.schedule("ed-job", {}, trigger=Every(60, start_at=T0 + timedelta(seconds=30)), task_id="a")
    task = s.get("a")
    stale = s.store.get_run_row("a", s.runs("a")[0].run_id)  # what a poller read
    s.update("a", retry=RetryPolicy(max_attempts=4))  # same instant, new attempts: in place
    report = env.dispatcher.dispatch([stale])
    assert (report.claimed, report.lost_races) == (0, 1)
    assert s.get("a").next_fire_at == task.next_fire_at
    env.advance(40)
    [run] = [r for r in s.runs("a") if r.status == "succeeded"]
    assert run.max_attempts == 4


def test_update_validates_like_schedule_and_writes_nothing_when_refused(env):
    s = env.scheduler
    s.schedule("ed-job", {}, trigger=Every(60), task_id="a")
    t = s.get("a")
    bad = [
        ({"payload": [1]}, "payload"),
        ({"timeout": 10_000}, "timeout"),
        ({"misfire": "sometimes"}, "misfire"),
        ({"trigger": At(T0 - timedelta(hours=1))}, "trigger.when"),
        ({"retry": "often"}, "retry"),
    ]
    for kwargs, field in bad:
        with pytest.raises(ValidationError) as info:
            s.update("a", **kwargs)
        assert info.value.field == field
    assert s.get("a") == t
    with pytest.raises(TaskNotFound):
        s.update("nope", payload={})


def test_update_keeps_the_target_and_checks_its_reserved_key(env):
    from dynacron.targets import Lambda

    s = env.scheduler
    s.schedule(Lambda("arn:aws:lambda:us-east-1:123456789012:function:f"), {"a": 1},
               trigger=Every(60), task_id="t")  # fmt: skip
    with pytest.raises(ValidationError, match="reserved"):
        s.update("t", payload={"dynacron": 1})
    updated = s.update("t", payload={"a": 2})
    assert updated.target == Lambda("arn:aws:lambda:us-east-1:123456789012:function:f")
    assert updated.task_type == "target:lambda" and updated.payload == {"a": 2}


def test_a_paused_task_updated_waits_for_resume_on_its_new_trigger(env):
    s = env.scheduler
    s.schedule("ed-job", {}, trigger=Every(60, start_at=T0 + timedelta(seconds=10)), task_id="a")
    s.pause("a")
    s.update("a", trigger=Every(20, start_at=T0 + timedelta(seconds=10)))
    env.advance(45)
    assert _fired("a") == []
    s.resume("a")
    env.advance(20)
    assert _fired("a") == [T0 + timedelta(seconds=50)]  # the next new-trigger fire after now


def test_a_completed_task_given_a_new_trigger_runs_again(env):
    s = env.scheduler
    s.schedule("ed-job", {}, trigger=At(T0 + timedelta(seconds=5)), task_id="a")
    env.advance(10)
    assert s.get("a").status == "completed"
    task = s.update("a", trigger=At(T0 + timedelta(seconds=30)))
    assert task.status == "active"
    env.advance(30)
    assert _fired("a") == [T0 + timedelta(seconds=5), T0 + timedelta(seconds=30)]


def test_a_cancelled_id_says_so_and_delete_frees_it(env):
    s = env.scheduler
    s.schedule("ed-job", {"v": 1}, trigger=Every(60), task_id="a")
    env.advance(61)
    s.cancel("a")
    for again in (
        lambda: s.schedule("ed-job", {"v": 1}, trigger=Every(60), task_id="a"),
        lambda: s.schedule("ed-job", {"v": 2}, trigger=Every(60), task_id="a"),
        lambda: s.update("a", payload={"v": 3}),
    ):
        with pytest.raises(InvalidStateError, match=r"cancelled: delete it .*dynacron delete a"):
            again()
    assert len(s.runs("a")) == 3  # two done, one skipped by the cancel
    assert s.delete("a") == 3
    with pytest.raises(TaskNotFound):
        s.get("a")
    assert list(s.store.query_runs("a")) == []
    t = s.schedule("ed-job", {"v": 2}, trigger=At(T0 + timedelta(seconds=90)), task_id="a")
    assert t.status == "active" and [r.run_id for r in s.runs("a")] == [
        f"{int((T0 + timedelta(seconds=90)).timestamp() * 1000):013d}-s"
    ]
    env.advance(60)
    assert [p for t_, p, _ in seen if t_ == "a"][-1] == {"v": 2}


def test_delete_of_an_active_task_leaves_nothing_due(env):
    s = env.scheduler
    s.schedule("ed-job", {}, trigger=Every(30, start_at=T0 + timedelta(seconds=20)), task_id="a")
    env.clock.advance(15)
    assert env.dispatcher.poll().claimed == 1  # the head is claimed and on the queue
    s.delete("a")
    assert env.advance(120) == []
    assert _fired("a") == []
    # the message in flight names a run that is gone: the worker says so on the DLQ
    assert [(m.kind, m.task_id) for m in s.dead_letters()] == [("orphan", "a")]
    with pytest.raises(TaskNotFound):
        s.delete("a")
