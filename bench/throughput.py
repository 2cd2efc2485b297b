"""Figure 2 (dispatch throughput vs. the floor) and figure 5 (scale with 16 shards).

One ``Dispatcher.poll()`` over N due one-time runs, seeded straight into the table exactly as
``Scheduler.schedule(At(...))`` writes them (task item + pending run item in the due index), with
BatchWriteItem. The *floor* is a minimal script that, on an identically seeded table on the same
server, issues the same requests with the same concurrency and no dynacron logic: the same Query
pages of the due index per shard in parallel, one TransactWriteItems per run (conditional update
of the run + conditional update of its task, the same expressions), one SendMessageBatch per 10
runs. ``dispatch_vs_floor`` is the ratio of the two rates; the request counts of both are compared
so that the floor is known to do the same work.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import RequestCounter, log, store_clients


def rows_like_sdk(
    settings: Any, whens: list[datetime], lane: str = "default"
) -> list[dict[str, Any]]:
    """Raw DynamoDB items (task + run per task) as ``Scheduler.schedule(At(t))`` would write."""
    from dynacron import At, Scheduler

    sched = Scheduler(settings=replace(settings, queue_url=None))
    items: list[dict[str, Any]] = []
    for i, when in enumerate(whens):
        items += sched.items_for("bench-noop", {"i": i}, At(when), timeout=30, lane=lane)
    return items


def write_items(ddb: Any, table: str, items: list[dict[str, Any]], threads: int = 8) -> None:
    """BatchWriteItem, 25 items a request, following UnprocessedItems."""
    batches = [items[i : i + 25] for i in range(0, len(items), 25)]

    def write(batch: list[dict[str, Any]]) -> None:
        request = {table: [{"PutRequest": {"Item": it}} for it in batch]}
        while request:
            out = ddb.batch_write_item(RequestItems=request)
            request = out.get("UnprocessedItems") or {}

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, batches))


def seed(ddb: Any, settings: Any, n: int, spread_s: float = 60.0, lead_s: float = 0.0) -> None:
    """``n`` one-time tasks due evenly over ``spread_s`` seconds from ``lead_s`` from now."""
    now = datetime.now(UTC)
    whens = [now + timedelta(seconds=lead_s + spread_s * i / max(1, n)) for i in range(n)]
    write_items(ddb, settings.table_name, rows_like_sdk(settings, whens))


# --- dynacron ---------------------------------------------------------------------------------


def run_dynacron(settings: Any, counter: RequestCounter | None = None) -> dict[str, Any]:
    from dynacron.aws import sqs_client
    from dynacron.dispatch import Dispatcher
    from dynacron.store import Store

    store = Store(settings)
    sqs = sqs_client(settings)
    if counter is not None:
        for c in store_clients(store):
            counter.attach(c)
        counter.attach(sqs)
    dispatcher = Dispatcher(store, sqs, settings)
    _warm(store_clients(store)[0], sqs, settings)
    t0, c0 = time.perf_counter(), time.process_time()
    report = dispatcher.poll()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    rep = report.as_dict()
    return {"elapsed_s": elapsed, "cpu_s": cpu, "sent": rep["sent"], "report": rep,
            "page_size": getattr(dispatcher, "page_size", 500),
            "concurrency": dispatcher.concurrency}


def _warm(ddb: Any, sqs: Any, settings: Any) -> None:
    """One cheap call per client so that neither side pays client/endpoint set-up in the timing."""
    ddb.describe_table(TableName=settings.table_name)
    sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])


# --- the floor ----------------------------------------------------------------------------------


def _floor_clients(settings: Any) -> tuple[Any, Any]:
    """Clients configured as dynacron's: PynamoDB's botocore DynamoDB client, aws.sqs_client."""
    import boto3
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    session.set_credentials("testing", "testing")
    ddb = session.create_client(
        "dynamodb", settings.region, endpoint_url=settings.endpoint_url,
        config=Config(parameter_validation=False, connect_timeout=5, read_timeout=10,
                      max_pool_connections=32,
                      retries={"total_max_attempts": 9, "mode": "standard"}),
    )
    sqs = boto3.client(
        "sqs", region_name=settings.region, endpoint_url=settings.endpoint_url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 6}, max_pool_connections=32),
    )
    return ddb, sqs


def run_floor(settings: Any, page_size: int = 500, concurrency: int = 8,
              counter: RequestCounter | None = None) -> dict[str, Any]:
    ddb, sqs = _floor_clients(settings)
    if counter is not None:
        counter.attach(ddb)
        counter.attach(sqs)
    _warm(ddb, sqs, settings)
    table, queue = settings.table_name, settings.queue_url
    lease_ms = int(settings.lease_s * 1000)
    t0, c0 = time.perf_counter(), time.process_time()
    now_ms = int(time.time() * 1000)
    horizon = now_ms + int(settings.window_s * 1000)

    def query(shard: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": table, "IndexName": "due-index", "Limit": page_size,
            "KeyConditionExpression": "(#0 = :0 AND #1 <= :1)",
            "ExpressionAttributeNames": {"#0": "due_shard", "#1": "due_at"},
            "ExpressionAttributeValues": {":0": {"N": str(shard)}, ":1": {"N": str(horizon)}},
            "ReturnConsumedCapacity": "TOTAL",
        }
        while True:
            page = ddb.query(**kwargs)
            out.extend(page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    shards = range(settings.shards)
    with ThreadPoolExecutor(max_workers=min(len(shards), 16)) as pool:
        items = [it for page in pool.map(query, shards) for it in page]
    items.sort(key=lambda it: int(it["due_at"]["N"]))
    chunks = [items[i : i + 10] for i in range(0, len(items), 10)]
    sent = [0]

    def work(chunk: list[dict[str, Any]]) -> None:
        entries = []
        for it in chunk:
            now = int(time.time() * 1000)
            fence = secrets.token_hex(8)
            sched = int(it["scheduled_for"]["N"])
            ddb.transact_write_items(TransactItems=[
                {"Update": {
                    "TableName": table, "Key": {"pk": it["pk"], "sk": it["sk"]},
                    "ConditionExpression": "#0 = :0",
                    "UpdateExpression": "SET #0 = :1, #1 = :2, #2 = :3, #3 = #3 + :4",
                    "ExpressionAttributeNames": {"#0": "status", "#1": "fence", "#2": "due_at",
                                                 "#3": "dispatches"},
                    "ExpressionAttributeValues": {
                        ":0": {"S": "pending"}, ":1": {"S": "queued"}, ":2": {"S": fence},
                        ":3": {"N": str(max(now, sched) + lease_ms)}, ":4": {"N": "1"}},
                }},
                {"Update": {
                    "TableName": table, "Key": {"pk": it["pk"], "sk": {"S": "TASK"}},
                    "ConditionExpression": "#0 = :0",
                    "UpdateExpression": "SET #1 = :1 REMOVE #2 ADD #3 :2",
                    "ExpressionAttributeNames": {"#0": "status", "#1": "updated_at",
                                                 "#2": "next_fire_at", "#3": "version"},
                    "ExpressionAttributeValues": {
                        ":0": {"S": "active"}, ":1": {"N": str(now)}, ":2": {"N": "1"}},
                }},
            ], ReturnConsumedCapacity="TOTAL")  # botocore adds the ClientRequestToken
            body = json.dumps({"fence": fence, "lane": it["lane"]["S"], "run_id": it["run_id"]["S"],
                               "scheduled_for": sched, "task_id": it["task_id"]["S"], "v": 1},
                              separators=(",", ":"))
            delay = max(0, min(900, math.ceil((sched - now) / 1000 - 1)))
            entries.append({"Id": str(len(entries)), "MessageBody": body, "DelaySeconds": delay})
        out = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
        sent[0] += len(entries) - len(out.get("Failed", []))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(work, chunks))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"elapsed_s": elapsed, "cpu_s": cpu, "sent": sent[0]}


class ShapeRecorder:
    """Request shapes (everything but the values) by operation: the floor must match dynacron's."""

    def __init__(self) -> None:
        self.shapes: dict[str, set[str]] = {}

    def before(self, service: str, operation: str, params: dict[str, Any]) -> None:
        self.shapes.setdefault(operation, set()).add(json.dumps(_shape(params), sort_keys=True))

    def after(self, *args: Any) -> None:
        pass


