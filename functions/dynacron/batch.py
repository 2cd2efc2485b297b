"""An SQS batch → attempts, with Powertools batch processing (partial failures reported).

Records of one batch run concurrently: they were delayed to become visible within the same
second or two, and a handler that sleeps must not make its neighbours late. A record that
arrived early (DelaySeconds is whole seconds) waits for its own instant on the event loop,
before it takes a thread: records never wait one after another, and none holds a thread idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from .clock import SystemClock
from .execute import Executor, Outcome
from .settings import Settings

_pool = ThreadPoolExecutor(max_workers=10, thread_name_prefix="dynacron-record")


class RecordNotAcked(Exception):
    """Raised for a record that must stay on the queue (retry later, or not started)."""


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source builds from ``ReceiveMessage`` output (for the local
    runtime and tests, which play the event source)."""

    def record(msg: dict[str, Any]) -> dict[str, Any]:
        attrs = msg.get("Attributes", {})
        return {
            "messageId": msg["MessageId"],
            "receiptHandle": msg["ReceiptHandle"],
            "body": msg["Body"],
            "attributes": {
                key: str(attrs.get(key, default))
                for key, default in (("ApproximateReceiveCount", "1"), ("SentTimestamp", ""),
                                     ("SenderId", ""), ("ApproximateFirstReceiveTimestamp", ""))
            },
            "messageAttributes": {},
            "md5OfBody": msg.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }

    return {"Records": [record(m) for m in messages]}


def queue_url_for_arn(arn: str, settings: Settings) -> str:
    """The queue URL of ``arn``: one of ours if its name matches, else the AWS URL form."""
    parts = arn.split(":")
    name = parts[-1]
    for url in settings.all_queues:
        if url and url.rstrip("/").rsplit("/", 1)[-1] == name:
            return url
    if len(parts) >= 6:
        return f"https://sqs.{parts[3]}.amazonaws.com/{parts[4]}/{name}"
    return settings.queue_url or ""


def process_event(
    event: dict[str, Any], context: Any, executor: Executor, pool: ThreadPoolExecutor | None = None
) -> PartialItemFailureResponse:
    """Process one SQS event; returns ``{"batchItemFailures": [...]}`` for Lambda.

    ``pool`` runs the records (default: this module's 10 threads, one Lambda's batch); the
    local runtime, which runs several batches at once in one process, passes a larger one.
    """
    time_left = _time_left(context)
    pool = pool or _pool

    async def record_handler(record: SQSRecord) -> str:
        await wait_for_instant(executor, record.body)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            pool,
            lambda: executor.execute(
                record.body,
                record.receipt_handle,
                queue_url_for_arn(record.event_source_arn or "", executor.settings),
                time_left,
            ),
        )
        if result.outcome is not Outcome.ACK:
            raise RecordNotAcked(f"{result.status}: {result.detail}")
        return result.status

    processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    hidden = _hide_for_first_beat(event, executor)
    try:
        return async_process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        executor.forget(hidden)


def _hide_for_first_beat(event: dict[str, Any], executor: Executor) -> set[str]:
    """One ChangeMessageVisibilityBatch per queue of the batch (Lambda gives one queue per
    event source) instead of one request per record as its attempt starts."""
    by_queue: dict[str, list[tuple[str, float]]] = {}
    for raw in event.get("Records", []):
        handle, body = raw.get("receiptHandle"), raw.get("body")
        if not isinstance(handle, str) or not isinstance(body, str):
            continue  # the record handler reports it
        url = queue_url_for_arn(raw.get("eventSourceARN") or "", executor.settings)
        by_queue.setdefault(url, []).append((handle, executor.early_wait_s(body)))
    hidden: set[str] = set()
    for url, records in by_queue.items():
        hidden |= executor.hide_batch(url, records)
    return hidden


async def wait_for_instant(executor: Executor, body: str) -> None:
    """Wait, on the event loop and not on a thread, until the record's run is due: every record
    of a batch waits for its own instant at the same time, and a record due now starts at once
    whatever its neighbours wait for. A clock may offer ``async_sleep`` (tests); an injected
    clock without it advances at once through ``sleep``."""
    wait = executor.early_wait_s(body)
    if wait <= 0:
        return
    sleeper = getattr(executor.clock, "async_sleep", None)
    if sleeper is not None:
        await sleeper(wait)
    elif isinstance(executor.clock, SystemClock):
        await asyncio.sleep(wait)
    else:
        executor.clock.sleep(wait)


def _time_left(context: Any) -> Callable[[], float]:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    if getter is None:
        return lambda: float("inf")
    return lambda: getter() / 1000.0
