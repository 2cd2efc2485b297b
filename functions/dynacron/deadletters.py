"""Reading and redriving the dead-letter queue (``Scheduler.dead_letters``/``redrive_all``).

The DLQ holds three kinds of record, written by ``dispatch.send_dead_letter`` and the
executor: ``dead_run`` (a run that ended dead: it names task, run, attempts, reason, last
error), ``undecodable`` and ``orphan`` (a message that names nothing that can run), plus raw
work messages moved there by the queue's own redrive policy (``work``). Listing never consumes:
messages are hidden while read and made visible again at once. A redrive gives the dead run a
fresh set of attempts first and deletes its DLQ messages only once that has succeeded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidStateError, RunNotFound, TaskNotFound

#: Record kinds that name a run ``Scheduler.redrive`` can revive.
REDRIVABLE = ("dead_run", "work")


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ message, whatever its kind (fields it does not carry are None)."""

    message_id: str
    kind: str
    task_id: str | None = None
    run_id: str | None = None
    task_type: str | None = None
    attempts: int | None = None
    reason: str | None = None
    error: str | None = None
    sent_at: datetime | None = None
    body: str | None = None  # undecodable records: the message as received

    @property
    def redrivable(self) -> bool:
        return self.kind in REDRIVABLE and bool(self.task_id and self.run_id)


@dataclass(frozen=True)
class RedriveResult:
    """What ``redrive_all`` did with one message: ``redriven``, ``deleted`` or ``left``."""

    message_id: str | None
    kind: str | None
    task_id: str | None
    run_id: str | None
    outcome: str
    detail: str


def describe(msg: dict[str, Any]) -> DeadLetter:
    """What a received DLQ message says."""
    sent = msg.get("Attributes", {}).get("SentTimestamp")
    base: dict[str, Any] = {
        "message_id": msg.get("MessageId", ""),
        "sent_at": datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
    }
    try:
        data = json.loads(msg.get("Body", ""))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return DeadLetter(**base, kind="unknown", reason="body is not a JSON object")
    kind = data.get("kind")
    reason = data.get("reason")
    if kind is None and {"task_id", "run_id", "fence"} <= data.keys():
        kind = "work"
        reason = "moved by the queue's redrive policy (the worker failed on it repeatedly)"
    attempts = data.get("attempts")
    return DeadLetter(
        **base,
        kind=kind if isinstance(kind, str) else "unknown",
        task_id=_str(data.get("task_id")),
        run_id=_str(data.get("run_id")),
        task_type=_str(data.get("task_type")),
        attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else None,
        reason=_str(reason),
        error=_str(data.get("error")),
        body=_str(data.get("body")) if kind == "undecodable" else None,
    )


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def receive(sqs: Any, url: str, visibility: int, max_messages: int) -> Iterator[dict[str, Any]]:
    """DLQ messages, each at most once, hidden for ``visibility`` s while looked at."""
    seen: set[str] = set()
    empty = 0
    while len(seen) < max_messages and empty < 2:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, max_messages - len(seen))),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        empty = 0 if fresh else empty + 1
        for m in fresh:
            seen.add(m["MessageId"])
            yield m


def release(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    """Make messages we only looked at visible again at once."""
    for i in range(0, len(messages), 10):
        chunk = messages[i : i + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for n, m in enumerate(chunk)
            ],
        )


def list_messages(sqs: Any, url: str, max_messages: int) -> list[DeadLetter]:
    messages: list[dict[str, Any]] = []
    try:
        messages.extend(receive(sqs, url, visibility=30, max_messages=max_messages))
    finally:
        release(sqs, url, messages)
    return [describe(m) for m in messages]


def delete_for_run(sqs: Any, url: str, task_id: str, run_id: str, max_messages: int) -> int:
    """Delete every DLQ message of one run; the others are released. Returns how many."""
    keep: list[dict[str, Any]] = []
    deleted = 0
    try:
        for msg in receive(sqs, url, visibility=60, max_messages=max_messages):
            letter = describe(msg)
            if letter.redrivable and (letter.task_id, letter.run_id) == (task_id, run_id):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
                deleted += 1
            else:
                keep.append(msg)
    finally:
        release(sqs, url, keep)
    return deleted


def redrive_messages(
    sqs: Any, url: str, revive: Callable[[str, str], Any], max_messages: int
) -> list[RedriveResult]:
    """Revive the run of every redrivable message, then delete the message; leave the rest."""
    results: list[RedriveResult] = []
    revived: set[tuple[str, str]] = set()
    keep: list[dict[str, Any]] = []
    try:
        for msg in receive(sqs, url, visibility=60, max_messages=max_messages):
            letter = describe(msg)
            ids = (letter.message_id, letter.kind, letter.task_id, letter.run_id)
            if not letter.redrivable:
                keep.append(msg)
                results.append(RedriveResult(*ids, "left", f"{letter.kind}: nothing to redrive"))
                continue
            key = (letter.task_id or "", letter.run_id or "")
            if key in revived:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
                results.append(RedriveResult(*ids, "deleted", "duplicate of a run redriven now"))
                continue
            try:
                run = revive(*key)
            except (TaskNotFound, RunNotFound, InvalidStateError) as exc:
                keep.append(msg)
                results.append(RedriveResult(*ids, "left", str(exc)))
                continue
            revived.add(key)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
            results.append(RedriveResult(*ids, "redriven", f"run is {run.status.value}"))
    finally:
        release(sqs, url, keep)
    return results
