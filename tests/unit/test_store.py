"""The table: key shapes, run-id order, shards, the sparse due index, row conversions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynacron import At, Cron, Every, RetryPolicy, RunStatus, TaskStatus, handler
from dynacron.clock import from_ms, to_ms
from dynacron.registry import unregister
from dynacron.store import (
    DUE_INDEX,
    RUN_PREFIX,
    TASK_SK,
    Store,
    dumps,
    manual_run_id,
    run_from_row,
    run_sk,
    scheduled_run_id,
    shard_of,
    task_from_row,
    task_pk,
)
from dynacron.types import MisfirePolicy

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)  # the frozen clock's start (conftest)
MAX_MS = 10**13 - 1  # 13 digits: until the year 2286
TERMINAL = {s.value for s in RunStatus if s.terminal}


@pytest.fixture
def ok_handler():
    handler("store-ok")(lambda payload, ctx: {"got": payload})
    yield "store-ok"
    unregister("store-ok")


# --- keys --------------------------------------------------------------------------------------


def test_key_shapes():
    assert task_pk("job-1") == "T#job-1"
    assert TASK_SK == "TASK" and RUN_PREFIX == "RUN#"
    assert run_sk("0000000000001-s") == "RUN#0000000000001-s"
    assert scheduled_run_id(1772452800000) == "1772452800000-s"
    assert scheduled_run_id(5) == "0000000000005-s"
    assert manual_run_id(1772452800000, "a1b2c3") == "1772452800000-ma1b2c3"
    # a scheduled occurrence's id is its time: the same occurrence can only be created once
    assert scheduled_run_id(1772452800000) == scheduled_run_id(1772452800000)


def test_stored_items_have_the_documented_keys(env):
    s = env.scheduler()
    t = s.schedule("job", {}, trigger=At(T0 + timedelta(hours=1)), task_id="k.1")
    manual = s.trigger_now("k.1")
    keys = sorted((i["pk"]["S"], i["sk"]["S"]) for i in env.table_items())
    first = to_ms(t.next_fire_at)
    assert keys == [
        ("T#k.1", f"RUN#{to_ms(T0)}-m{manual.run_id.split('-m')[1]}"),
        ("T#k.1", f"RUN#{first}-s"),
        ("T#k.1", "TASK"),
    ]
    assert re.fullmatch(r"\d{13}-m[0-9a-f]+", manual.run_id)
    assert [r.run_id for r in s.runs("k.1")] == [f"{first}-s", manual.run_id]


@given(
    st.integers(0, MAX_MS),
    st.integers(0, MAX_MS),
    st.text("0123456789abcdef", min_size=1, max_size=8),
    st.text("0123456789abcdef", min_size=1, max_size=8),
)
def test_run_ids_sort_by_time(a, b, tok_a, tok_b):
    for id_a, id_b in (
        (scheduled_run_id(a), scheduled_run_id(b)),
        (manual_run_id(a, tok_a), scheduled_run_id(b)),
        (scheduled_run_id(a), manual_run_id(b, tok_b)),
        (manual_run_id(a, tok_a), manual_run_id(b, tok_b)),
    ):
        if a != b:
            assert (run_sk(id_a) < run_sk(id_b)) == (a < b), (id_a, id_b)
        assert int(id_a[:13]) == a and len(id_a.split("-")[0]) == 13


def test_shard_of_is_stable_across_processes():
    # crc32, not hash(): these values never change with PYTHONHASHSEED or the interpreter
    assert [shard_of("task-1", n) for n in (1, 4, 8, 1000)] == [0, 3, 7, 591]
    assert [shard_of("hourly", n) for n in (1, 4, 8, 1000)] == [0, 3, 3, 363]


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=128), st.integers(1, 1000))
def test_shard_of_is_in_range_and_deterministic(task_id, shards):
    shard = shard_of(task_id, shards)
    assert 0 <= shard < shards
    assert shard_of(task_id, shards) == shard


def test_shard_of_spreads_tasks():
    counts = [0] * 8
    for i in range(4000):
        counts[shard_of(f"task-{i}", 8)] += 1
    assert min(counts) > 400 and max(counts) < 600, counts


# --- the due index -------------------------------------------------------------------------------


def _due_index(env) -> list[tuple[str, str]]:
    out = []
    for shard in range(env.settings.shards):
        pages = env.dynamodb.get_paginator("query").paginate(
            TableName=env.settings.table_name,
            IndexName=DUE_INDEX,
            KeyConditionExpression="due_shard = :s",
            ExpressionAttributeValues={":s": {"N": str(shard)}},
        )
        out += [(i["pk"]["S"], i["sk"]["S"]) for p in pages for i in p["Items"]]
    return sorted(out)


def test_due_index_is_sparse(env, ok_handler):
    s = env.scheduler()
    soon = At(T0 + timedelta(seconds=1))
    s.schedule(ok_handler, {"a": 1}, trigger=soon, task_id="ok")
    s.schedule("no-such-handler", {}, trigger=soon, task_id="dead")
    s.schedule(ok_handler, {}, trigger=soon, task_id="late", expire_after=1)
    s.schedule(ok_handler, {}, trigger=Cron("30 * * * *"), task_id="cancelled")
    s.cancel("cancelled")
    s.schedule(ok_handler, {}, trigger=Cron("30 * * * *"), task_id="paused")
    s.pause("paused")
    s.schedule(
        ok_handler, {}, trigger=Every(3600, start_at=T0 + timedelta(hours=2)), task_id="pending"
    )
    ex = env.executor()
    by_task = {json.loads(e["MessageBody"])["task_id"]: e["MessageBody"] for e in env.sqs.sent}
    assert sorted(by_task) == ["dead", "late", "ok"]
    assert ex.execute(by_task["ok"]).status == "succeeded"
    assert ex.execute(by_task["dead"]).status == "dead"
    env.clock.advance(10)
    assert ex.execute(by_task["late"]).status == "expired"

    runs = [i for i in env.table_items() if i["sk"]["S"] != TASK_SK]
    status = {i["pk"]["S"][2:]: i["status"]["S"] for i in runs}
    assert status == {
        "ok": "succeeded",
        "dead": "dead",
        "late": "expired",
        "cancelled": "skipped",
        "paused": "pending",
        "pending": "pending",
    }
    for item in env.table_items():
        has_due = "due_at" in item or "due_shard" in item
        assert has_due == ("due_at" in item and "due_shard" in item), item  # both or neither
        if item["sk"]["S"] == TASK_SK or item["status"]["S"] in TERMINAL:
            assert not has_due, item
    # the index holds exactly the one run the poller must look at
    assert _due_index(env) == [("T#pending", f"RUN#{to_ms(T0) + 2 * 3600_000}-s")]


def test_due_page_follows_every_page(env):
    s = env.scheduler()
    store = Store(env.settings)
    shard_ids = {}
    for i in range(40):  # some tasks in every shard
        tid = f"t{i}"
        s.schedule("job", {}, trigger=At(T0 + timedelta(minutes=10, seconds=i)), task_id=tid)
        shard_ids.setdefault(shard_of(tid, env.settings.shards), set()).add(tid)
    horizon = to_ms(T0) + 3600_000
    for shard, ids in shard_ids.items():
        seen, last, pages = [], None, 0
        while True:
            rows, last = store.due_page(shard, horizon, last, page_size=3)
            pages += 1
            seen += rows
            if not last:
                break
        assert sorted(r.task_id for r in seen) == sorted(ids)
        assert [r.due_at for r in seen] == sorted(r.due_at for r in seen)  # by due time
        assert pages >= len(ids) // 3
    # the horizon bounds the query
    rows, _ = store.due_page(shard_of("t0", env.settings.shards), to_ms(T0) + 10 * 60_000, None)
    assert [r.task_id for r in rows] == ["t0"]


# --- conversions ---------------------------------------------------------------------------------


@given(st.integers(0, MAX_MS))
def test_ms_round_trip(ms):
    when = from_ms(ms)
    assert when.tzinfo is not None and when.utcoffset() == timedelta(0)
    assert to_ms(when) == ms
    assert from_ms(to_ms(when)) == when


def test_task_row_round_trip(env):
    s = env.scheduler()
    trigger = Cron(
        "0 9 * * MON-FRI",
        tz="Europe/Berlin",
        start_at=T0,
        end_at=T0 + timedelta(days=30, milliseconds=7),
    )
    retry = RetryPolicy(max_attempts=4, backoff_base=0.25, backoff_max=90, jitter=0)
    payload = {"s": "ü\u2028\"'", "n": [1, 2.5, None, True], "d": {"x": {}}, "big": 2**60}
    t = s.schedule(
        "job",
        payload,
        trigger=trigger,
        task_id="rt",
        retry=retry,
        timeout=0.5,
        misfire="catch_up",
        expire_after=42.25,
    )
    row = s.store.get_task_row("rt")
    assert json.loads(row.payload) == payload and json.loads(row.trigger) == trigger.to_dict()
    back = task_from_row(row)
    assert back == t
    assert (back.payload, back.trigger, back.retry, back.timeout) == (payload, trigger, retry, 0.5)
    assert (back.misfire, back.expire_after, back.status) == (
        MisfirePolicy.CATCH_UP,
        42.25,
        TaskStatus.ACTIVE,
    )
    assert back.trigger.end_at == T0 + timedelta(days=30, milliseconds=7)
    # an At keeps its millisecond
    at = s.schedule("job", {}, trigger=At(T0 + timedelta(hours=1, milliseconds=123)))
    assert s.get(at.task_id).trigger.when == T0 + timedelta(hours=1, milliseconds=123)


def test_run_row_round_trip(env):
    store = Store(env.settings)
    values = dict(
        pk=task_pk("rr"),
        sk=run_sk("1772452800123-s"),
        task_id="rr",
        run_id="1772452800123-s",
        task_type="job",
        scheduled_for=1772452800123,
        status="retrying",
        attempt=2,
        max_attempts=5,
        fence="f00d",
        dispatches=3,
        started_at=1772452801000,
        finished_at=None,
        error="boom",
        result=dumps({"r": [1, "é"]}),
        expires_at=1775044800,
        manual=True,
        lane="default",
        due_shard=1,
        due_at=1772453101000,
    )
    store.models.Run(**values).save()
    run = run_from_row(store.get_run_row("rr", "1772452800123-s"))
    assert run.scheduled_for == datetime(2026, 3, 2, 12, 0, 0, 123000, tzinfo=UTC)
    assert (run.status, run.attempt, run.max_attempts, run.fence, run.dispatches) == (
        RunStatus.RETRYING,
        2,
        5,
        "f00d",
        3,
    )
    assert run.started_at == datetime(2026, 3, 2, 12, 0, 1, tzinfo=UTC)
    assert run.finished_at is None and run.error == "boom" and run.result == {"r": [1, "é"]}
    assert run.expires_at == datetime.fromtimestamp(1775044800, UTC) and run.manual is True
    assert run.lateness == timedelta(milliseconds=877)
    # a result truncated beyond the limit is kept as text, not lost
    store.models.Run(
        **{**values, "sk": run_sk("x-s"), "run_id": "x-s", "result": '{"r": "cut'}
    ).save()
    assert run_from_row(store.get_run_row("rr", "x-s")).result == '{"r": "cut'


def test_get_run_and_task_reads_both_in_one_request(env, ok_handler, monkeypatch):
    s = env.scheduler()
    t = s.schedule(ok_handler, {"a": 1}, trigger=At(T0 + timedelta(seconds=5)), task_id="pair")
    run_id = scheduled_run_id(to_ms(T0 + timedelta(seconds=5)))
    store = Store(env.settings)
    connection = store.models.Run._get_connection()
    calls: list[int] = []
    real = connection.batch_get_item

    def counting(keys, **kwargs):
        calls.append(len(keys))
        return real(keys, **kwargs)

    monkeypatch.setattr(connection, "batch_get_item", counting)
    run, task = store.get_run_and_task("pair", run_id)
    assert (run.run_id, run.status, task.task_id, task.task_type) == (
        run_id, RunStatus.QUEUED.value, t.task_id, ok_handler)  # due soon: sent at once
    assert calls == [2]
    missing_run, same_task = store.get_run_and_task("pair", "no-such-run")
    assert missing_run is None and same_task.task_id == "pair"
    assert store.get_run_and_task("nobody", run_id) == (None, None)


def test_get_run_and_task_follows_unprocessed_keys_then_falls_back(env, ok_handler, monkeypatch):
    s = env.scheduler()
    s.schedule(ok_handler, {}, trigger=At(T0 + timedelta(seconds=5)), task_id="busy")
    run_id = scheduled_run_id(to_ms(T0 + timedelta(seconds=5)))
    store = Store(env.settings)
    connection = store.models.Run._get_connection()
    table = env.settings.table_name
    real = connection.batch_get_item
    throttled = {"left": 1}

    def sometimes_unprocessed(keys, **kwargs):
        if throttled["left"] == 0:
            return real(keys, **kwargs)
        throttled["left"] -= 1  # DynamoDB's answer under throttling: nothing read, keys back
        wire = [{"pk": {"S": k["pk"]}, "sk": {"S": k["sk"]}} for k in keys]
        return {"Responses": {table: []}, "UnprocessedKeys": {table: {"Keys": wire}}}

    monkeypatch.setattr(connection, "batch_get_item", sometimes_unprocessed)
    run, task = store.get_run_and_task("busy", run_id)
    assert (run.run_id, task.task_id) == (run_id, "busy")
    throttled["left"] = 99  # never processed: one GetItem each instead
    run, task = store.get_run_and_task("busy", run_id)
    assert (run.run_id, task.task_id) == (run_id, "busy")
