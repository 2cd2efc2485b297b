"""Bad input is refused by ``schedule()`` with ``ValidationError`` before anything is written.

Each case asserts the error, the field it names, a fragment of the message naming the rule or
the limit, that the table is exactly as before and that nothing was sent to SQS.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest

from dynacron import At, Cron, Every, RetryPolicy, TaskStatus, ValidationError
from dynacron.sdk import PAST_GRACE_SECONDS
from dynacron.types import MAX_ATTEMPTS_CAP, MAX_ID_LENGTH, MAX_PAYLOAD_BYTES

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)  # the frozen clock's start (conftest)
NAIVE = datetime(2026, 3, 2, 13, 0, 0)  # no tzinfo
SOON = T0 + timedelta(hours=1)


class _Recording:
    """The SQS client, recording what dynacron sends (as conftest's ``env.sqs`` does)."""

    def __init__(self, client):
        self._client, self.sent = client, []

    def send_message_batch(self, QueueUrl, Entries):
        self.sent.extend(Entries)
        return self._client.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.fixture(scope="class")
def shared_env():
    """One moto deployment for every refusal case (speed: they write nothing, and each case
    asserts exactly that); the same shape as conftest's ``env``."""
    import boto3
    from moto import mock_aws

    from dynacron.clock import FrozenClock
    from dynacron.local.provision import find_template, load_template, provision
    from dynacron.settings import Settings

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        res = provision(ddb, sqs, load_template(find_template()), prefix="validation")
        settings = Settings(
            table_name=res.table_name,
            queue_url=res.queue_url,
            dlq_url=res.dlq_url,
            region="us-east-1",
            shards=4,
        )
        clock, rec = FrozenClock(T0), _Recording(sqs)

        class Shared:
            def scheduler(self):
                from dynacron import Scheduler

                return Scheduler(settings=settings, clock=clock, sqs=rec)

            def table_items(self):
                return ddb.scan(TableName=settings.table_name)["Items"]

        shared = Shared()
        shared.settings, shared.clock, shared.sqs = settings, clock, rec
        yield shared
        # nothing any case did may have reached the queue, by any API
        attrs = sqs.get_queue_attributes(QueueUrl=res.queue_url, AttributeNames=["All"])
        assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
        assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "0"


def _snapshot(env):
    items = sorted(env.table_items(), key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
    return items, list(env.sqs.sent)


def _refused(env, call, field, fragment):
    """Run ``call(scheduler)``; assert the error and that no write and no send happened."""
    assert env.clock.now() == T0
    s = env.scheduler()
    before = _snapshot(env)
    with pytest.raises(ValidationError) as err:
        call(s)
    assert err.value.field == field, err.value
    assert fragment in err.value.message, err.value.message
    assert str(err.value).startswith(f"{field}: ")
    assert _snapshot(env) == before
    return err.value


def _ok(s, **kw):
    kw.setdefault("trigger", At(SOON))
    return s.schedule(kw.pop("task_type", "job"), kw.pop("payload", {}), **kw)


# (id, call, field, message fragment). Triggers and RetryPolicy are built inside the call: their
# constructors are where some of these are refused, and the check is the same: nothing written.
CASES = [
    # --- triggers ---
    (
        "cron-bad-minute",
        lambda s: _ok(s, trigger=Cron("61 * * * *")),
        "trigger.expr",
        "invalid cron expression",
    ),
    (
        "cron-words",
        lambda s: _ok(s, trigger=Cron("every monday")),
        "trigger.expr",
        "must have 5 fields",
    ),
    (
        "cron-4-fields",
        lambda s: _ok(s, trigger=Cron("* * * *")),
        "trigger.expr",
        "must have 5 fields",
    ),
    (
        "cron-6-fields",
        lambda s: _ok(s, trigger=Cron("0 * * * * *")),
        "trigger.expr",
        "must have 5 fields",
    ),
    ("cron-empty", lambda s: _ok(s, trigger=Cron("   ")), "trigger.expr", "must not be empty"),
    ("cron-never", lambda s: _ok(s, trigger=Cron("0 0 30 2 *")), "trigger.expr", "never fires"),
    ("cron-not-str", lambda s: _ok(s, trigger=Cron(5)), "trigger.expr", "must be a string"),
    (
        "tz-unknown",
        lambda s: _ok(s, trigger=Cron("0 9 * * *", tz="Mars/Olympus_Mons")),
        "trigger.tz",
        "unknown time zone",
    ),
    (
        "tz-empty",
        lambda s: _ok(s, trigger=Cron("0 9 * * *", tz="")),
        "trigger.tz",
        "unknown time zone",
    ),
    ("at-naive", lambda s: _ok(s, trigger=At(NAIVE)), "trigger.when", "timezone-aware"),
    (
        "every-start-naive",
        lambda s: _ok(s, trigger=Every(5, start_at=NAIVE)),
        "trigger.start_at",
        "timezone-aware",
    ),
    (
        "every-end-naive",
        lambda s: _ok(s, trigger=Every(5, end_at=NAIVE)),
        "trigger.end_at",
        "timezone-aware",
    ),
    (
        "cron-start-naive",
        lambda s: _ok(s, trigger=Cron("* * * * *", start_at=NAIVE)),
        "trigger.start_at",
        "timezone-aware",
    ),
    (
        "cron-end-naive",
        lambda s: _ok(s, trigger=Cron("* * * * *", end_at=NAIVE)),
        "trigger.end_at",
        "timezone-aware",
    ),
    (
        "at-past-beyond-grace",
        lambda s: _ok(s, trigger=At(T0 - timedelta(seconds=PAST_GRACE_SECONDS + 0.001))),
        "trigger.when",
        f"{PAST_GRACE_SECONDS:g} s grace",
    ),
    (
        "at-long-past",
        lambda s: _ok(s, trigger=At(T0 - timedelta(days=1))),
        "trigger.when",
        f"{PAST_GRACE_SECONDS:g} s grace",
    ),
    ("every-below-1s", lambda s: _ok(s, trigger=Every(0.999)), "trigger.interval", "at least 1 s"),
    ("every-zero", lambda s: _ok(s, trigger=Every(0)), "trigger.interval", "at least 1 s"),
    ("every-negative", lambda s: _ok(s, trigger=Every(-5)), "trigger.interval", "at least 1 s"),
    (
        "every-timedelta-below-1s",
        lambda s: _ok(s, trigger=Every(timedelta(milliseconds=500))),
        "trigger.interval",
        "at least 1 s",
    ),
    ("every-nan", lambda s: _ok(s, trigger=Every(float("nan"))), "trigger.interval", "finite"),
    ("every-str", lambda s: _ok(s, trigger=Every("5")), "trigger.interval", "must be seconds"),
    (
        "every-end-equals-start",
        lambda s: _ok(s, trigger=Every(5, start_at=SOON, end_at=SOON)),
        "trigger.end_at",
        "after start_at",
    ),
    (
        "every-end-before-start",
        lambda s: _ok(s, trigger=Every(5, start_at=SOON, end_at=SOON - timedelta(seconds=1))),
        "trigger.end_at",
        "after start_at",
    ),
    (
        "cron-end-before-start",
        lambda s: _ok(s, trigger=Cron("* * * * *", start_at=SOON, end_at=T0)),
        "trigger.end_at",
        "after start_at",
    ),
    (
        "every-ended",
        lambda s: _ok(
            s, trigger=Every(5, start_at=T0 - timedelta(hours=2), end_at=T0 - timedelta(hours=1))
        ),
        "trigger.end_at",
        "has passed",
    ),
    (
        "cron-ended",
        lambda s: _ok(s, trigger=Cron("* * * * *", end_at=T0 - timedelta(hours=1))),
        "trigger.end_at",
        "has passed",
    ),
    ("trigger-none", lambda s: _ok(s, trigger=None), "trigger", "At(...), Every(...) or Cron(...)"),
    (
        "trigger-str",
        lambda s: _ok(s, trigger="*/5 * * * *"),
        "trigger",
        "At(...), Every(...) or Cron(...)",
    ),
    (
        "trigger-datetime",
        lambda s: _ok(s, trigger=SOON),
        "trigger",
        "At(...), Every(...) or Cron(...)",
    ),
    # --- names ---
    ("task-type-empty", lambda s: _ok(s, task_type=""), "task_type", "must not be empty"),
    (
        "task-type-too-long",
        lambda s: _ok(s, task_type="t" * (MAX_ID_LENGTH + 1)),
        "task_type",
        f"the limit is {MAX_ID_LENGTH}",
    ),
    ("task-type-hash", lambda s: _ok(s, task_type="a#b"), "task_type", "may contain only"),
    ("task-type-not-str", lambda s: _ok(s, task_type=None), "task_type", "must be a string"),
    ("task-id-empty", lambda s: _ok(s, task_id=""), "task_id", "must not be empty"),
    (
        "task-id-too-long",
        lambda s: _ok(s, task_id="i" * (MAX_ID_LENGTH + 1)),
        "task_id",
        f"the limit is {MAX_ID_LENGTH}",
    ),
    ("task-id-not-str", lambda s: _ok(s, task_id=42), "task_id", "must be a string"),
    *[
        (
            f"task-id-{name}",
            functools.partial(_ok, task_id=bad),
            "task_id",
            "may contain only",
        )
        for name, bad in [
            ("hash", "a#b"),
            ("key-forgery", "x#RUN#0000000000001-s"),
            ("slash", "a/b"),
            ("space", "a b"),
            ("newline-inside", "a\nb"),
            ("leading-newline", "\nab"),
            ("tab", "a\tb"),
            ("nul", "a\x00b"),
            ("del", "a\x7fb"),
            ("unicode-letter", "café"),
            ("unicode-digit", "٣"),
            ("fullwidth-hash", "a\uff03b"),
            ("leading-dash", "-ab"),
        ]
    ],
    # --- payload ---
    ("payload-list", lambda s: _ok(s, payload=[1, 2]), "payload", "JSON object"),
    ("payload-str", lambda s: _ok(s, payload='{"a": 1}'), "payload", "JSON object"),
    ("payload-int", lambda s: _ok(s, payload=0), "payload", "JSON object"),
    ("payload-set", lambda s: _ok(s, payload={"a": {1, 2}}), "payload", "not JSON-serializable"),
    (
        "payload-object",
        lambda s: _ok(s, payload={"a": object()}),
        "payload",
        "not JSON-serializable",
    ),
    (
        "payload-nan",
        lambda s: _ok(s, payload={"a": float("nan")}),
        "payload",
        "not JSON-serializable",
    ),
    (
        "payload-inf",
        lambda s: _ok(s, payload={"a": [float("inf")]}),
        "payload",
        "not JSON-serializable",
    ),
    ("payload-bytes", lambda s: _ok(s, payload={"a": b"x"}), "payload", "not JSON-serializable"),
    # '{"a":"' + x * n + '"}' is n + 8 bytes
    (
        "payload-over-limit",
        lambda s: _ok(s, payload={"a": "x" * (MAX_PAYLOAD_BYTES - 7)}),
        "payload",
        f"the limit is {MAX_PAYLOAD_BYTES} bytes",
    ),
    # counted in UTF-8 bytes, not characters: 2 bytes per 'é'
    (
        "payload-over-limit-utf8",
        lambda s: _ok(s, payload={"a": "é" * ((MAX_PAYLOAD_BYTES - 8) // 2 + 1)}),
        "payload",
        f"the limit is {MAX_PAYLOAD_BYTES} bytes",
    ),
    # --- timeout ---
    ("timeout-zero", lambda s: _ok(s, timeout=0), "timeout", "must be > 0"),
    ("timeout-negative", lambda s: _ok(s, timeout=-1), "timeout", "must be > 0"),
    ("timeout-zero-timedelta", lambda s: _ok(s, timeout=timedelta(0)), "timeout", "must be > 0"),
    ("timeout-nan", lambda s: _ok(s, timeout=float("nan")), "timeout", "finite"),
    ("timeout-inf", lambda s: _ok(s, timeout=float("inf")), "timeout", "finite"),
    ("timeout-bool", lambda s: _ok(s, timeout=True), "timeout", "must be seconds"),
    ("timeout-str", lambda s: _ok(s, timeout="30"), "timeout", "must be seconds"),
    ("timeout-none", lambda s: _ok(s, timeout=None), "timeout", "must be seconds"),
    # --- retry ---
    (
        "attempts-zero",
        lambda s: _ok(s, retry=RetryPolicy(max_attempts=0)),
        "retry.max_attempts",
        f"between 1 and {MAX_ATTEMPTS_CAP}",
    ),
    (
        "attempts-over-cap",
        lambda s: _ok(s, retry=RetryPolicy(max_attempts=MAX_ATTEMPTS_CAP + 1)),
        "retry.max_attempts",
        f"between 1 and {MAX_ATTEMPTS_CAP}",
    ),
    (
        "attempts-bool",
        lambda s: _ok(s, retry=RetryPolicy(max_attempts=True)),
        "retry.max_attempts",
        "must be an integer",
    ),
    (
        "attempts-float",
        lambda s: _ok(s, retry=RetryPolicy(max_attempts=3.0)),
        "retry.max_attempts",
        "must be an integer",
    ),
    (
        "backoff-base-negative",
        lambda s: _ok(s, retry=RetryPolicy(backoff_base=-1)),
        "retry.backoff_base",
        "must be 0..43200 s",
    ),
    (
        "backoff-max-negative",
        lambda s: _ok(s, retry=RetryPolicy(backoff_max=-1)),
        "retry.backoff_max",
        "between backoff_base and 43200 s",
    ),
    (
        "backoff-max-below-base",
        lambda s: _ok(s, retry=RetryPolicy(backoff_base=10, backoff_max=5)),
        "retry.backoff_max",
        "between backoff_base",
    ),
    (
        "backoff-over-12h",
        lambda s: _ok(s, retry=RetryPolicy(backoff_max=timedelta(hours=13))),
        "retry.backoff_max",
        "43200 s",
    ),
    (
        "backoff-nan",
        lambda s: _ok(s, retry=RetryPolicy(backoff_base=float("nan"))),
        "retry.backoff_base",
        "finite",
    ),
    (
        "jitter-over-1",
        lambda s: _ok(s, retry=RetryPolicy(jitter=1.5)),
        "retry.jitter",
        "between 0 and 1",
    ),
    (
        "jitter-negative",
        lambda s: _ok(s, retry=RetryPolicy(jitter=-0.1)),
        "retry.jitter",
        "between 0 and 1",
    ),
    (
        "jitter-bool",
        lambda s: _ok(s, retry=RetryPolicy(jitter=True)),
        "retry.jitter",
        "number between 0 and 1",
    ),
    ("retry-dict", lambda s: _ok(s, retry={"max_attempts": 3}), "retry", "must be a RetryPolicy"),
    # --- misfire / lane / expire_after ---
    (
        "misfire-unknown",
        lambda s: _ok(s, misfire="sometimes"),
        "misfire",
        "must be one of run_once, skip, catch_up",
    ),
    ("misfire-none", lambda s: _ok(s, misfire=None), "misfire", "must be one of"),
    ("lane-unknown", lambda s: _ok(s, lane="fast"), "lane", "unknown lane"),
    ("expire-after-zero", lambda s: _ok(s, expire_after=0), "expire_after", "must be > 0"),
]


@pytest.mark.parametrize(
    ("call", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
class TestRefused:
    def test_before_anything_is_written(self, shared_env, call, field, fragment):
        _refused(shared_env, call, field, fragment)


def test_refused_next_to_an_existing_task_leaves_it_untouched(env):
    s = env.scheduler()
    s.schedule("job", {"a": 1}, trigger=At(T0 + timedelta(seconds=10)), task_id="keep")
    assert len(env.sqs.sent) == 1
    _refused(env, lambda s: _ok(s, task_id="keep", payload=[1]), "payload", "JSON object")
    _refused(env, lambda s: _ok(s, task_id="keep", timeout=0), "timeout", "must be > 0")
    _refused(env, lambda s: _ok(s, task_id="keep/x"), "task_id", "may contain only")


def test_timeout_limit_is_the_workers_maximum(env):
    limit = env.settings.max_timeout_s
    _refused(env, lambda s: _ok(s, timeout=limit + 0.001), "timeout", f"≤ {limit:g} s")
    _refused(
        env, lambda s: _ok(s, timeout=timedelta(seconds=limit + 1)), "timeout", f"≤ {limit:g} s"
    )
    task = _ok(env.scheduler(), timeout=limit)
    assert task.timeout == limit
    assert _ok(env.scheduler(), timeout=0.001).timeout == 0.001


def test_trailing_newline_in_task_id_is_refused(env):
    # ``re.match(r"...$")`` would accept a single trailing "\n" (``$`` matches before it)
    _refused(env, lambda s: _ok(s, task_id="abc\n"), "task_id", "may contain only")
    _refused(env, lambda s: _ok(s, task_type="job\n"), "task_type", "may contain only")


# --- the limits themselves are accepted ------------------------------------------------------


def test_at_in_the_past_within_grace_runs_at_once(env):
    s = env.scheduler()
    when = T0 - timedelta(seconds=PAST_GRACE_SECONDS)  # exactly at the grace: accepted
    t = s.schedule("job", {}, trigger=At(when))
    assert t.next_fire_at == when
    (entry,) = env.sqs.sent
    assert entry["DelaySeconds"] == 0
    t2 = s.schedule("job", {}, trigger=At(T0 - timedelta(seconds=1)))
    assert [r.scheduled_for for r in s.runs(t2.task_id)] == [T0 - timedelta(seconds=1)]


def test_names_at_the_length_limit_are_accepted(env):
    s = env.scheduler()
    tid, ttype = "i" * MAX_ID_LENGTH, "t" * MAX_ID_LENGTH
    t = s.schedule(ttype, {}, trigger=At(SOON), task_id=tid)
    assert (t.task_id, t.task_type) == (tid, ttype)
    assert s.get(tid).task_type == ttype
    assert s.schedule("A0._:@+=-z", {}, trigger=At(SOON), task_id="Z9._:@+=-a").task_id


def test_payload_exactly_at_the_limit_is_accepted_and_round_trips(env):
    s = env.scheduler()
    payload = {"a": "x" * (MAX_PAYLOAD_BYTES - 8)}
    t = s.schedule("job", payload, trigger=At(SOON), task_id="big")
    assert s.get("big").payload == payload == t.payload


def test_payload_none_is_an_empty_object(env):
    s = env.scheduler()
    t = s.schedule("job", None, trigger=At(SOON))
    assert t.payload == {}
    assert s.get(t.task_id).payload == {}


def test_retry_and_interval_limits_are_accepted(env):
    s = env.scheduler()
    for n in (1, MAX_ATTEMPTS_CAP):
        every = Every(1, start_at=SOON)  # not due yet: nothing dispatched
        t = s.schedule("job", {}, trigger=every, retry=RetryPolicy(max_attempts=n))
        assert t.retry.max_attempts == n
        assert t.status is TaskStatus.ACTIVE
    r = RetryPolicy(backoff_base=0, backoff_max=timedelta(hours=12), jitter=1)
    assert s.schedule("job", {}, trigger=At(SOON), retry=r).retry == r
