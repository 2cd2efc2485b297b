"""Rate limits (limits.py): parsing, the GCRA counter, slots reserved per batch, deferral."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from dynacron import At, ValidationError, handler
from dynacron.clock import to_ms
from dynacron.limits import gcra, parse_rate
from helpers.cli import invoke


@handler("limited-ok")
def _ok(payload, ctx):
    return None


def _most_in_any_window(times_ms: list[int], window_ms: int = 1000) -> int:
    """The most starts inside any closed window of ``window_ms`` (the window starts at a start)."""
    times = sorted(times_ms)
    return max(sum(1 for u in times if t <= u <= t + window_ms) for t in times)


# --- parsing and validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "per_s"), [("10/s", 10), ("100/m", 100 / 60), ("5/10s", 0.5), ("2/h", 2 / 3600),
                        ("0.5/s", 0.5), (" 3 / min ", 0.05)]
)
def test_rates_parse(text, per_s):
    assert parse_rate(text) == pytest.approx(per_s)


@pytest.mark.parametrize("bad", ["ten per second", "0/s", "-1/s", "10", "10/fortnight", "", 10])
def test_malformed_rates_are_refused_and_nothing_is_written(env, bad):
    with pytest.raises(ValidationError) as info:
        env.scheduler().set_limit("smtp", rate=bad)
    assert info.value.field == "rate"
    assert env.table_items() == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"concurrency": 0}, "concurrency"), ({"burst": 0}, "burst"), ({"rate": None}, "rate"),
     ({"concurrency": 1.5}, "concurrency")],
)
def test_bad_burst_and_concurrency_are_refused(env, kwargs, field):
    args = {"rate": "1/s", **kwargs}
    with pytest.raises(ValidationError) as info:
        env.scheduler().set_limit("smtp", **args)
    assert info.value.field == field
    assert env.table_items() == []


def test_scheduling_with_an_unknown_limit_is_refused(env):
    s = env.scheduler()
    with pytest.raises(ValidationError) as info:
        s.schedule("limited-ok", {}, trigger=At(env.clock.now() + timedelta(hours=1)),
                   limit="nope")
    assert info.value.field == "limit" and "set_limit" in str(info.value)
    assert env.table_items() == []


# --- the counter --------------------------------------------------------------------------


def test_gcra_spaces_a_herd_by_the_interval():
    slots, tat = gcra([1000] * 100, None, 200.0, 1, 10**9)
    assert sorted(slots) == [1000 + 200 * i for i in range(100)]
    assert tat == 1000 + 200 * 100
    assert _most_in_any_window(slots) <= 5 + 1


def test_gcra_burst_lets_that_many_start_together_after_a_quiet_spell():
    slots, _ = gcra([0] * 10, None, 200.0, 3, 10**9)
    assert sorted(slots)[:4] == [0, 0, 0, 200]
    assert _most_in_any_window(slots) <= 5 + 3


def test_gcra_continues_from_the_counter_and_defers_past_the_latest():
    slots, tat = gcra([0, 0, 0], 5000.0, 1000.0, 1, 6500)
    assert slots == [5000, 6000, -1] and tat == 7000


# --- dispatch ---------------------------------------------------------------------------


def _limited_tasks(env, n, when, limit="smtp"):
    s = env.scheduler()
    return [
        s.schedule("limited-ok", {"i": i}, trigger=At(when), limit=limit, task_id=f"lim-{i}")
        for i in range(n)
    ]


def _slots(env):
    return [json.loads(e["MessageBody"]).get("not_before") for e in env.sqs.sent]


def test_a_batch_due_together_gets_slots_a_rate_apart_across_pollers(env):
    env.scheduler().set_limit("smtp", rate="5/s", burst=1)
    when = env.clock.now() + timedelta(minutes=10)
    _limited_tasks(env, 30, when)
    env.clock.set(when - timedelta(seconds=60))
    # Two pollers, each reading the counter the other moved: half the runs each.
    first, second = env.dispatcher(), env.dispatcher()
    from dynacron.store import Store

    rows = [r for shard in range(env.settings.shards)
            for r in Store(env.settings).due_page(shard, to_ms(when), None)[0]]
    assert first.dispatch(rows[:15]).sent == 15
    assert second.dispatch(rows[15:]).sent == 15
    slots = _slots(env)
    assert sorted(slots) == [to_ms(when) + 200 * i for i in range(30)]
    assert _most_in_any_window(slots) <= 6
    for entry, slot in zip(env.sqs.sent, slots, strict=True):
        # visible at most a second before the slot, never after it
        assert entry["DelaySeconds"] == -(-(slot - to_ms(env.clock.now()) - 1000) // 1000)


def test_runs_without_a_limit_are_untouched(env):
    env.scheduler().set_limit("smtp", rate="1/s")
    when = env.clock.now() + timedelta(minutes=10)
    s = env.scheduler()
    for i in range(5):
        s.schedule("limited-ok", {"i": i}, trigger=At(when))
    env.clock.set(when - timedelta(seconds=60))
    env.dispatcher().poll()
    assert _slots(env) == [None] * 5


def test_the_worker_records_the_throttle_apart_from_lateness(env):
    env.scheduler().set_limit("smtp", rate="1/s")
    when = env.clock.now() + timedelta(minutes=10)
    tasks = _limited_tasks(env, 3, when)
    env.clock.set(when - timedelta(seconds=60))
    env.dispatcher().poll()
    by_task = {json.loads(m["Body"])["task_id"]: m for m in env.receive()}
    s = env.scheduler()
    for t in tasks:
        msg = by_task[t.task_id]
        slot = json.loads(msg["Body"])["not_before"]
        env.clock.set(max(env.clock.now(), when) + timedelta(milliseconds=0))
        from dynacron.clock import from_ms

        env.clock.set(from_ms(slot))
        res = env.executor().execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
        assert res.status == "succeeded"
        (run,) = s.runs(t.task_id)
        assert run.throttled_ms == slot - to_ms(when)
        assert run.lateness == timedelta(0)
    assert sorted(r.throttled_ms for t in tasks for r in s.runs(t.task_id)) == [0, 1000, 2000]


def test_a_slot_beyond_the_lease_is_deferred_not_sent_and_not_counted(env):
    env.scheduler().set_limit("slow", rate="1/m")
    when = env.clock.now() + timedelta(minutes=10)
    tasks = _limited_tasks(env, 8, when, limit="slow")
    env.clock.set(when - timedelta(seconds=60))
    report = env.dispatcher().poll()
    # lease 300 s less the 10 s margin: slots at +0..+240 s fit (5), the rest wait
    assert (report.sent, report.deferred) == (5, 3)
    s = env.scheduler()
    runs = [r for t in tasks for r in s.runs(t.task_id)]
    deferred = [r for r in runs if r.status.value == "queued" and r.dispatches == 0]
    assert len(deferred) == 3
    # they come back on a later tick and reserve the next slots; none is lost or dead
    env.clock.set(when + timedelta(seconds=200))
    again = env.dispatcher().poll()
    assert again.sent + again.deferred == 3 and again.sent >= 1
    assert sorted(_slots(env))[:6] == [to_ms(when) + 60_000 * i for i in range(6)]


def test_the_reservation_costs_two_requests_per_batch_of_ten(env):
    env.scheduler().set_limit("smtp", rate="100/s")
    when = env.clock.now() + timedelta(minutes=10)
    _limited_tasks(env, 20, when)
    env.clock.set(when - timedelta(seconds=60))
    calls: list[str] = []
    dispatcher = env.dispatcher()
    client = dispatcher.store.models.Limit._get_connection().connection.client
    client.meta.events.register("before-call.dynamodb.*",
                                lambda model, **_: calls.append(model.name))
    assert dispatcher.poll().sent == 20
    assert sorted(calls) == ["GetItem", "GetItem", "UpdateItem", "UpdateItem"]


# --- CLI ------------------------------------------------------------------------------------


def test_cli_limits_set_show_clear(env):
    def run(*args):
        return invoke(env, *args)

    made = run("limits", "set", "smtp", "--rate", "10/s", "--burst", "2", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["per_s"] == 10
    shown = json.loads(run("limits", "show", "--json").stdout)
    assert [(x["name"], x["rate"], x["burst"]) for x in shown] == [("smtp", "10/s", 2)]
    bad = run("limits", "set", "smtp", "--rate", "ten per second")
    assert bad.exit_code != 0 and "rate" in bad.stderr
    assert run("limits", "clear", "smtp").exit_code == 0
    assert json.loads(run("limits", "show", "--json").stdout) == []
    assert run("limits", "clear", "smtp").exit_code != 0


def test_a_run_that_reaches_its_worker_late_takes_the_next_free_slot(env):
    """Starting it in its stale slot would crowd the next slots' runs: it goes to the back."""
    from dynacron.clock import from_ms

    env.scheduler().set_limit("smtp", rate="1/s")
    when = env.clock.now() + timedelta(minutes=10)
    tasks = _limited_tasks(env, 3, when)
    env.clock.set(when - timedelta(seconds=60))
    env.dispatcher().poll()
    msgs = sorted(env.receive(), key=lambda m: json.loads(m["Body"])["not_before"])
    first = msgs[0]
    assert json.loads(first["Body"])["slot_tol"] == 500  # half the 1 s interval
    env.clock.set(when + timedelta(seconds=5))  # 5 s late: slots +0..+2 s are gone
    ex = env.executor()
    res = ex.execute(first["Body"], first["ReceiptHandle"], env.settings.queue_url)
    # the next free slot is +3 s, already past: it starts now, and records the whole wait
    assert res.status == "succeeded"
    s = env.scheduler()
    task_id = json.loads(first["Body"])["task_id"]
    (run,) = s.runs(task_id)
    assert run.throttled_ms == 5000 and run.lateness == timedelta(0)
    # the second run, 1.5 s late for its +1 s slot, must wait for the slot after that one
    env.clock.set(when + timedelta(seconds=5.5))
    second = msgs[1]
    res = ex.execute(second["Body"], second["ReceiptHandle"], env.settings.queue_url)
    assert res.status == "succeeded"
    (run2,) = s.runs(json.loads(second["Body"])["task_id"])
    assert run2.started_at == from_ms(to_ms(when) + 6000)  # the slot after the first's
    assert len(tasks) == 3


