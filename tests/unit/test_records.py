"""The two records that leave the table: the work message (message.py) and the dead-letter
record (deadletters.py). Each is versioned and round-trips through its body."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from dynacron.deadletters import DeadRecord, dead_run_record, describe
from dynacron.errors import ValidationError
from dynacron.message import MESSAGE_VERSION, Message
from dynacron.types import MAX_ERROR_CHARS


@pytest.mark.parametrize(
    "msg",
    [
        Message("t-1", "1767225600000-s", "f00d", 1767225600000),
        Message("t-1", "1767225600000-mab", "f00d", 1767225600000, "bulk", 1767225601000, 50),
    ],
)
def test_work_message_round_trips(msg):
    body = msg.to_body()
    assert json.loads(body)["v"] == MESSAGE_VERSION
    assert Message.parse(body) == msg


def test_work_message_of_another_version_is_refused():
    body = json.loads(Message("t", "r", "f", 1).to_body())
    with pytest.raises(ValidationError) as err:
        Message.parse(json.dumps({**body, "v": MESSAGE_VERSION + 1}))
    assert err.value.field == "message.v"


def _row(**kw):
    base = dict(task_id="t-1", run_id="1767225600000-s", task_type="send", attempt=3,
                redrives=None, scheduled_for=1767225600000)
    return SimpleNamespace(**{**base, **kw})


def test_dead_run_record_round_trips_and_says_who_and_why():
    now = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    record = dead_run_record(_row(redrives=2), "retries exhausted", "boom", now)
    assert DeadRecord.parse(record.to_body()) == record
    data = json.loads(record.to_body())
    assert (data["v"], data["kind"], data["attempts"], data["redrives"]) == (1, "dead_run", 3, 2)
    assert data["scheduled_for"] == "2026-01-01T00:00:00+00:00" and "payload" not in data


def test_dead_run_record_keeps_a_clipped_error():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    record = dead_run_record(_row(), "r", "x" * (MAX_ERROR_CHARS + 10), now)
    assert record.error is not None and len(record.error) == MAX_ERROR_CHARS
    assert DeadRecord.parse(record.to_body()).error == record.error


@pytest.mark.parametrize(
    "record",
    [
        DeadRecord("undecodable", "message.v: unsupported version 9", body='{"v":9}'),
        DeadRecord("orphan", "run 'r' of task 't' not found (deleted?)", task_id="t", run_id="r"),
    ],
)
def test_undecodable_and_orphan_records_round_trip(record):
    assert DeadRecord.parse(record.to_body()) == record
    letter = describe({"MessageId": "m1", "Body": record.to_body()})
    assert (letter.kind, letter.reason, letter.task_id) == (record.kind, record.reason,
                                                          record.task_id)


@pytest.mark.parametrize(
    ("body", "field"),
    [("not json", "dead_letter"), ("[1]", "dead_letter"),
     ('{"v": 2, "kind": "dead_run"}', "dead_letter.v"),
     ('{"v": 1, "kind": "work"}', "dead_letter.kind")],
)
def test_a_body_that_is_no_dead_letter_record_is_refused_naming_the_field(body, field):
    with pytest.raises(ValidationError) as err:
        DeadRecord.parse(body)
    assert err.value.field == field


def test_a_work_message_moved_by_the_redrive_policy_still_reads_as_work():
    body = Message("t", "r", "f", 1).to_body()
    letter = describe({"MessageId": "m", "Body": body})
    assert (letter.kind, letter.task_id, letter.run_id) == ("work", "t", "r")
