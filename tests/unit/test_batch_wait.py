"""The early-arrival wait (batch.py, execute.py): each record waits for its own instant, all at
once, without holding a thread."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

from dynacron import At, Scheduler, handler
from dynacron.batch import process_event, sqs_event
from dynacron.clock import to_ms

N = 10  # one SQS batch


@handler("noop")
def _noop(payload, ctx):
    return None


class BarrierClock:
    """The test's frozen clock, plus an ``async_sleep`` that returns only once ``parties``
    records are asleep together: a batch whose waits ran one after another never gets there
    (the barrier's timeout breaks it and the records fail)."""

    def __init__(self, base, parties: int) -> None:
        self.base = base
        self.waits: list[float] = []
        self.barrier = asyncio.Barrier(parties)

    def now(self):
        return self.base.now()

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.wait_for(self.barrier.wait(), timeout=30)


def test_a_batch_waits_for_every_record_at_once_on_one_thread(env):
    s = Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs)
    t0 = env.clock.now()
    for i in range(N):  # due 0.5 s, 0.6 s, ... 1.4 s from now: all inside one second's arrival
        s.schedule("noop", {}, trigger=At(t0 + timedelta(seconds=0.5 + i / 10)), task_id=f"w{i}")
    assert env.dispatcher().poll().sent == N
    messages = env.receive()
    url = env.settings.queue_url
    arn = env.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    event = sqs_event(messages, arn["QueueArn"], env.settings.region)
    clock = BarrierClock(env.clock, parties=N)
    with ThreadPoolExecutor(max_workers=1) as one_thread:  # a wait on a thread would block it
        executor = env.executor()
        executor.clock = clock
        response = process_event(event, None, executor, pool=one_thread)
    assert response == {"batchItemFailures": []}
    due = sorted(json.loads(m["Body"])["scheduled_for"] - to_ms(t0) for m in messages)
    assert sorted(round(w * 1000) for w in clock.waits) == due  # each its own instant
    for i in range(N):
        (run,) = s.runs(f"w{i}")
        assert run.status.value == "succeeded" and run.started_at >= run.scheduled_for


def test_a_record_due_now_or_too_early_does_not_wait_in_the_batch(env):
    ex = env.executor()
    now = to_ms(env.clock.now())

    def body(offset_ms: int) -> str:
        fields = {"v": 1, "task_id": "t", "run_id": "r", "fence": "f", "lane": "default"}
        return json.dumps({**fields, "scheduled_for": now + offset_ms})

    assert ex.early_wait_s(body(-500)) == 0.0
    assert ex.early_wait_s(body(1500)) == 1.5
    assert ex.early_wait_s(body(60_000)) == 0.0  # execute() hides it again instead
    assert ex.early_wait_s("not json") == 0.0


def test_a_batch_hides_its_messages_in_one_request_not_one_per_record(env):
    """The first heartbeat's visibility change (heartbeat.py) for a whole batch: one
    ChangeMessageVisibilityBatch, each entry hidden for its wait + the heartbeat + margin; the
    records' own first beats then change nothing."""
    from dynacron.heartbeat import VISIBILITY_MARGIN_S

    s = Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs)
    t0 = env.clock.now()
    for i in range(N):
        s.schedule("noop", {}, trigger=At(t0 + timedelta(seconds=0.5)), task_id=f"h{i}")
    assert env.dispatcher().poll().sent == N
    url = env.settings.queue_url
    arn = env.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    event = sqs_event(env.receive(), arn["QueueArn"], env.settings.region)
    env.sqs.visibility.clear()
    response = process_event(event, None, env.executor())
    assert response == {"batchItemFailures": []}
    beat = int(env.settings.heartbeat_s)
    assert beat > 0  # the default: a heartbeat
    assert env.sqs.visibility_batches == [[1 + beat + VISIBILITY_MARGIN_S] * N]
    assert env.sqs.visibility == []  # no per-record request
    assert all(s.runs(f"h{i}")[0].status.value == "succeeded" for i in range(N))


def test_a_failed_batch_hide_falls_back_to_each_records_own_first_beat(env):
    s = Scheduler(settings=replace(env.settings, queue_url=None), clock=env.clock, sqs=env.sqs)
    s.schedule("noop", {}, trigger=At(env.clock.now() + timedelta(seconds=0.5)), task_id="f0")
    assert env.dispatcher().poll().sent == 1
    url = env.settings.queue_url
    arn = env.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    event = sqs_event(env.receive(), arn["QueueArn"], env.settings.region)

    def refused(**_kwargs):
        raise RuntimeError("ChangeMessageVisibilityBatch refused")

    env.sqs.change_message_visibility_batch = refused
    env.sqs.visibility.clear()
    assert process_event(event, None, env.executor()) == {"batchItemFailures": []}
    assert len(env.sqs.visibility) == 1  # the record hid its own message
    assert s.runs("f0")[0].status.value == "succeeded"