# --- concurrency ------------------------------------------------------------------------------


def test_concurrency_gate_admits_n_and_expired_leases_give_the_slot_back(env):
    from dynacron.limits import ConcurrencyGate

    env.scheduler().set_limit("db", rate=None, concurrency=2)
    gate = ConcurrencyGate(env.scheduler().store)
    assert gate.acquire("db", "a", 1000, 5000) and gate.acquire("db", "b", 1000, 9000)
    assert not gate.acquire("db", "c", 1000, 9000)  # full
    assert gate.acquire("db", "a", 2000, 6000)  # the holder renewing is not a new slot
    assert gate.acquire("db", "c", 6001, 9000)  # a's lease ran out (its worker died)
    assert not gate.acquire("db", "d", 6001, 9000)
    gate.release("db", "b", 6002)
    assert gate.acquire("db", "d", 6002, 9000)


def test_a_run_over_the_concurrency_waits_and_starts_once_a_lease_expires(env):
    """One slot, held by an attempt whose worker died: the next run waits (no attempt counted,
    its message hidden for the retry interval), then starts when that lease has expired."""
    from dynacron.execute import Outcome
    from dynacron.limits import ConcurrencyGate

    s = env.scheduler()
    s.set_limit("db", rate=None, concurrency=1)
    when = env.clock.now() + timedelta(seconds=5)
    (task,) = _limited_tasks(env, 1, when, limit="db")
    now = to_ms(env.clock.now())
    ConcurrencyGate(s.store).acquire("db", "dead-worker", now, now + 60_000)
    (msg,) = env.receive()
    env.clock.set(when)
    ex = env.executor(concurrency_wait_s=7)
    res = ex.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
    assert (res.outcome, res.status) == (Outcome.RETURN, "waiting")
    assert env.sqs.visibility[-1] == 7
    (run,) = s.runs(task.task_id)
    assert run.attempt == 0 and run.status.value == "queued"
    env.clock.set(from_ms_(now + 60_001))
    (msg,) = env.receive()
    res = ex.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
    assert res.status == "succeeded"
    row = s.store.models.Limit.get("L#db", "LIMIT")
    assert row.leases.as_dict() == {}  # released after the run, and the dead one dropped


