"""``dynacron local --state FILE``: keep tasks, runs and dead letters across restarts.

moto (5.2.5) has no supported way to persist its state: its only related feature, the
recorder (``/moto-api/recorder/``), logs HTTP requests to replay them all later, so a restart
would re-send every request ever made (conditional claims included) and its cost grows with
the history; the local server also answers DynamoDB requests without going through moto's
Flask layer, which the recorder hooks. So dynacron saves what it owns through the public APIs:

* on stop: a Scan of the table (every item, DynamoDB JSON) and the DLQ's message bodies;
* on start: BatchWriteItem of those items into the new table, SendMessage of the dead letters.

Messages on the work queue are not kept. They are only pointers to claimed runs, and a
claimed run that nobody follows through is claimed again when its lease expires (guarantee 1:
30 s locally), so a restart delays those runs, it does not lose them. Pending runs whose time
passed while the runtime was down are handled by their misfire policy, as after a poller
outage. The file is written to a temporary name and renamed, so a crash while saving leaves
the previous state in place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
_BATCH_WRITE = 25  # BatchWriteItem limit
_UNPROCESSED_TRIES = 10


class StateFileError(Exception):
    """The state file cannot be read (not JSON, another format, another version)."""


@dataclass(frozen=True)
class StateSummary:
    tasks: int
    runs: int
    dead_letters: int

    def describe(self) -> str:
        from ..cli_tables import plural

        return (
            f"{plural(self.tasks, 'task')}, {plural(self.runs, 'run')}, "
            f"{plural(self.dead_letters, 'dead letter')}"
        )


def _summary(items: list[dict[str, Any]], letters: list[str]) -> StateSummary:
    tasks = sum(1 for i in items if i.get("sk", {}).get("S") == "TASK")
    return StateSummary(tasks, len(items) - tasks, len(letters))


def save(dynamodb: Any, sqs: Any, settings: Any, path: str | Path) -> StateSummary:
    """Write the table's items and the DLQ's bodies to ``path`` (atomically)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": settings.table_name}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if not page.get("LastEvaluatedKey"):
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    letters = _dead_letters(sqs, settings.dlq_url) if settings.dlq_url else []
    doc = {
        "format": "dynacron-local-state",
        "version": FORMAT_VERSION,
        "saved_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "items": items,
        "dead_letters": letters,
    }
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, target)
    return _summary(items, letters)


def _dead_letters(sqs: Any, url: str) -> list[str]:
    """Every DLQ body, each once (they are hidden while read; the queue is about to go)."""
    seen: dict[str, str] = {}
    empty = 0
    while empty < 2:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
        ).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        empty = 0 if fresh else empty + 1
        seen.update((m["MessageId"], m["Body"]) for m in fresh)
    return list(seen.values())


def read(path: str | Path) -> dict[str, Any] | None:
    """The saved document, or None if there is no file yet (a first start)."""
    target = Path(path)
    if not target.exists():
        return None
    try:
        doc = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{target}: not a dynacron state file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != "dynacron-local-state":
        raise StateFileError(f"{target}: not a dynacron state file")
    if doc.get("version") != FORMAT_VERSION:
        raise StateFileError(f"{target}: state format {doc.get('version')!r} is not supported")
    return doc


def load(dynamodb: Any, sqs: Any, settings: Any, doc: dict[str, Any]) -> StateSummary:
    """Put a saved document's items and dead letters into freshly provisioned resources."""
    items = list(doc.get("items", []))
    for i in range(0, len(items), _BATCH_WRITE):
        requests = [{"PutRequest": {"Item": item}} for item in items[i : i + _BATCH_WRITE]]
        pending = {settings.table_name: requests}
        for _ in range(_UNPROCESSED_TRIES):
            out = dynamodb.batch_write_item(RequestItems=pending)
            pending = out.get("UnprocessedItems") or {}
            if not pending:
                break
        else:
            raise StateFileError("the local server kept refusing the saved items")
    letters = [str(b) for b in doc.get("dead_letters", [])]
    for body in letters:
        sqs.send_message(QueueUrl=settings.dlq_url, MessageBody=body)
    return _summary(items, letters)