_KEEP = {"UpdateExpression", "ConditionExpression", "KeyConditionExpression", "IndexName",
         "ExpressionAttributeNames", "ReturnConsumedCapacity", "Limit", "DelaySeconds"}


def _shape(value: Any, key: str = "") -> Any:
    if key in _KEEP:
        return "delay" if key == "DelaySeconds" else value
    if key == "MessageBody":
        return sorted(json.loads(value))
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("S", "N", "BOOL", "NULL"):
            return next(iter(value))  # a typed value: keep the type only
        return {k: _shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(_shape(v), sort_keys=True) for v in value})
    return type(value).__name__


# --- one comparison ------------------------------------------------------------------------------


def compare(endpoint: str, n: int, shards: int, repeats: int = 1,
            check_calls: bool = False) -> dict[str, Any]:
    """dynacron vs the floor on ``endpoint``: ``repeats`` pairs, alternating order."""
    from .common import boto_client, deploy

    ddb = boto_client("dynamodb", endpoint)
    dyn_rates: list[float] = []
    floor_rates: list[float] = []
    cpu: dict[str, list[float]] = {"dynacron": [], "floor": []}
    retries = {"dynacron": 0, "floor": 0}
    detail: dict[str, Any] = {}
    for rep in range(repeats):
        order = ["dynacron", "floor"] if rep % 2 == 0 else ["floor", "dynacron"]
        for side in order:
            settings = deploy(endpoint, shards=shards)
            t0 = time.perf_counter()
            seed(ddb, settings, n)
            seed_s = time.perf_counter() - t0
            counter = RequestCounter()  # counts calls and HTTP attempts (retries) each time
            shapes = ShapeRecorder()
            if check_calls and rep == 0:
                counter.observers.append(shapes)
            if side == "dynacron":
                res = run_dynacron(settings, counter)
                dyn_rates.append(res["sent"] / res["elapsed_s"])
                detail.setdefault("page_size", res["page_size"])
                detail.setdefault("concurrency", res["concurrency"])
                if res["sent"] != n:
                    detail.setdefault("incomplete", []).append(
                        {"side": side, "sent": res["sent"], "report": res["report"],
                         "items_in_table": _count_items(ddb, settings.table_name)})
                    log(f"  dynacron sent {res['sent']} of {n}: {detail['incomplete'][-1]}")
            else:
                res = run_floor(settings, detail.get("page_size", 500),
                                detail.get("concurrency", 8), counter)
                floor_rates.append(res["sent"] / res["elapsed_s"])
                if res["sent"] != n:
                    detail.setdefault("incomplete", []).append(
                        {"side": side, "sent": res["sent"],
                         "items_in_table": _count_items(ddb, settings.table_name)})
                    log(f"  floor sent {res['sent']} of {n}: {detail['incomplete'][-1]}")
            cpu[side].append(res["cpu_s"] * 1000 / n)
            calls = counter.snapshot()
            calls.pop("dynamodb.DescribeTable", None)
            calls.pop("sqs.GetQueueAttributes", None)
            retries[side] += counter.http_attempts - 2 - sum(calls.values())
            if check_calls and rep == 0:
                detail[f"calls_{side}"] = calls
                detail[f"shapes_{side}"] = {k: sorted(v) for k, v in shapes.shapes.items()
                                            if k not in ("DescribeTable", "GetQueueAttributes")}
            log(f"  {side:8s} {n} runs / {shards} shards: {res['elapsed_s']:.2f}s "
                f"= {res['sent'] / res['elapsed_s']:.0f}/s, client CPU "
                f"{res['cpu_s'] * 1000 / n:.2f} ms/run (seeded in {seed_s:.1f}s)")
    dyn = _median(dyn_rates)
    flo = _median(floor_rates)
    out = {"dispatch_per_s": round(dyn, 1), "floor_per_s": round(flo, 1),
           "vs_floor": round(dyn / flo, 3), "runs": n, "shards": shards,
           "dispatch_samples": [round(r, 1) for r in dyn_rates],
           "floor_samples": [round(r, 1) for r in floor_rates],
           "client_cpu_ms_per_run": round(_median(cpu["dynacron"]), 3),
           "floor_client_cpu_ms_per_run": round(_median(cpu["floor"]), 3),
           "http_retries": retries}
    if "incomplete" in detail:
        out["incomplete"] = detail["incomplete"]
    if check_calls:
        out["same_calls"] = detail.get("calls_dynacron") == detail.get("calls_floor")
        out["same_request_shapes"] = detail.get("shapes_dynacron") == detail.get("shapes_floor")
        out["calls"] = detail.get("calls_dynacron")
        if not out["same_calls"]:
            out["calls_floor"] = detail.get("calls_floor")
        if not out["same_request_shapes"]:
            out["shapes_dynacron"] = detail.get("shapes_dynacron")
            out["shapes_floor"] = detail.get("shapes_floor")
    return out


def _count_items(ddb: Any, table: str) -> dict[str, int]:
    """Items by kind and status: tells a lost seed from a run the poll did not find."""
    counts: dict[str, int] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for it in page.get("Items", []):
            kind = "task" if it["sk"]["S"] == "TASK" else "run"
            key = f"{kind}:{it['status']['S']}"
            counts[key] = counts.get(key, 0) + 1
        if not page.get("LastEvaluatedKey"):
            return counts
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