def test_a_delivery_that_loses_the_start_never_frees_the_winners_slot(env):
    """Two copies of one run's message (SQS delivers at least once; a re-claim sends another)
    both pass the checks and reach the gate; one starts, the other's start loses. While the
    winner's handler runs its slot must stay taken: the loser releases only what it took.
    (Both copies once shared one lease token, so the loser's release freed the winner's slot
    and a fourth run started under concurrency 3: the reliability suite's killed-worker test.)"""
    from dynacron.limits import _leases

    s = env.scheduler()
    s.set_limit("db", rate=None, concurrency=1)
    when = env.clock.now() + timedelta(seconds=5)
    s.schedule("limited-probe", {}, trigger=At(when), limit="db", task_id="probe")
    (msg,) = env.receive()
    env.clock.set(when)
    paused, go, first_done = threading.Event(), threading.Event(), threading.Event()
    held: list[int] = []

    def live() -> int:
        now = to_ms(env.clock.now())
        return sum(1 for v in _leases(s.store.get_limit_row("db")).values() if v > now)

    def probe(payload, ctx):
        if threading.current_thread().name == "second":
            go.set()  # let the first copy lose its start (and release) while this one runs
            first_done.wait(10)
        held.append(live())

    handler("limited-probe")(probe)
    first, second = env.executor(), env.executor()
    real_start = first._start

    def start_after_the_other_copy(*args, **kwargs):
        paused.set()
        go.wait(10)
        return real_start(*args, **kwargs)

    first._start = start_after_the_other_copy
    results: dict[str, object] = {}

    def deliver(ex, name):
        results[name] = ex.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
        if name == "first":
            first_done.set()

    t1 = threading.Thread(target=deliver, args=(first, "first"), name="first")
    t1.start()
    assert paused.wait(10)
    t2 = threading.Thread(target=deliver, args=(second, "second"), name="second")
    t2.start()
    t2.join(15)
    go.set()
    t1.join(15)
    assert not t1.is_alive() and not t2.is_alive()
    assert sorted(r.status for r in results.values()) == ["succeeded", "waiting"]
    assert held == [1]  # the one running handler held its slot throughout
    assert live() == 0  # no leak


