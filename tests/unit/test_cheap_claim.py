"""Issue 11 item 6: the last occurrence (every one-time run) is claimed with one UpdateItem of
the run, not a transaction with its task — and a pause, cancel or update that won the race
still makes that claim fail (guarantees 2 and 3 need it)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from dynacron import At, RetryPolicy, Scheduler, handler
from dynacron.types import RunStatus


@handler("cheap-noop")
def _noop(payload, ctx):
    return None


def _scheduler(env):
    """No queue: the task waits for the poller (no short-notice dispatch)."""
    return Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs)


def _calls(dispatcher) -> list[str]:
    calls: list[str] = []
    models = dispatcher.store.models
    clients = {id(c): c for c in (m._get_connection().connection.client
                                  for m in (models.Task, models.Run))}
    for client in clients.values():
        client.meta.events.register(
            "before-parameter-build.dynamodb", lambda model, **_: calls.append(model.name)
        )
    return calls


def test_a_one_time_claim_is_one_update_of_the_run(env):
    s = _scheduler(env)
    t = s.schedule("cheap-noop", {}, trigger=At(env.clock.now() + timedelta(seconds=3)))
    dispatcher = env.dispatcher()
    calls = _calls(dispatcher)
    assert dispatcher.poll().sent == 1
    assert [c for c in calls if c not in ("Query", "GetItem")] == ["UpdateItem"]
    assert s.runs(t.task_id)[0].status is RunStatus.QUEUED
    env.clock.advance(3)
    (msg,) = env.receive()
    assert env.executor().execute(msg["Body"], msg["ReceiptHandle"]).status == "succeeded"
    done = s.get(t.task_id)
    assert (done.status.value, done.next_fire_at) == ("completed", None)


@pytest.mark.parametrize("change", ["pause", "cancel", "update"])
def test_a_claim_from_a_read_before_a_pause_cancel_or_update_loses(env, change):
    s = _scheduler(env)
    t = s.schedule("cheap-noop", {}, trigger=At(env.clock.now() + timedelta(seconds=30)))
    stale = s.store.get_run_row(t.task_id, s.runs(t.task_id)[0].run_id)  # what a poller read
    if change == "pause":
        s.pause(t.task_id)
    elif change == "cancel":
        s.cancel(t.task_id)
    else:
        s.update(t.task_id, retry=RetryPolicy(max_attempts=7))
    report = env.dispatcher().dispatch([stale])
    assert (report.claimed, report.lost_races) == (0, 1)
    assert env.sqs.sent == []


def test_a_finished_run_does_not_complete_a_task_given_a_new_time_meanwhile(env):
    s = _scheduler(env)
    t = s.schedule("cheap-noop", {}, trigger=At(env.clock.now() + timedelta(seconds=3)))
    env.dispatcher().poll()  # claimed; the task still points at it
    later = env.clock.now() + timedelta(seconds=600)
    s.update(t.task_id, trigger=At(later))  # a new head, a new next_fire_at
    env.clock.advance(3)
    (msg,) = env.receive()
    assert env.executor().execute(msg["Body"], msg["ReceiptHandle"]).status == "succeeded"
    task = s.get(t.task_id)
    assert (task.status.value, task.next_fire_at) == ("active", later)


def test_the_first_heartbeat_does_not_rewrite_the_lease_the_start_just_wrote(env):
    assert env.settings.heartbeat_s > 0  # the default: a heartbeat runs around the handler
    s = _scheduler(env)
    s.schedule("cheap-noop", {}, trigger=At(env.clock.now() + timedelta(seconds=3)))
    env.dispatcher().poll()
    env.clock.advance(3)
    (msg,) = env.receive()
    executor = env.executor()
    calls = _calls(executor)
    res = executor.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
    assert res.status == "succeeded"
    # start, finish: no renewal at the handler's first instant, no task write at the end
    assert [c for c in calls if c == "UpdateItem"] == ["UpdateItem"] * 2
    assert env.sqs.visibility == [int(env.settings.heartbeat_s) + 5]  # the message is hidden


def _run_to_the_end(env):
    env.dispatcher().poll()
    env.clock.advance(3)
    (msg,) = env.receive()
    executor = env.executor()
    calls = _calls(executor)
    assert executor.execute(msg["Body"], msg["ReceiptHandle"]).status == "succeeded"
    return calls


def test_the_end_of_the_last_run_completes_its_task_without_a_task_write(env):
    s = _scheduler(env)
    t = s.schedule("cheap-noop", {"k": "x" * 2048},
                   trigger=At(env.clock.now() + timedelta(seconds=3)))
    calls = _run_to_the_end(env)
    written = [c for c in calls if c in ("UpdateItem", "PutItem", "TransactWriteItems")]
    assert written == ["UpdateItem", "UpdateItem"]  # start and finish of the run only
    raw = s.store.get_task_row(t.task_id)
    assert raw.status == "active"  # what the table says ...
    assert s.get(t.task_id).status.value == "completed"  # ... and what everyone reads
    assert [x.task_id for x in s.list(status="completed")] == [t.task_id]
    assert list(s.list(status="active")) == []


def test_a_task_completed_by_its_last_run_is_paused_refused_and_deleted(env):
    from dynacron.errors import InvalidStateError

    s = _scheduler(env)
    t = s.schedule("cheap-noop", {}, trigger=At(env.clock.now() + timedelta(seconds=3)),
                   task_id="once")
    _run_to_the_end(env)
    with pytest.raises(InvalidStateError, match="completed"):
        s.pause(t.task_id)
    assert s.delete(t.task_id) == 1  # its run; then the task: the id is free again
    again = s.schedule("cheap-noop", {}, trigger=At(env.clock.now() + timedelta(seconds=60)),
                       task_id="once")
    assert again.status.value == "active"


def test_a_task_whose_last_run_is_in_flight_is_still_active(env):
    s = _scheduler(env)
    t = s.schedule("cheap-noop", {}, trigger=At(env.clock.now() + timedelta(seconds=3)))
    env.dispatcher().poll()
    assert s.get(t.task_id).status.value == "active"  # queued, not ended


def test_a_recurring_task_is_read_without_looking_at_its_head(env):
    from dynacron import Every

    s = _scheduler(env)
    t = s.schedule("cheap-noop", {},
                   trigger=Every(60, start_at=env.clock.now() + timedelta(seconds=3)))
    calls = _calls(s)
    assert s.get(t.task_id).status.value == "active"
    assert calls == ["GetItem"]  # the task only: its trigger fires again after now
