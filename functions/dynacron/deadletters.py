"""Reading and redriving the dead-letter queue (``Scheduler.dead_letters``/``redrive_all``).

The DLQ holds three kinds of record (:class:`DeadRecord`, this module's: versioned,
``to_body``/``parse``), written by :func:`send_dead_letter` (poller and worker) and the
executor: ``dead_run`` (a run that ended dead: it names task, run, attempts, reason, last
error), ``undecodable`` and ``orphan`` (a message that names nothing that can run), plus raw
work messages moved there by the queue's own redrive policy (``work``). Listing never consumes:
messages are hidden while read and made visible again at once. A redrive gives the dead run a
fresh set of attempts first and deletes its DLQ messages only once that has succeeded, and only
the messages it read before the revive whose record is of the life it revived (see
``redrive_messages``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidStateError, RunNotFound, TaskNotFound, ValidationError
from .types import MAX_ERROR_CHARS

#: The version of the records this module writes (``v``); ``parse`` refuses any other.
DEAD_LETTER_VERSION = 1
#: How much of an undecodable message its record keeps.
MAX_BODY_CHARS = 2048
#: The kinds of record dynacron writes.
KINDS = ("dead_run", "undecodable", "orphan")

#: Record kinds that name a run ``Scheduler.redrive`` can revive.
REDRIVABLE = ("dead_run", "work")
#: How long a redrive hides the messages it read (reviving a thousand runs takes a while).
REDRIVE_VISIBILITY = 300


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
    #: The run's redrive count when it died (None: the record does not say, e.g. a work message).
    redrives: int | None = None

    @property
    def redrivable(self) -> bool:
        return self.kind in REDRIVABLE and bool(self.task_id and self.run_id)


def clip(text: str) -> str:
    """An error text cut to what a run (and its record) keeps (``MAX_ERROR_CHARS``)."""
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


@dataclass(frozen=True)
class DeadRecord:
    """What dynacron writes on the DLQ: a dead run (who, how many attempts, which life, why;
    never the payload), or a message that named nothing runnable (undecodable, orphan)."""

    kind: str
    reason: str
    task_id: str | None = None
    run_id: str | None = None
    task_type: str | None = None
    attempts: int | None = None
    redrives: int | None = None  # which life of the run died (a redrive deletes older ones)
    error: str | None = None
    scheduled_for: str | None = None  # ISO 8601
    dead_at: str | None = None  # ISO 8601
    body: str | None = None  # undecodable: the message as received, cut

    def to_body(self) -> str:
        data: dict[str, Any] = {"v": DEAD_LETTER_VERSION, "kind": self.kind}
        for name in ("task_id", "run_id", "task_type", "attempts", "redrives", "reason",
                     "error", "scheduled_for", "dead_at", "body"):  # fmt: skip
            value = getattr(self, name)
            if value is not None or (self.kind == "dead_run" and name == "error"):
                data[name] = value
        return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

    @classmethod
    def parse(cls, body: str) -> DeadRecord:
        """A record from its body; ``ValidationError`` naming the field if it is not one."""
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            raise ValidationError("dead_letter", "body is not JSON") from None
        if not isinstance(data, dict):
            raise ValidationError("dead_letter", "body is not a JSON object")
        if data.get("v") != DEAD_LETTER_VERSION:
            raise ValidationError("dead_letter.v", f"unsupported version {data.get('v')!r}")
        if data.get("kind") not in KINDS:
            raise ValidationError("dead_letter.kind", f"must be one of {', '.join(KINDS)}")
        return cls(
            kind=data["kind"],
            reason=_str(data.get("reason")) or "",
            task_id=_str(data.get("task_id")),
            run_id=_str(data.get("run_id")),
            task_type=_str(data.get("task_type")),
            attempts=_int(data.get("attempts")),
            redrives=_int(data.get("redrives")),
            error=_str(data.get("error")),
            scheduled_for=_str(data.get("scheduled_for")),
            dead_at=_str(data.get("dead_at")),
            body=_str(data.get("body")),
        )


def dead_run_record(row: Any, reason: str, error: str | None, now: datetime) -> DeadRecord:
    """The record of a run that ended dead (``row``: its storage row as read)."""
    from .clock import from_ms

    scheduled = from_ms(row.scheduled_for)
    return DeadRecord(
        kind="dead_run",
        reason=reason,
        task_id=row.task_id,
        run_id=row.run_id,
        task_type=row.task_type,
        attempts=int(row.attempt or 0),
        redrives=int(row.redrives or 0),
        error=clip(error) if error else None,
        scheduled_for=None if scheduled is None else scheduled.isoformat(),
        dead_at=now.isoformat(),
    )


def send_dead_letter(
    sqs: Any, settings: Any, row: Any, reason: str, error: str | None, now: datetime
) -> None:
    """Put the record of a dead run on the DLQ (if one is configured)."""
    if settings.dlq_url:
        record = dead_run_record(row, reason, error, now)
        sqs.send_message(QueueUrl=settings.dlq_url, MessageBody=record.to_body())


def send_record(sqs: Any, settings: Any, record: DeadRecord) -> None:
    """Put an undecodable or orphan record on the DLQ (if one is configured)."""
    if settings.dlq_url:
        sqs.send_message(QueueUrl=settings.dlq_url, MessageBody=record.to_body())


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
        record = DeadRecord.parse(msg.get("Body", ""))
    except ValidationError:  # not one of ours (a work message, another version): best effort
        pass
    else:
        fields = {k: v for k, v in vars(record).items() if k in DeadLetter.__dataclass_fields__}
        if record.kind != "undecodable":
            fields["body"] = None
        return DeadLetter(**base, **fields)
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
    attempts, redrives = data.get("attempts"), data.get("redrives")
    return DeadLetter(
        **base,
        kind=kind if isinstance(kind, str) else "unknown",
        task_id=_str(data.get("task_id")),
        run_id=_str(data.get("run_id")),
        task_type=_str(data.get("task_type")),
        attempts=_int(attempts),
        reason=_str(reason),
        error=_str(data.get("error")),
        body=_str(data.get("body")) if kind == "undecodable" else None,
        redrives=_int(redrives),
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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


def _is_older(letter: DeadLetter, redrives: int) -> bool:
    """Whether ``letter`` records a death from before the run's ``redrives``-th revive.

    Only called for messages read *before* that revive, so a record that does not say which
    life it is from (a raw work message, a record from before the count existed) is older too.
    """
    return letter.redrives is None or letter.redrives < redrives


def redrive_messages(
    sqs: Any,
    url: str,
    revive: Callable[[str, str], Any],
    max_messages: int,
    only: tuple[str, str] | None = None,
) -> list[RedriveResult]:
    """Revive the run of every redrivable message (of the run ``only``, if given), then delete
    the messages of the deaths that revive covers; leave the rest on the queue.

    Every message is read *before* any run is revived, and a message is deleted only if it was
    read then and its record is of an earlier life of the run (``redrives`` below the run's
    count after the revive): a revived run that dies again while this runs puts a record this
    call never reads, so a dead run never ends with an empty DLQ.
    """
    messages: list[dict[str, Any]] = []
    keep: list[dict[str, Any]] = []
    try:
        messages.extend(receive(sqs, url, visibility=REDRIVE_VISIBILITY, max_messages=max_messages))
        by_run: dict[tuple[str, str], list[tuple[dict[str, Any], DeadLetter]]] = {}
        results: list[RedriveResult] = []
        for msg in messages:
            letter = describe(msg)
            key = (letter.task_id or "", letter.run_id or "")
            if letter.redrivable and (only is None or key == only):
                by_run.setdefault(key, []).append((msg, letter))
            else:
                keep.append(msg)
                if only is None:
                    results.append(_result(letter, "left", f"{letter.kind}: nothing to redrive"))
        for key, found in by_run.items():
            results.extend(_redrive_run(sqs, url, key, found, revive, keep))
    except BaseException:
        keep = messages  # nothing is deleted past an error we did not expect
        raise
    finally:
        release(sqs, url, keep)
    return results


def _redrive_run(
    sqs: Any,
    url: str,
    key: tuple[str, str],
    found: list[tuple[dict[str, Any], DeadLetter]],
    revive: Callable[[str, str], Any],
    keep: list[dict[str, Any]],
) -> list[RedriveResult]:
    try:
        run = revive(*key)
    except (TaskNotFound, RunNotFound, InvalidStateError) as exc:
        keep.extend(msg for msg, _ in found)
        return [_result(letter, "left", str(exc)) for _, letter in found]
    results = []
    outcome, detail = "redriven", f"run is {run.status.value}"
    for msg, letter in found:
        if not _is_older(letter, int(run.redrives)):
            keep.append(msg)
            results.append(_result(letter, "left", "a death after this redrive: kept"))
            continue
        sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
        results.append(_result(letter, outcome, detail))
        outcome, detail = "deleted", "duplicate of a run redriven now"
    return results


def _result(letter: DeadLetter, outcome: str, detail: str) -> RedriveResult:
    return RedriveResult(
        letter.message_id, letter.kind, letter.task_id, letter.run_id, outcome, detail
    )
