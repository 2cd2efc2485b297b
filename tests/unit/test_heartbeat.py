"""Crash recovery at the speed of the second (heartbeat.py, execute.py), on the frozen clock.

A started attempt holds its run for ``heartbeat_s`` (30 s) at a time; the heartbeat renews the
lease and the message's visibility while the handler runs. The heartbeat's timing is driven by
the test (``Beats``), never by real time.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from dynacron import At, RetryPolicy, RunStatus, Scheduler, handler
from dynacron.clock import from_ms

RELEASE = threading.Event()


@handler("hb-quick")
def _quick(payload, ctx):
    return "ok"


@handler("hb-long")
def _long(payload, ctx):
    assert RELEASE.wait(30), "the test never released the handler"
    return "done"


class ProcessCrash(BaseException):
    """The worker process dies (kill -9): nothing after this point runs."""


class Beats:
    """A heartbeat wait that beats only when the test says ``tick()``."""

    def __init__(self) -> None:
        self._waiting = threading.Semaphore(0)
        self._go = threading.Semaphore(0)

    def wait(self, stop: threading.Event, _interval: float) -> bool:
        self._waiting.release()
        while not stop.is_set():
            if self._go.acquire(timeout=0.05):
                return stop.is_set()
        return True

    def ready(self) -> None:
        """Block until the heartbeat thread waits for its next beat (the last one is done)."""
        assert self._waiting.acquire(timeout=30), "the heartbeat never got to its next wait"

    def tick(self) -> None:
        self._go.release()
        self.ready()


def _one_run(env, task_type: str):
    s = Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs)
    t = s.schedule(task_type, {}, trigger=At(env.clock.now() + timedelta(seconds=5)),
                   retry=RetryPolicy(max_attempts=3))
    assert env.dispatcher().poll().sent == 1
    env.clock.advance(5)
    (msg,) = env.receive()
    return s, t, msg


def _crash_after_the_handler(env, msg):
    ex = env.executor()

    def die(*_a, **_kw):
        raise ProcessCrash("worker killed before it recorded the outcome")

    ex._succeed = die
    with pytest.raises(ProcessCrash):
        ex.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
    return env.clock.now()


def test_a_crashed_workers_run_starts_again_within_60_s(env):
    s, t, msg = _one_run(env, "hb-quick")
    crashed_at = _crash_after_the_handler(env, msg)
    (run,) = s.runs(t.task_id)
    assert run.status is RunStatus.RUNNING and run.attempt == 1
    assert env.sqs.visibility == [35]  # the message comes back 35 s after the last renewal
    env.clock.advance(35)  # ... which is now: SQS redelivers it
    (again,) = env.receive()
    assert env.executor().execute(again["Body"], again["ReceiptHandle"]).status == "succeeded"
    (run,) = s.runs(t.task_id)
    assert run.status is RunStatus.SUCCEEDED
    # the unfinished attempt counts: this was attempt 2 of 3
    assert run.attempt == 2
    assert run.started_at - crashed_at <= timedelta(seconds=60)


def test_the_poller_takes_the_run_back_if_its_message_is_lost(env):
    """The redelivered message recovers a crash; if it never comes back (lost, or moved to
    the DLQ), the poller takes the run back when the index lease the claim set runs out."""
    s, t, msg = _one_run(env, "hb-quick")
    crashed_at = _crash_after_the_handler(env, msg)
    (run,) = s.runs(t.task_id)
    row = env.executor().store.get_run_row(t.task_id, run.run_id)
    alive_until, lease_end = from_ms(row.alive_until), from_ms(row.due_at)
    assert alive_until - crashed_at == timedelta(seconds=30)  # the heartbeat's liveness
    assert lease_end > alive_until  # the start left the claim's index lease alone
    env.clock.set(alive_until + timedelta(seconds=1))
    assert env.dispatcher().poll().sent == 0  # the message's redelivery is the fast path
    env.clock.set(lease_end - timedelta(seconds=1))
    assert env.dispatcher().poll().sent == 0
    env.clock.set(lease_end)
    assert env.dispatcher().poll().sent == 1
    (run,) = s.runs(t.task_id)
    assert run.status is RunStatus.QUEUED


def test_the_poller_leaves_a_renewed_run_whose_index_lease_passed(env):
    """A long attempt's renewal moves the index lease only when its liveness would outlast
    it; a poll that reads the row in between must not take a live run back."""
    s, t, msg = _one_run(env, "hb-quick")
    _crash_after_the_handler(env, msg)
    (run,) = s.runs(t.task_id)
    store = env.executor().store
    row = store.get_run_row(t.task_id, run.run_id)
    env.clock.set(from_ms(row.due_at))
    beat = store.models.Run.from_raw_data(row.serialize())
    beat.due_at = row.alive_until  # as if the index lease had not been moved yet
    assert store.renew(beat, int(row.due_at) + 30_000)  # the worker is alive after all
    assert env.dispatcher().poll().sent == 0
    assert store.get_run_row(t.task_id, run.run_id).fence == row.fence


def test_without_a_heartbeat_the_run_waits_for_timeout_plus_lease(env):
    env.settings = replace(env.settings, heartbeat_s=0)
    s, t, msg = _one_run(env, "hb-quick")
    _crash_after_the_handler(env, msg)
    assert env.sqs.visibility == []
    env.clock.advance(35)
    assert env.executor().execute(msg["Body"], msg["ReceiptHandle"]).status == "duplicate"
    (run,) = s.runs(t.task_id)
    row = env.executor().store.get_run_row(t.task_id, run.run_id)
    assert run.status is RunStatus.RUNNING
    assert from_ms(row.due_at) - env.clock.now() > timedelta(minutes=5)  # held: minutes


def _start_long(env, beats: Beats):
    s, t, msg = _one_run(env, "hb-long")
    RELEASE.clear()
    ex = env.executor(heartbeat_wait=beats.wait)
    out = {}
    worker = threading.Thread(
        target=lambda: out.setdefault(
            "res", ex.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
        )
    )
    worker.start()
    beats.ready()  # started, first renewal done, heartbeat thread waiting
    return s, t, msg, worker, out


def test_a_healthy_long_handler_keeps_its_run_however_long_it_runs(env):
    beats = Beats()
    s, t, msg, worker, out = _start_long(env, beats)
    try:
        for _ in range(6):  # 150 s of handler: five times the lease
            env.clock.advance(25)
            beats.tick()
            (run,) = s.runs(t.task_id)
            assert run.status is RunStatus.RUNNING
            assert env.dispatcher().poll().sent == 0  # the poller leaves it alone
        dup = env.executor().execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
        assert dup.status == "duplicate"  # a duplicate copy is acked, not started
    finally:
        RELEASE.set()
        worker.join(30)
    assert out["res"].status == "succeeded"
    assert env.sqs.visibility == [35] * 7  # on start, then on each of the 6 renewals
    assert s.runs(t.task_id)[0].attempt == 1


def test_a_heartbeat_that_lost_its_lease_stops_renewing(env):
    beats = Beats()
    s, t, _msg, worker, out = _start_long(env, beats)
    try:
        # The heartbeat stalled past its liveness and the index lease: taken for dead.
        (run,) = s.runs(t.task_id)
        row = env.executor().store.get_run_row(t.task_id, run.run_id)
        env.clock.set(from_ms(max(row.due_at, row.alive_until)))
        assert env.dispatcher().poll().sent == 1  # reclaimed under a new fence
        beats._go.release()  # the late renewal finds the run is no longer its own
    finally:
        RELEASE.set()
        worker.join(30)
    assert env.sqs.visibility == [35]  # no renewal after the lease was lost
    (run,) = s.runs(t.task_id)
    assert run.status is RunStatus.QUEUED and run.dispatches == 2
    body = json.loads(env.sqs.sent[-1]["MessageBody"])
    assert body["fence"] == run.fence and out["res"].status != "succeeded", out["res"]
