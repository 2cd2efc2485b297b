"""Figure 3: AWS requests, capacity units and dollars per fire.

Every request dynacron makes is counted by (service, operation) with botocore event hooks on its
own clients: the SDK's, the poller's (``Dispatcher.poll``) and the worker's (``Executor`` under
``batch.process_event``), plus the SQS calls that Lambda's event source makes for the worker,
played by the local runtime's own batch code (``LocalRuntime._run_batch``: ``process_event`` then
DeleteMessageBatch) after a ReceiveMessage of up to 10 messages. A frozen clock drives the
lifecycle create → claim → send → start → finish tick by tick; DelaySeconds is dropped on the way
to the server (it would hold messages for real seconds) but the SendMessageBatch is counted.

Capacity units are computed from item sizes (DynamoDB's rules: attribute names + values; 1 WRU
per started KB of the larger of the item before and after a write, 2x inside a transaction; the
due-index GSI, which projects every attribute, is written when an item enters, leaves, moves in,
or changes inside it; 1 RRU per 4 KB for a strongly consistent read, 0.5 for an eventually
consistent one, Query/Scan on the total size returned). Before and after images are read with
an uncounted client.

Scenarios: ``one_time`` (At tasks created ahead of the poller's window; all due within seconds
of each other, so batches of 10 fill), ``recurring`` (Every(60 s) tasks fired over several
ticks; the claim transaction creates the next occurrence), ``sparse`` (one-time fires far enough
apart that every message is received alone: batches of 1), ``short_notice`` (At tasks due
before the next poll, which the SDK sends itself, one message per SendMessageBatch).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import RequestCounter, boto_client, deploy, store_clients

# Published on-demand prices, us-east-1 (as given in issue 6; DynamoDB on-demand writes were
# halved in Nov 2024). Free tiers are ignored on our side; EventBridge Scheduler's is shown.
PRICES = {
    "dynamodb_write_per_million_wru": 0.625,
    "dynamodb_read_per_million_rru": 0.125,
    "dynamodb_storage_per_gb_month": 0.25,
    "sqs_per_million_requests": 0.40,
    "lambda_per_million_requests": 0.20,
    "lambda_per_gb_second": 0.0000166667,
    "eventbridge_scheduler_per_million": 1.00,
    "eventbridge_scheduler_free_per_month": 14_000_000,
    "as_of": "us-east-1 on-demand list prices, 2024-11 onward (DynamoDB on-demand cut of "
             "2024-11-01); checked against the issue's figures",
}
LAMBDA_MEMORY_GB = 0.5  # template.yaml: MemorySize 512
POLLS_PER_MONTH = 43_200  # rate(1 minute), 30 days
ESM_IDLE_RECEIVES_PER_MONTH = 5 * 30 * 86_400 // 20  # 5 idle long pollers, 20 s waits (assumed)
RETENTION_DAYS = 30

_WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
_READ_OPS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
_INDEX_KEYS = ("due_shard", "due_at")


# --- item sizes and capacity units ---------------------------------------------------------


def _num_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def value_size(value: dict[str, Any]) -> int:
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _num_size(v)
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(len(x.encode() if isinstance(x, str) else x) for x in v)
    if kind == "NS":
        return sum(_num_size(x) for x in v)
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(x) for k, x in v.items())
    raise ValueError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(k.encode()) + value_size(v) for k, v in item.items())


def _kb(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def _in_index(item: dict[str, Any] | None) -> bool:
    return bool(item) and all(k in item for k in _INDEX_KEYS)


def write_units(old: dict[str, Any] | None, new: dict[str, Any] | None,
                transactional: bool) -> tuple[float, float]:
    """(table WRU, due-index WRU) of one item write."""
    table = _kb(max(item_size(old), item_size(new))) * (2 if transactional else 1)
    gsi = 0
    was, now = _in_index(old), _in_index(new)
    if was and now:
        if any(old[k] != new[k] for k in _INDEX_KEYS):  # type: ignore[index]
            gsi = _kb(item_size(old)) + _kb(item_size(new))  # delete + put
        elif old != new:
            gsi = _kb(item_size(new))
    elif was:
        gsi = _kb(item_size(old))
    elif now:
        gsi = _kb(item_size(new))
    return table, gsi


class CapacityMeter:
    """Observer for RequestCounter: WRU/RRU by operation, from item sizes."""

    def __init__(self, raw_ddb: Any, table: str) -> None:
        self.raw = raw_ddb
        self.table = table
        self.local = threading.local()
        self.lock = threading.Lock()
        self.wru: Counter[str] = Counter()
        self.gsi_wru: Counter[str] = Counter()
        self.rru: Counter[str] = Counter()
        self.final_sizes: dict[tuple[str, str], int] = {}

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.raw.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")

    def _writes(self, op: str, params: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
        if op == "TransactWriteItems":
            out = []
            for entry in params["TransactItems"]:
                (_kind, body), = entry.items()
                key = body.get("Key") or {k: body["Item"][k] for k in ("pk", "sk")}
                out.append((key, True))
            return out
        if op == "PutItem":
            return [({k: params["Item"][k] for k in ("pk", "sk")}, False)]
        if op == "BatchWriteItem":
            out = []
            for reqs in params["RequestItems"].values():
                for r in reqs:
                    body = r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"]
                    out.append(({k: body[k] for k in ("pk", "sk")}, False))
            return out
        return [(params["Key"], False)]

    def before(self, service: str, op: str, params: dict[str, Any]) -> None:
        if service == "dynamodb" and op in _WRITE_OPS:
            writes = self._writes(op, params)
            self.local.pending = [(key, tx, self._get(key)) for key, tx in writes]
        elif service == "dynamodb" and op in _READ_OPS:
            # BatchGetItem says it per table, inside RequestItems.
            per_table = [t.get("ConsistentRead") for t in params.get("RequestItems", {}).values()]
            self.local.consistent = bool(params.get("ConsistentRead") or any(per_table))

    def after(self, service: str, op: str, parsed: dict[str, Any]) -> None:
        if service != "dynamodb":
            return
        if op in _WRITE_OPS:
            table = gsi = 0.0
            for key, tx, old in getattr(self.local, "pending", []):
                new = self._get(key)
                t, g = write_units(old, new, tx)
                table += t
                gsi += g
                if new is not None:
                    with self.lock:
                        self.final_sizes[(key["pk"]["S"], key["sk"]["S"])] = item_size(new)
            self.local.pending = []
            with self.lock:
                self.wru[op] += table
                self.gsi_wru[op] += gsi
        elif op in _READ_OPS:
            if op == "BatchGetItem":  # each item is its own read, rounded up to 4 KB
                items = [i for found in parsed.get("Responses", {}).values() for i in found]
                units = sum(max(1, math.ceil(item_size(i) / 4096)) for i in items) or 1
            else:
                items = parsed.get("Items") or ([parsed["Item"]] if parsed.get("Item") else [])
                units = max(1, math.ceil(sum(item_size(i) for i in items) / 4096))
            with self.lock:
                self.rru[op] += units * (1.0 if getattr(self.local, "consistent", False) else 0.5)


# --- the scenario ----------------------------------------------------------------------------


class _NoDelaySQS:
    """Forwards to the counted SQS client without DelaySeconds (a frozen clock cannot wait)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        entries = [{k: v for k, v in e.items() if k != "DelaySeconds"} for e in Entries]
        return self._client.send_message_batch(QueueUrl=QueueUrl, Entries=entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def scenario(endpoint: str, kind: str, fires: int, ticks: int = 1, receive_max: int = 10,
             meter: bool = True, payload_bytes: int = 0) -> dict[str, Any]:
    """Run ``fires`` fires of ``kind`` through their whole lifecycle; counts by phase.

    ``meter=False`` skips the capacity meter (whose image reads would lengthen the worker's
    invocations): use it to time the invocations. ``payload_bytes``: each task's payload is
    padded to about this many bytes of JSON (0: the tiny ``{"i": n}``).
    """
    from dynacron import At, Every, Scheduler
    from dynacron.clock import FrozenClock
    from dynacron.dispatch import Dispatcher
    from dynacron.execute import Executor
    from dynacron.local.runtime import LocalRuntime
    from dynacron.store import Store

    settings = deploy(endpoint, shards=8, handlers=("bench.handlers",))
    from dynacron import registry

    registry.load(["bench.handlers"])
    counter = RequestCounter()
    meter_ = CapacityMeter(boto_client("dynamodb", endpoint), settings.table_name)
    if meter:
        counter.observers.append(meter_)
    sqs = counter.attach(boto_client("sqs", endpoint))
    nd_sqs = _NoDelaySQS(sqs)
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    clock = FrozenClock(t0)

    def counted_store() -> Store:
        store = Store(settings)
        for c in store_clients(store):
            counter.attach(c)
        return store

    sched = Scheduler(settings=settings, clock=clock, sqs=nd_sqs)
    for c in store_clients(sched.store):
        counter.attach(c)
    dispatcher = Dispatcher(counted_store(), nd_sqs, settings, clock=clock)
    executor = Executor(counted_store(), nd_sqs, settings, clock=clock, rand=lambda: 0.0)
    # The local runtime's batch code, without its server and loops.
    rt = LocalRuntime(port=0)
    rt.settings, rt.executor, rt.sqs = settings, executor, sqs
    rt.queue_arn = sqs.get_queue_attributes(
        QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    from concurrent.futures import ThreadPoolExecutor

    rt._pool = ThreadPoolExecutor(max_workers=10)
    counter.reset()

    phases: dict[str, dict[str, int]] = {}
    first_due = t0 + timedelta(seconds=300)
    step = timedelta(milliseconds=50)  # due 50 ms apart: ten or more due in the same second
    n_tasks = fires if kind != "recurring" else max(1, fires // ticks)
    if kind == "short_notice":
        ticks = 0
    before = counter.snapshot()
    for i in range(n_tasks):
        if kind == "recurring":
            trig: Any = Every(60, start_at=first_due + i * step)
        elif kind == "short_notice":
            trig = At(t0 + timedelta(seconds=30) + i * step)
        else:
            trig = At(first_due + i * step)
        sched.schedule("bench-noop", _payload(i, payload_bytes), trigger=trig, timeout=30)
    phases["create"] = _diff(counter.snapshot(), before)

    durations: list[float] = []
    batch_sizes: list[int] = []
    sent_total = 0
    worker_wru = [0.0, 0.0]  # table + index, and index, write units of the worker's phase

    def indexed() -> float:
        return sum(meter_.gsi_wru.values())

    def written() -> float:
        return sum(meter_.wru.values()) + indexed()

    def drain(expected: int) -> None:
        before, wru0, gsi0 = counter.snapshot(), written(), indexed()
        got = 0
        while got < expected:
            msgs = sqs.receive_message(
                QueueUrl=settings.queue_url, MaxNumberOfMessages=receive_max,
                WaitTimeSeconds=1, VisibilityTimeout=rt.visibility_timeout,
                AttributeNames=["All"]).get("Messages", [])
            if not msgs:
                raise RuntimeError(f"queue empty after {got} of {expected} messages")
            got += len(msgs)
            start = time.perf_counter()
            rt._run_batch(msgs)
            durations.append(time.perf_counter() - start)
            batch_sizes.append(len(msgs))
        _add(phases, "worker", _diff(counter.snapshot(), before))
        worker_wru[0] += written() - wru0
        worker_wru[1] += indexed() - gsi0

    if kind == "short_notice":
        clock.set(t0 + timedelta(seconds=30) + n_tasks * step + timedelta(seconds=1))
        drain(n_tasks)
        sent_total = n_tasks
    for k in range(ticks):
        tick = first_due - timedelta(seconds=60) + timedelta(seconds=60 * k)
        clock.set(tick)
        before = counter.snapshot()
        report = dispatcher.poll()
        _add(phases, "poll", _diff(counter.snapshot(), before))
        sent_total += report.sent
        clock.set(tick + timedelta(seconds=60) + n_tasks * step + timedelta(seconds=1))
        drain(report.sent)
    rt._pool.shutdown()

    succeeded = _count_succeeded(boto_client("dynamodb", endpoint), settings.table_name)
    total = counter.snapshot()
    ddb_writes = sum(v for k, v in total.items()
                     if k.startswith("dynamodb.") and k.split(".")[1] in _WRITE_OPS)
    ddb_reads = sum(v for k, v in total.items()
                    if k.startswith("dynamodb.") and k.split(".")[1] in _READ_OPS)
    sqs_reqs = sum(v for k, v in total.items() if k.startswith("sqs."))
    run_sizes = [s for (pk, sk), s in meter_.final_sizes.items() if sk.startswith("RUN#")]
    task_sizes = [s for (pk, sk), s in meter_.final_sizes.items() if sk == "TASK"]
    f = max(1, succeeded)
    out = {
        "fires": succeeded,
        "sent": sent_total,
        "requests": total,
        "requests_by_phase": phases,
        "ddb_writes_per_fire": round(ddb_writes / f, 3),
        "ddb_reads_per_fire": round(ddb_reads / f, 3),
        "sqs_requests_per_fire": round(sqs_reqs / f, 3),
        "worker_invocations_per_fire": round(len(batch_sizes) / f, 3),
        "mean_batch_size": round(sum(batch_sizes) / max(1, len(batch_sizes)), 2),
        "worker_invocation_ms_local": round(1000 * sum(durations) / max(1, len(durations)), 1),
        "wru_table_per_fire": round(sum(meter_.wru.values()) / f, 3),
        "wru_gsi_per_fire": round(sum(meter_.gsi_wru.values()) / f, 3),
        "wru_by_op_per_fire": {k: round((meter_.wru[k] + meter_.gsi_wru[k]) / f, 3)
                               for k in sorted(meter_.wru)},
        "rru_per_fire": round(sum(meter_.rru.values()) / f, 3),
        "wru_worker_per_fire": round(worker_wru[0] / f, 3),
        "wru_worker_gsi_per_fire": round(worker_wru[1] / f, 3),
        "run_item_bytes": round(sum(run_sizes) / max(1, len(run_sizes))),
        "task_item_bytes": round(sum(task_sizes) / max(1, len(task_sizes))),
        "stored_bytes_per_fire": round((sum(run_sizes) + (sum(task_sizes) if kind != "recurring"
                                                         else 0)) / f),
    }
    out["wcu_per_fire"] = round(out["wru_table_per_fire"] + out["wru_gsi_per_fire"], 3)
    return out


def _payload(i: int, size: int) -> dict[str, Any]:
    if size <= 0:
        return {"i": i}
    return {"i": i, "pad": "x" * max(0, size - len('{"i":,"pad":""}') - len(str(i)))}


WRU_SCENARIOS = {  # key in latest.json -> scenario arguments (issue 11, item 6)
    "wru_per_fire_one_time": {"kind": "one_time"},
    "wru_per_fire_recurring": {"kind": "recurring", "ticks": 4},
    "wru_per_fire_one_time_2kb_payload": {"kind": "one_time", "payload_bytes": 2048},
}


def wru_figures(endpoint: str, fires: int = 120) -> dict[str, Any]:
    """Write units per fire (table + due index, from item sizes: 1 per KB rounded up, x2 in a
    transaction), create to finish, for the three scenarios of ``WRU_SCENARIOS``."""
    out: dict[str, Any] = {}
    for key, args in WRU_SCENARIOS.items():
        fig = scenario(endpoint, fires=fires, **args)  # type: ignore[arg-type]
        out[key] = fig["wcu_per_fire"]
        out[key + "_by_op"] = fig["wru_by_op_per_fire"]
        out[key + "_items_bytes"] = {"run": fig["run_item_bytes"], "task": fig["task_item_bytes"]}
    return out


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def _add(phases: dict[str, dict[str, int]], name: str, counts: dict[str, int]) -> None:
    acc = phases.setdefault(name, {})
    for k, v in counts.items():
        acc[k] = acc.get(k, 0) + v


def _count_succeeded(ddb: Any, table: str) -> int:
    n = 0
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        n += sum(1 for it in page.get("Items", [])
                 if it["sk"]["S"].startswith("RUN#") and it["status"]["S"] == "succeeded")
        if not page.get("LastEvaluatedKey"):
            return n
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def idle_poll_ms(endpoint: str) -> float:
    """Wall time of one poll that finds nothing (the poller's fixed cost per tick)."""
    from dynacron.aws import sqs_client
    from dynacron.dispatch import Dispatcher
    from dynacron.store import Store

    settings = deploy(endpoint, shards=8)
    d = Dispatcher(Store(settings), sqs_client(settings), settings)
    d.poll()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        d.poll()
        times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[2]


# --- dollars -------------------------------------------------------------------------------


def dollars_per_million(fig: dict[str, Any]) -> dict[str, float]:
    """Variable cost of one million fires with the measured per-fire figures."""
    p = PRICES
    gb_s = fig["worker_invocations_per_fire"] * fig["worker_invocation_ms_local"] / 1000 * \
        LAMBDA_MEMORY_GB
    parts = {
        "dynamodb_writes": fig["wcu_per_fire"] * p["dynamodb_write_per_million_wru"],
        "dynamodb_reads": fig["rru_per_fire"] * p["dynamodb_read_per_million_rru"],
        "dynamodb_storage": fig["stored_bytes_per_fire"] * 1e6 / 1e9 * RETENTION_DAYS / 30
        * p["dynamodb_storage_per_gb_month"],
        "sqs": fig["sqs_requests_per_fire"] * p["sqs_per_million_requests"],
        "lambda_requests": fig["worker_invocations_per_fire"] * p["lambda_per_million_requests"],
        "lambda_duration": gb_s * 1e6 * p["lambda_per_gb_second"],
    }
    parts = {k: round(v, 4) for k, v in parts.items()}
    parts["total"] = round(sum(parts.values()), 4)
    return parts


def early_wait_s(mean_batch: float) -> float:
    """The worker's mean wait for early messages per invocation, which the frozen clock makes
    free in ``scenario``. DelaySeconds is whole seconds and the poller rounds so a message
    arrives at most 1 s before its run's start (``dispatch.delay_seconds``): the wait of one
    record is uniform in (0, 1] s, mean 0.5 s; a batch's records wait concurrently (``batch``),
    so an invocation of n records due in the same second lasts the longest wait, mean
    n / (n + 1) s. Modelled from that rule, not timed on AWS (SQS and event-source latency
    shorten it a little)."""
    n = max(1.0, mean_batch)
    return n / (n + 1)


def dollars_per_million_real_time(fig: dict[str, Any]) -> dict[str, float]:
    """``dollars_per_million`` with the worker's real time: its invocation time plus the wait
    for early messages (``early_wait_s``)."""
    timed = dict(fig)
    wait_ms = 1000 * early_wait_s(float(fig.get("mean_batch_size") or 1))
    timed["worker_invocation_ms_local"] = fig["worker_invocation_ms_local"] + wait_ms
    parts = dollars_per_million(timed)
    parts["early_wait_ms_per_invocation"] = round(wait_ms, 1)
    return parts


#: EventBridge Scheduler + its Lambda target, per million fires: the schedule's invocation,
#: the Lambda request and the target's duration (the handler only: nothing else runs there).
TARGET_HANDLER_MS = 10.0
TARGET_MEMORY_GB = 0.5


def eventbridge_with_lambda_per_million(handler_ms: float = TARGET_HANDLER_MS,
                                        free_tier: bool = False) -> dict[str, float]:
    p = PRICES
    parts = {
        "scheduler_invocations": 0.0 if free_tier else p["eventbridge_scheduler_per_million"],
        "lambda_requests": p["lambda_per_million_requests"],
        "lambda_duration": handler_ms / 1000 * TARGET_MEMORY_GB * 1e6 * p["lambda_per_gb_second"],
    }
    parts = {k: round(v, 4) for k, v in parts.items()}
    parts["total"] = round(sum(parts.values()), 4)
    return parts


def fixed_monthly(idle_ms: float, shards: int = 8) -> dict[str, float]:
    p = PRICES
    parts = {
        "poller_lambda_requests": POLLS_PER_MONTH * p["lambda_per_million_requests"] / 1e6,
        "poller_lambda_duration": POLLS_PER_MONTH * idle_ms / 1000 * LAMBDA_MEMORY_GB
        * p["lambda_per_gb_second"],
        "poller_queries": POLLS_PER_MONTH * shards * 0.5 * p["dynamodb_read_per_million_rru"] / 1e6,
        "event_source_idle_receives": ESM_IDLE_RECEIVES_PER_MONTH
        * p["sqs_per_million_requests"] / 1e6,
    }
    parts = {k: round(v, 4) for k, v in parts.items()}
    parts["total"] = round(sum(parts.values()), 4)
    return parts


def verdict(var_per_m: float, var_sparse_per_m: float, fixed: float, wru: float) -> str:
    eb = PRICES["eventbridge_scheduler_per_million"]
    free = PRICES["eventbridge_scheduler_free_per_month"] / 1e6
    writes = wru * PRICES["dynamodb_write_per_million_wru"]
    head = (
        f"dynacron: ${var_per_m:.2f} per million fires when fires come 10+ to the second (full "
        f"batches), ${var_sparse_per_m:.2f} when every fire is alone (batches of 1), plus "
        f"${fixed:.2f}/month fixed (poller every minute, its queries, idle event-source "
        f"polling). EventBridge Scheduler: ${eb:.2f} per million invocations, the first "
        f"{free:.0f}M each month free (and each of its fires still invokes its target, e.g. a "
        f"Lambda, once, which dynacron's batching of 10 partly saves). "
    )
    if min(var_per_m, var_sparse_per_m) >= eb:
        return head + (
            f"EventBridge Scheduler is cheaper at every volume: dynacron's DynamoDB writes alone "
            f"({wru:g} WRU per fire x ${PRICES['dynamodb_write_per_million_wru']}/M = "
            f"${writes:.2f} per million fires) exceed its price. At 1M fires/month: dynacron "
            f"${fixed + var_per_m:.2f}, EventBridge Scheduler $0 (free tier); at 100M/month: "
            f"dynacron ${fixed + 100 * var_per_m:.0f}, EventBridge Scheduler "
            f"${(100 - free) * eb:.0f}."
        )
    no_free = fixed / (eb - var_per_m)
    with_free = (fixed + eb * free) / (eb - var_per_m)
    return head + (
        f"dynacron is cheaper above {no_free:.2f}M fires/month ignoring EventBridge's free "
        f"tier, above {with_free:.1f}M/month counting it; below that EventBridge Scheduler is."
    )


def main() -> int:
    """``python -m bench.cost``: measure the ``wru_*`` figures on moto and merge them into
    ``bench/results/latest.json`` (every other key is kept)."""
    import json

    from .common import RESULTS, backend

    with backend("moto") as url:
        figures = wru_figures(url)
        one = scenario(url, "one_time", 120)
        timing = scenario(url, "one_time", 60, meter=False)
        sparse = scenario(url, "one_time", 20, receive_max=1, meter=False)
    one["worker_invocation_ms_local"] = timing["worker_invocation_ms_local"]
    real = dollars_per_million_real_time(one)
    sparse_fig = {**one, **{k: sparse[k] for k in ("worker_invocations_per_fire",
                                                   "worker_invocation_ms_local",
                                                   "mean_batch_size", "sqs_requests_per_fire")}}
    real_sparse = dollars_per_million_real_time(sparse_fig)
    eb = eventbridge_with_lambda_per_million()
    figures.update({
        "cost_per_million_usd_one_time_real_time": real["total"],
        "cost_per_million_breakdown_one_time_real_time": real,
        "cost_per_million_usd_one_time_sparse_real_time": real_sparse["total"],
        "cost_per_million_breakdown_one_time_sparse_real_time": real_sparse,
        "eventbridge_scheduler_with_lambda_per_million_usd": eb["total"],
        "eventbridge_scheduler_with_lambda_breakdown": eb,
        "eventbridge_scheduler_with_lambda_assumes": f"target handler {TARGET_HANDLER_MS:g} ms "
        f"at {TARGET_MEMORY_GB * 1024:.0f} MB; above the 14M free invocations a month",
    })
    path = RESULTS / "latest.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data.update(figures)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in figures.items() if not k.endswith(("_by_op", "_bytes"))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