def from_ms_(ms):
    from dynacron.clock import from_ms

    return from_ms(ms)


# --- metrics per lane and per limit -----------------------------------------------------------


class _Metrics:
    def __init__(self):
        self.plain: list = []
        self.dimensioned: list = []

    def add_metric(self, name, unit, value):
        self.plain.append((name, value))

    def add_dimensioned_metric(self, name, unit, value, dimensions):
        self.dimensioned.append((name, value, dimensions))


def test_started_and_throttled_are_published_per_lane_and_per_limit(env):
    from dynacron.clock import from_ms

    env.scheduler().set_limit("smtp", rate="1/s")
    when = env.clock.now() + timedelta(minutes=10)
    s = env.scheduler()
    for i in range(2):
        s.schedule("limited-ok", {"i": i}, trigger=At(when), limit="smtp", lane="critical")
    env.clock.set(when - timedelta(seconds=60))
    env.dispatcher().poll()
    metrics = _Metrics()
    url = env.settings.lane_queues["critical"]
    msgs = env.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    for msg in sorted(msgs, key=lambda m: json.loads(m["Body"])["not_before"]):
        env.clock.set(from_ms(json.loads(msg["Body"])["not_before"]))
        ex = env.executor(metrics=metrics)
        assert ex.execute(msg["Body"], msg["ReceiptHandle"], url).status == "succeeded"
    got = metrics.dimensioned
    assert [d for n, _, d in got if n == "LaneRunsStarted"] == [{"lane": "critical"}] * 2
    assert [v for n, v, _ in got if n == "LaneLatenessMs"] == [0, 0]
    assert [(v, d) for n, v, d in got if n == "LimitThrottledMs"] == [
        (0, {"limit": "smtp"}), (1000, {"limit": "smtp"})]
    assert ("ThrottledMs", 1000) in metrics.plain


def test_powertools_metrics_get_their_own_dimensions(capsys):
    from aws_lambda_powertools import Metrics

    from dynacron.lanemetrics import emit

    emit(Metrics(namespace="DynacronTest", service="x"), "LaneRunsStarted", "Count", 1,
         lane="bulk")
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["lane"] == "bulk" and record["service"] == "dynacron"
    assert record["LaneRunsStarted"] == [1.0] or record["LaneRunsStarted"] == 1.0
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "DynacronTest"
    assert sorted(directive["Dimensions"][0]) == ["lane", "service"]


def test_local_stats_count_per_lane_and_per_limit():
    from dynacron.local.progress import Stats

    stats = Stats()
    for i, (lane, limit, waited) in enumerate(
        [("critical", None, 0), ("bulk", "smtp", 200), ("bulk", "smtp", 400)]
    ):
        stats.on_event("started", {"task_id": "t", "run_id": str(i), "attempt": 1,
                                   "lateness_ms": 5, "lane": lane, "limit": limit,
                                   "throttled_ms": waited})
    assert stats.lane_started == {"critical": 1, "bulk": 2}
    assert stats.limit_started == {"smtp": 2} and stats.limit_throttled_ms == {"smtp": 600}


def test_a_cleared_limit_lets_its_runs_go_unthrottled_without_extra_writes(env):
    s = env.scheduler()
    s.set_limit("gone", rate="1/s")
    when = env.clock.now() + timedelta(minutes=10)
    tasks = _limited_tasks(env, 3, when, limit="gone")
    assert s.clear_limit("gone")
    env.clock.set(when - timedelta(seconds=60))
    env.dispatcher().poll()
    assert _slots(env) == [None] * 3
    env.clock.set(when + timedelta(seconds=1))  # a second late: no slot to be late for
    for msg in env.receive():
        res = env.executor().execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
        assert res.status == "succeeded"
    runs = [r for t in tasks for r in s.runs(t.task_id)]
    assert all(r.throttled_ms == 0 for r in runs)
    raw = [i for i in env.table_items() if i["sk"]["S"].startswith("RUN#")]
    assert all("slot_ms" not in i for i in raw)
